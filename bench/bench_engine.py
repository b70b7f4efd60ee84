"""Engine cost per candidate, flat over a long run: nasw vs Optuna on the same objective.

Every side runs a random search over the PONAS MBConv space (digits preset) scored by the
``synthetic`` evaluator with the EPNAS soft-constraint reward, and persists every trial:

* **nasw**: a run created from a config and driven by :class:`workbench.runner.Coordinator`
  (searcher ask/tell, result validation, one transaction per loop iteration with candidates,
  metrics, events, the fenced lease check and the searcher checkpoint) into a fresh
  ``nasw.db``;
* **optuna + sqlite**: ``optuna.samplers.RandomSampler`` with ``storage="sqlite:///..."``;
* **optuna + journal**: the same with Optuna's journal file storage
  (``JournalStorage(JournalFileBackend(path))``, Optuna >= 4; ``JournalFileStorage`` before);
* **optuna in memory**: nothing persisted -- the cost of sampling and bookkeeping alone.

Printed for each (all measured in the same process, one after the other):

* candidates/s for every block of ``--block`` candidates (from each trial's completion time:
  nasw's ``candidates.finished``, Optuna's ``datetime_complete``) and the last block's rate
  over the first's -- a flat engine keeps it near 1 (goal: >= 0.8);
* database size per 1,000 candidates (MB, the file plus its WAL / journal);
* nasw's checkpoint: bytes at the end of the run and per candidate -- the checkpoint holds no
  history, so its size does not grow with the run.

Run: ``python bench/bench_engine.py --candidates 100000`` (the issue's size; about an hour on
a 2-core machine, most of it Optuna with SQLite) or ``--candidates 20000`` for a shorter
check; ``--skip optuna-sqlite`` leaves out the slowest side. Optuna is a bench-only dependency
(extra ``bench``).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from searchers.base import Job, TrainSpec
from searchers.constraints import parse_constraints, soft_reward
from searchers.objectives import synthetic_result
from searchers.spaces import get_space
from workbench.config import parse_config
from workbench.runner import Coordinator, start_run
from workbench.store import Store

SPACE, PRESET = "mbconv", "ponas-digits"
CONSTRAINTS = ["params<=60k"]
SIDES = ("nasw", "optuna-sqlite", "optuna-journal", "optuna-memory")


def _files_mb(paths: Sequence[Path]) -> float:
    return sum(p.stat().st_size for p in paths if p.exists()) / 1e6


def block_rates(finish_times: Sequence[float], start: float, block: int) -> list[float]:
    """Candidates/s of each full block of ``block`` completions (in completion order)."""
    times = sorted(finish_times)
    rates, previous = [], start
    for end in range(block, len(times) + 1, block):
        elapsed = times[end - 1] - previous
        rates.append(block / elapsed if elapsed > 0 else float("inf"))
        previous = times[end - 1]
    return rates


def bench_nasw(workdir: Path, candidates: int, seed: int, block: int) -> dict[str, Any]:
    config = parse_config({
        "name": "bench", "space": {"name": SPACE, "preset": PRESET}, "evaluator": "synthetic",
        "searcher": {"name": "random"}, "constraints": CONSTRAINTS,
        "budget": {"candidates": candidates}, "seed": seed})
    db = workdir / "nasw.db"
    run_id = start_run(db, config)
    started = time.time()
    status = Coordinator(db, run_id).run()
    elapsed = time.time() - started
    with Store(db) as store:
        run = store.run(run_id)
        finished = [r[0] for r in store.conn.execute(
            "SELECT finished FROM candidates WHERE run_id = ? AND status != 'running'",
            (run_id,))]
        best = store.best_candidate(run_id)
        checkpoint = store.state_size(run_id)
    assert status == "finished" and run["n_done"] == candidates, (status, run["n_done"])
    checkpoint_bytes = checkpoint["state_bytes"] + checkpoint["array_bytes"]
    return {"elapsed": elapsed, "best": best["reward"], "blocks": block_rates(
        finished, started, block), "db_mb": _files_mb([db, Path(f"{db}-wal")]),
        "checkpoint_bytes": checkpoint_bytes}


def _journal_storage(path: Path) -> Any:
    import optuna

    journal = optuna.storages.journal
    if hasattr(journal, "JournalFileBackend"):  # Optuna >= 4
        return journal.JournalStorage(journal.JournalFileBackend(str(path)))
    return optuna.storages.JournalStorage(optuna.storages.JournalFileStorage(str(path)))


def bench_optuna(kind: str, workdir: Path, candidates: int, seed: int,
                 block: int) -> dict[str, Any]:
    """Optuna's RandomSampler on the same objective with ``kind`` storage."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    space = get_space(SPACE, PRESET)
    constraints = parse_constraints(CONSTRAINTS)
    train = TrainSpec(seed=seed)

    def objective(trial: Any) -> float:
        choices = [trial.suggest_categorical(f"layer{i}", list(range(space.num_options)))
                   for i in range(space.num_positions)]
        genotype = space.validate({"space": SPACE, "preset": PRESET, "choices": choices})
        job = Job(id=trial.number, genotype=genotype, train=train,
                  input_shape=space.input_shape, num_classes=space.num_classes)
        result = synthetic_result(job)
        return soft_reward(result.accuracy, result.costs, constraints)

    files: list[Path] = []
    if kind == "sqlite":
        files = [workdir / "optuna.db", workdir / "optuna.db-journal"]
        storage: Any = f"sqlite:///{files[0]}"
    elif kind == "journal":
        files = [workdir / "optuna.log"]
        storage = _journal_storage(files[0])
    else:
        storage = None
    started = time.time()
    study = optuna.create_study(direction="maximize", storage=storage, study_name="bench",
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    study.optimize(objective, n_trials=candidates)
    elapsed = time.time() - started
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == candidates
    finished = [t.datetime_complete.timestamp() for t in trials]
    return {"elapsed": elapsed, "best": study.best_value,
            "blocks": block_rates(finished, started, block),
            "db_mb": _files_mb(files) if files else None, "checkpoint_bytes": None}


def report(name: str, result: dict[str, Any], candidates: int) -> None:
    blocks = result["blocks"]
    flat = blocks[-1] / blocks[0] if len(blocks) > 1 else float("nan")
    db = "-" if result["db_mb"] is None else f"{result['db_mb'] / candidates * 1000:.3f}"
    checkpoint = "-" if result["checkpoint_bytes"] is None else (
        f"{result['checkpoint_bytes']} B total, "
        f"{result['checkpoint_bytes'] / candidates:.4f} B/candidate")
    print(f"{name:16s} {candidates / result['elapsed']:9.1f} cand/s overall   "
          f"last/first block {flat:5.2f}   db {db} MB per 1,000   checkpoint {checkpoint}   "
          f"best reward {result['best']:.4f}")
    print(f"{'':16s} per block: " + " ".join(f"{rate:.0f}" for rate in blocks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=20_000)
    parser.add_argument("--block", type=int, default=None,
                        help="candidates per timed block (default: candidates / 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", action="append", default=[], choices=SIDES,
                        help="leave a side out (repeatable)")
    parser.add_argument("--optuna-sqlite-candidates", type=int, default=None,
                        help="fewer candidates for Optuna + SQLite (a few per second on a "
                             "slow-fsync disk); its blocks are then candidates / 10")
    parser.add_argument("--optuna-journal-candidates", type=int, default=None,
                        help="fewer candidates for Optuna + journal file")
    args = parser.parse_args()
    block = args.block or max(1, args.candidates // 10)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side in SIDES:
            if side in args.skip:
                continue
            work = Path(tmp) / side
            work.mkdir()
            count = {"optuna-sqlite": args.optuna_sqlite_candidates,
                     "optuna-journal": args.optuna_journal_candidates}.get(side) \
                or args.candidates
            size = block if count == args.candidates else max(1, count // 10)
            if side == "nasw":
                results[side] = bench_nasw(work, count, args.seed, size)
            else:
                results[side] = bench_optuna(side.removeprefix("optuna-"), work, count,
                                             args.seed, size)
            results[side]["candidates"] = count
            report(side, results[side], count)
    print(f"\ncandidates {args.candidates}, block {block}, cpus {os.cpu_count()}")
    if "nasw" in results:
        rate = args.candidates / results["nasw"]["elapsed"]
        for side, result in results.items():
            if side != "nasw":
                other = result["candidates"] / result["elapsed"]
                print(f"nasw / {side:15s} {rate / other:8.2f}x overall candidates/s"
                      f" (its run: {result['candidates']} candidates)")


if __name__ == "__main__":
    main()
