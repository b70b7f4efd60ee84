"""Objective families for benchmarking searchers, and a driver that runs any searcher on one.

A searcher that only beats random search on the objective it was developed against has not
shown much. Following the field's practice (NASLib, the NAS-Bench papers, Li & Talwalkar's
"Random Search and Reproducibility for NAS"), the suite measures every searcher on several
objectives with different structure. Each family here is a documented, deterministic function
``(genotype, space, eval_seed) -> (observed score, true score, costs)`` plus a constraint set,
defined over **every** space (``layerwise``, ``cell``, ``mbconv``, ``rcas``, EPNAS's ``module``)
through the generic Space API only -- ``space.features(g)`` (choice tokens), ``space.costs(g)``
(LUT costs) and ``space.hash(g)`` -- so no family knows the inside of a space or of a searcher.

Families (``FAMILIES``; constants in each docstring):

* ``synthetic`` -- the project's evaluator (:mod:`searchers.objectives`): per-choice and
  adjacent-pair token effects plus a saturating capacity gain, noise sd 0.002; params cap at
  the space's median.
* ``capacity`` -- more MAdds is better (log-scaled, normalised on the space), plus a fixed
  per-architecture offset (sd 0.01, what a different initialisation gives a real network),
  under a params cap at the space's 25th percentile: the best models are the ones that buy the
  most compute per parameter.
* ``latency`` -- the synthetic accuracy under a cap on a deterministic latency proxy (a
  roofline: compute time + memory time + a fixed cost per operator), at the space's 40th
  percentile. ``latency_ms`` is not in the cost LUT, so hard-constraint searchers cannot reject
  infeasible candidates before evaluation: they must learn the cap from results.
* ``rugged`` -- an NK landscape (Kauffman): each choice token's contribution is a hash of
  itself and its next two tokens, so no choice is good on its own; params cap at the 75th
  percentile.
* ``noisy`` -- the synthetic mean with evaluation noise as large as two real training seeds
  differ: sd ``NOISY_SD`` = 0.07, the per-evaluation sd of the 20 ``mbconv`` architectures the
  digits table trained with two seeds (``cell``'s 20 give 0.105; a 1-epoch proxy is noisy).
  Noise is drawn per *evaluation*, so re-evaluating one architecture gives another value.
* ``two-sided`` -- synthetic accuracy under a lower bound on arithmetic intensity (the space's
  median) and an upper bound on params (its 40th percentile): a band, not a half-space.
* ``digits-real`` (``mbconv``/``ponas-digits`` and ``cell``/``pnas-digits`` only) -- real
  1-epoch digits trainings from ``bench/data/digits_trainings.csv.gz``
  (``bench/make_digits_table.py``): an architecture in the table gets its measured accuracy
  (a seed-1 repeat where the table has one and the evaluation seed is odd), any other the
  distance-weighted mean of its ``DIGITS_NEIGHBOURS`` nearest table rows by Jaccard distance of
  feature tokens. Params cap at the table's median.

Percentile caps come from ``REFERENCE_SAMPLES`` genotypes of ``space.sample`` with a fixed
generator, so each family's constraint has the same tightness on every space.

**Scoring a run.** The *incumbent* after k evaluations is the feasible candidate with the best
observed score among the first k (an architecture evaluated more than once by its mean
observation); a run is scored by the incumbent's *true* (noise-free) score -- what the user
would get by picking the best result they saw. On deterministic families the
two coincide up to the 0.002 noise; on ``noisy`` the difference is the point.
:func:`drive` runs any registered searcher with ask/tell against a family for a fixed number of
evaluations and returns that anytime curve.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from searchers.base import Result
from searchers.constraints import feasible, parse_constraints
from searchers.objectives import synthetic_components

REFERENCE_SAMPLES = 400
REFERENCE_SEED = 7
DEFAULT_NOISE_SD = 0.002
CAPACITY_OFFSET_SD = 0.01
NOISY_SD = 0.07  # measured: seed-0 vs seed-1 of 20 mbconv table architectures
DIGITS_NEIGHBOURS = 3
DIGITS_TABLE = Path(__file__).resolve().parent / "data" / "digits_trainings.csv.gz"
#: The preset each space is benchmarked at (digits scale: cost LUTs are cheap, spaces full).
BENCH_PRESETS = {"layerwise": "epnas-digits", "cell": "pnas-digits", "mbconv": "ponas-digits",
                 "rcas": "rcas-digits", "module": "epnas-digits"}
_NON_OPS = ("empty", "identity", "skip", "depth=", "blocks=", "N=", "F=")


# -- shared helpers ----------------------------------------------------------------------
def _unit(*parts: Any) -> float:
    """A stable pseudo-random number in [0, 1) from the parts (SHA-256, process-independent)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _gauss(sd: float, *parts: Any) -> float:
    """Seeded Gaussian noise; ``parts`` (ints or strings) identify the draw."""
    if sd <= 0:
        return 0.0
    entropy = [int.from_bytes(hashlib.sha256(str(p).encode()).digest()[:8], "big")
               for p in parts]
    return float(np.random.default_rng(np.random.SeedSequence(entropy)).normal(0.0, sd))


def _clip(value: float) -> float:
    return min(max(value, 0.01), 0.99)


def operator_count(space: Any, genotype: Mapping[str, Any]) -> int:
    """Feature tokens that stand for an operator (not empty positions, counts or settings)."""
    return sum(1 for t in space.features(genotype) if not any(n in t for n in _NON_OPS))


def latency_proxy(costs: Mapping[str, float], n_ops: int, scale: Mapping[str, float]) -> float:
    """Roofline latency of an imaginary device, in its "ms": compute time + memory time + a
    fixed launch cost per operator, each term 1.0 for the space's median model (``scale``
    holds those medians), so no single cost dominates by construction."""
    flops = float(costs.get("flops", 0.0))
    accessed = float(costs.get("bytes", flops / max(float(costs.get("intensity", 1.0)), 1e-9)))
    return (flops / scale["flops"] + accessed / scale["bytes"]
            + 0.5 * n_ops / scale["ops"])


def latency_lut(space: Any) -> dict[str, Any]:
    """The latency family's proxy as a per-block latency table, in the layout ``nasw lut
    build`` stores (:mod:`workbench.latency`: ``base`` for stem + head, ``blocks[l][c]`` for
    option ``c`` at position ``l``, both in ms), for a space with one choice per position.

    A measured table times each block at its position and the fixed stem + head once; here
    the "measurement" is the proxy's terms of that block: its FLOPs and bytes (the space's
    cost tables) and one launch cost if its feature token is an operator; stem + head add
    their FLOPs and bytes and no launch cost (they carry no feature token). The proxy is a
    sum of exactly these terms, so a table sum reproduces :func:`latency_proxy` up to float
    rounding (no model error; ``tests/test_bench_search.py`` checks it).
    """
    base_costs, tables = space.cost_tables()
    scale = _latency_scale(space)
    positions, options = np.asarray(tables["flops"]).shape
    operator = np.zeros((positions, options))
    for option in range(options):
        tokens = space.features(space._genotype([option] * positions))
        if len(tokens) != positions:
            raise ValueError(f"{space.name}: {len(tokens)} feature tokens for {positions} "
                             "positions; a per-block latency table needs one per position")
        operator[:, option] = [not any(n in t for n in _NON_OPS) for t in tokens]
    blocks = (np.asarray(tables["flops"]) / scale["flops"]
              + np.asarray(tables["bytes"]) / scale["bytes"] + 0.5 * operator / scale["ops"])
    base = float(base_costs["flops"]) / scale["flops"] + float(base_costs["bytes"]) / scale["bytes"]
    return {"base": base, "blocks": blocks.tolist(), "origin": "latency proxy"}


@dataclass(frozen=True)
class SpaceReference:
    """Percentiles of each cost over a fixed sample of the space (constraint calibration)."""

    values: Mapping[str, np.ndarray]

    def percentile(self, metric: str, q: float) -> float:
        return float(np.percentile(self.values[metric], q))


@cache
def reference(space_name: str, preset: str) -> SpaceReference:
    from searchers.spaces import get_space

    space = get_space(space_name, preset)
    rng = np.random.default_rng(REFERENCE_SEED)
    rows: dict[str, list[float]] = {m: [] for m in ("params", "madds", "flops", "bytes",
                                                     "intensity", "ops", "log_madds")}
    for _ in range(REFERENCE_SAMPLES):
        genotype = space.sample(rng)
        costs = space.costs(genotype)
        for metric in ("params", "madds", "flops", "bytes", "intensity"):
            rows[metric].append(float(costs[metric]))
        rows["ops"].append(float(max(operator_count(space, genotype), 1)))
        rows["log_madds"].append(math.log(max(float(costs["madds"]), 1.0)))
    values = {k: np.asarray(v) for k, v in rows.items()}
    scale = {"flops": float(np.median(values["flops"])), "bytes": float(np.median(values["bytes"])),
             "ops": float(np.median(values["ops"]))}
    values["latency_ms"] = np.asarray([
        latency_proxy({"flops": f, "bytes": b}, int(o), scale)
        for f, b, o in zip(values["flops"], values["bytes"], values["ops"], strict=True)])
    return SpaceReference(values)


def _latency_scale(space: Any) -> dict[str, float]:
    ref = reference(space.name, space.preset)
    return {"flops": float(np.median(ref.values["flops"])),
            "bytes": float(np.median(ref.values["bytes"])),
            "ops": float(np.median(ref.values["ops"]))}


@dataclass(frozen=True)
class Evaluation:
    observed: float  # what the searcher is told (noisy)
    true: float  # the noise-free score, used to score the run
    costs: dict[str, float]


@dataclass(frozen=True)
class Family:
    """One objective: a score over genotypes of any space in ``spaces`` and its constraints."""

    name: str
    summary: str
    score: Callable[[Any, Mapping[str, Any], int], tuple[float, float, dict[str, float]]]
    constraints: Callable[[Any], list[str]]
    spaces: tuple[str, ...] = ("layerwise", "cell", "mbconv", "rcas", "module")
    lut_checkable: bool = True  # every constraint metric is in space.costs
    noise_sd: float = DEFAULT_NOISE_SD
    extra: Mapping[str, Any] = field(default_factory=dict)

    def evaluate(self, space: Any, genotype: Mapping[str, Any], eval_seed: int) -> Evaluation:
        observed, true, costs = self.score(space, genotype, eval_seed)
        return Evaluation(_clip(observed), _clip(true), costs)

    def result(self, space: Any, genotype: Mapping[str, Any], eval_seed: int
               ) -> tuple[Result, Evaluation | None]:
        """The searcher-facing :class:`Result` (a bad genotype fails, never raises)."""
        try:
            ev = self.evaluate(space, genotype, eval_seed)
        except Exception as exc:  # a bad candidate is a result
            return Result(status="failed", error=f"{type(exc).__name__}: {exc}"), None
        return Result(status="ok", accuracy=ev.observed, costs=ev.costs,
                      device=f"family:{self.name}"), ev


def _costs(space: Any, genotype: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in space.costs(genotype).items()}


def _identity(space: Any, genotype: Mapping[str, Any]) -> str:
    return space.hash(genotype)


# -- the families ------------------------------------------------------------------------
def _synthetic_score(sd: float) -> Callable[..., tuple[float, float, dict[str, float]]]:
    def score(space: Any, genotype: Mapping[str, Any], eval_seed: int
              ) -> tuple[float, float, dict[str, float]]:
        parts = synthetic_components(genotype, space=space)
        mean = float(parts["mean"])
        noise = _gauss(sd, "noise", eval_seed, _identity(space, genotype))
        return mean + noise, mean, dict(parts["costs"])
    return score


def _capacity_score(space: Any, genotype: Mapping[str, Any], eval_seed: int
                    ) -> tuple[float, float, dict[str, float]]:
    """``0.30 + 0.60 * z + offset``: z = log MAdds rescaled so the space's 5th-95th percentile
    maps to 0-1 (clipped to [-0.2, 1.2]); offset ~ N(0, 0.01) fixed per architecture."""
    costs = _costs(space, genotype)
    ref = reference(space.name, space.preset)
    lo, hi = ref.percentile("log_madds", 5), ref.percentile("log_madds", 95)
    z = (math.log(max(costs["madds"], 1.0)) - lo) / max(hi - lo, 1e-9)
    z = min(max(z, -0.2), 1.2)
    key = _identity(space, genotype)
    true = 0.30 + 0.60 * z + _gauss(CAPACITY_OFFSET_SD, "arch", key)
    return true + _gauss(DEFAULT_NOISE_SD, "noise", eval_seed, key), true, costs


def _latency_score(space: Any, genotype: Mapping[str, Any], eval_seed: int
                   ) -> tuple[float, float, dict[str, float]]:
    observed, true, costs = _synthetic_score(DEFAULT_NOISE_SD)(space, genotype, eval_seed)
    costs["latency_ms"] = latency_proxy(costs, operator_count(space, genotype),
                                        _latency_scale(space))
    return observed, true, costs


def _rugged_score(space: Any, genotype: Mapping[str, Any], eval_seed: int
                  ) -> tuple[float, float, dict[str, float]]:
    """NK landscape, K = 2: ``0.20 + 0.70 * mean_i u(t_i | t_i+1 | t_i+2)`` over the feature
    tokens in the space's order (wrapping around), u a SHA-256 hash to [0, 1)."""
    tokens = [str(t) for t in space.features(genotype)]
    n = len(tokens)
    contributions = [_unit("nk", space.name, tokens[i], tokens[(i + 1) % n], tokens[(i + 2) % n])
                     for i in range(n)]
    true = 0.20 + 0.70 * float(np.mean(contributions))
    noise = _gauss(DEFAULT_NOISE_SD, "noise", eval_seed, _identity(space, genotype))
    return true + noise, true, _costs(space, genotype)


class DigitsTable:
    """Real digits trainings, looked up exactly or by nearest neighbours (Jaccard on tokens)."""

    def __init__(self, path: Path = DIGITS_TABLE) -> None:
        from searchers.spaces import get_space

        self.rows: dict[str, list[dict[str, Any]]] = {}
        with gzip.open(path, "rt", newline="") as handle:
            for row in csv.DictReader(handle):
                if row["status"] != "ok" or not row["accuracy"]:
                    continue
                self.rows.setdefault(row["space"], []).append(row)
        self.by_hash: dict[str, dict[str, dict[int, float]]] = {}
        self.tokens: dict[str, list[frozenset[str]]] = {}
        self.values: dict[str, np.ndarray] = {}
        self.params: dict[str, np.ndarray] = {}
        for name, rows in self.rows.items():
            space = get_space(name, rows[0]["preset"])
            per_hash: dict[str, dict[int, float]] = {}
            for row in rows:
                per_hash.setdefault(row["hash"], {})[int(row["seed"])] = float(row["accuracy"])
            self.by_hash[name] = per_hash
            firsts = [r for r in rows if r["seed"] == "0"]
            self.tokens[name] = [frozenset(space.features(json.loads(r["genotype"])))
                                 for r in firsts]
            self.values[name] = np.asarray([float(r["accuracy"]) for r in firsts])
            self.params[name] = np.asarray([float(r["params"]) for r in firsts])

    def lookup(self, space: Any, genotype: Mapping[str, Any], eval_seed: int) -> tuple[float,
                                                                                     float]:
        """(observed, true): measured values for a table architecture, else the k-NN mean."""
        seeds = self.by_hash[space.name].get(space.hash(genotype))
        if seeds:
            true = float(np.mean(list(seeds.values())))
            observed = seeds.get(eval_seed % 2, seeds[min(seeds)])
            return observed, true
        mine = frozenset(space.features(genotype))
        distances = np.asarray([1.0 - len(mine & t) / max(len(mine | t), 1)
                                for t in self.tokens[space.name]])
        nearest = np.argsort(distances, kind="stable")[:DIGITS_NEIGHBOURS]
        weights = 1.0 / (distances[nearest] + 0.05)
        value = float(np.dot(weights, self.values[space.name][nearest]) / weights.sum())
        return value, value

    def repeat_differences(self) -> np.ndarray:
        """|seed 0 - seed 1| of every architecture trained twice."""
        return np.asarray([abs(s[0] - s[1]) for per in self.by_hash.values()
                           for s in per.values() if 0 in s and 1 in s])


@lru_cache(maxsize=1)
def digits_table() -> DigitsTable:
    return DigitsTable()


def _digits_score(space: Any, genotype: Mapping[str, Any], eval_seed: int
                  ) -> tuple[float, float, dict[str, float]]:
    observed, true = digits_table().lookup(space, genotype, eval_seed)
    return observed, true, _costs(space, genotype)


def _cap(metric: str, q: float) -> Callable[[Any], list[str]]:
    def constraints(space: Any) -> list[str]:
        return [f"{metric}<={reference(space.name, space.preset).percentile(metric, q):.6g}"]
    return constraints


def _two_sided(space: Any) -> list[str]:
    ref = reference(space.name, space.preset)
    return [f"intensity>={ref.percentile('intensity', 50):.6g}",
            f"params<={ref.percentile('params', 40):.6g}"]


def _digits_cap(space: Any) -> list[str]:
    return [f"params<={float(np.median(digits_table().params[space.name])):.6g}"]


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("synthetic", "per-choice + pair tokens + capacity (searchers.objectives)",
           _synthetic_score(DEFAULT_NOISE_SD), _cap("params", 50)),
    Family("capacity", "log MAdds under params <= P25, fixed per-architecture offset",
           _capacity_score, _cap("params", 25)),
    Family("latency", "synthetic accuracy under a roofline latency cap (P40), not in the LUT",
           _latency_score, _cap("latency_ms", 40), lut_checkable=False),
    Family("rugged", "NK landscape over choice tokens (K = 2), params <= P75",
           _rugged_score, _cap("params", 75)),
    Family("noisy", f"synthetic mean, per-evaluation noise sd {NOISY_SD} (real seed spread)",
           _synthetic_score(NOISY_SD), _cap("params", 50), noise_sd=NOISY_SD),
    Family("two-sided", "synthetic accuracy, intensity >= P50 and params <= P40",
           _synthetic_score(DEFAULT_NOISE_SD), _two_sided),
    Family("digits-real", "real 1-epoch digits trainings, exact or 3-NN look-up",
           _digits_score, _digits_cap, spaces=("mbconv", "cell")),
)}


def family_names() -> list[str]:
    return list(FAMILIES)


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise KeyError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


# -- driving a searcher ------------------------------------------------------------------
@dataclass
class Incumbent:
    """The feasible architecture with the best observed score so far -- what a user picks.

    An architecture evaluated more than once is ranked by its mean observation, as a user who
    evaluated it twice would rank it. ``true`` is the incumbent's noise-free score (NaN before
    a feasible evaluation), the number a run is scored by.
    """

    #: per feasible architecture: [sum of observed scores, evaluations, true score]
    observations: dict[str, list[float]] = field(default_factory=dict)
    key: str | None = None
    observed: float = -math.inf
    true: float = math.nan

    def observe(self, key: str, ev: Evaluation) -> None:
        """Count one feasible evaluation of architecture ``key``."""
        entry = self.observations.setdefault(key, [0.0, 0, ev.true])
        entry[0] += ev.observed
        entry[1] += 1
        if key == self.key or entry[0] / entry[1] > self.observed:
            self.key, (total, n, true) = max(self.observations.items(),
                                             key=lambda kv: kv[1][0] / kv[1][1])
            self.observed, self.true = total / n, true


@dataclass
class Trace:
    """One searcher run on one family: per evaluation, the incumbent's true score."""

    searcher: str
    preset: str | None
    family: str
    space: str
    seed: int
    curve: np.ndarray  # incumbent true score after each evaluation (NaN before a feasible one)
    evaluations: int  # how many the searcher actually asked for (<= budget)
    feasible_fraction: float
    duplicates: int
    seconds: float
    instance: Any = field(default=None, repr=False)  # the searcher, for post-run picks
    #: the run's incumbent, so a post-run pick (PONAS's specialised network) is one more
    #: evaluation under the same rule
    incumbent: Incumbent = field(default_factory=lambda: Incumbent(), repr=False)

    @property
    def final(self) -> float:
        """Best feasible true score at the budget (0 when nothing feasible was found)."""
        value = self.curve[-1] if len(self.curve) else math.nan
        return 0.0 if math.isnan(value) else float(value)


def eval_seed(run_seed: int, job_id: int) -> int:
    """The per-evaluation seed: repeats of one architecture in one run get different noise."""
    return int(run_seed) * 1_000_003 + int(job_id)


def supernet_result(family: Family, space: Any, job: Any, seed: int
                    ) -> tuple[Result, list[tuple[dict[str, Any], Evaluation | None]]]:
    """A one-shot supernet job (PONAS stage 2) served as the runner serves it: one result
    whose ``paths`` hold every path's score, here the family's score of each path's genotype.

    As the runner's evaluators do (:mod:`searchers.ponas_supernet`), path ``c`` is the job's
    genotype with the supernet layer set to ``c``, all paths share one evaluation seed (one
    training run, one batch order), the result's ``accuracy`` is the best path's and its costs
    are the job genotype's. A path that cannot be scored fails the whole job, as a supernet
    that cannot measure a path does. Returns the result and, per path, (genotype,
    evaluation): every path is one scored architecture, counted by :func:`drive`.
    """
    from searchers.ponas_supernet import SUPERNET_KEY, path_genotype

    layer = int(job.meta[SUPERNET_KEY])
    paths: list[dict[str, Any]] = []
    scored: list[tuple[dict[str, Any], Evaluation | None]] = []
    for choice in range(int(space.num_options)):
        genotype = path_genotype(job.genotype, layer, choice)
        result, ev = family.result(space, genotype, seed)
        scored.append((genotype, ev))
        if ev is None:
            return Result(status="failed", error=f"path {choice}: {result.error}"), scored
        paths.append({"choice": choice, "accuracy": ev.observed, "val_loss": None})
    best = max(paths, key=lambda p: (p["accuracy"], -p["choice"]))
    return Result(status="ok", accuracy=best["accuracy"], costs=_costs(space, job.genotype),
                  device=f"family:{family.name}", paths=tuple(paths)), scored


def drive(searcher_name: str, family: Family | str, space: Any, *, budget: int, seed: int,
          preset: str | None = None, batch: int = 1, hard_constraints: bool | None = None,
          **params: Any) -> Trace:
    """Run a searcher for ``budget`` evaluations of ``family`` on ``space`` (ask/tell).

    ``batch`` jobs are asked at a time (the number of free workers; 1 = sequential). A searcher
    that stops early (a fixed schedule shorter than the budget, an exhausted space) keeps its
    last incumbent for the remaining evaluations -- it had them and did not use them.
    ``hard_constraints=None`` keeps the searcher's preset default.

    **One evaluation is one architecture scored.** An ordinary job is one; a one-shot
    supernet job (PONAS stage 2: ``Job.meta["supernet_layer"]``) is served with every path
    scored (:func:`supernet_result`) and counts one evaluation per path (12 on ``mbconv``),
    each entering the anytime curve in path order -- every architecture whose score the
    searcher sees costs what it would cost any other searcher. (The workbench's runner counts
    ``budget.candidates`` in jobs, so there a supernet job is one candidate.) A supernet job
    that does not fit in what is left of the budget is not run: the search ends there.
    """
    from searchers import get_searcher
    from searchers.ponas_supernet import is_supernet_job

    family = get_family(family) if isinstance(family, str) else family
    constraints = family.constraints(space)
    parsed = parse_constraints(constraints)
    kwargs: dict[str, Any] = {"space": space, "constraints": constraints, "budget": budget,
                              "seed": seed, **params}
    if preset is not None:
        kwargs["preset"] = preset
    if hard_constraints is not None:
        kwargs["hard_constraints"] = hard_constraints
    started = time.perf_counter()
    searcher = get_searcher(searcher_name, **kwargs)
    curve = np.full(budget, np.nan)
    incumbent = Incumbent()
    count = feasible_count = duplicates = 0
    seen: set[str] = set()

    def count_evaluation(genotype: Mapping[str, Any], ev: Evaluation | None,
                         fallback_key: str) -> None:
        nonlocal count, feasible_count, duplicates
        key = None
        try:
            key = space.hash(genotype)
            duplicates += key in seen
            seen.add(key)
        except Exception:  # an invalid genotype already failed
            pass
        if ev is not None and feasible(ev.costs, parsed):
            feasible_count += 1
            incumbent.observe(key if key is not None else fallback_key, ev)
        curve[count] = incumbent.true
        count += 1

    out_of_budget = False
    while count < budget and not searcher.done() and not out_of_budget:
        jobs = searcher.ask(min(batch, budget - count))
        if not jobs:
            break  # waits on nothing we hold: the searcher is finished for this budget
        for job in jobs:
            if is_supernet_job(job):
                if count + int(space.num_options) > budget:
                    out_of_budget = True  # its paths do not fit: the search ends here
                    break
                result, scored = supernet_result(family, space, job, eval_seed(seed, job.id))
                searcher.tell(job, result)
                for path, (genotype, path_ev) in enumerate(scored):
                    count_evaluation(genotype, path_ev, f"job:{job.id}/{path}")
                continue
            result, ev = family.result(space, job.genotype, eval_seed(seed, job.id))
            searcher.tell(job, result)
            if count < budget:
                count_evaluation(job.genotype, ev, f"job:{job.id}")
    if count < budget and count:
        curve[count:] = curve[count - 1]
    return Trace(searcher_name, preset, family.name, space.name, seed, curve, count,
                 feasible_count / max(count, 1), duplicates, time.perf_counter() - started,
                 searcher, incumbent)


def spaces_for(family: Family, names: Sequence[str] | None = None) -> list[Any]:
    """The bench-preset spaces a family is defined on (optionally only ``names``)."""
    from searchers.spaces import get_space

    return [get_space(n, BENCH_PRESETS[n]) for n in family.spaces if names is None or n in names]


__all__ = ["BENCH_PRESETS", "FAMILIES", "DigitsTable", "Evaluation", "Family", "Incumbent",
           "Trace", "drive", "eval_seed", "family_names", "get_family", "latency_lut",
           "latency_proxy", "operator_count", "reference", "spaces_for", "supernet_result"]
