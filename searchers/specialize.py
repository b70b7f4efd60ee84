"""Instant network specialization from a PONAS accuracy-loss table (paper §3.3, Eq. 5).

Given the accuracy-loss table ``T_d`` (``(L, C)``: loss of candidate ``c`` at layer ``l``
against the best candidate of that layer) and per-block cost look-up tables, pick one candidate
per layer minimising the summed loss subject to any set of cost constraints. Because every
metric of a choice vector is ``base + sum of its chosen table entries`` this is a
multiple-choice knapsack with several (possibly lower-bounded) resources.

Two solvers:

* ``solver="exact"`` (default): Pareto-frontier dynamic programming over the layers. A partial
  choice (layers ``0..l``) is a state ``(loss, cost vector)``; a state is dropped when

  - it can no longer be completed feasibly (its cost plus the cheapest completion exceeds a
    bound: the per-metric suffix minima),
  - its Lagrangian lower bound (the partial loss plus ``min_c T + λ·A`` summed over the
    remaining layers, minus ``λ·(remaining budget)``, for multipliers ``λ >= 0`` found by a
    subgradient ascent on the dual) exceeds the loss of the best feasible solution known
    (an incumbent from the Lagrangian heuristic, greedy repair and single-swap improvement),
  - another state dominates it (no more loss and no more of every resource: exact skyline for
    one constraint, a partial check against the lowest-loss states for several).

  Every pruning rule is safe, so when the frontier never had to be truncated the answer is
  optimal on the table and ``optimal`` is True. ``max_states`` caps the frontier; when it
  is hit, the states with the smallest bounds are kept and ``optimal`` is False.

* ``solver="ga"``: the paper's genetic algorithm (20 chromosomes, the 10 best form 5 pairs,
  single-point crossover, per-gene mutation probability 0.1, infeasible children regenerated,
  1,000 generations, the best chromosome ever seen is returned). ``optimal`` is always False.

Constraints are ``(metric, op, value)`` tuples, ``{metric, op, value}`` dicts or strings such as
``"params<=3M"`` (see :func:`searchers.constraints.parse_constraints`). Any metric present in
``cost_tables`` is linear (``params``, ``madds``, ``flops``, ``bytes``, ``latency_ms`` from a
device LUT). ``intensity`` is ``flops / bytes``, so ``intensity >= I`` is the linear constraint
``sum(flops) - I * sum(bytes) >= 0`` (both tables must be present).

Numpy only: importing this module never imports torch.
"""

from __future__ import annotations

import math
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


# -- problem set-up ---------------------------------------------------------------------------
class _Problem:
    """The table in linear form: minimise ``sum T[l, x_l]`` s.t. ``sum A[k, l, x_l] <= b[k]``."""

    def __init__(self, loss_table: Any, cost_tables: Mapping[str, Any],
                 constraints: list[Constraint], base: Mapping[str, float] | None) -> None:
        loss = np.asarray(loss_table, dtype=np.float64)
        if loss.ndim != 2 or loss.shape[0] < 1 or loss.shape[1] < 1:
            raise NaswError("loss_table", getattr(loss, "shape", None), "a 2-D (layers, choices) array")
        if not np.all(np.isfinite(loss)):
            raise NaswError("loss_table", "non-finite entries", "finite numbers")
        self.loss = loss
        self.L, self.C = loss.shape
        self.tables: dict[str, np.ndarray] = {}
        for metric, table in cost_tables.items():
            arr = np.asarray(table, dtype=np.float64)
            if arr.shape != loss.shape:
                raise NaswError(f"cost_tables.{metric}", arr.shape, f"shape {loss.shape}")
            self.tables[metric] = arr
        self.base = {m: float((base or {}).get(m, 0.0)) for m in self.tables}
        self.constraints = constraints
        rows, bounds = [], []
        for c in constraints:
            row, offset = self._linear_row(c)
            if c.op == "<=":
                rows.append(row)
                bounds.append(-offset)
            else:
                rows.append(-row)
                bounds.append(offset)
        self.A = np.array(rows, dtype=np.float64).reshape(len(rows), self.L, self.C)
        self.b = np.array(bounds, dtype=np.float64)
        span = np.abs(self.A).max(axis=(1, 2)) * self.L if rows else np.zeros(0)
        self.tol = _REL_TOL * np.maximum(np.maximum(span, np.abs(self.b)), 1.0)

    def _linear_row(self, c: Constraint) -> tuple[np.ndarray, float]:
        """``row, offset`` with ``metric op value  <=>  sum(row) + offset op 0``."""
        if c.metric == "intensity":
            missing = [m for m in ("flops", "bytes") if m not in self.tables]
            if missing:
                raise NaswError("cost_tables", sorted(self.tables),
                                hint="an intensity constraint needs 'flops' and 'bytes' tables")
            row = self.tables["flops"] - c.value * self.tables["bytes"]
            return row, self.base["flops"] - c.value * self.base["bytes"]
        if c.metric not in self.tables:
            hint = ("build a latency LUT first (nasw lut build)" if c.metric == "latency_ms"
                    else "")
            raise NaswError(f"constraints.{c.metric}", c.metric, sorted(self.tables) + (
                ["intensity"] if {"flops", "bytes"} <= set(self.tables) else []), hint=hint)
        return self.tables[c.metric], self.base[c.metric] - c.value

    # helpers on choice vectors --------------------------------------------------------------
    def loss_of(self, x: np.ndarray) -> float:
        return float(self.loss[np.arange(self.L), x].sum())

    def usage(self, x: np.ndarray) -> np.ndarray:
        return self.A[:, np.arange(self.L), x].sum(axis=1)

    def is_feasible(self, x: np.ndarray) -> bool:
        return bool(np.all(self.usage(x) <= self.b + self.tol))

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


# -- Lagrangian bounds and the incumbent ------------------------------------------------------
def _row_scale(problem: _Problem) -> np.ndarray:
    """Per-constraint normaliser (the largest possible usage); 1 for an all-zero row."""
    scale = np.abs(problem.A).max(axis=(1, 2)) * problem.L if problem.A.size else \
        np.zeros(problem.A.shape[0])
    return np.where(scale > 0, scale, 1.0)


def _lagrangian(problem: _Problem, iterations: int = 40) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Dual multipliers (best few) and the best feasible choice vector seen (or None).

    Subgradient ascent on ``g(λ) = sum_l min_c (T + λ·A)[l, c] - λ·b`` with Polyak steps in
    per-constraint normalised units. Each iterate's minimiser doubles as a primal candidate.
    """
    K, L = problem.A.shape[0], problem.L
    idx = np.arange(L)
    scale = _row_scale(problem)
    A_n, b_n = problem.A / scale[:, None, None], problem.b / scale
    spread = float(np.ptp(problem.loss, axis=1).sum()) or 1.0
    lam_n = np.zeros(K)
    best_dual, best_lams = -math.inf, [np.zeros(K)]
    best_x, best_loss = None, math.inf
    step_scale = 2.0
    stall = 0
    for _ in range(iterations):
        weighted = problem.loss + np.tensordot(lam_n, A_n, axes=1)
        x = weighted.argmin(axis=1)
        used = A_n[:, idx, x].sum(axis=1)
        dual = float(weighted[idx, x].sum() - lam_n @ b_n)
        if np.all(used * scale <= problem.b + problem.tol):
            value = problem.loss_of(x)
            if value < best_loss:
                best_x, best_loss = x.copy(), value
        if not math.isfinite(best_dual) or dual > best_dual + 1e-12 * (1 + abs(best_dual)):
            best_dual, stall = dual, 0
            best_lams = [lam_n / scale] + best_lams[:2]
        else:
            stall += 1
            if stall >= 5:
                step_scale, stall = step_scale / 2, 0
        grad = used - b_n
        norm = float(grad @ grad)
        target = best_loss if math.isfinite(best_loss) else best_dual + spread
        if norm == 0 or step_scale < 1e-6 or target - dual <= 1e-12 * (1 + abs(target)):
            break
        lam_n = np.maximum(0.0, lam_n + step_scale * (target - dual) / norm * grad)
    lams = [lam for lam in best_lams] + [np.zeros(K)]
    return lams, best_x


def _repair(problem: _Problem, x: np.ndarray) -> np.ndarray | None:
    """Greedy single swaps that reduce the normalised violation until feasible (or stuck)."""
    scale = _row_scale(problem)
    idx = np.arange(problem.L)
    x = x.copy()
    for _ in range(problem.L * problem.C):
        used = problem.usage(x)
        over = np.maximum(used - problem.b, 0.0) / scale
        if np.all(used <= problem.b + problem.tol):
            return x
        delta = problem.A - problem.A[:, idx, x][:, :, None]  # (K, L, C)
        new_over = np.maximum(used[:, None, None] + delta - problem.b[:, None, None], 0.0)
        new_total = (new_over / scale[:, None, None]).sum(axis=0)
        gain = over.sum() - new_total
        loss_up = problem.loss - problem.loss[idx, x][:, None]
        score = np.where(gain > 1e-15, loss_up / np.maximum(gain, 1e-300), np.inf)
        # prefer swaps that clear the violation outright, then the cheapest per unit gained
        clears = new_total <= 0
        if clears.any():
            score = np.where(clears, loss_up, np.inf)
        flat = int(np.argmin(score))
        if not math.isfinite(score.flat[flat]):
            return None
        x[flat // problem.C] = flat % problem.C
    return x if problem.is_feasible(x) else None


def _improve(problem: _Problem, x: np.ndarray) -> np.ndarray:
    """Best single-swap descent that keeps feasibility."""
    idx = np.arange(problem.L)
    x = x.copy()
    for _ in range(problem.L * problem.C):
        used = problem.usage(x)
        delta = problem.A - problem.A[:, idx, x][:, :, None]
        ok = np.all(used[:, None, None] + delta <= (problem.b + problem.tol)[:, None, None], axis=0)
        gain = problem.loss[idx, x][:, None] - problem.loss
        gain = np.where(ok, gain, -np.inf)
        flat = int(np.argmax(gain))
        if gain.flat[flat] <= 1e-15:
            break
        x[flat // problem.C] = flat % problem.C
    return x


# -- the exact solver ---------------------------------------------------------------------------
def _skyline_1d(loss: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Indices of the states not dominated in (loss, one cost): exact."""
    order = np.lexsort((loss, cost[0]))
    sorted_loss = loss[order]
    running = np.minimum.accumulate(sorted_loss)
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = sorted_loss[1:] < running[:-1]
    return order[keep]


def _prune_dominated(loss: np.ndarray, cost: np.ndarray, probe: int = 16) -> np.ndarray:
    """Indices of states not dominated by any of the ``probe`` lowest-loss states (K >= 2).

    A partial check (full pairwise dominance costs O(N^2)); any state it drops is dominated,
    so dropping it is safe.
    """
    n = len(loss)
    order = np.argsort(loss, kind="stable")
    loss, cost = loss[order], cost[:, order]
    keep = np.ones(n, dtype=bool)
    for start in range(0, min(n, probe * 4), probe):
        refs = np.arange(start, min(start + probe, n))
        refs = refs[keep[refs]]
        if len(refs) == 0:
            continue
        # ref r dominates i when loss_r <= loss_i, cost_r <= cost_i, and r != i (r earlier in
        # the loss order, so identical states keep their first copy)
        le = np.all(cost[:, refs, None] <= cost[:, None, :], axis=0)  # (R, N)
        le &= loss[refs, None] <= loss[None, :]
        le &= refs[:, None] < np.arange(n)[None, :]
        keep &= ~le.any(axis=0)
    return order[keep]


class _GridBounds:
    """Lower bounds on the loss of completing layers ``l..L-1`` within the budget of each of
    ``G`` linear rows (the constraints themselves and a surrogate ``λ·A`` row).

    Item costs are shifted to be >= 0 and rounded *down* to ``resolution`` grid units, so any
    completion feasible in true costs is feasible in grid units: ``g_l[floor(rem / unit)]`` never
    exceeds the true best completion (a relaxation, hence a safe pruning bound).
    """

    def __init__(self, loss: np.ndarray, weights: np.ndarray, A: np.ndarray, b: np.ndarray,
                 resolution: int) -> None:
        L, C = loss.shape
        rows = np.tensordot(weights, A, axes=1)  # (G, L, C)
        self.weights = weights
        self.budget = weights @ b
        floor = rows.min(axis=2)  # (G, L)
        shifted = rows - floor[:, :, None]
        self.rest_floor = np.zeros((len(rows), L + 1))
        self.rest_floor[:, :L] = np.cumsum(floor[:, ::-1], axis=1)[:, ::-1]
        total = shifted.max(axis=2).sum(axis=1)
        self.unit = np.where(total > 0, total / resolution, 1.0)
        units = np.floor(shifted / self.unit[:, None, None] + 1e-9).astype(np.int64)  # (G, L, C)
        size = resolution + 1
        G = len(rows)
        table = np.full((G, L + 1, size), np.inf)
        table[:, L] = 0.0
        slots = np.arange(size)
        g_index = np.arange(G)[:, None, None]
        for layer in range(L - 1, -1, -1):
            source = slots[None, None, :] - units[:, layer, :, None]  # (G, C, size)
            gathered = table[g_index, layer + 1, np.maximum(source, 0)]
            gathered = np.where(source >= 0, gathered + loss[layer][None, :, None], np.inf)
            table[:, layer] = gathered.min(axis=1)
        self.table = table
        self.size = size

    def __call__(self, layer: int, cost: np.ndarray) -> np.ndarray:
        """The best bound for states with partial usage ``cost`` (K, N) before ``layer``."""
        remaining = self.budget[:, None] - self.weights @ cost - self.rest_floor[:, layer, None]
        slots = np.floor(remaining / self.unit[:, None] + 1e-9)
        valid = slots >= 0
        index = np.clip(slots, 0, self.size - 1).astype(np.int64)
        values = self.table[np.arange(len(index))[:, None], layer, index]
        values = np.where(valid, values, np.inf)
        return values.max(axis=0)


def _frontier_dp(problem: _Problem, upper: float, lams: list[np.ndarray],
                 grids: _GridBounds | None, max_states: int,
                 ) -> tuple[np.ndarray | None, bool, int]:
    """Forward DP over the layers; returns (best choices found or None, truncated, peak)."""
    K, L, C = problem.A.shape[0], problem.L, problem.C
    T, A, b, tol = problem.loss, problem.A, problem.b, problem.tol
    min_use = np.zeros((K, L + 1))
    if K:
        min_use[:, :L] = np.cumsum(A.min(axis=2)[:, ::-1], axis=1)[:, ::-1]
    lag_suffix = []
    for lam in lams:
        row = (T + np.tensordot(lam, A, axes=1)).min(axis=1)
        suffix = np.zeros(L + 1)
        suffix[:L] = np.cumsum(row[::-1])[::-1]
        lag_suffix.append(suffix)
    lam_matrix = np.array(lams).reshape(len(lams), K)
    loss_tol = 1e-9 * (1.0 + (abs(upper) if math.isfinite(upper) else 0.0))

    state_loss = np.zeros(1)
    state_cost = np.zeros((K, 1))
    parents: list[np.ndarray] = []
    picks: list[np.ndarray] = []
    truncated = False
    peak = 1
    for layer in range(L):
        n = len(state_loss)
        new_loss = (state_loss[:, None] + T[layer][None, :]).ravel()
        new_cost = (state_cost[:, :, None] + A[:, layer][:, None, :]).reshape(K, n * C)
        parent = np.repeat(np.arange(n), C)
        pick = np.tile(np.arange(C), n)
        keep = np.flatnonzero(np.all(new_cost + min_use[:, layer + 1, None] <= (b + tol)[:, None],
                                     axis=0))
        new_loss, new_cost, parent, pick = new_loss[keep], new_cost[:, keep], parent[keep], pick[keep]
        slack = b[:, None] - new_cost  # (K, N)
        rest = np.array([s[layer + 1] for s in lag_suffix])[:, None] - lam_matrix @ slack
        bound = new_loss + rest.max(axis=0)
        if grids is not None:
            bound = np.maximum(bound, new_loss + grids(layer + 1, new_cost))
        if math.isfinite(upper):
            keep = np.flatnonzero(bound <= upper + loss_tol)
            new_loss, new_cost, parent, pick, bound = (
                new_loss[keep], new_cost[:, keep], parent[keep], pick[keep], bound[keep])
        if len(new_loss) > 1 and (K < 2 or len(new_loss) > _DOMINANCE_FROM):
            if K == 0:
                kept = np.array([int(np.argmin(new_loss))])
            elif K == 1:
                kept = _skyline_1d(new_loss, new_cost)
            else:
                kept = _prune_dominated(new_loss, new_cost)
            new_loss, new_cost, parent, pick, bound = (
                new_loss[kept], new_cost[:, kept], parent[kept], pick[kept], bound[kept])
        if len(new_loss) > max_states:
            truncated = True
            kept = np.argsort(bound, kind="stable")[:max_states]
            new_loss, new_cost, parent, pick = (new_loss[kept], new_cost[:, kept], parent[kept],
                                                pick[kept])
        state_loss, state_cost = new_loss, new_cost
        peak = max(peak, len(state_loss))
        parents.append(parent)
        picks.append(pick)
        if len(state_loss) == 0:
            return None, truncated, peak
    best = int(np.argmin(state_loss))
    choices = np.empty(L, dtype=np.int64)
    node = best
    for layer in range(L - 1, -1, -1):
        choices[layer] = picks[layer][node]
        node = parents[layer][node]
    return choices, truncated, peak


def _solve_exact(problem: _Problem, max_states: int, beam: int = 64,
                 resolution: int = 256) -> dict[str, Any]:
    """Incumbent (Lagrangian heuristic, repair, swaps, then a beam pass), then the full DP."""
    K = problem.A.shape[0]
    lams, incumbent = _lagrangian(problem)
    if incumbent is None and K:
        start = np.argmin(np.tensordot(lams[0], problem.A, axes=1) + 1e-9 * problem.loss, axis=1)
        incumbent = _repair(problem, start)
        if incumbent is None:
            incumbent = _repair(problem, np.argmin(problem.A.sum(axis=0), axis=1))
    if incumbent is not None:
        incumbent = _improve(problem, incumbent)
    upper = problem.loss_of(incumbent) if incumbent is not None else math.inf
    grids = None
    if K:
        weights = [np.eye(K)[k] for k in range(K)]
        if K > 1 and np.any(lams[0] > 0):
            weights.append(lams[0] / np.abs(lams[0]).max())
        grids = _GridBounds(problem.loss, np.array(weights), problem.A, problem.b, resolution)
    # a beam-limited pass first: when it never has to truncate it *is* the exact DP; when it
    # does, its answer is a strong incumbent for the full pass
    choices, truncated, peak = _frontier_dp(problem, upper, lams, grids, min(beam, max_states))
    if truncated:
        if choices is not None and problem.is_feasible(choices):
            found = _improve(problem, choices)
            if problem.loss_of(found) < upper:
                incumbent, upper = found, problem.loss_of(found)
        choices, truncated, peak = _frontier_dp(problem, upper, lams, grids, max_states)
    if choices is None or (incumbent is not None and problem.loss_of(choices) >= upper):
        choices = incumbent
    return {"choices": choices, "optimal": not truncated, "states": peak}


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
        return np.all(used <= (problem.b + problem.tol)[:, None], axis=0)

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
          max_states: int = 200_000, ga: Mapping[str, Any] | None = None) -> dict[str, Any]:
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
        result["states"] = int(out["states"])  # peak frontier size: how hard the table was
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
