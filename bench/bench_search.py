"""Sample efficiency of the searchers against random search, on the synthetic evaluator.

One function per searcher, each registered in ``BENCHES``; pick one or all:

    .venv/bin/python bench/bench_search.py --searcher pnas
    .venv/bin/python bench/bench_search.py --searcher all

Every comparison is measured in the same run against the ``random`` searcher over the same
space and seeds, on :func:`searchers.objectives.synthetic_result` (instant and deterministic),
and printed as figures and ratios, never as pass/fail.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from searchers import get_searcher  # noqa: E402
from searchers.constraints import feasible, parse_constraints  # noqa: E402
from searchers.objectives import synthetic_result  # noqa: E402
from searchers.spaces import get_space  # noqa: E402


def run_synthetic(searcher: Any, limit: int | None = None,
                  keep: Callable[[Any], bool] = lambda job: True) -> list[float]:
    """Drive ``searcher`` on the synthetic evaluator; the accuracies of the kept jobs in the
    order they were evaluated (at most ``limit``)."""
    accuracies: list[float] = []
    while not searcher.done() and (limit is None or len(accuracies) < limit):
        jobs = searcher.ask(256)
        if not jobs:
            raise RuntimeError(f"{searcher.name} asked for nothing while not done")
        for job in jobs:
            result = synthetic_result(job)
            searcher.tell(job, result)
            if keep(job) and result.ok:
                accuracies.append(float(result.accuracy))
    return accuracies[:limit] if limit is not None else accuracies


def top_m_curve(accuracies: Sequence[float], m: int = 5) -> np.ndarray:
    """Best-so-far mean of the top ``m`` accuracies after each evaluation (NaN before m)."""
    curve = np.full(len(accuracies), np.nan)
    best: list[float] = []
    for i, accuracy in enumerate(accuracies):
        best = sorted([*best, accuracy], reverse=True)[:m]
        if len(best) == m:
            curve[i] = float(np.mean(best))
    return curve


def evaluations_to_reach(curve: np.ndarray, level: float) -> int | None:
    """1-based number of evaluations after which ``curve`` first reaches ``level``."""
    hits = np.flatnonzero(np.nan_to_num(curve, nan=-np.inf) >= level)
    return int(hits[0]) + 1 if hits.size else None


def bench_pnas(args: argparse.Namespace) -> dict[str, Any]:
    """PNAS vs random (paper Fig. 4 / Table 2): top-5 mean after 136 + (B - 1) K evaluations,
    and how many evaluations random search needs to match it."""
    space = get_space("cell", args.cell_preset)
    params = {"B": args.B, "K": args.K, "final_models": 0}
    if args.predictor:
        params["predictor"] = args.predictor
    pnas_curves, random_curves, rhos = [], [], []
    pnas_seconds = random_seconds = 0.0
    for seed in range(args.seeds):
        started = time.perf_counter()
        searcher = get_searcher("pnas", space=space, seed=seed, **params)
        pnas = run_synthetic(searcher)
        pnas_seconds += time.perf_counter() - started
        rhos.append([s["spearman"] for s in searcher.levels[1:]])
        started = time.perf_counter()
        budget = args.random_factor * len(pnas)
        baseline = get_searcher("random", space=space, seed=seed, budget=budget)
        random_accuracies = run_synthetic(baseline, limit=budget)
        random_seconds += time.perf_counter() - started
        pnas_curves.append(top_m_curve(pnas))
        random_curves.append(top_m_curve(random_accuracies))
        print(f"  seed {seed}: PNAS top-5 {pnas_curves[-1][-1]:.4f} after {len(pnas)}; random "
              f"top-5 {random_curves[-1][len(pnas) - 1]:.4f} at {len(pnas)}, "
              f"{random_curves[-1][-1]:.4f} at {len(random_accuracies)}", flush=True)
    count = len(pnas_curves[0])
    pnas_mean = np.mean(pnas_curves, axis=0)
    random_mean = np.mean(random_curves, axis=0)
    needed = evaluations_to_reach(random_mean, pnas_mean[-1])
    rho = np.nanmean(np.array(rhos, dtype=float), axis=0)
    print(f"PNAS B={args.B} K={args.K} on cell/{args.cell_preset}, {args.seeds} seeds, "
          f"synthetic evaluator")
    print(f"  evaluations: 136 + (B - 1) * K = {count}")
    print(f"  PNAS   top-5 mean at {count}: {pnas_mean[-1]:.4f} "
          f"(curve at 25/50/100%: {pnas_mean[count // 4 - 1]:.4f} "
          f"{pnas_mean[count // 2 - 1]:.4f} {pnas_mean[-1]:.4f})")
    print(f"  random top-5 mean at {count}: {random_mean[count - 1]:.4f}; at "
          f"{len(random_mean)}: {random_mean[-1]:.4f}")
    if needed is None:
        print(f"  random needs > {len(random_mean)} evaluations to match PNAS "
              f"(> {len(random_mean) / count:.1f}x)")
    else:
        print(f"  random needs {needed} evaluations to match PNAS ({needed / count:.2f}x)")
    print("  predictor Spearman per level (rho~_b, mean over seeds): "
          + " ".join(f"b={b + 2}:{r:.3f}" for b, r in enumerate(rho)))
    print(f"  wall time: PNAS {pnas_seconds:.1f}s, random {random_seconds:.1f}s "
          f"({args.random_factor}x the evaluations)")
    return {"count": count, "pnas_top5": float(pnas_mean[-1]),
            "random_top5_same_count": float(random_mean[count - 1]),
            "random_evaluations_to_match": needed, "spearman_per_level": rho.tolist()}


#: EPNAS: tight two-constraint problems, under 1% of uniformly random genotypes feasible.
EPNAS_PROBLEMS = (
    ("layerwise", "epnas-digits", ("params<=5000", "intensity>=10")),
    ("cell", "pnas-digits", ("params<=42k", "intensity>=2.25")),
)


def first_feasible_and_best(history: Sequence[dict[str, Any]], constraints: Sequence[Any]
                            ) -> tuple[int, float]:
    """(1-based evaluation of the first feasible candidate, or len + 1 when none; the best
    feasible accuracy, 0 when none) of a searcher's told history."""
    first, best = len(history) + 1, 0.0
    for k, h in enumerate(history, start=1):
        if h["status"] == "ok" and feasible(h["costs"], constraints):
            first = min(first, k)
            best = max(best, float(h["accuracy"]))
    return first, best


def _feasibility_figures(name: str, space: Any, constraints: Sequence[str], budget: int,
                         seeds: int, **kwargs: Any) -> dict[str, float]:
    """Mean first-feasible evaluation, seeds that found one, mean best feasible accuracy."""
    parsed = parse_constraints(constraints)
    firsts, bests, seconds = [], [], 0.0
    for seed in range(seeds):
        started = time.perf_counter()
        searcher = get_searcher(name, space=space, constraints=list(constraints),
                                budget=budget, seed=seed, **kwargs)
        run_synthetic(searcher)
        seconds += time.perf_counter() - started
        first, best = first_feasible_and_best(searcher.history, parsed)
        firsts.append(first)
        bests.append(best)
    return {"first_feasible": float(np.mean(firsts)),
            "found": int(sum(f <= budget for f in firsts)),
            "best_feasible": float(np.mean(bests)), "seconds": seconds / seeds}


def bench_epnas(args: argparse.Namespace) -> dict[str, Any]:
    """EPNAS (preset ``epnas-digits``; layer-by-layer and module search) vs random search on
    tight two-constraint problems: evaluations to the first feasible candidate and the best
    feasible accuracy after ``--budget`` evaluations (the EPNAS supplement: feasible after
    ~120 models where random search found none in 400)."""
    out: dict[str, Any] = {}
    print(f"EPNAS vs random, synthetic evaluator, {args.seeds} seeds, budget {args.budget} "
          f"(means over seeds; first feasible = budget + 1 when none)")
    print(f"  {'problem':<40} {'searcher':<8} {'first feasible':>14} {'found':>6} "
          f"{'best feasible':>14} {'s/search':>9}")
    for space_name, preset, constraints in EPNAS_PROBLEMS:
        space = get_space(space_name, preset=preset)
        problem = f"{space_name}: {', '.join(constraints)}"
        figures = {
            "epnas": _feasibility_figures("epnas", space, constraints, args.budget,
                                          args.seeds, preset="epnas-digits"),
            "random": _feasibility_figures("random", space, constraints, args.budget,
                                           args.seeds),
        }
        for name, f in figures.items():
            print(f"  {problem:<40} {name:<8} {f['first_feasible']:>14.1f} "
                  f"{f['found']:>3}/{args.seeds:<2} {f['best_feasible']:>14.4f} "
                  f"{f['seconds']:>9.2f}", flush=True)
        ratio = figures["random"]["first_feasible"] / figures["epnas"]["first_feasible"]
        gain = figures["epnas"]["best_feasible"] - figures["random"]["best_feasible"]
        print(f"    -> EPNAS feasible {ratio:.2f}x sooner than random; best feasible accuracy "
              f"{gain:+.4f} after {args.budget} evaluations")
        out[problem] = figures
    return out


def bench_rcas(args: argparse.Namespace) -> dict[str, Any]:
    """RCAS (lazy CEG x {UC, APR, AMR}) vs random search on ``rcas-digits`` under params and
    MAdds budgets at 40% of the way from the empty to the largest network: best feasible
    accuracy at the same number of evaluations, and the lazy greedy's F evaluations against
    what the non-lazy CEG would have needed on the same trajectory."""
    from searchers.rcas import budgets_between

    space = get_space("rcas", preset="rcas-digits")
    constraints = budgets_between(space, 0.4)
    parsed = parse_constraints(constraints)
    rows = []
    for seed in range(args.seeds):
        rcas = get_searcher("rcas", space=space, constraints=constraints, budget=100_000,
                            seed=seed, train={"seed": seed})
        run_synthetic(rcas)
        lazy_ceg = [e.metrics for e in rcas.pop_events() if e.kind == "evaluations"][-1]
        random = get_searcher("random", space=space, constraints=constraints,
                              budget=rcas.n_told, seed=seed, train={"seed": seed})
        run_synthetic(random)
        rows.append({"evaluations": rcas.n_told,
                     "rcas": first_feasible_and_best(rcas.history, parsed)[1],
                     "random": first_feasible_and_best(random.history, parsed)[1],
                     "lazy": lazy_ceg["lazy"], "ceg": lazy_ceg["ceg"]})
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    print(f"RCAS vs random on rcas-digits, {', '.join(constraints)}, {args.seeds} seeds")
    print(f"  evaluations per search     {mean['evaluations']:.0f}")
    print(f"  best feasible accuracy     RCAS {mean['rcas']:.4f}  random {mean['random']:.4f}"
          f"  ({mean['rcas'] - mean['random']:+.4f})")
    print(f"  F evaluations lazy / CEG   {mean['lazy']:.0f} / {mean['ceg']:.0f}"
          f"  = {mean['lazy'] / mean['ceg']:.2f}")
    return mean


BENCHES: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "pnas": bench_pnas,
    "epnas": bench_epnas,
    "rcas": bench_rcas,
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--searcher", choices=[*sorted(BENCHES), "all"], default="all")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--random-factor", type=int, default=10,
                        help="random search runs this many times the searcher's evaluations")
    pnas = parser.add_argument_group("pnas")
    pnas.add_argument("--B", type=int, default=5, help="PNAS: max blocks per cell")
    pnas.add_argument("--K", type=int, default=32, help="PNAS: beam size")
    pnas.add_argument("--predictor", default=None, help="PNAS: predictor (default: paper's)")
    pnas.add_argument("--cell-preset", default="pnas-digits")
    epnas = parser.add_argument_group("epnas")
    epnas.add_argument("--budget", type=int, default=400,
                       help="EPNAS: evaluations per search (EPNAS and random alike)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    names = sorted(BENCHES) if args.searcher == "all" else [args.searcher]
    for name in names:
        print(f"== {name} ==", flush=True)
        BENCHES[name](args)


if __name__ == "__main__":
    main()
