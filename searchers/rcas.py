"""RCAS: lazy cost-effective greedy search under params and MAdds budgets.

Xiong, Mehta & Singh, *Resource Constrained Neural Network Architecture Search* (ICCV 2019),
§3 and Algorithms 1-3. The ground set V holds one element per (position, block type); a set S
fills each chosen position with its block type and leaves the others empty (identity). The set
function F(S) is the validation accuracy of the network built from S after an early-stopped
proxy training (§3.1); every F(S) is cached by the hash of the network S builds (sets that
build the same network share it), so no network is ever trained twice, not even across the three
greedy runs.

Algorithm 3 runs Algorithm 2 (lazy cost-effective greedy, LCEG) three times — with unit cost
(UC), with each block's parameter count (APR) and with its MAdds (AMR) as the cost in the
marginal-gain ratio of Eq. (9) — and returns the most accurate of the three sets.

Choices where the paper is silent or ambiguous (each tested in ``tests/test_rcas.py``):

* ``F(∅) = 0``, as Lemma 1 assumes: the empty network is never trained.
* A block's cost ``c(v)`` is its increment over the empty position in the space's additive
  cost LUT (``space.cost_tables``); budgets bound the *whole* network (stem and head included),
  as the user's constraints do. Every ``<=`` constraint on an additive metric (params, madds,
  flops) is a knapsack budget.
* **Side constraints** (a named extension; the paper has only ``<=`` budgets): the other
  constraints the cost LUT prices -- ``>=`` bounds, ``intensity`` (a ratio, so not a knapsack)
  -- steer the greedy (``side_constraints: steer``, the default; it changes nothing on the
  paper's problems). Adding an element is *admissible* when the new set keeps them, or when
  the current set breaks them and the new one breaks them less (summed relative violation);
  an inadmissible element is passed over in that step, neither evaluated nor dropped (a ratio
  can come back within bounds as the set grows), and a run ends when nothing admissible is
  left. Singletons not admissible at the start are not evaluated in the first batch; they wait
  in the queue unvalued. ``side_constraints: ignore`` is the earlier behaviour (only marked
  feasible or not): on the search suite's two-sided family 27% of its evaluations broke the
  intensity bound. ``latency_ms`` is not in the LUT and never steers.
* **Confirmed steps on noisy proxies** (a named option; the paper evaluates each set once):
  ``confirm_evaluations: k`` (default 1, the paper) makes the greedy re-value the set a step
  is about to add by the mean of its first ``k`` evaluations (``k - 1`` repeat jobs, tagged
  ``repeat``); if its confirmed gain ratio no longer leads the queue it goes back and the next
  one is tried, so a step does not rest on one lucky draw. Ranking still uses each set's first
  evaluation, so only decisive sets cost repeats. Measured in docs/search-benchmarks.md.
* Only one block may fill a position (§4.1): adding ``(n, l)`` removes every ``(n, l')`` from
  the queue.
* An element that no longer fits the remaining budget is dropped from the queue for good: the
  costs of S only grow.
* Ties in the gain ratio are broken by the lower element index, identically in the lazy and the
  non-lazy greedy, so on a submodular F both pick the same set (Minoux's argument).
* A failed or diverged training counts as ``F(S) = 0``.

**Ask/tell by resumable runs.** The greedy is sequential, the evaluations are not. Each rule's
greedy is a generator (:func:`greedy_run`) that yields a request where a value is missing
(every set worth asking now, and the *blocking* ones it cannot go on without) and continues
from that very point when the searcher resumes it -- which it does only once every blocking set
has a value. A result therefore costs at most the greedy step it unblocks, never a replay of
the whole greedy (the previous design replayed all three runs after every result: 7.5 s of
overhead against 0.7 s now for the 246 evaluations of plain CEG on ``rcas-digits``, same sets
chosen). The three runs are independent, so their requests are asked together as one batch,
and the first iteration (all singletons) is one batch of ``|V|`` jobs. The checkpoint holds no
values: :meth:`RCASSearcher.load_state_dict` rebuilds the value cache from the history and
replays the runs once, up to where they wait; the runs are pure functions of the cache, so a
resumed run continues the same trajectory by construction.

**Budget ending mid-way.** When ``budget`` evaluations run out before a greedy run completes,
:meth:`RCASSearcher.result_summary` reports the most accurate set a run had chosen so far
(every chosen set was evaluated and fits the budgets) with ``complete: False``, and
:meth:`Searcher.best` the best feasible evaluated candidate, which is at least as accurate.

**Laziness and batching.** Pure lazy evaluation re-evaluates one stale element at a time.
``speculate = k`` also asks for the next ``k`` stale elements of the queue in the same batch,
so ``k + 1`` workers stay busy during lazy steps. Speculation never changes the chosen sets — the
replay only *uses* a cached value when the sequential algorithm would have asked for it — it can
only add evaluations that the sequential algorithm would not have made (at most ``k`` per lazy
step). The ``evaluations`` event reports the F evaluations made against what the non-lazy CEG
would have needed for the same trajectory.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from searchers.base import Job, Result, Searcher
from searchers.constraints import violation
from searchers.errors import NaswError

ADDITIVE_METRICS = ("params", "madds", "flops")
SIDE_CONSTRAINT_MODES = ("steer", "ignore")
COST_RULES = ("uc", "apr", "amr")
_RULE_METRIC = {"uc": None, "apr": "params", "amr": "madds"}

Subset = frozenset[int]


class MissingValues(Exception):
    """Raised by a set-function oracle for sets whose value is not known yet.

    ``sets``: every set worth evaluating now; ``blocking``: those the greedy cannot go on
    without (default: all of them; speculative look-ahead sets are not blocking);
    ``evaluations``: how many evaluations of each set the greedy needs (more than one when a
    decisive value is confirmed, see ``confirm_evaluations``).
    """

    def __init__(self, sets: Iterable[Subset], blocking: Iterable[Subset] | None = None,
                 evaluations: int = 1) -> None:
        self.sets = list(dict.fromkeys(sets))
        self.blocking = self.sets if blocking is None else list(dict.fromkeys(blocking))
        self.evaluations = int(evaluations)
        super().__init__(f"{len(self.sets)} set values missing")


@dataclass(frozen=True)
class GreedyProblem:
    """A budgeted set-function maximisation over elements with additive costs.

    ``increments[metric][e]`` is what element ``e`` adds to ``base[metric]``; ``budgets`` bound
    the totals; ``groups[e]`` is the position of ``e`` (at most one element per group).
    """

    n_elements: int
    increments: Mapping[str, np.ndarray]
    base: Mapping[str, float]
    budgets: Mapping[str, float]
    groups: tuple[int, ...]

    def fits(self, totals: Mapping[str, float], element: int) -> bool:
        return all(totals[m] + self.increments[m][element] <= limit + 1e-9
                   for m, limit in self.budgets.items())

    def rule_cost(self, rule: str, element: int) -> float:
        metric = _RULE_METRIC[rule]
        if metric is None:
            return 1.0
        return max(float(self.increments[metric][element]), 1e-12)


@dataclass
class GreedyTrace:
    """What one greedy run did: the chosen elements in order, with gains and spent budget."""

    rule: str
    chosen: list[int] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    value: float = 0.0
    complete: bool = False
    ceg_evaluations: int = 0

    @property
    def subset(self) -> Subset:
        return frozenset(self.chosen)


def greedy_run(problem: GreedyProblem, value: Callable[[Subset], float], rule: str,
               lazy: bool = True, speculate: int = 0, trace: GreedyTrace | None = None,
               confirmed: Callable[[Subset], float] | None = None,
               admissible: Callable[[Subset, int], bool] | None = None
               ) -> Generator[MissingValues, None, GreedyTrace]:
    """Algorithm 2 (``lazy=True``) or Algorithm 1 (``lazy=False``) as a resumable run.

    Two extensions, both off when their argument is ``None`` (the paper's algorithm):
    ``confirmed(S)`` is a less noisy value of ``S`` (a mean of repeated evaluations): the
    element the step is about to add is re-valued by it first and goes back into the queue
    when its confirmed ratio no longer leads, so a step never rests on one lucky draw.
    ``admissible(S, e)`` says whether adding ``e`` to ``S`` keeps the constraints the budgets
    cannot express (lower bounds, ratio metrics): an element that is not admissible now is
    passed over in this step -- not evaluated, not dropped -- and the run ends when no
    remaining element is admissible.

    Where ``value`` raises :class:`MissingValues` the run *yields* a request (the sets to
    evaluate; ``blocking`` are the ones it cannot go on without) and, when resumed, retries the
    same look-up: the caller resumes it only once every blocking set has a value, so each
    result costs at most one greedy step, never a replay from the start. Returns the trace
    (``trace``, updated step by step, so a caller can watch a run that is still going).
    """
    if rule not in COST_RULES:
        raise NaswError("searcher.params.rules", rule, COST_RULES)
    trace = trace if trace is not None else GreedyTrace(rule)
    totals = {m: float(problem.base.get(m, 0.0)) for m in problem.budgets}
    chosen: Subset = frozenset()
    current = 0.0  # F(empty set) = 0, as Lemma 1 assumes
    used_groups: set[int] = set()
    candidates = [e for e in range(problem.n_elements) if problem.fits(totals, e)]
    allowed = (lambda s, e: True) if admissible is None else admissible

    def ratio(e: int, f_with: float) -> float:
        return (f_with - current) / problem.rule_cost(rule, e)

    # First iteration: every singleton, one batch -- those not admissible yet wait in the
    # queue unvalued, ahead of every valued one (stamp -1: evaluated once they become
    # admissible and reach the top, against the set chosen by then).
    now = [e for e in candidates if allowed(chosen, e)]
    singles = yield from _wait(value, [chosen | {e} for e in now])
    heap: list[HeapEntry] = [(-ratio(e, f), e, 0) for e, f in zip(now, singles, strict=True)]
    heap += [(-math.inf, e, -1) for e in candidates if e not in set(now)]
    heapq.heapify(heap)
    stamp = 0  # number of elements chosen so far; a key is fresh when computed at this stamp
    while heap:
        trace.ceg_evaluations += sum(1 for _, e, _ in heap
                                     if _usable(problem, e, totals, used_groups))
        if lazy:
            pick = yield from _lazy_pick(problem, value, heap, chosen, totals, used_groups,
                                         stamp, ratio, speculate, confirmed, allowed)
        else:
            pick = yield from _full_pick(problem, value, heap, chosen, totals, used_groups,
                                         ratio, confirmed, allowed)
        if pick is None:
            break
        element, f_with = pick
        gain = f_with - current
        chosen = chosen | {element}
        current = f_with
        used_groups.add(problem.groups[element])
        for m in totals:
            totals[m] += float(problem.increments[m][element])
        stamp += 1
        trace.chosen.append(element)
        trace.value = current
        trace.steps.append({"element": element, "gain": gain, "value": f_with,
                            "ratio": gain / problem.rule_cost(rule, element),
                            "totals": dict(totals)})
    trace.value = current
    trace.complete = True
    return trace


def cost_effective_greedy(problem: GreedyProblem, value: Callable[[Subset], float], rule: str,
                          lazy: bool = True, speculate: int = 0) -> GreedyTrace:
    """:func:`greedy_run` to the end; raises :class:`MissingValues` with every set it needs
    before it can go on (a batch) when ``value`` lacks one."""
    run = greedy_run(problem, value, rule, lazy, speculate)
    try:
        request = next(run)
    except StopIteration as finished:
        return finished.value
    run.close()
    raise request


def _values(value: Callable[[Subset], float], sets: Sequence[Subset]) -> list[float]:
    """Evaluate all ``sets``, gathering every missing one into one MissingValues."""
    missing: list[Subset] = []
    found: list[float] = []
    evaluations = 1
    for s in sets:
        try:
            found.append(value(s))
        except MissingValues as err:
            missing.extend(err.sets)
            evaluations = max(evaluations, err.evaluations)
    if missing:
        raise MissingValues(missing, evaluations=evaluations)
    return found


def _wait(value: Callable[[Subset], float], sets: Sequence[Subset]
          ) -> Generator[MissingValues, None, list[float]]:
    """The values of ``sets``, yielding a request (all of them blocking) until all are known."""
    while True:
        try:
            return _values(value, sets)
        except MissingValues as err:
            yield err


def _usable(problem: GreedyProblem, e: int, totals: Mapping[str, float],
            used_groups: set[int]) -> bool:
    return problem.groups[e] not in used_groups and problem.fits(totals, e)


HeapEntry = tuple[float, int, int]  # (-gain ratio, element, stamp of the ratio)


def _lazy_pick(problem: GreedyProblem, value: Callable[[Subset], float], heap: list[HeapEntry],
               chosen: Subset, totals: Mapping[str, float], used_groups: set[int], stamp: int,
               ratio: Callable[[int, float], float], speculate: int,
               confirmed: Callable[[Subset], float] | None = None,
               admissible: Callable[[Subset, int], bool] = lambda s, e: True
               ) -> Generator[MissingValues, None, tuple[int, float] | None]:
    """Minoux's lazy step: re-evaluate the stale top until a fresh element stays on top (and,
    with ``confirmed``, stays on top once its confirmed value replaces its first one)."""
    aside: list[HeapEntry] = []  # not admissible in this step: back into the queue after it
    sure: set[int] = set()  # elements whose fresh key is a confirmed value
    try:
        while heap:
            neg_key, e, e_stamp = heap[0]
            if not _usable(problem, e, totals, used_groups):
                heapq.heappop(heap)  # its position is taken or it no longer fits: never again
                continue
            if not admissible(chosen, e):
                aside.append(heapq.heappop(heap))
                continue
            if e_stamp == stamp:
                if confirmed is None:
                    heapq.heappop(heap)
                    return e, (yield from _wait(value, [chosen | {e}]))[0]
                f_sure = (yield from _wait(confirmed, [chosen | {e}]))[0]
                if e in sure:
                    heapq.heappop(heap)
                    return e, f_sure
                sure.add(e)
                heapq.heapreplace(heap, (-ratio(e, f_sure), e, stamp))
                continue
            while True:
                try:
                    f_with = value(chosen | {e})
                    break
                except MissingValues as err:
                    extra = [chosen | {o} for _, o, o_stamp in heapq.nsmallest(speculate + 1,
                                                                               heap)[1:]
                             if o_stamp != stamp and _usable(problem, o, totals, used_groups)]
                    yield MissingValues(err.sets + _missing_only(value, extra),
                                        blocking=err.sets)
            heapq.heapreplace(heap, (-ratio(e, f_with), e, stamp))
        return None
    finally:
        for entry in aside:
            heapq.heappush(heap, entry)


def _missing_only(value: Callable[[Subset], float], sets: Sequence[Subset]) -> list[Subset]:
    out: list[Subset] = []
    for s in sets:
        try:
            value(s)
        except MissingValues as err:
            out.extend(err.sets)
    return out


def _full_pick(problem: GreedyProblem, value: Callable[[Subset], float], heap: list[HeapEntry],
               chosen: Subset, totals: Mapping[str, float], used_groups: set[int],
               ratio: Callable[[int, float], float],
               confirmed: Callable[[Subset], float] | None = None,
               admissible: Callable[[Subset, int], bool] = lambda s, e: True
               ) -> Generator[MissingValues, None, tuple[int, float] | None]:
    """Algorithm 1's step: recompute every usable element's gain ratio, take the best (with
    ``confirmed``: the best once the leader's value is its confirmed one)."""
    usable = sorted({e for _, e, _ in heap if _usable(problem, e, totals, used_groups)})
    if not usable:
        heap.clear()
        return None
    now = [e for e in usable if admissible(chosen, e)]
    if not now:
        return None
    found = dict(zip(now, (yield from _wait(value, [chosen | {e} for e in now])), strict=True))
    sure: set[int] = set()
    while True:
        best = max(found.items(), key=lambda ef: (ratio(ef[0], ef[1]), -ef[0]))
        if confirmed is None or best[0] in sure:
            break
        found[best[0]] = (yield from _wait(confirmed, [chosen | {best[0]}]))[0]
        sure.add(best[0])
    heap[:] = [(-ratio(e, found[e]), e, 0) if e in found else (-math.inf, e, -1)
               for e in usable if e != best[0]]
    heapq.heapify(heap)
    return best


def rcas(problem: GreedyProblem, value: Callable[[Subset], float],
         rules: Sequence[str] = COST_RULES, lazy: bool = True,
         speculate: int = 0) -> tuple[list[GreedyTrace], list[Subset]]:
    """Algorithm 3: every rule's greedy run; returns the completed traces and the sets still
    needed by the runs that could not complete (all of them, as one batch)."""
    traces: list[GreedyTrace] = []
    needed: list[Subset] = []
    for rule in rules:
        try:
            traces.append(cost_effective_greedy(problem, value, rule, lazy, speculate))
        except MissingValues as err:
            needed.extend(err.sets)
            traces.append(GreedyTrace(rule))
    return traces, list(dict.fromkeys(needed))


def best_trace(traces: Sequence[GreedyTrace]) -> GreedyTrace | None:
    """The most accurate completed run (the first rule wins ties)."""
    done = [t for t in traces if t.complete]
    return max(done, key=lambda t: t.value) if done else None


def budgets_between(space: Any, fraction: float,
                    metrics: Sequence[str] = ("params", "madds")) -> list[str]:
    """Upper bounds ``fraction`` of the way from the empty network to the largest one of an
    rcas space, as constraint strings (``"params<=26461"``): handy tight-but-fillable budgets
    for examples, tests and benchmarks."""
    base, tables = space.cost_tables()
    bounds = []
    for metric in metrics:
        table = np.asarray(tables[metric], dtype=float)
        empty = base[metric] + table[:, 0].sum()
        full = base[metric] + table.max(axis=1).sum()
        bounds.append(f"{metric}<={empty + fraction * (full - empty):.0f}")
    return bounds


class RCASSearcher(Searcher):
    """RCAS over the ``rcas`` space (N positions x 6 depthwise block types)."""

    name = "rcas"
    presets = {
        # §4.1: 10 proxy epochs, SGD nesterov 0.9, LR 0.1 decayed x0.1 at epochs 4, 7 and 9
        # ("rcas-step"), weight decay 4e-5; 10 validation images per class (CIFAR-100: 1,000
        # of 50,000).
        "rcas-paper": {
            "train": {"epochs": 10, "batch_size": 128, "lr": 0.1, "momentum": 0.9,
                      "nesterov": True, "weight_decay": 4e-5, "schedule": "rcas-step"},
        },
        # The same schedule shape (decays at 40%, 70%, 90% of the steps) over 3 epochs.
        "rcas-digits": {
            "train": {"epochs": 3, "batch_size": 64, "lr": 0.1, "momentum": 0.9,
                      "nesterov": True, "weight_decay": 4e-5, "schedule": "rcas-step",
                      "augment": False},
        },
    }

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"rules": list(COST_RULES), "lazy": True, "speculate": 0,
                "confirm_evaluations": 1, "side_constraints": "steer"}

    def __init__(self, space: Any, **kwargs: Any) -> None:
        super().__init__(space, **kwargs)
        if getattr(space, "name", None) != "rcas":
            raise NaswError("space", getattr(space, "name", space), ["rcas"],
                            hint="RCAS fills the positions of the rcas space")
        rules = list(self.params["rules"])
        for rule in rules:
            if rule not in COST_RULES:
                raise NaswError("searcher.params.rules", rule, COST_RULES)
        if not rules:
            raise NaswError("searcher.params.rules", rules, COST_RULES)
        if int(self.params["speculate"]) < 0:
            raise NaswError("searcher.params.speculate", self.params["speculate"],
                            "an integer >= 0")
        confirm = self.params["confirm_evaluations"]
        if isinstance(confirm, bool) or not isinstance(confirm, int) or confirm < 1:
            raise NaswError("searcher.params.confirm_evaluations", confirm, "an integer >= 1",
                            hint="1 = the paper (one evaluation per set); 2-3 on noisy proxies")
        if self.params["side_constraints"] not in SIDE_CONSTRAINT_MODES:
            raise NaswError("searcher.params.side_constraints", self.params["side_constraints"],
                            SIDE_CONSTRAINT_MODES)
        self.confirm_evaluations = confirm
        self.rules = rules
        self.problem = self._problem()
        # network hash -> every F evaluation of it, in told order (rebuilt from the history)
        self.cache: dict[str, list[float]] = {}
        self._asked: dict[str, int] = {}  # network hash -> evaluations in flight
        self._emitted_steps: dict[str, int] = {rule: 0 for rule in rules}
        self._finished_rules: set[str] = set()
        self._start_runs()

    # -- problem ----------------------------------------------------------------------------
    def _problem(self) -> GreedyProblem:
        base, tables = self.space.cost_tables(self.input_shape, self.num_classes)
        n_positions, n_columns = np.asarray(tables["params"]).shape
        elements = [(n, t) for n in range(n_positions) for t in range(1, n_columns)]
        self.elements = elements
        budgets: dict[str, float] = {}
        for c in self.constraints:
            if c.op == "<=" and c.metric in ADDITIVE_METRICS:
                budgets[c.metric] = min(budgets.get(c.metric, math.inf), c.value)
        increments = {}
        for metric in set(budgets) | {"params", "madds"}:
            table = np.asarray(tables[metric], dtype=float)
            increments[metric] = np.array([table[n, t] - table[n, 0] for n, t in elements])
        # An empty network's totals are the base plus every position's empty column.
        empty = {m: float(base.get(m, 0.0)) + float(np.asarray(tables[m])[:, 0].sum())
                 for m in increments}
        # The constraints the knapsack budgets do not express (lower bounds, ratio metrics)
        # and that the LUT prices: checked on each candidate set before it is evaluated.
        self.side_constraints = [] if self.params["side_constraints"] == "ignore" else [
            c for c in self.constraints
            if not (c.op == "<=" and c.metric in ADDITIVE_METRICS)
            and c.metric in self.space.costs(self.genotype_of([]))]
        self._violations: dict[Subset, float] = {}
        return GreedyProblem(len(elements), increments, empty, budgets,
                             tuple(n for n, _ in elements))

    def genotype_of(self, subset: Iterable[int]) -> dict[str, Any]:
        """The rcas genotype that fills the positions of ``subset`` (others stay empty)."""
        blocks = [0] * (max(n for n, _ in self.elements) + 1)
        for e in subset:
            position, block_type = self.elements[e]
            blocks[position] = block_type
        return {"space": "rcas", "preset": self.space.preset, "blocks": blocks}

    # -- the three greedy runs, resumed as results arrive -----------------------------------
    def _key(self, subset: Iterable[int]) -> str:
        return self.space.hash(self.genotype_of(subset))

    def _value(self, subset: Subset) -> float:
        """F(S): its first evaluation (the paper evaluates each set once)."""
        if not subset:
            return 0.0
        values = self.cache.get(self._key(subset))
        if values:
            return values[0]
        raise MissingValues([subset])

    def _confirmed(self, subset: Subset) -> float:
        """F(S) for a decisive step: the mean of its first ``confirm_evaluations`` evaluations
        (the first ones, so a resumed run sees the same value whatever arrived since)."""
        if not subset:
            return 0.0
        values = self.cache.get(self._key(subset), [])
        if len(values) >= self.confirm_evaluations:
            return float(np.mean(values[:self.confirm_evaluations]))
        raise MissingValues([subset], evaluations=self.confirm_evaluations)

    def _known(self, subset: Subset, evaluations: int = 1) -> bool:
        return not subset or len(self.cache.get(self._key(subset), ())) >= evaluations

    def _violation(self, subset: Subset) -> float:
        """Summed relative violation of the side constraints by the network ``subset`` builds
        (from the cost LUT: no evaluation)."""
        if subset not in self._violations:
            costs = self.space.costs(self.genotype_of(subset))
            self._violations[subset] = sum(violation(costs, c) for c in self.side_constraints)
        return self._violations[subset]

    def _admissible(self, subset: Subset, element: int) -> bool:
        """Adding ``element`` keeps the side constraints, or brings an infeasible set closer."""
        after = self._violation(subset | {element})
        return after == 0.0 or after < self._violation(subset)

    def _start_runs(self) -> None:
        """One resumable run per rule, each advanced to its first request."""
        self._traces = [GreedyTrace(rule) for rule in self.rules]
        confirmed = self._confirmed if self.confirm_evaluations > 1 else None
        admissible = self._admissible if self.side_constraints else None
        self._runs: list[Generator[MissingValues, None, GreedyTrace] | None] = [
            greedy_run(self.problem, self._value, t.rule, bool(self.params["lazy"]),
                       int(self.params["speculate"]), t, confirmed, admissible)
            for t in self._traces]
        self._requests: list[MissingValues | None] = [None] * len(self.rules)
        for index in range(len(self.rules)):
            self._advance(index)
        self._report()

    def _advance(self, index: int) -> None:
        """Run rule ``index`` on until it needs a value the cache lacks, or finishes."""
        run = self._runs[index]
        if run is None:
            return
        try:
            self._requests[index] = next(run) if self._requests[index] is None else \
                run.send(None)
        except StopIteration:
            self._runs[index] = None
            self._requests[index] = None

    def _resume_unblocked(self) -> None:
        """Resume exactly the runs whose blocking sets all have values now (no replay)."""
        for index, request in enumerate(self._requests):
            if request is not None and all(self._known(s, request.evaluations)
                                           for s in request.blocking):
                self._advance(index)

    @property
    def _needed(self) -> list[tuple[Subset, int]]:
        """The sets the runs wait for, rule by rule, each with the evaluations it still lacks
        (in flight included)."""
        wanted: dict[Subset, int] = {}
        for request in self._requests:
            if request is not None:
                for s in request.sets:
                    wanted[s] = max(wanted.get(s, 0), request.evaluations)
        out = []
        for s, n in wanted.items():
            if not s:
                continue
            key = self._key(s)
            lacking = n - len(self.cache.get(key, ())) - self._asked.get(key, 0)
            if lacking > 0:
                out.append((s, lacking))
        return out

    def _report(self) -> None:
        """Events for steps and finished runs not reported yet."""
        lazy_evals = sum(len(v) for v in self.cache.values())
        for trace in self._traces:
            first = self._emitted_steps[trace.rule]
            for index in range(first, len(trace.steps)):
                step = trace.steps[index]
                position, block_type = self.elements[step["element"]]
                blocks = self.genotype_of(trace.chosen[:index + 1])["blocks"]
                self.emit("greedy_step", self.n_told,
                          {"rule": trace.rule, "position": position, "block": block_type,
                           "blocks": blocks},
                          gain=step["gain"], value=step["value"],
                          **{f"{m}_used": v for m, v in step["totals"].items()})
            self._emitted_steps[trace.rule] = max(first, len(trace.steps))
            if trace.complete and trace.rule not in self._finished_rules:
                self._finished_rules.add(trace.rule)
                self.emit("rule_done", self.n_told,
                          {"rule": trace.rule, "blocks": self.genotype_of(trace.chosen)["blocks"]},
                          value=trace.value, ceg_evaluations=trace.ceg_evaluations,
                          lazy_evaluations=lazy_evals)

    # -- ask/tell ---------------------------------------------------------------------------
    def _ask(self, n: int) -> list[Job]:
        room = self.budget - self.n_told - len(self._pending)
        jobs: list[Job] = []
        for subset, lacking in self._needed:
            key = self._key(subset)
            elements = sorted(subset)
            for _ in range(lacking):
                if len(jobs) >= min(n, room):
                    return jobs
                repeat = len(self.cache.get(key, ())) + self._asked.get(key, 0)
                tag = f"|S|={len(elements)}" + (f" repeat {repeat + 1}" if repeat else "")
                jobs.append(self.new_job(self.genotype_of(elements), tag=tag,
                                         meta={"set": elements}))
                self._asked[key] = self._asked.get(key, 0) + 1
        return jobs

    def _record(self, job_meta: Mapping[str, Any], ok: bool, accuracy: float | None) -> None:
        key = self._key(int(e) for e in job_meta["set"])
        if self._asked.get(key, 0) > 1:
            self._asked[key] -= 1
        else:
            self._asked.pop(key, None)
        self.cache.setdefault(key, []).append(
            float(accuracy) if ok and accuracy is not None else 0.0)

    def _tell(self, job: Job, result: Result) -> None:
        self._record(job.meta, result.ok, result.accuracy)
        self._resume_unblocked()
        self._report()
        self.emit("evaluations", self.n_told, {},
                  lazy=sum(len(v) for v in self.cache.values()),
                  ceg=sum(t.ceg_evaluations for t in self._traces if t.complete))

    def done(self) -> bool:
        complete = all(t.complete for t in self._traces)
        return complete or self.n_told >= self.budget

    # -- results ----------------------------------------------------------------------------
    def result_summary(self) -> dict[str, Any]:
        """The three runs and the winner (Algorithm 3's argmax).

        When the budget ends before any run completes, ``best`` is the most accurate set a run
        had chosen so far (each run's current set is an evaluated, budget-feasible network)
        and ``complete`` says so; :meth:`best` then returns the best feasible evaluated
        candidate, which is at least as accurate.
        """
        winner = best_trace(self._traces)
        partial = max((t for t in self._traces if t.chosen), key=lambda t: t.value,
                      default=None)
        chosen = winner or partial
        return {
            "runs": {t.rule: {"blocks": self.genotype_of(t.chosen)["blocks"], "value": t.value,
                              "complete": t.complete, "steps": len(t.steps)}
                     for t in self._traces},
            "best_rule": chosen.rule if chosen else None,
            "best": self.genotype_of(chosen.chosen) if chosen else None,
            "complete": winner is not None,
            "evaluations": sum(len(v) for v in self.cache.values()),
        }

    def state_dict(self) -> dict[str, Any]:
        """Only what the history cannot give back: which steps were already reported."""
        state = super().state_dict()
        state["emitted_steps"] = dict(self._emitted_steps)
        state["finished_rules"] = sorted(self._finished_rules)
        return state

    def load_state_dict(self, state: Mapping[str, Any],
                        history: Sequence[Mapping[str, Any]] = ()) -> None:
        """Rebuild the value cache from the history and the in-flight sets from the pending
        jobs, then run the three greedy runs up to where they wait (the one replay: at resume)."""
        super().load_state_dict(state, history)
        self.cache = {}
        self._asked = {}
        for entry in self.history:
            meta = entry.get("meta") or {}
            subset = meta.get("set")
            if subset is None:  # a history without meta: recover the set from the genotype
                subset = [self.elements.index((n, t)) for n, t in
                          enumerate(entry["genotype"]["blocks"]) if t]
            self._record({"set": subset}, entry["status"] == "ok", entry.get("accuracy"))
        for job in self._pending.values():
            key = self._key(int(e) for e in job.meta["set"])
            self._asked[key] = self._asked.get(key, 0) + 1
        self._emitted_steps = {rule: 0 for rule in self.rules}
        self._emitted_steps.update({str(k): int(v) for k, v in state["emitted_steps"].items()})
        self._finished_rules = set(state["finished_rules"])
        self._start_runs()  # each run goes as far as the rebuilt cache allows
        self._events.clear()  # already emitted before the checkpoint
