"""The Ray backend: jobs as Ray tasks with resource requests, for a machine or a cluster.

``backend: {kind: ray, address: auto | ray://host:port | host:port, gpus_per_job: 1,
cpus_per_job: 1}``. The coordinator stays the only writer of the database: tasks only evaluate
and return a :class:`~searchers.base.Result`; nothing on the cluster touches SQLite.

* **Connection.** With ``address`` unset, a private local Ray instance is started (all of this
  machine's cores); ``auto`` joins the cluster this machine belongs to (``ray start``);
  ``ray://host:port`` goes through Ray Client; ``host:port`` joins a head node's GCS. If Ray is
  already initialised in this process (tests, notebooks), that instance is used as it is.
* **Resources.** Each task asks for ``cpus_per_job`` CPUs and ``gpus_per_job`` GPUs; on a
  cluster without GPUs the GPU request is dropped (a task asking for a GPU there would wait
  forever). :attr:`capacity` is how many tasks the cluster can run at once.
* **Failures.** A worker process or node that dies mid-task is Ray's to retry: tasks are
  submitted with ``max_retries = MAX_RETRIES`` (system failures only), so the job is retried a
  bounded number of times and then comes back ``failed`` with Ray's error text, recorded with
  ``MAX_RETRIES + 1`` attempts and a ``worker_lost`` event. Exceptions of the evaluator itself
  are already results (``evaluate`` never raises for a bad candidate); any other Ray error
  (say, the evaluator's module missing on the workers) is not retried: ``failed``, 1 attempt.
  A job that succeeds on a retry is recorded with 1 attempt: Ray does not tell the driver
  which attempt answered.
* **Cancellation.** :meth:`cancel` and :meth:`close` cancel the Ray tasks (``force=True``).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from typing import Any

from searchers.base import Job, Result
from searchers.errors import NaswError
from workbench.runner.backend import MAX_RETRIES, Backend, Finished, Notice, WorkerInfo


def _evaluate_task(job: Job, evaluator: str, threads: int) -> tuple[Result, dict[str, Any]]:
    """Runs on a Ray worker: evaluate the job on the GPU Ray assigned (if any)."""
    import socket

    from workbench.runner.backend import resolve_evaluator

    device = None  # the evaluator picks Ray's GPU when one was assigned, else the CPU
    if evaluator == "train":  # only training needs torch; the synthetic evaluator stays light
        import torch

        torch.set_num_threads(max(1, threads))
        device = "cuda" if torch.cuda.is_available() else "cpu"
    result = resolve_evaluator(evaluator)(job, device)
    return result, {"host": socket.gethostname(), "pid": os.getpid()}


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise NaswError("backend.kind", "ray", ["local"],
                        hint="Ray is not installed: pip install 'nasw[ray]'") from None
    return ray


class RayBackend(Backend):
    """Evaluate jobs as Ray tasks (see the module docstring)."""

    def __init__(self, config: Any, evaluator: str) -> None:
        super().__init__()
        ray = self._ray = _import_ray()
        spec = config.backend
        self.evaluator = evaluator
        self._owns_ray = False
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                       "configure_logging": False}
            if spec.address:
                options["address"] = spec.address
            else:
                options["num_cpus"] = os.cpu_count() or 1
            try:
                ray.init(**options)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise NaswError("backend.address", spec.address,
                                "'auto', 'host:port', 'ray://host:port' or unset (local)",
                                hint=f"could not connect: {err}") from None
            self._owns_ray = True
        resources = ray.cluster_resources()
        cpus = float(resources.get("CPU", 1.0))
        gpus = float(resources.get("GPU", 0.0))
        self.cpus_per_job = float(spec.cpus_per_job)
        self.gpus_per_job = float(spec.gpus_per_job) if gpus > 0 else 0.0
        if self.cpus_per_job > cpus:
            raise NaswError("backend.cpus_per_job", spec.cpus_per_job,
                            f"at most the cluster's {cpus:g} CPUs")
        if self.gpus_per_job > gpus > 0:
            raise NaswError("backend.gpus_per_job", spec.gpus_per_job,
                            f"at most the cluster's {gpus:g} GPUs")
        by_cpu = math.floor(cpus / self.cpus_per_job)
        by_gpu = math.floor(gpus / self.gpus_per_job) if self.gpus_per_job else by_cpu
        self.capacity = max(1, min(by_cpu, by_gpu))
        self._task = ray.remote(_evaluate_task).options(
            num_cpus=self.cpus_per_job, num_gpus=self.gpus_per_job,
            max_retries=MAX_RETRIES, retry_exceptions=False)
        # what Ray retries (``max_retries``): the worker process or its node died mid-task
        self._system_failures = (ray.exceptions.WorkerCrashedError,
                                 ray.exceptions.NodeDiedError,
                                 ray.exceptions.OutOfMemoryError)
        self._in_flight: dict[Any, Job] = {}  # ObjectRef -> job
        self._started: dict[int, float] = {}
        self._hosts: dict[int, str] = {}

    def submit(self, job: Job) -> None:
        threads = max(1, int(self.cpus_per_job))
        ref = self._task.remote(job, self.evaluator, threads)
        self._in_flight[ref] = job
        self._started[job.id] = time.time()

    def results(self, timeout: float) -> list[Finished]:
        if not self._in_flight:
            time.sleep(min(timeout, 0.05))
            return []
        ray = self._ray
        refs = list(self._in_flight)
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:  # collect everything else that is already done, without waiting
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        finished = []
        for ref in ready:
            job = self._in_flight.pop(ref)
            started = self._started.pop(job.id, time.time())
            try:
                result, where = ray.get(ref)
                self._hosts[job.id] = where["host"]
            except ray.exceptions.TaskCancelledError:
                continue
            except ray.exceptions.RayError as err:
                result = Result(status="failed", wall_time=time.time() - started,
                                error=f"{type(err).__name__}: {err}"[-4000:], device="ray")
                lost = isinstance(err, self._system_failures)
                if lost:  # Ray already retried it MAX_RETRIES times: record every attempt
                    self._notices.append(Notice("worker_lost", {"job": job.id,
                                                                "error": type(err).__name__}))
                finished.append(Finished(job, result, MAX_RETRIES + 1 if lost else 1))
                continue
            finished.append(Finished(job, result, 1))
        return finished

    def cancel(self, job_id: int) -> None:
        for ref, job in list(self._in_flight.items()):
            if job.id == job_id:
                self._ray.cancel(ref, force=True)
                del self._in_flight[ref]
                self._started.pop(job_id, None)

    def close(self) -> None:
        for ref in list(self._in_flight):
            # already finished, or the cluster is gone: nothing left to cancel
            with contextlib.suppress(Exception):
                self._ray.cancel(ref, force=True)
        self._in_flight.clear()
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()

    def workers(self) -> list[WorkerInfo]:
        """One entry per job in flight (Ray places tasks; there are no fixed workers)."""
        device = f"ray ({self.gpus_per_job:g} GPU, {self.cpus_per_job:g} CPU per job)"
        return [WorkerInfo(index, device, job_id=job.id)
                for index, job in enumerate(self._in_flight.values())]
