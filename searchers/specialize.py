"""Instant network specialization from a PONAS accuracy-loss table (paper §3.3, Eq. 5).

Given the accuracy-loss table ``T_d`` (``(L, C)``: loss of candidate ``c`` at layer ``l``
against the best candidate of that layer) and per-block cost look-up tables, pick one candidate
per layer minimising the summed loss subject to any set of cost constraints. Because every
metric of a choice vector is ``base + sum of its chosen table entries`` this is a
multiple-choice knapsack with several (possibly lower-bounded) resources.

Two solvers:

* ``solver="exact"`` (default): constraints on one quantity merge into a band
  ``lo <= sum A[l, x_l] <= hi`` (upper, lower, opposing and two-sided bounds are one kind of
  row). Lagrangian prices (signed, one per row) bound every completion from below: near the
  LP relaxation's, by a compiled subgradient ascent (exact off the hull for one row). Then a
  compiled depth-first branch and bound (:mod:`searchers._specialize_kernel`, numba) walks
  the layers, widest usage spread first, children by reduced cost, and cuts a partial choice
  that can no longer meet a band, whose bound (its reduced costs; its loss plus the LP hull
  of each row, and of the price-weighted surrogate row, over the layers left) passes the
  cut, or whose usage was met before at its depth with no more loss (a memo: equal usage,
  equal completions). The cut is a loss ceiling rising from the dual bound (its gap x1.5 per
  walk that finds nothing), then the best answer found; reduced-cost fixing and the hulls
  are redone per ceiling. A walk that ends has proven its answer (or infeasibility; so does
  a dual bound above every choice's loss). Past 200,000 nodes the walk is redone under the
  LP's exact prices (HiGHS, which also proves LP-infeasibility); past 3,000,000 the numpy
  breadth-first passes take over -- the same bounds over a frontier of partial choices with
  equal-usage merging and dominance, a rising and bisected ceiling -- and past their caps
  HiGHS branch and cut (``scipy.optimize.milp``, gap 0). ``optimal`` is True whenever the
  answer (or infeasibility) is proven -- always, short of HiGHS's time limit. The first
  call after installing compiles the kernel (15-35 s on two cores), cached on disk after.

* ``solver="ga"``: the paper's genetic algorithm (20 chromosomes, the 10 best form 5 pairs,
  single-point crossover, per-gene mutation probability 0.1, infeasible children regenerated,
  1,000 generations, the best chromosome ever seen is returned). ``optimal`` is always False.

Constraints are ``(metric, op, value)`` tuples, ``{metric, op, value}`` dicts or strings such as
``"params<=3M"`` (see :func:`searchers.constraints.parse_constraints`). Any metric present in
``cost_tables`` is linear (``params``, ``madds``, ``flops``, ``bytes``, ``latency_ms`` from a
device LUT). ``intensity`` is ``flops / bytes``, so ``intensity >= I`` is the linear constraint
``sum(flops) - I * sum(bytes) >= 0`` (both tables must be present).

Importing this module never imports torch or numba (the kernel is imported on first use).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from searchers.constraints import Constraint, parse_constraints
from searchers.errors import NaswError

SOLVERS = ("exact", "ga")
#: the GA's settings from the paper (§3.3).
GA_DEFAULTS: dict[str, Any] = {
    "population": 20, "parents": 10, "generations": 1000, "mutation": 0.1, "retries": 20,
}
_REL_TOL = 1e-12
#: below this many states the (partial, K >= 2) dominance check costs more than it saves
_DOMINANCE_FROM = 64
#: the frontier cap of the narrow first pass (at the incumbent's loss)
_BEAM_STATES = 64
#: the cap of the exact pass under the subgradient's prices, before HiGHS's LP prices
_SUBGRADIENT_STATES = 512
#: how often an overflowing pass is retried at a lower ceiling before HiGHS branch and cut
_BISECTIONS = 4
#: the rising ceiling's gap above the dual bound grows by this factor per pass: a pass costs
#: more the further its ceiling lies above the optimum, so small steps overshoot less
_CEILING_GROWTH = 1.5


# -- problem set-up ---------------------------------------------------------------------------
class _Problem:
    """The table in box form: minimise ``sum T[l, x_l]`` s.t. ``lo[k] <= sum A[k, l, x_l] <= hi[k]``.

    Constraints on the same linear quantity merge into one row (``params >= a`` and
    ``params <= b`` become the band ``a <= params <= b``); a missing side is infinite.
    """

    def __init__(self, loss_table: Any, cost_tables: Mapping[str, Any],
                 constraints: list[Constraint], base: Mapping[str, float] | None) -> None:
        loss = np.asarray(loss_table, dtype=np.float64)
        if loss.ndim != 2 or loss.shape[0] < 1 or loss.shape[1] < 1:
            raise NaswError("loss_table", getattr(loss, "shape", None),
                            "a 2-D (layers, choices) array")
        if not np.all(np.isfinite(loss)):
            raise NaswError("loss_table", "non-finite entries", "finite numbers")
        self.loss = loss
        self.L, self.C = loss.shape
        self.tables: dict[str, np.ndarray] = {}
        for metric, table in cost_tables.items():
            arr = np.asarray(table, dtype=np.float64)
            if arr.shape != loss.shape:
                raise NaswError(f"cost_tables.{metric}", arr.shape, f"shape {loss.shape}")
            if not np.all(np.isfinite(arr)):
                raise NaswError(f"cost_tables.{metric}", "non-finite entries", "finite numbers")
            self.tables[metric] = arr
        self.base = {m: float((base or {}).get(m, 0.0)) for m in self.tables}
        self.constraints = constraints
        rows: dict[tuple[str, float], list[Any]] = {}
        for c in constraints:
            key, row, offset = self._linear_row(c)
            entry = rows.setdefault(key, [row, -math.inf, math.inf])
            if c.op == "<=":
                entry[2] = min(entry[2], -offset)
            else:
                entry[1] = max(entry[1], -offset)
        K = len(rows)
        self.A = np.array([r[0] for r in rows.values()], dtype=np.float64).reshape(K, self.L,
                                                                                   self.C)
        self.lo = np.array([r[1] for r in rows.values()], dtype=np.float64)
        self.hi = np.array([r[2] for r in rows.values()], dtype=np.float64)
        finite = np.where(np.isfinite(self.lo), np.abs(self.lo), 0.0)
        finite = np.maximum(finite, np.where(np.isfinite(self.hi), np.abs(self.hi), 0.0))
        span = np.abs(self.A).max(axis=(1, 2)) * self.L if K else np.zeros(0)
        #: absolute feasibility tolerance per row: float sums in any order agree within it
        self.tol = _REL_TOL * np.maximum(np.maximum(span, finite), 1.0)

    def _linear_row(self, c: Constraint) -> tuple[tuple[str, float], np.ndarray, float]:
        """``key, row, offset`` with ``metric op value  <=>  sum(row) + offset op 0``."""
        if c.metric == "intensity":
            missing = [m for m in ("flops", "bytes") if m not in self.tables]
            if missing:
                raise NaswError("cost_tables", sorted(self.tables),
                                hint="an intensity constraint needs 'flops' and 'bytes' tables")
            row = self.tables["flops"] - c.value * self.tables["bytes"]
            return (("intensity", c.value), row,
                    self.base["flops"] - c.value * self.base["bytes"])
        if c.metric not in self.tables:
            hint = ("build a latency LUT first (nasw lut build)" if c.metric == "latency_ms"
                    else "")
            raise NaswError(f"constraints.{c.metric}", c.metric, sorted(self.tables) + (
                ["intensity"] if {"flops", "bytes"} <= set(self.tables) else []), hint=hint)
        return (c.metric, 0.0), self.tables[c.metric], self.base[c.metric] - c.value

    # helpers on choice vectors --------------------------------------------------------------
    def loss_of(self, x: np.ndarray) -> float:
        return float(self.loss[np.arange(self.L), x].sum())

    def usage(self, x: np.ndarray) -> np.ndarray:
        return self.A[:, np.arange(self.L), x].sum(axis=1)

    def is_feasible(self, x: np.ndarray) -> bool:
        used = self.usage(x)
        return bool(np.all(used <= self.hi + self.tol) and np.all(used >= self.lo - self.tol))

    def costs_of(self, choices: list[int]) -> dict[str, float]:
        idx = np.arange(self.L)
        costs = {m: self.base[m] + float(t[idx, choices].sum()) for m, t in self.tables.items()}
        if "flops" in costs and "bytes" in costs and costs["bytes"] > 0:
            costs["intensity"] = costs["flops"] / costs["bytes"]
        return costs


def _metric_extremes(problem: _Problem) -> tuple[dict[str, float], dict[str, float]]:
    """Smallest (every constrained metric) and largest (``>=``-bounded ones) achievable values."""
    lowest: dict[str, float] = {}
    highest: dict[str, float] = {}
    for c in problem.constraints:
        if c.metric == "intensity":
            lo, hi = _ratio_extreme(problem, -1.0), _ratio_extreme(problem, 1.0)
        else:
            table = problem.tables[c.metric]
            lo = problem.base[c.metric] + float(table.min(axis=1).sum())
            hi = problem.base[c.metric] + float(table.max(axis=1).sum())
        lowest[c.metric] = lo
        if c.op == ">=":
            highest[c.metric] = hi
    return lowest, highest


def _ratio_extreme(problem: _Problem, sense: float) -> float:
    """Exact max (``sense=1``) or min (``-1``) of ``flops / bytes`` by Dinkelbach's method."""
    flops, nbytes = problem.tables["flops"], problem.tables["bytes"]
    f0, b0 = problem.base["flops"], problem.base["bytes"]
    idx = np.arange(problem.L)
    x = np.argmax(sense * flops / np.maximum(nbytes, 1e-300), axis=1)
    ratio = (f0 + flops[idx, x].sum()) / (b0 + nbytes[idx, x].sum())
    for _ in range(100):
        x = np.argmax(sense * (flops - ratio * nbytes), axis=1)
        new = (f0 + flops[idx, x].sum()) / (b0 + nbytes[idx, x].sum())
        if sense * (new - ratio) <= 1e-15 * abs(ratio):
            break
        ratio = new
    return float(ratio)


# -- Lagrangian bounds ---------------------------------------------------------------------------
def _row_scale(problem: _Problem) -> np.ndarray:
    """Per-row normaliser (the largest possible usage); 1 for an all-zero row."""
    if not problem.A.size:
        return np.ones(problem.A.shape[0])
    scale = np.abs(problem.A).max(axis=(1, 2)) * problem.L
    return np.where(scale > 0, scale, 1.0)


class _Dual:
    """Lagrangian multipliers ``mu`` (one signed per row) and what they bound.

    ``mu[k] > 0`` prices the upper side of row ``k``, ``mu[k] < 0`` its lower side. For any
    feasible ``x``: ``loss(x) >= value + sum_l reduced[l, x_l]`` with
    ``reduced = W - min_c W`` (``W = T + mu . A``, >= 0) and ``value`` the dual function.
    """

    def __init__(self, problem: _Problem, mu: np.ndarray) -> None:
        weighted = problem.loss + np.tensordot(mu, problem.A, axes=1)
        low = weighted.min(axis=1)
        self.mu = mu
        self.reduced = weighted - low[:, None]
        side = np.where(mu > 0, problem.hi, np.where(mu < 0, problem.lo, 0.0))
        self.value = float(low.sum() - np.dot(np.where(mu != 0, mu, 0.0), side))
        self.argmin = weighted.argmin(axis=1)


def _lagrangian(problem: _Problem, iterations: int) -> tuple[list[_Dual], np.ndarray | None]:
    """The best few duals (strongest first) by projected subgradient ascent with Polyak steps,
    and the best feasible argmin met on the way (or None)."""
    K, L = problem.A.shape[0], problem.L
    if K == 0:
        return [_Dual(problem, np.zeros(0))], np.argmin(problem.loss, axis=1)
    idx = np.arange(L)
    scale = _row_scale(problem)
    A_n = problem.A / scale[:, None, None]
    lo_n, hi_n = problem.lo / scale, problem.hi / scale
    can_up, can_down = np.isfinite(hi_n), np.isfinite(lo_n)
    spread = float(np.ptp(problem.loss, axis=1).sum()) or 1.0
    mu = np.zeros(K)
    duals: list[tuple[float, np.ndarray]] = []
    best_value, best_x, best_loss = -math.inf, None, math.inf
    step, stall = 1.0, 0
    A_flat = A_n.reshape(K, -1)
    loss_flat = problem.loss.ravel()
    offsets = idx * problem.C
    tol_n = problem.tol / scale
    for _ in range(iterations):
        weighted = (loss_flat + mu @ A_flat).reshape(L, -1)
        flat = offsets + weighted.argmin(axis=1)
        used = A_flat[:, flat].sum(axis=1)
        side = np.where(mu > 0, hi_n, np.where(mu < 0, lo_n, 0.0))
        value = float(weighted.ravel()[flat].sum() - mu @ side)
        over, under = used - hi_n, used - lo_n
        if (over <= tol_n).all() and (under >= -tol_n).all():
            x = flat - offsets
            candidate = float(loss_flat[flat].sum())
            if candidate < best_loss:
                best_x, best_loss = x.copy(), candidate
        if not duals or value > best_value + 1e-12 * (1 + abs(best_value)):
            best_value, stall = value, 0
            duals.append((value, mu.copy()))
        else:
            stall += 1
            if stall >= 4:
                step, stall = step / 2, 0
        # the supergradient element closest to zero
        grad = np.where(over > 0, over, np.where(under < 0, under, 0.0))
        grad = np.where(mu > 0, over, np.where(mu < 0, under, grad))
        norm = float(grad @ grad)
        target = best_loss if math.isfinite(best_loss) else best_value + spread
        gap = target - value
        if norm == 0 or step < 1e-4 or gap <= 1e-12 * (1 + abs(target)):
            break
        mu = mu + step * gap / norm * grad
        mu = np.where(can_up, mu, np.minimum(mu, 0.0))
        mu = np.where(can_down, mu, np.maximum(mu, 0.0))
    strongest = sorted(duals, key=lambda d: -d[0])[:2]
    picked = [_Dual(problem, m / scale) for _, m in strongest]
    picked.append(_Dual(problem, np.zeros(K)))
    return picked, best_x


# -- incumbents ----------------------------------------------------------------------------------
def _violation(problem: _Problem, used: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Normalised violation of usage ``used`` (K, ...) summed over rows."""
    shape = (-1,) + (1,) * (used.ndim - 1)
    over = np.maximum(used - problem.hi.reshape(shape), 0.0)
    under = np.maximum(problem.lo.reshape(shape) - used, 0.0)
    return ((over + under) / scale.reshape(shape)).sum(axis=0)


def _improve(problem: _Problem, x: np.ndarray) -> np.ndarray:
    """Best single-swap descent that keeps feasibility."""
    idx = np.arange(problem.L)
    x = x.copy()
    hi, lo = (problem.hi + problem.tol)[:, None, None], (problem.lo - problem.tol)[:, None, None]
    for _ in range(problem.L * problem.C):
        after = problem.usage(x)[:, None, None] + problem.A - problem.A[:, idx, x][:, :, None]
        ok = np.all((after <= hi) & (after >= lo), axis=0)
        gain = np.where(ok, problem.loss[idx, x][:, None] - problem.loss, -np.inf)
        flat = int(np.argmax(gain))
        if gain.flat[flat] <= 1e-15:
            break
        x[flat // problem.C] = flat % problem.C
    return x


class _HullBound:
    """Per row, the LP relaxation of the layers still to place, as a function of their usage.

    For one row the LP relaxation of "complete layers ``j..L-1`` with usage ``r``" is the lower
    convex hull of their summed (usage, loss) points: the Minkowski sum of each layer's hull,
    whose edges are the layers' hull edges sorted by slope. A state whose remaining band is
    ``[lo - u, hi - u]`` cannot finish below the hull's minimum over that band.
    """

    def __init__(self, row: np.ndarray, loss: np.ndarray, order: np.ndarray,
                 allowed: list[np.ndarray]) -> None:
        L, C = len(order), row.shape[1]
        xs_all, ys_all = row[order], loss[order]
        free = np.zeros((L, C), dtype=bool)
        for j, choices in enumerate(allowed):
            if len(choices) > 1:  # a single choice is placed before the DP starts
                free[j, choices] = True
        layers = np.flatnonzero(free.any(axis=1))
        # every layer's lower hull at once, by gift wrapping from its leftmost lowest point
        x, y, ok = xs_all[layers], ys_all[layers], free[layers]
        n = len(layers)
        leftmost = np.where(ok, x, np.inf).min(axis=1, keepdims=True)
        current = np.argmin(np.where(ok & (x == leftmost), y, np.inf), axis=1)
        rows_n = np.arange(n)
        start_x, start_y = x[rows_n, current], y[rows_n, current]
        edge_layer, edge_dx, edge_dy = [], [], []
        for _ in range(C - 1):
            cx, cy = x[rows_n, current][:, None], y[rows_n, current][:, None]
            right = ok & (x > cx)
            active = right.any(axis=1)
            if not active.any():
                break
            with np.errstate(divide="ignore", invalid="ignore"):
                slope = np.where(right, (y - cy) / (x - cx), np.inf)
            least = slope.min(axis=1, keepdims=True)
            # on ties the farthest point: the chain's vertices, not points inside an edge
            nxt = np.argmax(np.where(right & (slope <= least), x, -np.inf), axis=1)
            moved = rows_n[active]
            edge_layer.append(layers[moved])
            edge_dx.append(x[moved, nxt[moved]] - cx[moved, 0])
            edge_dy.append(y[moved, nxt[moved]] - cy[moved, 0])
            current = np.where(active, nxt, current)
        e_layer = np.concatenate(edge_layer) if edge_layer else np.zeros(0, dtype=np.int64)
        e_dx = np.concatenate(edge_dx) if edge_dx else np.zeros(0)
        e_dy = np.concatenate(edge_dy) if edge_dy else np.zeros(0)
        by_slope = np.argsort(e_dy / e_dx, kind="stable")
        e_layer, e_dx, e_dy = e_layer[by_slope], e_dx[by_slope], e_dy[by_slope]
        # suffix j: the layers at positions >= j; Minkowski sum = its edges in slope order
        in_suffix = e_layer[None, :] >= np.arange(L + 1)[:, None]  # (L + 1, E)
        first_x = np.zeros(L + 1)
        first_y = np.zeros(L + 1)
        first_x[layers], first_y[layers] = start_x, start_y
        first_x = np.cumsum(first_x[::-1])[::-1]
        first_y = np.cumsum(first_y[::-1])[::-1]
        cum_x = first_x[:, None] + np.concatenate(
            [np.zeros((L + 1, 1)), np.cumsum(np.where(in_suffix, e_dx, 0.0), axis=1)], axis=1)
        cum_y = first_y[:, None] + np.concatenate(
            [np.zeros((L + 1, 1)), np.cumsum(np.where(in_suffix, e_dy, 0.0), axis=1)], axis=1)
        keep = np.concatenate([np.ones((L + 1, 1), dtype=bool), in_suffix], axis=1)
        self.xs: list[np.ndarray] = [cum_x[j][keep[j]] for j in range(L + 1)]
        self.ys: list[np.ndarray] = [cum_y[j][keep[j]] for j in range(L + 1)]
        self.best: list[float] = [float(xs[int(np.argmin(ys))])
                                  for xs, ys in zip(self.xs, self.ys)]

    def __call__(self, j: int, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """The least LP loss of layers ``j..`` with usage in ``[low, high]`` (per state)."""
        xs, ys = self.xs[j], self.ys[j]
        at = np.clip(np.clip(self.best[j], low, high), xs[0], xs[-1])
        return np.interp(at, xs, ys)


def _hull_bounds(problem: _Problem, dual: _Dual, order: np.ndarray, allowed: list[np.ndarray],
                 ) -> list[tuple[np.ndarray, _HullBound, float, float]]:
    """LP-hull bounds of every row and, with several priced rows, of their surrogate.

    The surrogate row ``sum_k w_k A_k`` (``w`` the dual's normalised prices) must land in the
    interval the rows' bands imply; its hull sees the trade-off between two tight bands that
    the rows' own hulls cannot.
    """
    K = problem.A.shape[0]
    out = []
    for k in range(K):
        out.append((np.eye(K)[k], _HullBound(problem.A[k], problem.loss, order, allowed),
                    float(problem.lo[k]), float(problem.hi[k])))
    for weights, low, high in _surrogate_rows(problem, dual, (0.0,)):
        row = np.tensordot(weights, problem.A, axes=1)
        out.append((weights, _HullBound(row, problem.loss, order, allowed), low, high))
    return out


def _surrogate_rows(problem: _Problem, dual: _Dual, turns: tuple[float, ...],
                    ) -> list[tuple[np.ndarray, float, float]]:
    """``(weights, low, high)`` of the surrogate rows ``sum_k w_k A_k`` that must land in
    ``[low, high]`` (the rows' bands, tolerances included, widened for rounding): at the
    dual's normalised prices and, turned by ``turns`` radians in the plane of the two largest
    prices, at nearby ones -- deeper in a search the usage drifts and another mix of the rows
    bounds tighter (each is a valid relaxation). None with fewer than two priced rows."""
    if np.count_nonzero(dual.mu) < 2:
        return []
    scale = _row_scale(problem)
    low_ok, high_ok = problem.lo - problem.tol, problem.hi + problem.tol
    priced = dual.mu * scale  # prices of the normalised rows
    first, second = np.argsort(-np.abs(priced), kind="stable")[:2]
    angle = math.atan2(priced[second], priced[first])
    radius = math.hypot(priced[first], priced[second])
    span = np.abs(problem.A).max(axis=(1, 2)) * problem.L
    out = []
    for turn in turns:
        turned = priced.copy()
        turned[first] = radius * math.cos(angle + turn)
        turned[second] = radius * math.sin(angle + turn)
        w = turned / scale / np.abs(turned).max()
        with np.errstate(invalid="ignore"):  # 0 * inf: the row is not priced
            ends = np.nan_to_num(np.stack([w * low_ok, w * high_ok]), nan=0.0,
                                 posinf=np.inf, neginf=-np.inf)
        rounding = 1e-12 * float(np.abs(w) @ span)
        low = float(ends.min(axis=0).sum()) - rounding
        high = float(ends.max(axis=0).sum()) + rounding
        if math.isfinite(low) or math.isfinite(high):
            out.append((w, low, high))
    return out


# -- the exact solver ----------------------------------------------------------------------------
def _frontier_dp(problem: _Problem, order: np.ndarray, allowed: list[np.ndarray],
                 duals: list[_Dual], upper: float, max_states: int,
                 hulls: list[tuple[np.ndarray, _HullBound, float, float]] | None = None,
                 abort: bool = False) -> tuple[np.ndarray | None, bool, int]:
    """Breadth-first DP over the layers in ``order``; returns (best feasible choice vector or
    None, truncated, peak frontier size).

    A partial state (its loss, its usage of every row, its reduced cost under every dual) is
    dropped when no completion can meet a row's band (usage plus the smallest / largest
    completion), when a bound (dual, or the row's LP hull) proves every completion costs more
    than ``upper``, or when another state dominates it (no more loss, and every completion
    feasible for it is feasible for the other). Every rule is safe; only keeping the
    ``max_states`` lowest bounds when the frontier overflows is not, and sets ``truncated``
    (with ``abort`` the pass stops there instead and returns no choice).
    Layers left with one allowed choice are placed up front, outside the loop.
    """
    K, L = problem.A.shape[0], problem.L
    lo, hi, tol = problem.lo, problem.hi, problem.tol
    # with a band, "needs at least" and "has room for at most" rarely both favour one
    # state, so one probe block of the dominance check is all that pays for itself
    banded = bool(np.any(np.isfinite(lo) & np.isfinite(hi)))
    values = np.array([d.value for d in duals])
    reduced = np.stack([d.reduced for d in duals])  # (M, L, C)
    ceiling = upper + 1e-9 * (1.0 + abs(upper)) if math.isfinite(upper) else math.inf
    slack = ceiling - values
    # the smallest and largest usage of the layers still to place, per row
    min_rest = np.zeros((K, L + 1))
    max_rest = np.zeros((K, L + 1))
    for j in range(L - 1, -1, -1):
        cols = problem.A[:, order[j]][:, allowed[j]]
        min_rest[:, j] = min_rest[:, j + 1] + cols.min(axis=1)
        max_rest[:, j] = max_rest[:, j + 1] + cols.max(axis=1)
    low_ok = (lo - tol)[:, None]
    high_ok = (hi + tol)[:, None]
    # single-choice layers (reduced-cost fixing leaves many) are a constant start
    fixed = [j for j in range(L) if len(allowed[j]) == 1]
    f_layers = order[fixed]
    f_choices = np.array([allowed[j][0] for j in fixed], dtype=np.int64)
    state_loss = np.array([problem.loss[f_layers, f_choices].sum()])
    state_cost = problem.A[:, f_layers, f_choices].sum(axis=1)[:, None]
    state_red = reduced[:, f_layers, f_choices].sum(axis=1)[:, None]
    steps = [j for j in range(L) if len(allowed[j]) > 1]
    # rest tables counted over the free layers only: fixed ones are already in the state
    for j in range(L - 1, -1, -1):
        if len(allowed[j]) == 1:
            col = problem.A[:, order[j], allowed[j][0]]
            min_rest[:, : j + 1] -= col[:, None]
            max_rest[:, : j + 1] -= col[:, None]
    parents: list[np.ndarray] = []
    picks: list[np.ndarray] = []
    truncated, peak = False, 1
    if not (np.all(state_cost + max_rest[:, 0, None] >= low_ok)
            and np.all(state_cost + min_rest[:, 0, None] <= high_ok)
            and np.all(state_red[:, 0] <= slack)):
        return None, False, 1
    for j in steps:
        layer, choices = order[j], allowed[j]
        n, c = len(state_loss), len(choices)
        new_loss = (state_loss[:, None] + problem.loss[layer, choices][None, :]).ravel()
        new_cost = (state_cost[:, :, None] + problem.A[:, layer, choices][:, None, :]
                    ).reshape(K, n * c)
        new_red = (state_red[:, :, None] + reduced[:, layer, choices][:, None, :]
                   ).reshape(-1, n * c)
        keep = np.all(new_cost + max_rest[:, j + 1, None] >= low_ok, axis=0)
        keep &= np.all(new_cost + min_rest[:, j + 1, None] <= high_ok, axis=0)
        keep &= np.all(new_red <= slack[:, None], axis=0)
        kept = np.flatnonzero(keep)
        if hulls and len(kept) and math.isfinite(ceiling):
            finish = np.zeros(len(kept))
            for weights, hull, low, high in hulls:
                used = weights @ new_cost[:, kept]
                finish = np.maximum(finish, hull(j + 1, low - used, high - used))
            kept = kept[new_loss[kept] + finish <= ceiling]
        if len(kept) > _DOMINANCE_FROM:
            kept = kept[_least_loss_per_usage(new_loss[kept], new_cost[:, kept])]
        if len(kept) > _DOMINANCE_FROM:
            # what a completion must bring, per row: at least `need`, at most `room` (clipped
            # to what the rest can bring); more room and less need is better
            used = new_cost[:, kept]
            need = np.maximum(lo[:, None] - used, min_rest[:, j + 1, None])
            room = np.minimum(hi[:, None] - used, max_rest[:, j + 1, None])
            keys = np.concatenate([need[np.isfinite(lo)], -room[np.isfinite(hi)]])
            kept = kept[_undominated(new_loss[kept], keys, blocks=1 if banded else 4)]
        if len(kept) > max_states:
            if abort:  # an exact pass that overflows has failed: stop paying for it
                return None, True, max(peak, len(kept))
            truncated = True
            bound = (new_red[:, kept] + values[:, None]).max(axis=0)
            kept = kept[np.lexsort((new_loss[kept], bound))[:max_states]]
        state_loss, state_cost, state_red = new_loss[kept], new_cost[:, kept], new_red[:, kept]
        parents.append(kept // c)
        picks.append(choices[kept % c])
        peak = max(peak, len(kept))
        if len(kept) == 0:
            return None, truncated, peak
    best = int(np.argmin(state_loss))
    choices_out = np.empty(L, dtype=np.int64)
    choices_out[f_layers] = f_choices
    node = best
    for step in range(len(steps) - 1, -1, -1):
        choices_out[order[steps[step]]] = picks[step][node]
        node = parents[step][node]
    return choices_out, truncated, peak


def _least_loss_per_usage(loss: np.ndarray, usage: np.ndarray) -> np.ndarray:
    """Indices of the least-loss state of each distinct usage vector (``usage``: (K, n)).

    Two partial choices with the same usage of every row have the same completions, so only
    the cheaper one can lead to an optimum: an exact merge. Tables of stacked networks repeat
    layer shapes (and a squeeze-excite switch barely moves MAdds), so equal sums are common.
    """
    order = np.lexsort((loss, *usage))
    sorted_usage = usage[:, order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = np.any(sorted_usage[:, 1:] != sorted_usage[:, :-1], axis=0)
    return np.sort(order[first])


def _undominated(loss: np.ndarray, keys: np.ndarray, probe: int = 16,
                 blocks: int = 4) -> np.ndarray:
    """Sorted indices of the states that no other state dominates (less or equal loss and
    keys, smaller is better): exact for one key, checked against the ``blocks * probe`` lowest-loss
    states for several (a partial check: whatever it drops is dominated, so safe)."""
    n = len(loss)
    if keys.shape[0] == 0:
        return np.array([int(np.argmin(loss))])
    if keys.shape[0] == 1:
        order = np.lexsort((loss, keys[0]))
        running = np.minimum.accumulate(loss[order])
        keep = np.ones(n, dtype=bool)
        keep[1:] = loss[order][1:] < running[:-1]
        return np.sort(order[keep])
    order = np.argsort(loss, kind="stable")
    loss, keys = loss[order], keys[:, order]
    keep = np.ones(n, dtype=bool)
    positions = np.arange(n)
    for start in range(0, min(n, probe * blocks), probe):
        refs = positions[start:start + probe]
        refs = refs[keep[refs]]
        if len(refs) == 0:
            continue
        # ref r dominates i when it is earlier in loss order and no worse on every key
        beaten = np.all(keys[:, refs, None] <= keys[:, None, :], axis=0)
        beaten &= refs[:, None] < positions[None, :]
        keep &= ~beaten.any(axis=0)
    return np.sort(order[keep])


def _repair(problem: _Problem, x: np.ndarray) -> np.ndarray | None:
    """Greedy single swaps that reduce the normalised violation until feasible (or stuck)."""
    scale = _row_scale(problem)
    idx = np.arange(problem.L)
    x = x.copy()
    for _ in range(problem.L * problem.C):
        if problem.is_feasible(x):
            return x
        used = problem.usage(x)
        now = float(_violation(problem, used, scale))
        after = used[:, None, None] + problem.A - problem.A[:, idx, x][:, :, None]
        new_total = _violation(problem, after, scale)
        gain = now - new_total
        loss_up = problem.loss - problem.loss[idx, x][:, None]
        score = np.where(gain > 1e-15, loss_up / np.maximum(gain, 1e-300), np.inf)
        clears = new_total <= 0
        if clears.any():  # a swap that clears the violation outright, the cheapest one
            score = np.where(clears, loss_up, np.inf)
        flat = int(np.argmin(score))
        if not math.isfinite(score.flat[flat]):
            return None
        x[flat // problem.C] = flat % problem.C
    return x if problem.is_feasible(x) else None


def _lp_dual(problem: _Problem) -> tuple[_Dual | None, bool]:
    """The LP relaxation's optimal prices: (the strongest Lagrangian dual, or None; True when
    the relaxation, hence the table, is infeasible). One row: read off its LP hull; more:
    HiGHS."""
    if problem.A.shape[0] == 1:
        return _one_row_lp_dual(problem), False
    try:
        return _highs_lp_dual(problem)
    except (ImportError, AttributeError, TypeError, ValueError):
        pass  # scipy's HiGHS binding moved: the public route below is slower, not different
    from scipy.optimize import linprog

    L, C, K = problem.L, problem.C, problem.A.shape[0]
    scale = _row_scale(problem)
    rows = problem.A.reshape(K, L * C) / scale[:, None]
    up, down = np.isfinite(problem.hi), np.isfinite(problem.lo)
    matrix = np.vstack([rows[up], -rows[down]])
    bounds = np.concatenate([(problem.hi + problem.tol)[up] / scale[up],
                             -(problem.lo - problem.tol)[down] / scale[down]])
    out = linprog(problem.loss.ravel(), A_ub=matrix, b_ub=bounds,
                  A_eq=np.kron(np.eye(L), np.ones((1, C))), b_eq=np.ones(L), bounds=(0, 1),
                  method="highs")
    if out.status == 2:
        return None, True
    if out.status != 0:
        return None, False
    prices = -np.asarray(out.ineqlin.marginals)
    mu = np.zeros(K)
    mu[up] += prices[: int(up.sum())]
    mu[down] -= prices[int(up.sum()):]
    return _Dual(problem, mu / scale), False


def _highs_lp_dual(problem: _Problem) -> tuple[_Dual | None, bool]:
    """The LP relaxation through the HiGHS binding scipy ships (``scipy.optimize._highspy``),
    bands as ranged rows, no presolve: about 0.7 ms where ``linprog``'s checks and conversions
    take 2-3 ms around the same solve. Private to scipy, so any mismatch raises and
    :func:`_lp_dual` takes the public route."""
    from scipy.optimize._highspy import _core as highs_api

    L, C, K = problem.L, problem.C, problem.A.shape[0]
    n = L * C
    scale = _row_scale(problem)
    column_rows = np.empty((n, K + 1), dtype=np.int32)
    column_rows[:, 0] = np.arange(n) // C  # each block sits in its layer's convexity row
    column_rows[:, 1:] = L + np.arange(K)
    values = np.empty((n, K + 1))
    values[:, 0] = 1.0
    values[:, 1:] = (problem.A.reshape(K, n) / scale[:, None]).T
    infinite = highs_api.kHighsInf
    lp = highs_api.HighsLp()
    lp.num_col_, lp.num_row_ = n, L + K
    lp.col_cost_ = problem.loss.ravel()
    lp.col_lower_, lp.col_upper_ = np.zeros(n), np.ones(n)
    lp.row_lower_ = np.concatenate([np.ones(L), np.where(
        np.isfinite(problem.lo), (problem.lo - problem.tol) / scale, -infinite)])
    lp.row_upper_ = np.concatenate([np.ones(L), np.where(
        np.isfinite(problem.hi), (problem.hi + problem.tol) / scale, infinite)])
    lp.a_matrix_.format_ = highs_api.MatrixFormat.kColwise
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = n, L + K
    lp.a_matrix_.start_ = np.arange(0, n * (K + 1) + 1, K + 1, dtype=np.int32)
    lp.a_matrix_.index_ = column_rows.ravel()
    lp.a_matrix_.value_ = values.ravel()
    options = highs_api.HighsOptions()
    options.output_flag = False
    options.log_to_console = False
    options.presolve = "off"
    solver = highs_api._Highs()
    solver.passOptions(options)
    solver.passModel(lp)
    solver.run()
    status = solver.getModelStatus()
    if status == highs_api.HighsModelStatus.kInfeasible:
        return None, True
    if status != highs_api.HighsModelStatus.kOptimal:
        return None, False
    row_dual = np.asarray(solver.getSolution().row_dual, dtype=np.float64)[L:]
    return _Dual(problem, -row_dual / scale), False


def _one_row_lp_dual(problem: _Problem) -> _Dual:
    """With one row the LP relaxation is the row's hull (value vs usage) over its band: the
    optimal price is minus the hull's slope where the band clips the hull's minimum (0 when
    the minimum lies inside the band)."""
    from searchers import _specialize_kernel as kernel

    L, C = problem.L, problem.C
    every = np.tile(np.arange(C, dtype=np.int64), (L, 1))
    hull_x, hull_y, start, length, best = kernel.build_hulls(
        np.ascontiguousarray(problem.A[:1]), problem.loss, every, np.full(L, C, dtype=np.int64))
    xs = hull_x[start[0, 0]: start[0, 0] + length[0, 0]]
    ys = hull_y[start[0, 0]: start[0, 0] + length[0, 0]]
    lowest = float(best[0, 0])
    at = min(max(lowest, float(problem.lo[0])), float(problem.hi[0]))
    if at == lowest or len(xs) < 2:
        return _Dual(problem, np.zeros(1))
    segment = int(np.clip(np.searchsorted(xs, at) - 1, 0, len(xs) - 2))
    slope = (ys[segment + 1] - ys[segment]) / (xs[segment + 1] - xs[segment])
    return _Dual(problem, np.array([-slope]))


def _solve_milp(problem: _Problem, time_limit: float, shrink: float = 0.0,
                strict: bool = True) -> tuple[np.ndarray | None, bool]:
    """HiGHS branch and cut through scipy: (choices or None, proven optimal or infeasible).

    HiGHS meets a row within its feasibility tolerance (1e-6 of the scaled row); an answer
    that breaks a band by more than this module's tolerance is dropped (``strict``) and not
    proven. ``shrink`` narrows every scaled row by that much first (the benchmark's oracle
    uses it to bracket the optimum)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    L, C, K = problem.L, problem.C, problem.A.shape[0]
    one_hot = np.kron(np.eye(L), np.ones((1, C)))
    scale = _row_scale(problem)
    rows = problem.A.reshape(K, L * C) / scale[:, None]
    matrix = np.vstack([one_hot, rows])
    lower = np.concatenate([np.ones(L), (problem.lo - problem.tol) / scale + shrink])
    upper = np.concatenate([np.ones(L), (problem.hi + problem.tol) / scale - shrink])
    out = milp(problem.loss.ravel(), integrality=np.ones(L * C), bounds=Bounds(0, 1),
               constraints=LinearConstraint(matrix, lower, upper),
               options={"mip_rel_gap": 0.0, "time_limit": time_limit, "presolve": True})
    if out.x is None:
        return None, out.status == 2  # 2: proven infeasible
    choices = np.asarray(out.x).reshape(L, C).argmax(axis=1)
    if strict and not problem.is_feasible(choices):
        return None, False
    return choices, out.status == 0 and problem.is_feasible(choices)


def _layer_order(problem: _Problem, allowed: list[np.ndarray]) -> np.ndarray:
    """Layers with the widest usage spread (relative to their row's band) first.

    A band prunes a partial choice only once the layers still to place cannot move its usage
    far enough; placing the wide layers first leaves narrow ones at the end, where the band
    starts to bite early. Rows with one side are measured against their whole range.
    """
    spread = np.stack([np.ptp(problem.A[:, j][:, a], axis=1) for j, a in enumerate(allowed)],
                      axis=1)  # (K, L)
    band = problem.hi - problem.lo
    whole = spread.sum(axis=1)
    width = np.where(np.isfinite(band) & (band > 0), band, np.maximum(whole, 1e-300))
    return np.argsort(-(spread / width[:, None]).max(axis=0), kind="stable")


def _pass(problem: _Problem, duals: list[_Dual], ceiling: float, max_states: int,
          hulls: bool, abort: bool = False) -> tuple[np.ndarray | None, bool, int]:
    """One DP pass keeping every partial choice whose bound is within ``ceiling``; an empty
    layer (reduced-cost fixing removed every choice) means nothing is within it."""
    slack = ceiling + 1e-9 * (1.0 + abs(ceiling)) if math.isfinite(ceiling) else math.inf
    ok = np.all([d.reduced <= slack - d.value for d in duals], axis=0)
    allowed = [np.flatnonzero(row) for row in ok]
    if any(len(a) == 0 for a in allowed):
        return None, False, 0
    order = _layer_order(problem, allowed)
    allowed = [allowed[j] for j in order]
    bounds = _hull_bounds(problem, duals[0], order, allowed) if hulls else None
    return _frontier_dp(problem, order, allowed, duals, ceiling, max_states, bounds, abort)


#: the compiled walk's node budget: about 0.1-0.3 s of work; beyond it the numpy passes and
#: HiGHS take over (none of the benchmark's 19x12 instances comes near it)
_WALK_NODES = 3_000_000
#: the walk's loss ceiling starts a little above the LP bound and its gap grows by this
#: factor per walk that finds nothing: a walk near the optimum is pruned hard by the bounds
_WALK_GROWTH = 1.5
#: a walk below this many nodes was cheap: the next ceiling's gap grows by _WALK_GROWTH**2
_SMALL_WALK = 1_000
#: the walk's tries (see :func:`_walks`): node budgets of the first two, under the
#: subgradient's prices with one surrogate row, then with the surrogate turned
#: ``_SURROGATE_TURNS``; the third, under the LP's prices, gets ``_WALK_NODES``
_FIRST_WALK_NODES = 30_000
_ASCENT_NODES = 200_000
#: subgradient steps at most: within 1e-3 of the LP bound (relative to the loss range) on the
#: benchmark's tables, typically within 1e-9
_ASCENT_ITERATIONS = 300
#: the surrogate rows' turns (radians) from the prices' direction in the plane of the two
#: largest prices: on the hardest two-band tables of bench_specialize seven turns cut the
#: walk from millions of nodes to tens of thousands (one turn: 5.2M nodes, seven: 49k)
_SURROGATE_TURNS: tuple[float, ...] = (0.0, -0.05, 0.05, -0.15, 0.15, -0.4, 0.4)


class _WalkMemo:
    """The walk's hash table of (depth, usage) -> least partial loss, kept between walks: a
    walk claims it with a new stamp instead of clearing it. One per thread (the TUI solves
    in worker threads and the kernel releases the GIL), so walks never share entries."""

    SLOTS = 1 << 16

    def __init__(self, rows: int) -> None:
        self.use = np.zeros((self.SLOTS, rows + 1))
        self.loss = np.zeros(self.SLOTS)
        self.stamp = np.zeros(self.SLOTS, dtype=np.int64)
        self.last = 0  # the last stamp a walk used


_THREAD = threading.local()


def _walk_memo(rows: int) -> _WalkMemo:
    memos = _THREAD.__dict__.setdefault("memos", {})
    key = (rows, _WalkMemo.SLOTS)
    if key not in memos:
        memos[key] = _WalkMemo(rows)
    return memos[key]


def _ascent_dual(problem: _Problem) -> _Dual:
    """Near-LP Lagrangian prices from the compiled subgradient ascent (0.06-0.2 ms, where
    HiGHS takes 0.7-1 ms with its set-up); one row: the exact prices off its hull."""
    from searchers import _specialize_kernel as kernel

    if problem.A.shape[0] == 1:
        return _one_row_lp_dual(problem)
    scale = _row_scale(problem)
    rows = np.ascontiguousarray(problem.A / scale[:, None, None])
    mu, _ = kernel.dual_ascent(problem.loss, rows, problem.lo / scale, problem.hi / scale,
                               _ASCENT_ITERATIONS)
    return _Dual(problem, mu / scale)


def _walks(problem: _Problem) -> dict[str, Any] | None:
    """The compiled walk in three tries, each only when the last ran out of nodes: near-LP
    prices with one surrogate row (cheapest per node; most tables end here), the same with
    the surrogate turned several ways (tighter bounds and feasibility cuts for two tight
    bands), then the LP's exact prices (HiGHS, which also proves LP-infeasibility). None:
    the numpy passes take over."""
    ascent = _ascent_dual(problem)
    worst = float(problem.loss.max(axis=1).sum())
    if ascent.value > worst + 1e-9 * (1.0 + abs(worst)):
        # a lower bound above every choice's loss: nothing is feasible
        return {"choices": None, "optimal": True, "states": 0, "method": "dual", "passes": 0}
    # what the tries hand on: the best answer so far, and the highest ceiling a finished
    # walk proved empty (no choice vector at or below it: true under any prices)
    carried: dict[str, Any] = {"choices": None, "upper": math.inf, "floor": -math.inf,
                               "spent": 0}
    for node_limit, turns in ((_FIRST_WALK_NODES, (0.0,)),
                              (_ASCENT_NODES, _SURROGATE_TURNS)):
        walked = _walk(problem, ascent, min(node_limit, _WALK_NODES), turns, carried)
        if walked is not None:
            return walked
    lp, infeasible = _lp_dual(problem)
    if infeasible:
        return {"choices": None, "optimal": True, "states": carried["spent"], "method": "lp",
                "passes": 0}
    if lp is None:
        return None
    return _walk(problem, lp, _WALK_NODES, _SURROGATE_TURNS, carried)


def _walk(problem: _Problem, dual: _Dual, node_limit: int, turns: tuple[float, ...],
          carried: dict[str, Any]) -> dict[str, Any] | None:
    """The compiled depth-first branch and bound (:mod:`searchers._specialize_kernel`) under
    the prices ``dual``, with surrogate rows at ``turns`` (radians) from their direction:
    its answer is proven optimal (or the table infeasible) when it ends within
    ``node_limit`` nodes; None when it does not. ``carried`` (an earlier try's best answer,
    its proven-empty ceiling, the nodes spent) is read and updated."""
    from searchers import _specialize_kernel as kernel

    K, L = problem.A.shape[0], problem.L
    incumbent, upper = carried["choices"], carried["upper"]
    if problem.is_feasible(dual.argmin):
        mine = _improve(problem, dual.argmin)
        if problem.loss_of(mine) < upper:
            incumbent, upper = mine, problem.loss_of(mine)
    low_ok, high_ok = problem.lo - problem.tol, problem.hi + problem.tol
    # hull rows: every row, and with two or more priced rows their price-weighted surrogates
    weights = [np.eye(K)[k] for k in range(K)]
    lows, highs = list(low_ok), list(high_ok)
    for w, low, high in _surrogate_rows(problem, dual, turns):
        weights.append(w)
        lows.append(low)
        highs.append(high)
    hull_w = np.array(weights)
    hull_low, hull_high = np.array(lows, dtype=np.float64), np.array(highs, dtype=np.float64)
    positive = dual.reduced[dual.reduced > 0]
    gap = float(np.median(positive)) / 4 if positive.size else 1.0
    if math.isfinite(upper):
        gap = min(gap, (upper - dual.value) / 8)
    gap = max(gap, 1e-9 * (1.0 + abs(dual.value)))
    ceiling = dual.value + gap
    if math.isfinite(carried["floor"]):  # an earlier try proved nothing lies that low
        ceiling = max(ceiling, dual.value + (carried["floor"] - dual.value) * _WALK_GROWTH)
    memo = _walk_memo(K)
    found = np.full(L, -1, dtype=np.int64) if incumbent is None else incumbent.copy()
    upper, floor, spent, passes, complete, memo.last = kernel.rising_walks(
        problem.loss, problem.A, dual.reduced, float(dual.value),
        np.argsort(dual.reduced, axis=1, kind="stable"), low_ok, high_ok, hull_w, hull_low,
        hull_high, found, float(upper), float(carried["floor"]), float(ceiling),
        _WALK_GROWTH, _SMALL_WALK, int(node_limit), memo.use, memo.loss, memo.stamp,
        memo.last + 1)
    incumbent = found if found[0] >= 0 else None
    carried.update(choices=incumbent, upper=upper, floor=floor,
                   spent=carried["spent"] + spent)
    if not complete:  # cut short: the next try starts from what it found
        return None
    return {"choices": incumbent, "optimal": True, "states": int(carried["spent"]),
            "method": "walk", "passes": int(passes)}


def _solve_exact(problem: _Problem, max_states: int, iterations: int = 30,
                 milp_time_limit: float = 60.0) -> dict[str, Any]:
    """The compiled walk (:func:`_walks`, three tries at most); then dual bounds and exact DP passes
    under a loss ceiling; HiGHS only when they overflow.

    A pass keeps every partial choice whose bound is at most its ceiling, so a pass that
    finds a complete choice within its ceiling has proven it optimal. What keeps passes small:
    reduced-cost fixing, the LP-hull bound of each row and of their price-weighted sum per
    partial choice, the exact merge of partial choices with equal usage, the widest layers
    placed first, and a ceiling close to the optimum.

    * Bounds pulling one way (``<=`` only, or ``>=`` only): the subgradient's prices and
      incumbent; a narrow pass at the incumbent's loss usually proves it, else an exact pass
      under a small cap, else the LP relaxation's prices and rising ceilings (below). Every
      pass that outgrows its cap is abandoned at once.
    * Bounds pulling two ways (a band, or ``>=`` and ``<=`` bounds on different rows): the LP
      relaxation's exact prices first (HiGHS; or its proof of infeasibility) -- the
      subgradient's leave a wide gap there -- then the ceiling rises from the dual bound,
      its gap growing by half per pass. A pass that overflows its cap (``max_states``, doubled
      per overflow) is abandoned and the ceiling bisected between it and the last pass that
      found nothing; after ``_BISECTIONS`` of those, HiGHS branch and cut.
    """
    K = problem.A.shape[0]
    if K == 0:
        return {"choices": problem.loss.argmin(axis=1), "optimal": True, "states": 1,
                "method": "argmin", "passes": 0}
    lowest = problem.A.min(axis=2).sum(axis=1)
    highest = problem.A.max(axis=2).sum(axis=1)
    if np.any(lowest > problem.hi + problem.tol) or np.any(highest < problem.lo - problem.tol):
        return {"choices": None, "optimal": True, "states": 0, "method": "bounds", "passes": 0}
    walked = _walks(problem) if _WALK_NODES > 0 else None
    if walked is not None:
        return walked
    incumbent: np.ndarray | None = None
    upper = math.inf
    peak = passes = 0

    def found(choices: np.ndarray | None) -> None:
        nonlocal incumbent, upper
        if choices is not None and problem.loss_of(choices) < upper:
            incumbent, upper = choices, problem.loss_of(choices)

    def proven(method: str = "dp") -> dict[str, Any]:
        return {"choices": incumbent, "optimal": True, "states": peak, "method": method,
                "passes": passes}

    two_way = bool(np.any(np.isfinite(problem.lo))) and bool(np.any(np.isfinite(problem.hi)))
    if two_way:  # a band: the LP's exact prices below, no ascent needed
        duals = [_Dual(problem, np.zeros(K))]
    elif K == 1:  # one row: its hull gives the exact prices at once
        duals = [_one_row_lp_dual(problem), _Dual(problem, np.zeros(1))]
        if problem.is_feasible(duals[0].argmin):
            found(duals[0].argmin)
    else:
        duals, first = _lagrangian(problem, iterations)
        found(first)
    if not two_way:
        if incumbent is None:
            found(_repair(problem, duals[0].argmin))
        if incumbent is not None:
            found(_improve(problem, incumbent))
        # narrow: the lowest-bound states usually hold the optimum (proven if nothing is cut)
        choices, truncated, peak = _pass(problem, duals, upper, _BEAM_STATES, hulls=False,
                                         abort=True)
        passes = 1
        found(choices)
        if not truncated:
            return proven()
        if math.isfinite(upper):  # exact at the incumbent under the subgradient's prices
            choices, truncated, states = _pass(problem, duals, upper, _SUBGRADIENT_STATES,
                                               hulls=True, abort=True)
            passes, peak = passes + 1, max(peak, states)
            if not truncated:
                found(choices)
                return proven()
    lp, infeasible = _lp_dual(problem)
    if infeasible:
        incumbent = None
        return proven("lp")
    if lp is not None:
        duals = [lp, *duals]
    if incumbent is not None:
        found(_improve(problem, incumbent))
    dual = max(d.value for d in duals)
    worst = float(problem.loss.max(axis=1).sum())
    positive = duals[0].reduced[duals[0].reduced > 0]
    gap = float(np.median(positive)) / 4 if positive.size else 1.0
    if math.isfinite(upper):
        gap = min(gap, (upper - dual) / 8)
    gap = max(gap, 1e-9 * (1.0 + abs(dual)))
    # the optimum lies above `below` (a pass there found nothing) and, once a pass has
    # overflowed, at or below `above`; bisect that interval rather than overflow again
    below, above, bisections = dual, math.inf, 0
    ceiling = min(upper, worst, dual + gap)
    while True:
        # each overflow doubles the cap: near the optimum a few thousand states are normal
        choices, truncated, states = _pass(problem, duals, ceiling, max_states << bisections,
                                           hulls=True, abort=True)
        passes, peak = passes + 1, max(peak, states)
        if truncated:
            bisections += 1
            if bisections > _BISECTIONS:
                break
            above = ceiling
            ceiling = (below + above) / 2
            continue
        found(choices)
        if choices is not None or ceiling >= min(upper, worst):
            return proven()
        below = ceiling
        if math.isfinite(above):  # the optimum (if any) is above: retry there, larger cap
            ceiling, above = above, math.inf
        else:
            ceiling = min(upper, worst, dual + (below - dual) * _CEILING_GROWTH)
    best, certain = _solve_milp(problem, milp_time_limit)
    if best is None or (incumbent is not None and problem.loss_of(best) > upper):
        return {"choices": incumbent, "optimal": certain and incumbent is None,
                "states": peak, "method": "milp", "passes": passes}
    return {"choices": best, "optimal": certain, "states": peak, "method": "milp",
            "passes": passes}


# -- the genetic algorithm ---------------------------------------------------------------------
def _solve_ga(problem: _Problem, seed: int, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The paper's GA (§3.3); an infeasible child is regenerated up to ``retries`` times, after
    which its parent is kept. The initial population is drawn at random, each infeasible draw
    retried ``retries`` times and then greedily repaired (the paper does not say how it seeds
    under a tight constraint; repair keeps the GA from starting empty)."""
    rng = np.random.default_rng(seed)
    L, C = problem.L, problem.C
    pop_size, n_parents = int(settings["population"]), int(settings["parents"])
    retries, p_mut = int(settings["retries"]), float(settings["mutation"])
    n_parents -= n_parents % 2
    idx = np.arange(L)

    def feasible_rows(pop: np.ndarray) -> np.ndarray:
        if problem.A.shape[0] == 0:
            return np.ones(len(pop), dtype=bool)
        used = problem.A[:, idx[None, :], pop].sum(axis=2)  # (K, P)
        return np.all((used <= (problem.hi + problem.tol)[:, None])
                      & (used >= (problem.lo - problem.tol)[:, None]), axis=0)

    def losses(pop: np.ndarray) -> np.ndarray:
        return problem.loss[idx[None, :], pop].sum(axis=1)

    population = []
    for _ in range(pop_size):
        draws = rng.integers(0, C, size=(retries, L))
        ok = np.flatnonzero(feasible_rows(draws))
        if len(ok):
            population.append(draws[ok[0]])
        else:
            repaired = _repair(problem, draws[0])
            if repaired is not None:
                population.append(repaired)
    if not population:
        return {"choices": None, "optimal": False}
    # a tight band may leave fewer feasible seeds than parents: repeat them to fill the pairs
    population = [population[i % len(population)] for i in range(max(pop_size, n_parents))]
    pop = np.array(population)
    pop_loss = losses(pop)
    best = pop[int(np.argmin(pop_loss))].copy()
    best_loss = float(pop_loss.min())
    for _ in range(int(settings["generations"])):
        order = np.argsort(pop_loss, kind="stable")[:n_parents]
        parents = pop[order]
        pairs = parents.reshape(-1, 2, L)
        n_pairs = len(pairs)
        # `retries` attempts for every child at once; the first feasible attempt wins
        cut = rng.integers(1, max(L, 2), size=(retries, n_pairs))
        left = idx[None, None, :] < cut[:, :, None]  # (R, P, L)
        child_a = np.where(left, pairs[None, :, 0], pairs[None, :, 1])
        child_b = np.where(left, pairs[None, :, 1], pairs[None, :, 0])
        children = np.stack([child_a, child_b], axis=2).reshape(retries, n_pairs * 2, L)
        mutate = rng.random(children.shape) < p_mut
        shift = rng.integers(1, max(C, 2), size=children.shape)
        children = np.where(mutate, (children + shift) % C, children)
        ok = feasible_rows(children.reshape(-1, L)).reshape(retries, -1)
        first = np.argmax(ok, axis=0)
        any_ok = ok.any(axis=0)
        chosen = children[first, np.arange(children.shape[1])]
        chosen = np.where(any_ok[:, None], chosen, parents)
        pop = np.concatenate([parents, chosen])
        pop_loss = losses(pop)
        gen_best = int(np.argmin(pop_loss))
        if pop_loss[gen_best] < best_loss:
            best_loss, best = float(pop_loss[gen_best]), pop[gen_best].copy()
    return {"choices": best, "optimal": False}


# -- public API ---------------------------------------------------------------------------------
def solve(loss_table: Any, cost_tables: Mapping[str, Any], constraints: Iterable[Any],
          base: Mapping[str, float] | None = None, solver: str = "exact", *, seed: int = 0,
          max_states: int = 2_000, ga: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Pick one candidate per layer minimising the summed table loss under the constraints.

    Returns ``feasible``, ``choices`` (``[int] * L``, None when infeasible), ``loss`` (summed
    table loss, None when infeasible), ``costs`` (every tabulated metric plus ``intensity``),
    ``optimal`` (True only when the exact solver proved it), ``solver``, ``solve_ms``,
    ``min_costs`` (the smallest achievable value of every constrained metric, each on its own)
    and ``max_costs`` (the largest, for metrics with a ``>=`` bound). An infeasible problem
    returns ``feasible: False`` with ``min_costs``/``max_costs`` showing what is reachable.
    """
    if solver not in SOLVERS:
        raise NaswError("solver", solver, SOLVERS)
    parsed = parse_constraints(constraints)
    started = time.perf_counter()
    problem = _Problem(loss_table, cost_tables, parsed, base)
    if solver == "exact":
        out = _solve_exact(problem, int(max_states))
    else:
        unknown = set(ga or {}) - set(GA_DEFAULTS)
        if unknown:
            raise NaswError(f"ga.{sorted(unknown)[0]}", (ga or {})[sorted(unknown)[0]],
                            sorted(GA_DEFAULTS))
        out = _solve_ga(problem, seed, {**GA_DEFAULTS, **(ga or {})})
    choices = out["choices"]
    is_feasible = choices is not None and problem.is_feasible(np.asarray(choices))
    lowest, highest = _metric_extremes(problem)
    result: dict[str, Any] = {
        "feasible": bool(is_feasible),
        "choices": [int(c) for c in choices] if is_feasible else None,
        "loss": problem.loss_of(np.asarray(choices)) if is_feasible else None,
        "costs": problem.costs_of([int(c) for c in choices]) if is_feasible else {},
        # an exact run that finds nothing has proven infeasibility
        "optimal": bool(out["optimal"]) if solver == "exact" else False,
        "solver": solver,
        "min_costs": lowest,
        "max_costs": highest,
        "constraints": [c.as_dict() for c in parsed],
    }
    if solver == "exact":
        # how hard the table was: the walk's nodes, or the passes' peak frontier size
        result["states"] = int(out["states"])
        result["passes"] = int(out["passes"])
        result["method"] = out["method"]
    result["solve_ms"] = (time.perf_counter() - started) * 1e3
    return result


def loss_table_from_accuracy(accuracy: Any) -> np.ndarray:
    """``T_d`` of the paper's §3.3: each layer's best accuracy minus each candidate's (>= 0).

    The paper writes ``t_i - t_*`` (<= 0) and minimises; we store the magnitude so that the
    total "accuracy loss" of an architecture is a positive number to minimise.
    """
    acc = np.asarray(accuracy, dtype=np.float64)
    return acc.max(axis=1, keepdims=True) - acc


def layer_importance(loss_table: Any) -> np.ndarray:
    """Per-layer importance (the paper's Fig. 2): the largest accuracy loss in each layer."""
    return np.asarray(loss_table, dtype=np.float64).max(axis=1)


__all__ = ["GA_DEFAULTS", "SOLVERS", "layer_importance", "loss_table_from_accuracy", "solve"]
