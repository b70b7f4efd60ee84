"""Databases for the TUI tests, written through the real store API.

A run is produced by the real random searcher and the synthetic evaluator (deterministic),
recorded with :meth:`Store.record` exactly as the coordinator does; a PONAS-style accuracy
table is recorded as ``table_rows``. Times are fixed offsets from the run's creation, so with
the app's clock pinned to ``created + CLOCK_OFFSET`` every age and duration is deterministic.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from searchers import get_searcher
from searchers.objectives import synthetic_result
from searchers.spaces import get_space
from workbench.store import CandidateRow, Progress, Store


async def wait_for(pilot: Any, condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Let the app run until ``condition()`` holds (pilot tests); fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.05)


def plots_drawn(node: Any) -> bool:
    """Every plot under ``node`` shows the figure of its latest data (plots build their
    figures in thread workers, after their data arrived)."""
    from workbench.widgets.plots import LazyPlot

    return all(plot.drawn for plot in node.query(LazyPlot))


def text_of(widget: Any) -> str:
    """What a Static widget shows, as plain text."""
    return str(widget.render())


CLOCK_OFFSET = 5400.0  # the app's clock: 1 h 30 min after the first run was created
SPACE, PRESET = "mbconv", "ponas-digits"


def config_for(name: str, searcher: str = "random", budget: int = 40,
               constraints: tuple[str, ...] = ("params<=60k",)) -> dict[str, Any]:
    return {"name": name, "space": {"name": SPACE, "preset": PRESET}, "evaluator": "synthetic",
            "searcher": {"name": searcher}, "constraints": list(constraints),
            "budget": {"candidates": budget}, "backend": {"workers": 0}, "seed": 0}


def record_candidates(store: Store, run_id: int, searcher: Any, count: int, created: float,
                      step_s: float = 6.0, seed_offset: int = 0) -> list[dict[str, Any]]:
    """Ask/evaluate/tell ``count`` candidates and record them like the coordinator does."""
    told = []
    for _ in range(count):
        jobs = searcher.ask(1)
        if not jobs:
            break
        job = jobs[0]
        result = synthetic_result(job)
        searcher.tell(job, result)
        entry = searcher.history[-1]
        finished = created + step_s * (job.id + 1 + seed_offset)
        row = CandidateRow(
            id=job.id, genotype=job.genotype, status=result.status,
            hash=searcher.space.hash(job.genotype), costs=dict(result.costs),
            accuracy=result.accuracy, val_loss=result.val_loss, reward=entry["reward"],
            feasible=entry["feasible"], tag=f"sample {job.id}", wall_time=step_s,
            device=f"cpu:{job.id % 2}", epochs=result.epochs, started=finished - step_s,
            finished=finished)
        best = searcher.best()
        summary = {
            "n_asked": job.id + 1, "n_done": len(searcher.history),
            "n_ok": sum(h["status"] == "ok" for h in searcher.history),
            "n_feasible": sum(bool(h["feasible"]) for h in searcher.history),
            "best_accuracy": best["accuracy"] if best else None,
            "best_candidate": best["id"] if best else None,
            "best_feasible": int(bool(best and best["feasible"])),
            "elapsed": finished - created,
        }
        store.record(run_id, Progress(
            candidates=[row], metrics=[(job.id, "random/accuracy", float(result.accuracy or 0)),
                                       (job.id, "random/reward", float(entry["reward"]))],
            events=[(job.id, "result", {"candidate": job.id, "accuracy": result.accuracy})],
            summary=summary))
        told.append(entry)
    return told


def make_run(store: Store, name: str, count: int, *, status: str = "finished",
             budget: int = 40, table: bool = False, in_flight: int = 0,
             pid: int | None = None, constraints: tuple[str, ...] = ("params<=60k",)) -> int:
    """A run with ``count`` finished candidates (and ``in_flight`` running ones)."""
    searcher_name = "ponas" if table else "random"
    run_id = store.create_run(config_for(name, searcher_name, budget, constraints))
    created = store.run(run_id)["created"]
    space = get_space(SPACE, PRESET)
    searcher = get_searcher("random", space=space, constraints=list(constraints),
                            budget=budget, seed=run_id)
    record_candidates(store, run_id, searcher, count, created)
    if in_flight:
        jobs = searcher.ask(in_flight)
        store.record(run_id, Progress(candidates=[
            CandidateRow(id=j.id, genotype=j.genotype, status="running", tag=f"sample {j.id}",
                         device="cpu:0", started=created + 6.0 * count) for j in jobs]))
    if table:
        record_table(store, run_id, space, layers=None)
    import socket

    store.update_run(run_id, status=status, started=created, pid=pid,
                     host=socket.gethostname() if pid else None,
                     finished=created + 6.0 * count if status == "finished" else None,
                     workers=[{"index": 0, "device": "cpu:0", "job_id": count if in_flight else None,
                               "restarts": 0},
                              {"index": 1, "device": "cpu:1", "job_id": None, "restarts": 1}])
    return run_id


def record_table(store: Store, run_id: int, space: Any, layers: int | None) -> None:
    """A deterministic PONAS accuracy table: loss grows with smaller kernels/expansions."""
    base, tables = space.cost_tables()
    n_layers, n_choices = tables["params"].shape
    rows = []
    for layer in range(n_layers if layers is None else layers):
        for choice in range(n_choices):
            loss = 0.004 * (n_choices - 1 - choice) * (1 + math.sin(layer + 1) ** 2) / n_choices
            rows.append({"layer": layer, "choice": choice, "accuracy": 0.95 - loss,
                         "loss": loss, "costs": {m: float(t[layer, choice])
                                                 for m, t in tables.items()}})
    store.record(run_id, Progress(table_rows=rows, events=[(0, "table_row", {"rows": len(rows)})]))


def record_final_epochs(store: Store, run_id: int, epochs: range, created: float) -> None:
    """Epochs of a final-training run (``create_final_run``), recorded as
    :class:`workbench.runner.final_train.FinalTrainer` records them after each epoch: the
    running candidate, the ``train/*`` metrics (step = epoch) and the run's summary."""
    genotype = store.run(run_id)["config"]["searcher"]["params"]["genotype"]
    for epoch in epochs:
        accuracy = 0.5 + 0.04 * epoch
        store.record(run_id, Progress(
            candidates=[CandidateRow(id=0, genotype=genotype, status="running",
                                     costs={"params": 40e3, "madds": 600e3}, accuracy=accuracy,
                                     val_loss=1.0 / epoch, device="cpu", epochs=epoch,
                                     loss_curve=[1.0 / e for e in range(1, epoch + 1)])],
            metrics=[(epoch, "train/loss", 1.2 / epoch), (epoch, "train/val_accuracy", accuracy),
                     (epoch, "train/val_loss", 1.0 / epoch), (epoch, "train/lr", 0.05 / epoch)],
            summary={"status": "running", "started": created, "elapsed": 10.0 * epoch,
                     "best_accuracy": accuracy}))


def make_db(path: Path) -> Path:
    """Three runs: a finished random run, a finished PONAS run with its table, a failed one."""
    with Store(path) as store:
        make_run(store, "random-synthetic", 40)
        make_run(store, "ponas-digits", 24, table=True, budget=24)
        failed = make_run(store, "too-tight", 3, status="failed", budget=50,
                          constraints=("params<=20k",))
        store.update_run(failed, error="worker 0 died twice\nRuntimeError: CUDA out of memory")
    return path


def fixed_clock(path: Path) -> float:
    """``created`` of the first run + :data:`CLOCK_OFFSET` (now, for a database without runs)."""
    import time

    with Store(path) as store:
        ids = store.run_ids()
        return store.run(ids[0])["created"] + CLOCK_OFFSET if ids else time.time()


def slow_synthetic(job: Any, device: Any = None) -> Any:
    """The synthetic evaluator at 4 candidates/s: keeps a real coordinator's run live for the
    length of a test (the coordinator is told ``--evaluator tui_support:slow_synthetic``)."""
    import time

    time.sleep(0.25)
    return synthetic_result(job)
