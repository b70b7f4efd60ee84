"""Final training runs: one architecture trained from scratch, epoch by epoch, resumably.

``nasw train RUN --candidate ID`` creates a run whose searcher is ``final`` (see
:mod:`searchers.final`) and the coordinator hands such runs to :class:`FinalTrainer`. It is the
run's only writer, like the coordinator (it holds the run's lease; every write is fenced by
it). Its files live next to the database in ``<db>.runs/<run uid>/`` -- the uid is never
reused, so a deleted run's files can never be taken for a new run's.

An epoch's checkpoint and its metrics land together: the checkpoint is written first, under
the epoch's own name (``checkpoint-00007.pt``, to a temporary file and renamed), then the
epoch's curves (``train/loss``, ``train/val_accuracy``, ``train/lr``), the candidate row
(``epochs`` = the committed epoch) and the heartbeat in one transaction. The committed epoch in
the database names the checkpoint a resume loads, so a kill between the two steps loses
nothing: the uncommitted checkpoint is ignored and that epoch is trained again, and a
committed epoch always has its checkpoint. Older checkpoints are removed after the commit.
The trained weights end in ``weights.pt``. Every file is read back with
``torch.load(weights_only=True)``: tensors and plain data only, never arbitrary pickles.

A heartbeat thread keeps the run's heartbeat fresh while an epoch trains, so a long epoch is
not mistaken for a dead run.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from searchers.base import Job, Result
from searchers.errors import NaswError
from workbench.config import make_searcher, parse_config
from workbench.runner.process import Heartbeat
from workbench.store import CandidateRow, LeaseLost, Progress, Store, this_host


def run_dir(db_path: str | os.PathLike[str], run_id: int) -> Path:
    """Where a run keeps its files (checkpoints, weights): ``<db>.runs/<run uid>``."""
    with Store(db_path, create=False) as store:
        return store.run_dir(run_id)


def checkpoint_path(folder: Path, epoch: int) -> Path:
    return folder / f"checkpoint-{int(epoch):05d}.pt"


def weights_path(db_path: str | os.PathLike[str], run_id: int) -> Path:
    return run_dir(db_path, run_id) / "weights.pt"


def _save(obj: Any, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_weights(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A saved state dict, loaded safely (tensors only)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise NaswError("weights", str(path), "a weights file written by nasw",
                        hint=f"it cannot be loaded safely ({type(err).__name__})") from None


class FinalTrainer:
    """Train a ``final`` run's architecture to the end (or until cancelled or stopped)."""

    def __init__(self, db_path: str | os.PathLike[str], run_id: int, *, device: Any = None,
                 on_progress: Callable[[dict[str, Any]], None] | None = None,
                 should_stop: Callable[[], bool] = lambda: False,
                 busy_timeout_ms: int | None = None) -> None:
        self.db_path = Path(db_path)
        self.busy_timeout_ms = busy_timeout_ms
        self.run_id = int(run_id)
        self.device = device
        self.on_progress = on_progress
        self.should_stop = should_stop

    def run(self) -> str:
        from workbench.runner.coordinator import RETRY_BUSY_S

        store = Store(self.db_path, busy_timeout_ms=self.busy_timeout_ms,
                      retry_busy_s=RETRY_BUSY_S)
        heartbeat: Heartbeat | None = None
        try:
            store.check_restorable(self.run_id)  # unsafe or damaged: refused, unclaimed
            previous = store.claim_run(self.run_id, os.getpid(), this_host())
            heartbeat = Heartbeat(self.db_path, self.run_id, previous["lease_token"],
                                  busy_timeout_ms=self.busy_timeout_ms)
            heartbeat.start()
            return self._train(store, previous)
        except LeaseLost as err:
            print(f"final training of run {self.run_id}: {err}; stopping without writing",
                  flush=True)
            return "lost"
        except NaswError:
            raise
        except BaseException as err:
            with contextlib.suppress(LeaseLost):
                store.update_run(self.run_id, status="failed", finished=time.time(),
                                 error=f"{type(err).__name__}: {err}"[-2000:])
            raise
        finally:
            if heartbeat is not None:
                heartbeat.stopped.set()
            store.close()

    def _train(self, store: Store, previous: dict[str, Any]) -> str:

        from searchers.final_training import EpochTrainer
        from searchers.training import Diverged

        config = parse_config(previous["config"])
        space, searcher = make_searcher(config)
        store.restore_searcher(self.run_id, searcher)
        job = (searcher.pending or searcher.ask(1))[0]
        folder = store.run_dir(self.run_id)
        trainer = EpochTrainer(job, self.device)
        committed = self._committed_epoch(store, job)
        resumed = committed > 0
        if resumed:
            checkpoint = checkpoint_path(folder, committed)
            if not checkpoint.exists() and (folder / "checkpoint.pt").exists():
                checkpoint = folder / "checkpoint.pt"  # written by nasw before epoch names
            if not checkpoint.exists():
                raise NaswError("run", self.run_id, "a final training with its checkpoint",
                                hint=f"{checkpoint} (epoch {committed}) is missing")
            trainer.load_state_dict(load_weights_to(checkpoint, trainer.device))
        started = time.time() - float(previous.get("elapsed") or 0.0)
        store.record(self.run_id, Progress(
            candidates=[self._row(space, job, trainer, "running")],
            events=[(trainer.epoch, "run", {"action": "resumed" if resumed else "started",
                                            "epoch": trainer.epoch, "pid": os.getpid()})],
            state=searcher.state_dict(),
            summary={"status": "running", "n_asked": 1, "started": previous.get("started")
                     or time.time(), "finished": None, "error": None,
                     "resumes": (previous.get("resumes") or 0) + int(resumed),
                     "workers": [{"index": 0, "device": trainer.device_label,
                                  "pid": os.getpid(), "job_id": job.id}]}))
        paused = False
        while not trainer.done:
            for command in store.take_commands(self.run_id):
                if command == "cancel":
                    return self._stop(store, space, job, trainer, "cancelled", started)
                paused = {"pause": True, "resume": False}.get(command, paused)
            if self.should_stop():
                return self._stop(store, space, job, trainer, "interrupted", started)
            if paused:
                store.update_run(self.run_id, status="paused")
                time.sleep(0.5)
                continue
            try:
                row = trainer.run_epoch()
            except Diverged as err:
                return self._finish(store, space, searcher, job, trainer, started,
                                    Result(status="diverged", error=str(err),
                                           costs=trainer.costs, device=trainer.device_label))
            epoch = int(row["epoch"])
            _save(trainer.state_dict(), checkpoint_path(folder, epoch))  # before the commit
            store.record(self.run_id, Progress(
                candidates=[self._row(space, job, trainer, "running")],
                metrics=[(epoch, "train/loss", row["loss"]),
                         (epoch, "train/val_accuracy", row["val_accuracy"]),
                         (epoch, "train/val_loss", row["val_loss"]), (epoch, "train/lr", row["lr"])],
                summary={"status": "running", "elapsed": time.time() - started,
                         "best_accuracy": max(h["val_accuracy"] for h in trainer.history)}))
            _remove_checkpoints(folder, keep=epoch)
            if self.on_progress is not None:
                self.on_progress(store.run(self.run_id))
        last = trainer.history[-1] if trainer.history else {}
        _save(trainer.weights(), folder / "weights.pt")
        result = Result(status="ok", accuracy=last.get("val_accuracy"),
                        val_loss=last.get("val_loss"),
                        loss_curve=tuple(h["loss"] for h in trainer.history),
                        costs=trainer.costs, device=trainer.device_label,
                        wall_time=time.time() - started, epochs=trainer.epoch)
        return self._finish(store, space, searcher, job, trainer, started, result)

    def _committed_epoch(self, store: Store, job: Job) -> int:
        """The last epoch whose metrics (and so whose checkpoint) are in the database."""
        row = store.conn.execute("SELECT epochs FROM candidates WHERE run_id = ? AND id = ?",
                                 (self.run_id, job.id)).fetchone()
        return int(row[0] or 0) if row is not None else 0

    def _row(self, space: Any, job: Job, trainer: Any, status: str) -> CandidateRow:
        last = trainer.history[-1] if trainer.history else {}
        return CandidateRow(id=job.id, genotype=job.genotype, status=status,
                            hash=space.hash(job.genotype), costs=trainer.costs,
                            accuracy=last.get("val_accuracy"), val_loss=last.get("val_loss"),
                            tag=job.tag, device=trainer.device_label, epochs=trainer.epoch,
                            loss_curve=[h["loss"] for h in trainer.history])

    def _stop(self, store: Store, space: Any, job: Job, trainer: Any, status: str,
              started: float) -> str:
        """Cancelled or interrupted: the checkpoint stays, so ``nasw resume`` continues."""
        store.record(self.run_id, Progress(
            candidates=[self._row(space, job, trainer, "running" if status == "interrupted"
                                  else "cancelled")],
            events=[(trainer.epoch, "run", {"action": status, "epoch": trainer.epoch})],
            summary={"status": status, "elapsed": time.time() - started,
                     "finished": time.time(), "workers": []}))
        return status

    def _finish(self, store: Store, space: Any, searcher: Any, job: Job, trainer: Any,
                started: float, result: Result) -> str:
        searcher.tell(job, result)
        feasible = bool(result.ok and searcher.is_feasible(result.costs))
        row = self._row(space, job, trainer, result.status)
        row.reward = searcher.reward(result)
        row.feasible = feasible
        row.wall_time = result.wall_time
        row.error = result.error
        row.finished = time.time()
        store.record(self.run_id, Progress(
            candidates=[row], state=searcher.state_dict(),
            events=[(trainer.epoch, "run", {"action": "finished", "status": result.status})],
            summary={"status": "finished", "finished": time.time(), "workers": [],
                     "elapsed": time.time() - started, "n_done": 1, "n_ok": int(result.ok),
                     "n_failed": int(not result.ok), "n_feasible": int(feasible),
                     "best_accuracy": result.accuracy if result.ok else None,
                     "best_candidate": job.id if result.ok else None,
                     "best_feasible": int(feasible) if result.ok else None}))
        if self.on_progress is not None:
            self.on_progress(store.run(self.run_id))
        return "finished"


def load_weights_to(path: Path, device: Any) -> dict[str, Any]:
    """A training checkpoint loaded safely onto ``device`` (tensors and plain data only)."""
    import torch

    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise NaswError("checkpoint", str(path), "a training checkpoint written by nasw",
                        hint=f"it cannot be loaded safely ({type(err).__name__})") from None


def _remove_checkpoints(folder: Path, keep: int) -> None:
    """Delete the checkpoints of epochs other than ``keep`` (committed after them)."""
    for path in folder.glob("checkpoint-*.pt"):
        if path != checkpoint_path(folder, keep):
            path.unlink(missing_ok=True)


def final_run_config(source_run: dict[str, Any], genotype: dict[str, Any],
                     source: dict[str, Any], epochs: int | None = None,
                     train_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config of a final training run: the source run's space, dataset, constraints and
    backend, searcher ``final`` with the genotype, its preset's final-training schedule
    (``train_overrides``: training-spec fields the user set, e.g. ``aux_weight``)."""
    from searchers.base import TrainSpec
    from searchers.final_training import final_schedule

    config = dict(source_run["config"])
    preset = (config.get("space") or {}).get("preset")
    train = {**dict(config.get("train") or {}), **final_schedule(preset), "max_batches": None}
    if epochs is not None:
        train["epochs"] = int(epochs)
    train.update(train_overrides or {})
    allowed = set(TrainSpec.__dataclass_fields__)
    train = {k: v for k, v in train.items() if k in allowed}
    where = (f"candidate {source['candidate']}" if "candidate" in source
             else f"specialization {source['specialization']}")
    config.update(
        name=f"train run {source_run['id']} {where}",
        evaluator="train",
        searcher={"name": "final", "params": {"genotype": genotype, "source": source}},
        budget={"candidates": 1},
        train=train,
        hard_constraints=False,
    )
    return config


def create_final_run(db_path: str | os.PathLike[str], run_id: int, *,
                     candidate_id: int | None = None, specialization_id: int | None = None,
                     epochs: int | None = None,
                     train_overrides: dict[str, Any] | None = None) -> int:
    """Create (not start) a final training run for a candidate or a specialization of RUN."""
    from searchers.errors import NaswError
    from workbench.analysis import resolve_architecture

    if (candidate_id is None) == (specialization_id is None):
        raise NaswError("candidate", None, "exactly one of --candidate ID or --specialization ID")
    with Store(db_path, create=False) as store:
        run = store.run(run_id)
        genotype, _, _ = resolve_architecture(store, run_id, candidate_id, specialization_id)
        source = {"run": run_id, **({"candidate": candidate_id} if candidate_id is not None
                                    else {"specialization": specialization_id})}
        config = parse_config(final_run_config(run, genotype, source, epochs, train_overrides))
        make_searcher(config)  # validates the genotype against the space before writing
        return store.create_run(config.to_dict())
