"""Compiled depth-first branch and bound for :mod:`searchers.specialize` (numba).

The exact solver's numpy passes cost one to two milliseconds of array calls each however few
partial choices they hold, and a band needs several. This module does the same search as
compiled depth-first walks under a rising loss ceiling (:func:`rising_walks`, one call):
children in order of their reduced cost, the bounds of the numpy passes (each row's band, the
dual's reduced costs, the LP-hull bound and reach of every row and of price-weighted surrogate
rows) checked at every node against the incumbent, so a walk has proven its answer optimal
when it ends. A node budget bounds the work; a walk that runs out says so and the caller
falls back to its other means. :func:`dual_ascent` gives the prices.

Imported lazily by :func:`searchers.specialize.solve`: numba's import and loading the cached
machine code take a few hundred milliseconds once per process. The code is compiled once per
machine and cached beside this file (or in numba's per-user cache when the package directory
is read-only; without any writable cache it is compiled once per process).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numba
import numpy as np


def _jit(fn: Callable[..., Any]) -> Any:
    """``njit`` with an on-disk cache when a cache directory is writable, else without."""
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # no writable cache locator (read-only install and home)
        return numba.njit(nogil=True)(fn)


def needs_compiling() -> bool:
    """True when a kernel has no machine code cached on disk yet (its first call compiles).
    Reads numba's cache index paths, which are not public API: any surprise says False."""
    try:
        return not all(os.path.exists(kernel._cache._cache_file._index_path)
                       for kernel in (build_hulls, branch_and_bound, dual_ascent,
                                      rising_walks))
    except AttributeError:
        return False


@_jit
def build_hulls(rows: np.ndarray, loss: np.ndarray, choices: np.ndarray, counts: np.ndarray,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``rows`` (H, L, C) and per suffix ``j`` of the layers (walk order): the lower
    convex hull of the suffix's summed (usage, loss) points over the allowed choices -- the
    Minkowski sum of the layers' hulls, i.e. their leftmost points plus all their hull edges
    in slope order. That hull is the LP relaxation of "complete layers ``j..`` with usage r".

    Returns ``xs, ys`` (breakpoints, flattened), ``start, length`` (H, L + 1: suffix ``j`` of
    row ``h`` is ``xs[start[h, j]:start[h, j] + length[h, j]]``) and ``best`` (H, L + 1: the
    usage at the hull's minimum).
    """
    H, L, C = rows.shape[0], rows.shape[1], rows.shape[2]
    max_edges = L * (C - 1) if C > 1 else 1
    xs = np.empty(H * (L + 1) * (max_edges + 1))
    ys = np.empty(H * (L + 1) * (max_edges + 1))
    start = np.zeros((H, L + 1), dtype=np.int64)
    length = np.zeros((H, L + 1), dtype=np.int64)
    best = np.zeros((H, L + 1))
    edge_layer = np.empty(max_edges, dtype=np.int64)
    edge_dx = np.empty(max_edges)
    edge_dy = np.empty(max_edges)
    first_x = np.zeros(L)
    first_y = np.zeros(L)
    sx = np.empty(C)
    sy = np.empty(C)
    chain = np.empty(C, dtype=np.int64)
    at = 0
    for h in range(H):
        n_edges = 0
        for j in range(L):
            n = counts[j]
            # the allowed points sorted by (x, y): insertion sort, n <= C is small
            for i in range(n):
                x = rows[h, j, choices[j, i]]
                y = loss[j, choices[j, i]]
                b = i
                while b > 0 and (sx[b - 1] > x or (sx[b - 1] == x and sy[b - 1] > y)):
                    sx[b] = sx[b - 1]
                    sy[b] = sy[b - 1]
                    b -= 1
                sx[b] = x
                sy[b] = y
            # lower hull by the monotone chain; of equal x only the lowest (first) counts
            m = 0
            for i in range(n):
                if m > 0 and sx[chain[m - 1]] == sx[i]:
                    continue
                while m >= 2:
                    o, a = chain[m - 2], chain[m - 1]
                    cross = ((sx[a] - sx[o]) * (sy[i] - sy[o])
                             - (sy[a] - sy[o]) * (sx[i] - sx[o]))
                    if cross <= 0.0:
                        m -= 1
                    else:
                        break
                chain[m] = i
                m += 1
            first_x[j] = sx[chain[0]]
            first_y[j] = sy[chain[0]]
            for e in range(m - 1):
                edge_layer[n_edges] = j
                edge_dx[n_edges] = sx[chain[e + 1]] - sx[chain[e]]
                edge_dy[n_edges] = sy[chain[e + 1]] - sy[chain[e]]
                n_edges += 1
        by_slope = np.argsort(edge_dy[:n_edges] / edge_dx[:n_edges], kind="mergesort")
        suffix_x = 0.0
        suffix_y = 0.0
        for j in range(L, -1, -1):
            if j < L:
                suffix_x += first_x[j]
                suffix_y += first_y[j]
            x, y = suffix_x, suffix_y
            start[h, j] = at
            xs[at] = x
            ys[at] = y
            k = 1
            low_x, low_y = x, y
            for e in range(n_edges):
                edge = by_slope[e]
                if edge_layer[edge] >= j:
                    x += edge_dx[edge]
                    y += edge_dy[edge]
                    xs[at + k] = x
                    ys[at + k] = y
                    if y < low_y:
                        low_x, low_y = x, y
                    k += 1
            length[h, j] = k
            best[h, j] = low_x
            at += k
    return xs[:at], ys[:at], start, length, best


@numba.njit(inline="always")
def _hull_at(xs: np.ndarray, ys: np.ndarray, first: int, n: int, x: float) -> float:
    """The piecewise-linear hull ``xs[first:first+n], ys[...]`` at ``x`` (clamped to its
    ends)."""
    if x <= xs[first]:
        return ys[first]
    last = first + n - 1
    if x >= xs[last]:
        return ys[last]
    lo, hi = first, last
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if xs[mid] <= x:
            lo = mid
        else:
            hi = mid
    dx = xs[hi] - xs[lo]
    if dx <= 0.0:
        return min(ys[lo], ys[hi])
    return ys[lo] + (ys[hi] - ys[lo]) * (x - xs[lo]) / dx


@_jit
def branch_and_bound(loss: np.ndarray, A: np.ndarray, reduced: np.ndarray, value: float,
                     choices: np.ndarray, counts: np.ndarray, low_ok: np.ndarray,
                     high_ok: np.ndarray, hull_w: np.ndarray, hull_low: np.ndarray,
                     hull_high: np.ndarray, xs: np.ndarray, ys: np.ndarray,
                     start: np.ndarray, length: np.ndarray, best: np.ndarray,
                     upper: float, ceiling: float, node_limit: int,
                     memo_use: np.ndarray, memo_loss: np.ndarray, memo_stamp: np.ndarray,
                     stamp: int) -> tuple[np.ndarray, float, bool, int]:
    """Depth-first search over the layers in walk order for the least-loss choice vector
    with every row's usage in ``[low_ok, high_ok]``.

    ``loss`` (L, C), ``A`` (K, L, C) and ``reduced`` (L, C, the dual's reduced costs with
    dual value ``value``) are in walk order; ``choices[j, :counts[j]]`` are layer ``j``'s
    allowed choices, lowest reduced cost first. A node is cut when a row can no longer meet
    its band, or a hull row's interval (``hull_low``/``hull_high``, already widened by the
    caller for rounding) is out of the rest's reach, or when its loss bound -- ``value``
    plus its reduced costs so far plus the least the rest can add, or its loss so far plus a
    hull row's LP bound -- exceeds the cut:
    ``ceiling``, lowered to the best loss found (less a relative 1e-9, so ties do not
    re-open). ``upper`` is an incumbent's loss known to the caller (inf when none): only
    strictly better answers are returned. A completed walk whose answer is within
    ``ceiling`` has proven it optimal; one that found none within it has proven that no
    choice vector lies within ``ceiling``.

    Partial choices with equal usage of every row have the same completions, so a node whose
    usage was met before at its depth with no more loss is cut (the earlier one's subtree is
    finished by then: depth first). The memo is a lossy hash table (``memo_*``, a power-of-two
    number of slots, reused across walks: a slot counts only when it carries ``stamp``);
    losing an entry only costs pruning.

    Returns ``(choices in walk order, loss, found, nodes)``; ``nodes > node_limit`` means
    the walk was cut short and proves nothing.
    """
    L = loss.shape[0]
    K = A.shape[0]
    H = hull_w.shape[0]
    # least reduced cost and least / largest usage of every suffix of the layers
    red_rest = np.zeros(L + 1)
    min_rest = np.zeros((K, L + 1))
    max_rest = np.zeros((K, L + 1))
    for j in range(L - 1, -1, -1):
        least = np.inf
        for i in range(counts[j]):
            least = min(least, reduced[j, choices[j, i]])
        red_rest[j] = red_rest[j + 1] + least
        for k in range(K):
            small, large = np.inf, -np.inf
            for i in range(counts[j]):
                a = A[k, j, choices[j, i]]
                small = min(small, a)
                large = max(large, a)
            min_rest[k, j] = min_rest[k, j + 1] + small
            max_rest[k, j] = max_rest[k, j + 1] + large
    out = np.zeros(L, dtype=np.int64)
    path = np.zeros(L, dtype=np.int64)
    pos = np.zeros(L + 1, dtype=np.int64)
    part_loss = np.zeros(L + 1)
    part_red = np.zeros(L + 1)
    part_use = np.zeros((L + 1, K))
    found = False
    best_loss = upper
    cut = min(ceiling, upper - 1e-9 * (1.0 + abs(upper))) if upper < np.inf else ceiling
    for k in range(K):
        if min_rest[k, 0] > high_ok[k] or max_rest[k, 0] < low_ok[k]:
            return out, best_loss, False, 0
    if value + red_rest[0] > cut:
        return out, best_loss, False, 0
    slot_mask = np.int64(memo_loss.shape[0] - 1)
    nodes = 0
    d = 0
    while d >= 0:
        if pos[d] >= counts[d]:
            d -= 1
            if d >= 0:
                pos[d] += 1
            continue
        c = choices[d, pos[d]]
        nodes += 1
        if nodes > node_limit:
            return out, best_loss, found, nodes
        red = part_red[d] + reduced[d, c]
        if value + red + red_rest[d + 1] > cut:
            pos[d] = counts[d]  # children come in reduced-cost order: the rest are worse
            continue
        ok = True
        for k in range(K):
            u = part_use[d, k] + A[k, d, c]
            if u + min_rest[k, d + 1] > high_ok[k] or u + max_rest[k, d + 1] < low_ok[k]:
                ok = False
                break
            part_use[d + 1, k] = u
        if not ok:
            pos[d] += 1
            continue
        s = part_loss[d] + loss[d, c]
        if d + 1 == L:
            if s < best_loss:
                best_loss = s
                found = True
                for i in range(L - 1):
                    out[i] = path[i]
                out[L - 1] = c
                cut = min(cut, s - 1e-9 * (1.0 + abs(s)))
            pos[d] += 1
            continue
        # each hull row: the rest must bring its usage into the row's interval (a mix of
        # the bands: a feasibility cut the rows alone miss), and its LP-hull loss bound
        for h in range(H):
            used = 0.0
            for k in range(K):
                used += hull_w[h, k] * part_use[d + 1, k]
            first = start[h, d + 1]
            n = length[h, d + 1]
            if hull_high[h] - used < xs[first] or hull_low[h] - used > xs[first + n - 1]:
                ok = False
                break
            target = min(max(best[h, d + 1], hull_low[h] - used), hull_high[h] - used)
            if s + _hull_at(xs, ys, first, n, target) > cut:
                ok = False
                break
        if not ok:
            pos[d] += 1
            continue
        # the memo: the same usage at this depth with no more loss was searched already
        key = np.uint64(d + 1) * np.uint64(0x9E3779B97F4A7C15)
        bits = part_use[d + 1].view(np.uint64)
        for k in range(K):
            key = (key ^ bits[k]) * np.uint64(0x100000001B3)
        slot = np.int64(key >> np.uint64(20)) & slot_mask
        seen = False
        for probe in range(4):
            at = (slot + probe) & slot_mask
            if memo_stamp[at] != stamp:
                break
            same = memo_use[at, 0] == d + 1
            for k in range(K):
                same = same and memo_use[at, k + 1] == part_use[d + 1, k]
            if same:
                if memo_loss[at] <= s:
                    seen = True
                else:
                    memo_loss[at] = s
                    slot = -1
                break
        if seen:
            pos[d] += 1
            continue
        if slot >= 0:  # a new entry, in the first free probe slot or over the home slot
            at = slot
            for probe in range(4):
                if memo_stamp[(slot + probe) & slot_mask] != stamp:
                    at = (slot + probe) & slot_mask
                    break
            memo_stamp[at] = stamp
            memo_use[at, 0] = d + 1
            for k in range(K):
                memo_use[at, k + 1] = part_use[d + 1, k]
            memo_loss[at] = s
        path[d] = c
        part_loss[d + 1] = s
        part_red[d + 1] = red
        d += 1
        pos[d] = 0
    return out, best_loss, found, nodes


@_jit
def dual_ascent(loss: np.ndarray, A: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                iterations: int) -> tuple[np.ndarray, float]:
    """Lagrangian prices ``mu`` (one signed per row of ``A``, (K, L, C), rows normalised by
    the caller) by projected subgradient ascent with Polyak steps toward a target that
    rises above the best value met and halves its lead after five steps without progress;
    ``mu[k] > 0`` prices the upper side of row ``k``, ``mu[k] < 0`` its lower side (only
    where that side is finite). Stops after ``iterations`` steps, when the lead is below
    1e-10 of the loss range, or when the argmin meets every band with complementary
    slackness (optimal). Returns the best ``mu`` and its dual value: a valid lower bound on
    every feasible choice's loss whatever the number of steps."""
    K, L, C = A.shape[0], A.shape[1], A.shape[2]
    rows = np.empty((L, C, K))  # row-major per block: the inner loop reads it contiguously
    for k in range(K):
        for j in range(L):
            for c in range(C):
                rows[j, c, k] = A[k, j, c]
    mu = np.zeros(K)
    best_mu = np.zeros(K)
    best_value = -np.inf
    used = np.zeros(K)
    grad = np.zeros(K)
    spread = 0.0
    for j in range(L):
        spread += loss[j].max() - loss[j].min()
    spread = max(spread, 1e-12)
    delta = spread * 0.1
    stall = 0
    for _ in range(iterations):
        value = 0.0
        used[:] = 0.0
        for j in range(L):
            pick = 0
            least = np.inf
            for c in range(C):
                w = loss[j, c]
                for k in range(K):
                    w += mu[k] * rows[j, c, k]
                if w < least:
                    least = w
                    pick = c
            value += least
            for k in range(K):
                used[k] += rows[j, pick, k]
        for k in range(K):
            side = hi[k] if mu[k] > 0 else (lo[k] if mu[k] < 0 else 0.0)
            value -= mu[k] * side
        if best_value == -np.inf or value > best_value + 1e-12 * (1.0 + abs(best_value)):
            best_value = value
            best_mu[:] = mu
            stall = 0
        else:
            if value > best_value:
                best_value = value
                best_mu[:] = mu
            stall += 1
            if stall >= 5:
                delta *= 0.5
                stall = 0
                if delta < 1e-10 * spread:
                    break
        norm = 0.0
        for k in range(K):
            over = used[k] - hi[k]
            under = used[k] - lo[k]
            if mu[k] > 0:
                g = over
            elif mu[k] < 0:
                g = under
            elif over > 0:
                g = over
            elif under < 0:
                g = under
            else:
                g = 0.0
            grad[k] = g
            norm += g * g
        if norm == 0.0:
            break  # the argmin meets every band with complementary slackness: optimal
        step = (best_value + delta - value) / norm
        for k in range(K):
            m = mu[k] + step * grad[k]
            if m > 0 and not hi[k] < np.inf:
                m = 0.0
            if m < 0 and not lo[k] > -np.inf:
                m = 0.0
            mu[k] = m
    return best_mu, best_value


@_jit
def rising_walks(loss: np.ndarray, A: np.ndarray, reduced: np.ndarray, value: float,
                 by_reduced: np.ndarray, low_ok: np.ndarray, high_ok: np.ndarray,
                 hull_w: np.ndarray, hull_low: np.ndarray, hull_high: np.ndarray,
                 incumbent: np.ndarray, upper: float, floor: float, ceiling: float,
                 growth: float, small_walk: int, node_limit: int, memo_use: np.ndarray,
                 memo_loss: np.ndarray, memo_stamp: np.ndarray, stamp: int,
                 ) -> tuple[float, float, int, int, bool, int]:
    """Walks (:func:`branch_and_bound`) under a rising loss ceiling, in one compiled call.

    Per ceiling: reduced-cost fixing (a block whose reduced cost, or whose excess over its
    layer's least loss, alone passes the cut is out), the layers ordered by usage spread
    relative to their row's band (widest first), each layer's blocks by reduced cost
    (``by_reduced``: every layer's blocks in that order), the hulls rebuilt over what is
    left, then one walk. A ceiling that holds no answer is proven empty (``floor``) and the
    next one's gap above ``value`` grows by ``growth`` (squared after a walk of fewer than
    ``small_walk`` nodes: cheap walks step faster); an infinite ceiling ends it.

    ``incumbent`` (original layer order) is updated in place. Returns ``(upper, floor,
    nodes spent, walks, complete, next stamp)``; ``complete`` False: over ``node_limit``.
    """
    K, L, C = A.shape[0], A.shape[1], A.shape[2]
    H = hull_w.shape[0]
    least_loss = 0.0
    worst = 0.0
    least = np.empty(L)
    for j in range(L):
        least[j] = loss[j].min()
        least_loss += least[j]
        worst += loss[j].max()
    rows = np.zeros((H, L, C))
    for h in range(H):
        for k in range(K):
            if hull_w[h, k] != 0.0:
                for j in range(L):
                    for c in range(C):
                        rows[h, j, c] += hull_w[h, k] * A[k, j, c]
    band = np.empty(K)
    for k in range(K):
        band[k] = high_ok[k] - low_ok[k]
    allowed = np.zeros((L, C), dtype=np.bool_)
    counts = np.zeros(L, dtype=np.int64)
    key = np.empty(L)
    spread = np.empty((K, L))
    choices = np.zeros((L, C), dtype=np.int64)
    counts_o = np.zeros(L, dtype=np.int64)
    loss_o = np.empty((L, C))
    A_o = np.empty((K, L, C))
    reduced_o = np.empty((L, C))
    rows_o = np.empty((H, L, C))
    spent = 0
    walks = 0
    while True:
        if ceiling >= min(upper, worst):
            ceiling = np.inf
        top = min(ceiling, upper)
        cut = top + 1e-9 * (1.0 + abs(top)) if top < np.inf else np.inf
        empty_layer = False
        for j in range(L):
            counts[j] = 0
            for c in range(C):
                ok = (reduced[j, c] <= cut - value) and (loss[j, c] - least[j]
                                                         <= cut - least_loss)
                allowed[j, c] = ok
                counts[j] += ok
            if counts[j] == 0:
                empty_layer = True
        walks += 1
        nodes = 0
        if not empty_layer:
            for k in range(K):
                whole = 0.0
                for j in range(L):
                    small, large = np.inf, -np.inf
                    for c in range(C):
                        if allowed[j, c]:
                            small = min(small, A[k, j, c])
                            large = max(large, A[k, j, c])
                    spread[k, j] = large - small
                    whole += large - small
                width = band[k] if (band[k] < np.inf and band[k] > 0) else max(whole, 1e-300)
                for j in range(L):
                    spread[k, j] /= width
            for j in range(L):
                key[j] = 0.0 if K == 0 else -spread[:, j].max()
            order = np.argsort(key, kind="mergesort")
            for i in range(L):
                j = order[i]
                n = 0
                for c in by_reduced[j]:
                    if allowed[j, c]:
                        choices[i, n] = c
                        n += 1
                counts_o[i] = n
                for c in range(C):
                    loss_o[i, c] = loss[j, c]
                    reduced_o[i, c] = reduced[j, c]
                    for k in range(K):
                        A_o[k, i, c] = A[k, j, c]
                    for h in range(H):
                        rows_o[h, i, c] = rows[h, j, c]
            xs, ys, start, length, best = build_hulls(rows_o, loss_o, choices, counts_o)
            out, best_loss, found, nodes = branch_and_bound(
                loss_o, A_o, reduced_o, value, choices, counts_o, low_ok, high_ok, hull_w,
                hull_low, hull_high, xs, ys, start, length, best, upper, ceiling,
                node_limit - spent, memo_use, memo_loss, memo_stamp, stamp)
            stamp += 1
            spent += nodes
            if found:
                for i in range(L):
                    incumbent[order[i]] = out[i]
                upper = best_loss
            if spent > node_limit:
                return upper, floor, spent, walks, False, stamp
        if upper <= ceiling:  # every choice vector within the ceiling was seen
            return upper, floor, spent, walks, True, stamp
        floor = max(floor, ceiling)
        step = growth if nodes > small_walk else growth * growth
        ceiling = value + (ceiling - value) * step
