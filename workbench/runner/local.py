"""Local worker processes: one per GPU slot, or CPU workers sharing the cores.

Workers are started with ``spawn`` (never ``fork``: CUDA and threads do not survive a fork)
and talk to the coordinator over one private pipe each. Why a pipe per worker rather than a
shared queue: a worker SIGKILLed while writing to a shared queue can leave its lock held and
hang every other worker; a private pipe just reports EOF, which is how a death is noticed
(together with the process sentinel).

A worker that dies mid-job is replaced and its job sent again, at most
:data:`~workbench.runner.backend.MAX_RETRIES` times; then the job comes back ``failed``.
Workers exit on their own when the coordinator dies (EOF on the pipe, or a changed parent pid),
so a SIGKILLed coordinator leaves no orphans behind.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from typing import Any

from searchers.base import Job, Result
from workbench.runner.backend import MAX_RETRIES, Backend, Finished, Notice, WorkerInfo

#: a worker slot that dies this often without finishing a job fails the run (a broken setup)
MAX_DEATHS_IN_A_ROW = 5


@dataclass(frozen=True)
class Slot:
    """Where one worker runs: a GPU id (``None``: CPU) and its share of CPU threads."""

    gpu: str | None
    threads: int

    @property
    def device(self) -> str:
        return f"cuda:{self.gpu}" if self.gpu is not None else "cpu"


def plan_slots(gpus: list[str], workers: int | None, jobs_per_gpu: int = 1,
               cpus: int | None = None) -> list[Slot]:
    """One slot per GPU x ``jobs_per_gpu`` (capped by ``workers``), else CPU slots.

    CPU workers default to ``max(1, cpus // 2)`` and split the cores between them, so two
    workers on four cores get two torch threads each.
    """
    cpus = cpus or os.cpu_count() or 1
    if gpus:
        slots = [g for g in gpus for _ in range(jobs_per_gpu)]
        if workers:
            slots = slots[:workers]
        threads = max(1, cpus // len(slots))
        return [Slot(g, threads) for g in slots]
    count = workers or max(1, cpus // 2)
    return [Slot(None, max(1, cpus // count)) for _ in range(count)]


def _watch_parent(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:
            os._exit(0)
        time.sleep(1.0)


def worker_main(conn: Connection, evaluator: str, gpu: str | None, threads: int,
                parent_pid: int) -> None:
    """A worker process: receive a job, evaluate it, send the result, until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's to handle
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    from workbench.runner.backend import resolve_evaluator

    evaluate = resolve_evaluator(evaluator)
    if evaluator == "train":
        import torch

        torch.set_num_threads(threads)
    device = "cuda:0" if gpu is not None else "cpu"
    label = f"cuda:{gpu}" if gpu is not None else "cpu"
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        started = time.perf_counter()
        try:
            result = evaluate(job, device)
        except Exception as err:  # evaluators return failures, but never trust that
            result = Result(status="failed", error=f"{type(err).__name__}: {err}",
                            wall_time=time.perf_counter() - started)
        if not result.device:
            result = replace(result, device=f"{label} pid {os.getpid()}")
        try:
            conn.send(result)
        except (BrokenPipeError, OSError):
            return


@dataclass
class _Worker:
    index: int
    slot: Slot
    process: Any = None
    conn: Connection | None = None
    job: Job | None = None
    restarts: int = 0
    deaths_in_a_row: int = 0
    started: float = field(default_factory=time.time)


class LocalBackend(Backend):
    """Worker processes on this machine (see the module docstring)."""

    def __init__(self, evaluator: str, slots: list[Slot], max_retries: int = MAX_RETRIES) -> None:
        super().__init__()
        self.evaluator = evaluator
        self.max_retries = int(max_retries)
        self.capacity = len(slots)
        self._context = mp.get_context("spawn")
        self._queue: deque[Job] = deque()
        self._attempts: dict[int, int] = {}
        self._finished: list[Finished] = []
        self._workers = [_Worker(i, slot) for i, slot in enumerate(slots)]
        for worker in self._workers:
            self._start(worker)

    def _start(self, worker: _Worker) -> None:
        ours, theirs = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=worker_main, name=f"nasw-worker-{worker.index}", daemon=True,
            args=(theirs, self.evaluator, worker.slot.gpu, worker.slot.threads, os.getpid()))
        process.start()
        theirs.close()
        worker.process, worker.conn, worker.job = process, ours, None
        worker.started = time.time()

    def submit(self, job: Job) -> None:
        self._attempts.setdefault(job.id, 0)
        self._queue.append(job)
        self._dispatch()

    def _dispatch(self) -> None:
        for worker in self._workers:
            if not self._queue:
                return
            if worker.job is None and worker.process.is_alive():
                job = self._queue.popleft()
                self._attempts[job.id] += 1
                worker.job = job
                try:
                    worker.conn.send(job)
                except (BrokenPipeError, OSError):
                    self._on_death(worker)

    def _on_death(self, worker: _Worker) -> None:
        """Replace a dead worker; retry its job or give up on it after ``max_retries``."""
        job = worker.job
        code = worker.process.exitcode
        self._notices.append(Notice("worker_died", {
            "worker": worker.index, "pid": worker.process.pid, "exitcode": code,
            "job": None if job is None else job.id}))
        if worker.conn is not None:
            worker.conn.close()
        worker.restarts += 1
        worker.deaths_in_a_row += 1
        if worker.deaths_in_a_row > MAX_DEATHS_IN_A_ROW:
            raise RuntimeError(f"worker {worker.index} died {worker.deaths_in_a_row} times in a "
                               f"row without finishing a job (last exit code {code}); see the log")
        if job is not None:
            attempts = self._attempts[job.id]
            if attempts > self.max_retries:
                self._finished.append(Finished(job, Result(
                    status="failed", device=worker.slot.device,
                    error=f"worker died {attempts} times running this candidate "
                          f"(last exit code {code})"), attempts))
                self._attempts.pop(job.id, None)
            else:
                self._notices.append(Notice("job_retried", {"job": job.id,
                                                            "attempt": attempts + 1}))
                self._queue.appendleft(job)
        self._start(worker)

    def results(self, timeout: float) -> list[Finished]:
        self._dispatch()
        busy = [w for w in self._workers if w.job is not None]
        if not self._finished and busy:
            waitables: list[Any] = [w.conn for w in busy] + [w.process.sentinel for w in busy]
            wait(waitables, timeout)
        elif not self._finished:
            time.sleep(min(timeout, 0.05))
        for worker in busy:
            if worker.job is None:
                continue
            try:
                ready = worker.conn.poll()
                message = worker.conn.recv() if ready else None
            except (EOFError, OSError):
                ready, message = False, None
                worker.process.join(timeout=1.0)
            if ready and isinstance(message, Result):
                job, worker.job = worker.job, None
                worker.deaths_in_a_row = 0
                self._finished.append(Finished(job, message, self._attempts.pop(job.id, 1)))
            elif not worker.process.is_alive():
                self._on_death(worker)
        for worker in self._workers:
            if worker.job is None and not worker.process.is_alive():
                self._on_death(worker)  # died idle (e.g. at start-up): replace it
        self._dispatch()
        finished, self._finished = self._finished, []
        return finished

    def cancel(self, job_id: int) -> None:
        self._queue = deque(j for j in self._queue if j.id != job_id)
        self._attempts.pop(job_id, None)
        for worker in self._workers:
            if worker.job is not None and worker.job.id == job_id:
                worker.process.kill()
                worker.process.join(timeout=5.0)
                worker.job = None
                worker.conn.close()
                worker.restarts += 1
                self._start(worker)

    def close(self) -> None:
        for worker in self._workers:
            with contextlib.suppress(BrokenPipeError, OSError):
                worker.conn.send(None)
        deadline = time.time() + 5.0
        for worker in self._workers:
            if worker.job is not None:  # mid-job: do not wait for a long training run
                worker.process.kill()
            worker.process.join(timeout=max(0.1, deadline - time.time()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=1.0)
            worker.conn.close()
        self._queue.clear()

    def workers(self) -> list[WorkerInfo]:
        return [WorkerInfo(w.index, w.slot.device, w.process.pid,
                           None if w.job is None else w.job.id, w.restarts, w.slot.threads)
                for w in self._workers]


__all__ = ["LocalBackend", "Slot", "plan_slots", "worker_main"]
