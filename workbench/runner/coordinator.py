"""The run coordinator: one process per run, owning the searcher's ask/tell loop.

Modelled on optuna's split: the searcher only decides (``ask``/``tell``); the coordinator
validates each result, tells the searcher, then writes -- and the store is the only place that
speaks SQL. One loop iteration:

1. read command rows (``pause``, ``resume``, ``cancel``) and the SIGTERM flag;
2. tell the searcher every result the backend returned last time (after validating it);
3. ask for enough jobs to keep every worker busy (unless paused or out of wall time);
4. write everything in **one transaction**: finished candidates, new in-flight candidates,
   metrics, events, accuracy-table rows, ``searcher.state_dict()``, run summary, heartbeat;
5. only then submit the new jobs, and wait briefly for results.

Because the checkpoint and the candidate rows are written together, a crash at any point
leaves a database from which :meth:`Coordinator.run` resumes exactly: finished candidates are
in the searcher's history (never re-evaluated), and the jobs that were in flight are the
checkpoint's ``pending`` jobs, which are issued again (once per resume).

One writer per run, fenced: the coordinator takes the run's lease when it starts (a new token,
its pid and the pid's start time) and every write it makes checks, inside the write
transaction, that the token is still the run's. A coordinator that was suspended (SIGSTOP, a
frozen VM) while another host took the run over finds its lease gone at its next write and
stops without writing anything (:class:`~workbench.store.LeaseLost`). A database whose write
lock stays taken past the busy timeout is waited for, with backoff, and logged as a
``db_busy`` event -- it never fails the run.

On resume the searcher gets its checkpoint *and* its history, rebuilt from the candidates
table in tell order (:meth:`~workbench.store.Store.restore_searcher`): the checkpoint holds
only what the history cannot rebuild, so writing it costs the same at candidate 100,000 as at
candidate 10.

Statuses written: ``running``, ``paused``, ``finished``, ``cancelled`` (command), ``failed``
(an error in the loop; the traceback is in the log and ``runs.error``) and ``interrupted``
(SIGTERM or Ctrl-C: a clean stop that ``nasw resume`` continues). A SIGKILLed coordinator
writes nothing; readers then compute ``interrupted`` from the dead pid or stale heartbeat.
While the loop runs, a :class:`~workbench.runner.process.Heartbeat` thread also beats every
``HEARTBEAT_S``, so one long searcher call (PNAS ranking a paper-scale level takes seconds)
never looks like a dead coordinator to a reader on another host.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from searchers.base import Job, Result
from searchers.constraints import feasible
from searchers.errors import NaswError
from workbench.config import make_searcher, parse_config
from workbench.runner.backend import Backend, Finished, make_backend
from workbench.runner.process import Heartbeat
from workbench.store import (
    HEARTBEAT_S,
    CandidateRow,
    LeaseLost,
    Progress,
    Store,
    this_host,
)

#: how long one loop iteration waits for results when jobs are in flight (seconds)
POLL_S = 0.25
#: how long a coordinator keeps retrying a write while another process holds the lock
RETRY_BUSY_S = 24 * 3600.0


class Coordinator:
    """Runs (or resumes) one run of the database until it finishes, is cancelled or stopped.

    ``evaluator`` overrides the config's evaluator (Python API and tests: any
    ``module:function``); ``on_progress`` is called with the run summary after each write
    (the attached CLI's progress bar).
    """

    def __init__(self, db_path: str | os.PathLike[str], run_id: int, *,
                 evaluator: str | None = None, backend: Backend | None = None,
                 on_progress: Callable[[dict[str, Any]], None] | None = None,
                 busy_timeout_ms: int | None = None) -> None:
        self.db_path = Path(db_path)
        self.busy_timeout_ms = busy_timeout_ms
        self.run_id = int(run_id)
        self.evaluator_override = evaluator
        self._backend = backend
        self.on_progress = on_progress
        self.stop_requested = False
        self.paused = False
        self.cancelled = False

    # -- signals ---------------------------------------------------------------------------
    def request_stop(self, *_: Any) -> None:
        """SIGTERM / Ctrl-C: finish the current write, stop workers, leave the run resumable."""
        self.stop_requested = True

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, signal.SIG_IGN)

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> str:
        """Run to the end; returns the final stored status."""
        store = self._open_store()
        try:
            final_training = (store.run(self.run_id)["searcher"] == "final")
            if not final_training:
                return self._run(store)
        finally:
            store.close()
        # A `final` run trains one architecture from scratch, epoch by epoch with checkpoints.
        from workbench.runner.final_train import FinalTrainer

        return FinalTrainer(self.db_path, self.run_id, on_progress=self.on_progress,
                            should_stop=lambda: self.stop_requested,
                            busy_timeout_ms=self.busy_timeout_ms).run()

    def _open_store(self) -> Store:
        return Store(self.db_path, busy_timeout_ms=self.busy_timeout_ms,
                     retry_busy_s=RETRY_BUSY_S)

    def _run(self, store: Store) -> str:
        store.check_restorable(self.run_id)  # old pickle or damaged rows: refused, unclaimed
        previous = store.claim_run(self.run_id, os.getpid(), this_host())
        self.lease_token = previous["lease_token"]
        self.stats = {"n_done": 0}
        try:
            config = parse_config(previous["config"])
            self.evaluator = self.evaluator_override or config.evaluator
            self.space, self.searcher = make_searcher(config)
            resumed = store.restore_searcher(self.run_id, self.searcher)
            self.constraints = self.searcher.constraints
            self.wall_budget = config.budget.wall_time_s
            self.elapsed = float(previous.get("elapsed") or 0.0)
            self.stats = store.candidate_stats(self.run_id)
            self.backend = self._backend or make_backend(config, self.evaluator)
        except BaseException as err:
            if not isinstance(err, LeaseLost):
                _mark_failed(store, self.run_id, err)
            raise
        try:
            with Heartbeat(self.db_path, self.run_id, self.lease_token,
                           busy_timeout_ms=self.busy_timeout_ms):  # beats while searching
                return self._loop(store, resumed)
        except LeaseLost as err:  # another coordinator owns the run now: write nothing
            print(f"coordinator of run {self.run_id}: {err}; stopping without writing",
                  file=sys.stderr, flush=True)
            return "lost"
        except BaseException as err:
            traceback.print_exc()
            _mark_failed(store, self.run_id, err, workers=[])
            raise
        finally:
            self.backend.close()

    def _loop(self, store: Store, resumed: bool) -> str:
        run = store.run(self.run_id)
        in_flight: dict[int, Job] = {}
        attempts = self.attempts = store.candidate_attempts(self.run_id)
        reissue = self.searcher.pending
        start = Progress(summary={
            "status": "running", "workers": [w.to_dict() for w in self.backend.workers()],
            "resumes": (run.get("resumes") or 0) + (1 if resumed else 0),
            "started": run.get("started") or time.time(), "finished": None, "error": None})
        start.events.append((self.searcher.n_told, "run", {
            "action": "resumed" if resumed else "started", "pid": os.getpid(),
            "reissued": [job.id for job in reissue], "evaluator": self.evaluator}))
        for job in reissue:
            attempts[job.id] = attempts.get(job.id, 0) + 1
            start.candidates.append(self._running_row(job, attempts[job.id]))
        store.record(self.run_id, start)
        for job in reissue:
            in_flight[job.id] = job
            self.backend.submit(dataclasses.replace(job, run_id=self.run_id))

        finished: list[Finished] = []
        last_write = time.time()
        last_tick = time.monotonic()
        status = "running"
        while True:
            now_tick = time.monotonic()
            if not self.paused:
                self.elapsed += now_tick - last_tick
            last_tick = now_tick
            progress = Progress()
            self._obey_commands(store, progress)
            for item in finished:
                if item.job.id in in_flight:
                    del in_flight[item.job.id]
                    self._tell(item, progress)
            finished = []
            out_of_time = self.wall_budget is not None and self.elapsed >= self.wall_budget
            stopping = self.stop_requested or self.cancelled
            asked: list[Job] = []
            if not (stopping or self.paused or out_of_time):
                free = self.backend.capacity - len(in_flight)
                if free > 0:
                    for job in self.searcher.ask(free):
                        asked.append(job)
                        attempts[job.id] = 1
                        progress.candidates.append(self._running_row(job, 1))
            done = self.searcher.done() and not in_flight and not asked
            if done or (out_of_time and not in_flight):
                status = "finished"
                if out_of_time and not self.searcher.done():
                    progress.events.append((self.searcher.n_told, "run",
                                            {"action": "wall_time", "elapsed": self.elapsed}))
            elif self.cancelled:
                status = "cancelled"
            elif self.stop_requested:
                status = "interrupted"
            elif not in_flight and not asked and not self.paused:
                raise RuntimeError(f"searcher {self.searcher.name!r} returned no job while none "
                                   "is in flight and it is not done")
            elif self.paused:
                status = "paused"
            else:
                status = "running"
            final = status in ("finished", "cancelled", "interrupted")
            if final:
                for job_id in list(in_flight):  # issued again by `nasw resume`
                    self.backend.cancel(job_id)
                    progress.candidates.append(dataclasses.replace(
                        self._running_row(in_flight.pop(job_id), attempts.get(job_id, 1)),
                        status="cancelled", error=f"run {status}", finished=time.time()))
            for notice in self.backend.pop_notices():
                progress.events.append((self.searcher.n_told, notice.kind, notice.data))
            for waited in store.busy_waits:  # the lock was held longer than the busy timeout
                progress.events.append((self.searcher.n_told, "db_busy",
                                        {"waited_s": round(waited, 3)}))
                print(f"database busy: waited {waited:.1f} s for the write lock",
                      file=sys.stderr, flush=True)
            store.busy_waits.clear()
            now = time.time()
            changed = bool(progress.candidates or progress.events or asked)
            if changed or final or now - last_write >= HEARTBEAT_S:
                if changed or final:
                    progress.state = self.searcher.state_dict()
                progress.summary = self._summary(status, final, in_flight, asked)
                store.record(self.run_id, progress)
                last_write = now
                if self.on_progress is not None:
                    self.on_progress(store.run(self.run_id))
            if final:
                return status
            for job in asked:
                in_flight[job.id] = job
                self.backend.submit(dataclasses.replace(job, run_id=self.run_id))
            finished = self.backend.results(POLL_S if in_flight else 0.2)

    # -- pieces ----------------------------------------------------------------------------
    def _obey_commands(self, store: Store, progress: Progress) -> None:
        for command in store.take_commands(self.run_id):
            if command == "pause":
                self.paused = True
            elif command == "resume":
                self.paused = False
            elif command == "cancel":
                self.cancelled = True
            progress.events.append((self.searcher.n_told, "command", {"command": command}))

    def _running_row(self, job: Job, attempt: int) -> CandidateRow:
        genotype = job.genotype
        try:
            key = self.space.hash(genotype)
            costs = self.space.costs(genotype, job.input_shape, job.num_classes)
        except (NaswError, ValueError, TypeError, KeyError):
            key, costs = None, {}
        return CandidateRow(id=job.id, genotype=genotype, status="running", hash=key,
                            costs=costs, tag=job.tag, started=time.time(), attempts=attempt,
                            meta=dict(job.meta or {}))

    def _validated(self, job: Job, result: Result) -> Result:
        """Results are data from another process: make them safe to rank and store."""
        changes: dict[str, Any] = {}
        costs = dict(result.costs or {})
        if not costs:
            try:
                costs = self.space.costs(job.genotype, job.input_shape, job.num_classes)
            except (NaswError, ValueError, TypeError, KeyError):
                costs = {}
            changes["costs"] = costs
        if result.status == "ok":
            accuracy = result.accuracy
            if accuracy is None or not math.isfinite(float(accuracy)):
                changes.update(status="diverged", accuracy=None,
                               error=result.error or f"accuracy {accuracy!r} is not a number")
            elif not 0.0 <= float(accuracy) <= 1.0:
                changes.update(status="failed", accuracy=None,
                               error=f"accuracy {accuracy!r} is outside [0, 1]")
        return dataclasses.replace(result, **changes) if changes else result

    def _tell(self, item: Finished, progress: Progress) -> None:
        job = item.job
        result = self._validated(job, item.result)
        self.searcher.tell(job, result)
        ok = result.ok
        reward = self.searcher.reward(result)
        is_feasible = bool(ok and feasible(result.costs, self.constraints))
        # a re-issued job's earlier attempts (before a crash) count, plus the backend's retries
        total_attempts = self.attempts.get(job.id, 1) + item.attempts - 1
        row = dataclasses.replace(
            self._running_row(job, total_attempts), status=result.status,
            costs=dict(result.costs), accuracy=result.accuracy if ok else None,
            val_loss=result.val_loss, reward=reward, feasible=is_feasible,
            wall_time=result.wall_time, device=result.device, error=result.error,
            epochs=result.epochs, loss_curve=list(result.loss_curve), finished=time.time(),
            told=self.searcher.n_told)
        progress.candidates.append(row)
        stats = self.stats
        stats["n_done"] += 1
        stats["n_ok"] += int(ok)
        stats["n_failed"] += int(not ok)
        stats["n_feasible"] += int(is_feasible)
        if ok:
            score = (is_feasible, result.accuracy if is_feasible else reward)
            if stats["best_key"] is None or score > stats["best_key"]:
                stats.update(best_key=score, best_accuracy=result.accuracy,
                             best_candidate=job.id, best_feasible=int(is_feasible))
        step = stats["n_done"]
        progress.metrics.append((step, "candidate/reward", reward))
        if ok:
            progress.metrics.append((step, "candidate/accuracy", float(result.accuracy)))
        if stats["best_accuracy"] is not None:
            progress.metrics.append((step, "best/accuracy", stats["best_accuracy"]))
        progress.metrics.append((step, "feasible/fraction", stats["n_feasible"] / step))
        for event in self.searcher.pop_events():
            progress.events.append((event.step, event.kind,
                                    {**event.data, **({"metrics": dict(event.metrics)}
                                                      if event.metrics else {})}))
            for name, value in event.metrics.items():
                progress.metrics.append((event.step, f"{event.kind}/{name}", value))
            if event.kind == "table_row":
                progress.table_rows.append(event.data)

    def _summary(self, status: str, final: bool, in_flight: dict[int, Job],
                 asked: list[Job]) -> dict[str, Any]:
        stats = self.stats
        summary: dict[str, Any] = {
            "status": status, "elapsed": self.elapsed,
            "n_asked": self.searcher.n_told + len(in_flight) + len(asked),
            **{k: stats[k] for k in ("n_done", "n_ok", "n_failed", "n_feasible",
                                     "best_accuracy", "best_candidate", "best_feasible")},
            "workers": [w.to_dict() for w in self.backend.workers()] if not final else [],
        }
        if final:
            summary["finished"] = time.time()
        return summary


def _error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"[-2000:]


def _mark_failed(store: Store, run_id: int, err: BaseException, **columns: Any) -> None:
    """Record a failure -- unless the lease is gone (then the run is not ours to write)."""
    with contextlib.suppress(LeaseLost):
        store.update_run(run_id, status="failed", error=_error_text(err),
                         finished=time.time(), **columns)


def main(argv: list[str] | None = None) -> int:
    """``python -m workbench.runner --db PATH --run ID`` (what ``--detach`` runs)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--run", type=int, required=True)
    parser.add_argument("--evaluator", default=None,
                        help="override the config's evaluator (module:function for tests)")
    args = parser.parse_args(argv)
    coordinator = Coordinator(args.db, args.run, evaluator=args.evaluator)
    coordinator.install_signal_handlers()
    print(f"coordinator pid {os.getpid()} for run {args.run} in {args.db}", flush=True)
    try:
        status = coordinator.run()
    except NaswError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    except LeaseLost as err:
        print(f"run {args.run}: {err}; stopped without writing", file=sys.stderr, flush=True)
        return 1
    if status == "lost":
        return 1
    print(f"run {args.run}: {status} after {coordinator.stats['n_done']} candidates", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
