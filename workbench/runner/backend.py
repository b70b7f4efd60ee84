"""The worker-backend interface, the in-process backend, and backend selection.

A backend evaluates jobs somewhere (in this process, in local worker processes, on a Ray
cluster) and hands back results; the coordinator never cares where. The contract:

* :meth:`Backend.submit` queues a job (never blocks);
* :meth:`Backend.results` waits up to ``timeout`` seconds and returns every job finished since
  the last call as :class:`Finished` (job, result, attempts) -- a worker that died mid-job is
  the backend's problem: it retries the job (at most ``max_retries`` times) and finally returns
  a ``failed`` result, so every submitted job comes back exactly once unless cancelled;
* :meth:`Backend.cancel` drops a queued or running job (it never comes back);
* :meth:`Backend.close` stops every worker; :meth:`Backend.workers` describes them (TUI);
* :attr:`Backend.capacity`: how many jobs it can run at once (the coordinator keeps that many
  in flight).

Evaluators are named (``train``, ``synthetic``: :func:`searchers.evaluators.evaluate`); the
Python API and tests may also pass ``"package.module:function"`` (a callable
``(job, device) -> Result``). Configs only accept the registered names.
"""

from __future__ import annotations

import abc
import importlib
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from searchers.base import Job, Result
from searchers.errors import NaswError

#: a killed worker's job is tried again at most this many times, then reported ``failed``
MAX_RETRIES = 2
#: jobs the in-process backend evaluates per coordinator iteration (one DB transaction each)
INLINE_BATCH = 32


class Finished(NamedTuple):
    job: Job
    result: Result
    attempts: int


@dataclass
class WorkerInfo:
    """One worker as shown by ``nasw show`` and the TUI's Overview."""

    index: int
    device: str
    pid: int | None = None
    job_id: int | None = None
    restarts: int = 0
    threads: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "device": self.device, "pid": self.pid,
                "job_id": self.job_id, "restarts": self.restarts, "threads": self.threads}


@dataclass
class Notice:
    """Something the backend wants recorded as an event (a worker died, a job was retried)."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


def resolve_evaluator(name: str) -> Callable[[Job, Any], Result]:
    """``train``/``synthetic`` via :func:`searchers.evaluators.evaluate`, or ``module:func``."""
    if ":" in name:
        module_name, _, attr = name.partition(":")
        return getattr(importlib.import_module(module_name), attr)
    from searchers.evaluators import check_evaluator, evaluate

    check_evaluator(name)

    def run(job: Job, device: Any = None) -> Result:
        return evaluate(job, name, device)

    return run


class Backend(abc.ABC):
    """Where jobs run. See the module docstring for the contract."""

    capacity: int = 1

    def __init__(self) -> None:
        self._notices: list[Notice] = []

    @abc.abstractmethod
    def submit(self, job: Job) -> None: ...

    @abc.abstractmethod
    def results(self, timeout: float) -> list[Finished]: ...

    @abc.abstractmethod
    def cancel(self, job_id: int) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def workers(self) -> list[WorkerInfo]: ...

    def pop_notices(self) -> list[Notice]:
        notices, self._notices = self._notices, []
        return notices

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InlineBackend(Backend):
    """Evaluates jobs in the coordinator process: no processes, no pickling.

    The fast path for the instant ``synthetic`` evaluator, where starting or messaging a worker
    would cost more than the evaluation itself. Jobs run when :meth:`results` is called, up to
    :attr:`capacity` per call, so the coordinator writes one transaction per batch.
    """

    def __init__(self, evaluator: str, capacity: int = INLINE_BATCH) -> None:
        super().__init__()
        self.evaluator = evaluator
        self._evaluate = resolve_evaluator(evaluator)
        self.capacity = int(capacity)
        self._queue: deque[Job] = deque()
        self._current: int | None = None

    def submit(self, job: Job) -> None:
        self._queue.append(job)

    def results(self, timeout: float) -> list[Finished]:
        if not self._queue:
            time.sleep(min(timeout, 0.05))
            return []
        finished = []
        for _ in range(min(self.capacity, len(self._queue))):
            job = self._queue.popleft()
            self._current = job.id
            started = time.perf_counter()
            try:
                result = self._evaluate(job, "cpu")
            except Exception as err:  # an evaluator must not take the coordinator down
                result = Result(status="failed", error=f"{type(err).__name__}: {err}",
                                wall_time=time.perf_counter() - started)
            finished.append(Finished(job, result, 1))
        self._current = None
        return finished

    def cancel(self, job_id: int) -> None:
        self._queue = deque(j for j in self._queue if j.id != job_id)

    def close(self) -> None:
        self._queue.clear()

    def workers(self) -> list[WorkerInfo]:
        return [WorkerInfo(0, "cpu (in coordinator)", os.getpid(), self._current)]


def cuda_devices() -> list[str]:
    """GPU ids this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else those NVML sees,
    else (no NVML library or driver access, as in some containers) those torch sees.

    Only called for runs that train, so importing torch here costs nothing extra; a GPU box
    whose NVML is unreadable still gets one worker per GPU, not CPU workers.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return [str(i) for i in range(pynvml.nvmlDeviceGetCount())]
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no library or no driver access: ask the CUDA runtime
        pass
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # a CPU machine
        return []


def make_backend(config: Any, evaluator: str | None = None) -> Backend:
    """The backend a run config asks for (``config``: a :class:`workbench.config.RunConfig`).

    ``workers: 0`` (the default for the synthetic evaluator) evaluates in-process; otherwise
    local worker processes (one per GPU, or CPU workers), or Ray when ``kind: ray``.
    """
    evaluator = evaluator or config.evaluator
    spec = config.backend
    if spec.kind == "ray":
        try:
            module = importlib.import_module("workbench.runner.ray_backend")
        except ImportError:
            raise NaswError("backend.kind", "ray", ["local"],
                            hint="the Ray backend is not installed in this version") from None
        return module.RayBackend(config, evaluator)
    workers = spec.workers
    if workers is None and evaluator == "synthetic":
        workers = 0
    if workers == 0:
        return InlineBackend(evaluator)
    from workbench.runner.local import LocalBackend, plan_slots

    gpus = cuda_devices() if evaluator != "synthetic" else []
    return LocalBackend(evaluator, plan_slots(gpus, workers, spec.jobs_per_gpu))


__all__ = [
    "INLINE_BATCH", "MAX_RETRIES", "Backend", "Finished", "InlineBackend", "Notice", "WorkerInfo",
    "cuda_devices", "make_backend", "resolve_evaluator",
]
