"""Engine throughput: candidates/s through the whole nasw engine vs Optuna on the same objective.

Both sides run a random search over the PONAS MBConv space (digits preset) scored by the
``synthetic`` evaluator with the EPNAS soft-constraint reward, and both persist every trial
to SQLite:

* **nasw**: a run created from a config and driven by :class:`workbench.runner.Coordinator`
  (searcher ask/tell, result validation, one transaction per batch with candidates, metrics,
  events and the searcher checkpoint) into a fresh ``nasw.db``;
* **optuna**: ``optuna.samplers.RandomSampler`` + ``storage="sqlite:///..."``, one categorical
  parameter per layer, the same genotype -> ``synthetic_result`` -> soft reward objective.

Run: ``python bench/bench_engine.py [--candidates 2000]``. Prints candidates/s for each and
the ratio (goal: nasw >= 2x Optuna). Optuna is a bench-only dependency (extra ``bench``).

Where the difference comes from: Optuna's RDB storage commits several transactions per trial
(create, each parameter, the value, the state) through SQLAlchemy in SQLite's default
rollback-journal mode, each with an fsync; nasw writes one transaction per batch of results in
WAL mode with ``synchronous=NORMAL`` (durable across a process crash; the last transactions
before a power cut may be lost, and a resume then re-evaluates them). On a disk with slow
fsync the ratio is large; Optuna with in-memory storage is printed as a reference for the
cost of sampling and bookkeeping alone.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from searchers.base import Job, TrainSpec
from searchers.constraints import parse_constraints, soft_reward
from searchers.objectives import synthetic_result
from searchers.spaces import get_space
from workbench.config import parse_config
from workbench.runner import Coordinator, start_run
from workbench.store import Store

SPACE, PRESET = "mbconv", "ponas-digits"
CONSTRAINTS = ["params<=60k"]


def bench_nasw(workdir: Path, candidates: int, seed: int) -> tuple[float, float]:
    config = parse_config({
        "name": "bench", "space": {"name": SPACE, "preset": PRESET}, "evaluator": "synthetic",
        "searcher": {"name": "random"}, "constraints": CONSTRAINTS,
        "budget": {"candidates": candidates}, "seed": seed})
    db = workdir / "nasw.db"
    started = time.perf_counter()
    run_id = start_run(db, config)
    status = Coordinator(db, run_id).run()
    elapsed = time.perf_counter() - started
    with Store(db) as store:
        run = store.run(run_id)
    assert status == "finished" and run["n_done"] == candidates, (status, run["n_done"])
    return elapsed, max(c["reward"] for c in Store(db).candidates(run_id))


def bench_optuna(workdir: Path | None, candidates: int, seed: int) -> tuple[float, float]:
    """Optuna's RandomSampler on the same objective; ``workdir=None``: in-memory storage."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    space = get_space(SPACE, PRESET)
    constraints = parse_constraints(CONSTRAINTS)
    train = TrainSpec(seed=seed)

    def objective(trial) -> float:
        choices = [trial.suggest_categorical(f"layer{i}", list(range(space.num_options)))
                   for i in range(space.num_positions)]
        genotype = space.validate({"space": SPACE, "preset": PRESET, "choices": choices})
        job = Job(id=trial.number, genotype=genotype, train=train,
                  input_shape=space.input_shape, num_classes=space.num_classes)
        result = synthetic_result(job)
        return soft_reward(result.accuracy, result.costs, constraints)

    started = time.perf_counter()
    study = optuna.create_study(
        direction="maximize",
        storage=None if workdir is None else f"sqlite:///{workdir / 'optuna.db'}",
        sampler=optuna.samplers.RandomSampler(seed=seed), study_name="bench")
    study.optimize(objective, n_trials=candidates)
    elapsed = time.perf_counter() - started
    assert len(study.trials) == candidates
    return elapsed, study.best_value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "nasw").mkdir()
        (work / "optuna").mkdir()
        nasw_s, nasw_best = bench_nasw(work / "nasw", args.candidates, args.seed)
        optuna_s, optuna_best = bench_optuna(work / "optuna", args.candidates, args.seed)
        memory_s, _ = bench_optuna(None, args.candidates, args.seed)
    nasw_rate, optuna_rate = args.candidates / nasw_s, args.candidates / optuna_s
    print(f"candidates          {args.candidates}")
    print(f"nasw engine         {nasw_rate:10.1f} candidates/s  ({nasw_s:.2f} s, best reward "
          f"{nasw_best:.4f})")
    print(f"optuna + sqlite     {optuna_rate:10.1f} candidates/s  ({optuna_s:.2f} s, best reward "
          f"{optuna_best:.4f})")
    print(f"ratio nasw/optuna   {nasw_rate / optuna_rate:10.2f}x  (goal >= 2x)")
    print(f"(reference: optuna in memory, nothing persisted: "
          f"{args.candidates / memory_s:.1f} candidates/s)")


if __name__ == "__main__":
    main()
