"""Searchers against random search and regularized evolution, on many objective families.

The suite (default)::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/bench_search.py            # 20 seeds
    .venv/bin/python bench/bench_search.py --quick                                  # minutes

runs every searcher (random, evolution, EPNAS, PNAS, RCAS, PONAS; each at its default and its
digits preset, on the spaces it searches) on every family of :mod:`bench.search_families`,
for 20 seeds at equal evaluations. Random search and evolution -- the baselines, with hard
(LUT) constraints -- run once per (family, space, seed) at the space's budget; each searcher is
compared with them *at its own evaluation count* on the same seed (their curves are anytime),
by a paired Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, two-sided). It prints anytime
curves (mean best feasible vs evaluations) as sparklines and writes ``curves.csv`` and
``summary.csv`` under ``--out``. At most one extra process (``--workers 2``).

The older per-searcher figure benches stay: ``--searcher pnas|epnas|rcas|all`` (the synthetic
evaluator only; PNAS top-5 curve, EPNAS first-feasible, RCAS lazy-vs-CEG evaluations).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.search_families import BENCH_PRESETS  # noqa: E402
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


# == the suite ==============================================================================
ALL_SPACES = ("layerwise", "cell", "mbconv", "rcas", "module")
#: (searcher, preset, spaces it searches). Random and evolution are the baselines.
SUITE_SEARCHERS: tuple[tuple[str, str | None, tuple[str, ...]], ...] = (
    ("random", None, ALL_SPACES),
    ("evolution", None, ALL_SPACES),
    ("evolution", "digits", ALL_SPACES),
    ("epnas", None, ("layerwise", "cell", "module")),
    ("epnas", "epnas-digits", ("layerwise", "cell", "module")),
    ("pnas", "pnas-digits", ("cell",)),
    ("rcas", None, ("rcas",)),
    ("rcas", "rcas-digits", ("rcas",)),
    ("ponas", None, ("mbconv",)),
    ("ponas", "ponas-digits", ("mbconv",)),
)
BASELINES = (("random", None), ("evolution", None))
#: Evaluations per search on each space: room for every mechanism (PNAS-digits needs 155, an
#: evolution population of 20 turns over 6 times) at a few seconds per searcher run.
SPACE_BUDGETS = {"layerwise": 150, "cell": 160, "mbconv": 150, "rcas": 150, "module": 150}
SPARK = "▁▂▃▄▅▆▇█"


def label(name: str, preset: str | None) -> str:
    return f"{name}:{preset}" if preset else name


def parse_label(text: str) -> tuple[str, str | None]:
    name, _, preset = text.partition(":")
    return name, preset or None


def run_task(task: tuple[str, str | None, str, str, int, int]) -> dict[str, Any]:
    """One searcher run (a picklable task for the worker process); the trace as plain data."""
    import torch
    import yaml

    from bench.search_families import drive, get_family

    torch.set_num_threads(1)
    name, preset, family_name, space_name, seed, budget = task
    family = get_family(family_name)
    space = get_space(space_name, BENCH_PRESETS[space_name])
    # "epnas+hard" runs a searcher with hard constraints, as the baselines always run;
    # "rcas+confirm_evaluations=2" sets a searcher parameter (a YAML scalar)
    searcher, *options = name.split("+")
    hard = True if searcher in ("random", "evolution") or "hard" in options else None
    params = {key: yaml.safe_load(value) for key, _, value in
              (o.partition("=") for o in options if "=" in o)}
    try:
        trace = drive(searcher, family, space, budget=budget, seed=seed, preset=preset,
                      hard_constraints=hard, **params)
    except Exception as exc:  # one broken searcher must not sink the whole suite
        return {"searcher": name, "preset": preset, "family": family_name,
                "space": space_name, "seed": seed, "budget": budget,
                "error": f"{type(exc).__name__}: {exc}"}
    curve = trace.curve[:trace.evaluations].tolist() if trace.evaluations else [math.nan]
    if searcher == "ponas" and trace.instance is not None:
        curve.append(_ponas_pick(trace, family, space, seed))
    return {"searcher": name, "preset": preset, "family": family_name, "space": space_name,
            "seed": seed, "budget": budget, "curve": curve, "evaluations": len(curve),
            "feasible_fraction": trace.feasible_fraction, "duplicates": trace.duplicates,
            "seconds": trace.seconds}


def _ponas_pick(trace: Any, family: Any, space: Any, seed: int) -> float:
    """PONAS's answer: the table specialised to the family's constraints (§3.3) and that
    architecture evaluated -- one more evaluation, the network a user would then train.

    A ``latency_ms`` constraint is solved on the latency family's per-block table
    (:func:`bench.search_families.latency_lut`, what ``nasw lut build`` measures on a device;
    it sums to the family's latency exactly). The evaluation joins the run's incumbent under
    the rule every evaluation follows (the best observed feasible architecture: the table's
    paths were evaluated too); returns the incumbent's true score (NaN when none is feasible).
    """
    from bench.search_families import eval_seed, latency_lut
    from searchers.specialize import solve

    constraints = parse_constraints(family.constraints(space))
    base, tables = space.cost_tables()
    if any(c.metric == "latency_ms" for c in constraints):
        lut = latency_lut(space)
        base = {**base, "latency_ms": lut["base"]}
        tables = {**tables, "latency_ms": np.asarray(lut["blocks"])}
    table = trace.instance.loss_table()
    if np.isnan(table).any():
        return trace.incumbent.true
    solved = solve(table, tables, constraints, base=base)
    if not solved["feasible"]:
        return trace.incumbent.true
    genotype = space._genotype(solved["choices"])
    ev = family.evaluate(space, genotype, eval_seed(seed, 10**6))
    if feasible(ev.costs, constraints):
        trace.incumbent.observe(space.hash(genotype), ev)
    return trace.incumbent.true


def _task_key(task: Sequence[Any]) -> str:
    """(name, preset, family, space, seed[, budget]): the budget defaults to the space's."""
    name, preset, family, space, seed = task[:5]
    budget = task[5] if len(task) > 5 else SPACE_BUDGETS[space]
    return f"{label(name, preset)}|{family}|{space}|{seed}|{budget}"


def _run_key(run: Mapping[str, Any]) -> str:
    """The task key of a logged run (runs logged before ``budget`` was recorded ran at the
    space's default budget)."""
    return _task_key((run["searcher"], run["preset"], run["family"], run["space"], run["seed"],
                      run.get("budget", SPACE_BUDGETS[run["space"]])))


def _run_all(tasks: list[tuple[Any, ...]], workers: int, log: Path) -> list[dict[str, Any]]:
    """Run the tasks not yet in ``log`` (JSON lines, appended as each run ends, so an
    interrupted suite resumes and a partial one can be reported); with ``workers=2``, half of
    them in one extra process. Returns every run in the log."""
    done = {_run_key(r) for r in _read_log(log)}
    todo = [t for t in tasks if _task_key(t) not in done]
    print(f"  {len(tasks) - len(todo)} runs already in {log}, {len(todo)} to go", flush=True)
    if workers <= 1 or len(todo) < 2:
        _run_serial(todo, log)
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=1) as pool:
            future = pool.submit(_run_serial, todo[1::2], log)
            _run_serial(todo[0::2], log, progress_of=len(todo))
            future.result()
    return _read_log(log)


def _run_serial(tasks: list[tuple[Any, ...]], log: Path, progress_of: int = 0) -> None:
    for i, task in enumerate(tasks):
        run = run_task(task)
        with log.open("a") as handle:  # one short line per write: the two writers interleave
            handle.write(json.dumps(run, allow_nan=True) + "\n")
        if progress_of and ((i + 1) % 25 == 0 or i + 1 == len(tasks)):
            print(f"  ... about {min(2 * (i + 1), progress_of)}/{progress_of} runs", flush=True)


def _read_log(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    runs = []
    for line in log.read_text().splitlines():
        try:
            runs.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill
            continue
    return runs


def paired_wilcoxon(x: Sequence[float], y: Sequence[float]) -> float:
    """Two-sided p of the Wilcoxon signed-rank test; 1.0 when every pair is equal."""
    from scipy.stats import wilcoxon

    diffs = np.asarray(x, dtype=float) - np.asarray(y, dtype=float)
    if len(diffs) < 2 or np.allclose(diffs, 0.0):
        return 1.0
    return float(wilcoxon(x, y, zero_method="zsplit").pvalue)


def _final(curve: Sequence[float], n: int) -> float:
    """Best feasible true score after ``n`` evaluations (0 when none was feasible)."""
    value = curve[min(n, len(curve)) - 1]
    return 0.0 if value is None or math.isnan(value) else float(value)


def sparkline(values: np.ndarray, lo: float, hi: float, width: int = 40) -> str:
    """Text sparkline of ``values`` resampled to ``width`` points on the range [lo, hi]."""
    idx = np.linspace(0, len(values) - 1, min(width, len(values))).round().astype(int)
    chars = []
    for v in values[idx]:
        if math.isnan(v):
            chars.append(" ")
            continue
        level = 0 if hi <= lo else int((v - lo) / (hi - lo) * (len(SPARK) - 1) + 0.5)
        chars.append(SPARK[max(0, min(level, len(SPARK) - 1))])
    return "".join(chars)


def summarise(runs: list[dict[str, Any]], seeds: int) -> list[dict[str, Any]]:
    """Per (searcher, preset, family, space): mean best feasible at its evaluation count and
    the paired comparisons with the baselines at that count, seed by seed."""
    index = {(r["searcher"], r["preset"], r["family"], r["space"], r["seed"]): r for r in runs}
    groups = sorted({(r["searcher"], r["preset"], r["family"], r["space"]) for r in runs},
                    key=lambda k: (k[2], k[3], k[0], k[1] or ""))
    rows = []
    for name, preset, family, space in groups:
        own = [index[(name, preset, family, space, s)] for s in range(seeds)
               if (name, preset, family, space, s) in index]
        finals = [_final(r["curve"], r["evaluations"]) for r in own]
        row: dict[str, Any] = {
            "searcher": label(name, preset), "family": family, "space": space,
            "seeds": len(own), "evaluations": float(np.mean([r["evaluations"] for r in own])),
            "mean": float(np.mean(finals)), "sd": float(np.std(finals)),
            "feasible_fraction": float(np.mean([r["feasible_fraction"] for r in own])),
            "duplicates": float(np.mean([r["duplicates"] for r in own])),
            "seconds": float(np.mean([r["seconds"] for r in own]))}
        for base_name, base_preset in BASELINES:
            key = "random" if base_name == "random" else "evolution"
            pairs = [(f, _final(index[(base_name, base_preset, family, space, r["seed"])]["curve"],
                                r["evaluations"]))
                     for f, r in zip(finals, own, strict=True)
                     if (base_name, base_preset, family, space, r["seed"]) in index]
            if (name, preset) == (base_name, base_preset) or not pairs:
                row[f"vs_{key}"], row[f"p_{key}"] = math.nan, math.nan
                continue
            mine, theirs = zip(*pairs, strict=True)
            row[f"vs_{key}"] = float(np.mean(mine) - np.mean(theirs))
            row[f"p_{key}"] = paired_wilcoxon(mine, theirs)
        rows.append(row)
    return rows


def write_csvs(out: Path, runs: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    import csv

    out.mkdir(parents=True, exist_ok=True)
    with (out / "summary.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    curves: dict[tuple[str, str, str], list[list[float]]] = {}
    for r in runs:
        curves.setdefault((label(r["searcher"], r["preset"]), r["family"], r["space"]),
                          []).append(r["curve"])
    with (out / "curves.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["searcher", "family", "space", "evaluation", "mean", "q25", "q75",
                         "seeds"])
        for (name, family, space), group in sorted(curves.items()):
            length = max(len(c) for c in group)
            matrix = np.array([[_final(c, min(k, len(c))) for k in range(1, length + 1)]
                               for c in group])
            for k in range(length):
                column = matrix[:, k]
                writer.writerow([name, family, space, k + 1, f"{column.mean():.5f}",
                                 f"{np.percentile(column, 25):.5f}",
                                 f"{np.percentile(column, 75):.5f}", len(group)])


def _star(p: float) -> str:
    return "" if math.isnan(p) else ("**" if p < 0.01 else "*" if p < 0.05 else "")


def print_report(runs: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    """Per (family, space): a sparkline of each searcher's mean anytime curve and its figures."""
    curves: dict[tuple[str, str, str], np.ndarray] = {}
    for key in {(label(r["searcher"], r["preset"]), r["family"], r["space"]) for r in runs}:
        group = [r["curve"] for r in runs
                 if (label(r["searcher"], r["preset"]), r["family"], r["space"]) == key]
        length = max(len(c) for c in group)
        curves[key] = np.array([[_final(c, min(k, len(c))) for k in range(1, length + 1)]
                                for c in group]).mean(axis=0)
    for family, space in sorted({(r["family"], r["space"]) for r in rows}):
        block = [r for r in rows if r["family"] == family and r["space"] == space]
        values = np.concatenate([curves[(r["searcher"], family, space)] for r in block])
        lo, hi = float(np.nanpercentile(values, 5)), float(np.nanmax(values))
        print(f"\n{family} / {space}  (mean best feasible vs evaluations, {lo:.3f}..{hi:.3f})")
        for r in block:
            spark = sparkline(curves[(r["searcher"], family, space)], lo, hi)
            vs = "".join(
                f"  {'vs ' + k:>6} {r['vs_' + k]:+.4f}{_star(r['p_' + k]):<2} p={r['p_' + k]:.3f}"
                if not math.isnan(r["vs_" + k]) else f"  {'vs ' + k:>6} {'':>23}"
                for k in ("random", "evolution"))
            print(f"  {r['searcher']:<19} {spark:<40} n={r['evaluations']:>5.0f} "
                  f"{r['mean']:.4f}{vs}  feas {r['feasible_fraction']:.2f} "
                  f"{r['seconds']:.1f}s", flush=True)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The docs table: one line per searcher x space x family."""
    lines = ["| searcher | space | family | n | mean best feasible | vs random (p) "
             "| vs evolution (p) |", "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["searcher"], r["space"], r["family"])):
        cells = []
        for k in ("random", "evolution"):
            if math.isnan(r["vs_" + k]):
                cells.append("—")
            else:
                cells.append(f"{r['vs_' + k]:+.4f} ({r['p_' + k]:.2g}){_star(r['p_' + k])}")
        lines.append(f"| {r['searcher']} | {r['space']} | {r['family']} | "
                     f"{r['evaluations']:.0f} | {r['mean']:.4f} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def matrix_table(rows: list[dict[str, Any]]) -> str:
    """The compact view: one line per searcher x space, one column per family; a cell is
    ``mean (difference vs random / vs evolution)``, * p < 0.05, ** p < 0.01 (paired Wilcoxon)."""
    families = list(dict.fromkeys(r["family"] for r in sorted(rows, key=lambda r: r["family"])))
    keys = sorted({(r["searcher"], r["space"]) for r in rows})
    by_key = {(r["searcher"], r["space"], r["family"]): r for r in rows}
    lines = ["| searcher | space | " + " | ".join(families) + " |",
             "|---|---|" + "---|" * len(families)]
    for name, space in keys:
        cells = []
        for family in families:
            r = by_key.get((name, space, family))
            if r is None:
                cells.append("")
                continue
            diffs = [f"{r['vs_' + k]:+.3f}{_star(r['p_' + k])}"
                     for k in ("random", "evolution") if not math.isnan(r["vs_" + k])]
            seeds = "" if r["seeds"] >= 20 else f" [{r['seeds']} seeds]"
            cells.append(f"{r['mean']:.3f} ({' / '.join(diffs)}){seeds}" if diffs
                         else f"{r['mean']:.3f}{seeds}")
        lines.append(f"| {name} | {space} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def suite(args: argparse.Namespace) -> list[dict[str, Any]]:
    from bench.search_families import FAMILIES

    families = args.families or list(FAMILIES)
    chosen = ([parse_label(s) for s in args.searchers] if args.searchers
              else [(n, p) for n, p, _ in SUITE_SEARCHERS])
    if args.quick:
        chosen = [(n, p) for n, p in chosen if (n, p) != ("epnas", None)]
    spaces_of = {(n, p): spaces for n, p, spaces in SUITE_SEARCHERS}
    tasks = []
    for name, preset in {*chosen, *BASELINES}:
        for family in families:
            # "epnas+hard" searches the spaces "epnas" does
            for space in spaces_of.get((name.split("+")[0], preset), ALL_SPACES):
                if space not in FAMILIES[family].spaces or (args.spaces
                                                            and space not in args.spaces):
                    continue
                for seed in range(args.seeds):
                    tasks.append((name, preset, family, space, seed,
                                  args.budget or SPACE_BUDGETS[space]))
    # Seed-major order, cheap searchers first: a suite stopped early still has every
    # searcher x family at the first seeds, and the slow searchers' seeds come last.
    cost = {"pnas": 20.0, "epnas": 6.0, "rcas": 2.0}
    tasks.sort(key=lambda t: (cost.get(t[0], 0.3) >= 6.0, t[4], cost.get(t[0], 0.3)))
    started = time.perf_counter()
    print(f"search suite: {len(tasks)} runs, {args.seeds} seeds, families "
          f"{', '.join(families)}, {args.workers} process(es)", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "runs.jsonl"
    runs = _read_log(log) if args.report_only else _run_all(tasks, args.workers, log)
    wanted = {_task_key(t) for t in tasks}  # only this budget's runs, when a log holds several
    runs = [r for r in runs if _run_key(r) in wanted]
    errors = [r for r in runs if "error" in r]
    for r in errors[:10]:
        print(f"  FAILED {label(r['searcher'], r['preset'])} {r['family']}/{r['space']} "
              f"seed {r['seed']}: {r['error'][:200]}")
    if errors:
        print(f"  {len(errors)} runs failed (left out of the table)")
    runs = [r for r in runs if "error" not in r]
    rows = summarise(runs, args.seeds)
    print_report(runs, rows)
    write_csvs(args.out, runs, rows)
    (args.out / "table.md").write_text(matrix_table(rows) + "\n\n" + markdown_table(rows)
                                       + "\n")
    print(f"\nwrote {args.out}/summary.csv, curves.csv, table.md; wall time "
          f"{time.perf_counter() - started:.0f} s")
    return rows


BENCHES: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "pnas": bench_pnas,
    "epnas": bench_epnas,
    "rcas": bench_rcas,
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--searcher", choices=[*sorted(BENCHES), "all"], default=None,
                        help="run an older per-searcher figure bench instead of the suite")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds (suite: 20, --quick 3; figure benches: 5)")
    suite_group = parser.add_argument_group("suite")
    suite_group.add_argument("--quick", action="store_true",
                             help="3 seeds, without the slow EPNAS default preset")
    suite_group.add_argument("--families", nargs="*", default=None)
    suite_group.add_argument("--searchers", nargs="*", default=None,
                             help="e.g. evolution epnas:epnas-digits epnas+hard:epnas-digits (+hard: with hard "
                                   "constraints, as the baselines; they always run; "
                                   "+key=value: a searcher parameter, e.g. "
                                   "rcas+confirm_evaluations=2)")
    suite_group.add_argument("--spaces", nargs="*", default=None)
    suite_group.add_argument("--workers", type=int, choices=(1, 2), default=2)
    suite_group.add_argument("--out", type=Path, default=Path("runs/search-suite"))
    suite_group.add_argument("--report-only", action="store_true",
                             help="summarise the runs already in OUT/runs.jsonl")
    parser.add_argument("--random-factor", type=int, default=10,
                        help="random search runs this many times the searcher's evaluations")
    pnas = parser.add_argument_group("pnas")
    pnas.add_argument("--B", type=int, default=5, help="PNAS: max blocks per cell")
    pnas.add_argument("--K", type=int, default=32, help="PNAS: beam size")
    pnas.add_argument("--predictor", default=None, help="PNAS: predictor (default: paper's)")
    pnas.add_argument("--cell-preset", default="pnas-digits")
    parser.add_argument("--budget", type=int, default=None,
                        help="suite: evaluations per search on every space (default: the "
                             "space's, 150/160); EPNAS figure bench: per search (default 400)")
    args = parser.parse_args(argv)
    if args.seeds is None:
        args.seeds = 5 if args.searcher else (3 if args.quick else 20)
    if args.searcher and args.budget is None:
        args.budget = 400
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.searcher is None:
        suite(args)
        return
    names = sorted(BENCHES) if args.searcher == "all" else [args.searcher]
    for name in names:
        print(f"== {name} ==", flush=True)
        BENCHES[name](args)


if __name__ == "__main__":
    main()
