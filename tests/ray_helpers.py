"""Evaluators for the Ray backend tests, importable by Ray workers (tests/ is on their path).

They leave marker files in ``$NASW_TEST_MARKER_DIR`` so the test (another process) can see
what ran on the workers, how often, and in which worker process.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from searchers.base import Job, Result
from searchers.objectives import synthetic_result

#: jobs whose worker :func:`die_once` kills on their first attempt
DIE_ON_JOBS = {2, 5}
#: the job whose worker :func:`unreliable` kills on every attempt
DIE_ALWAYS_ON_JOB = 3
#: the job for which :func:`unreliable` raises (a bug in an evaluator, not a lost worker)
RAISE_ON_JOB = 4
#: how long :func:`slow` sleeps: long enough to cancel it mid-job, short enough for the suite
SLOW_S = 4.0


def _marker_dir() -> Path:
    return Path(os.environ["NASW_TEST_MARKER_DIR"])


def _note(name: str) -> None:
    """Append this worker's pid to marker ``name``: one line per attempt."""
    with (_marker_dir() / name).open("a") as marker:
        marker.write(f"{os.getpid()}\n")


def die_once(job: Job, device: Any = None) -> Result:
    """Kill the worker process the first time jobs 2 and 5 run; answer like ``synthetic``."""
    marker = _marker_dir() / f"job-{job.id}"
    if job.id in DIE_ON_JOBS and not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(1)
    return synthetic_result(job)


def unreliable(job: Job, device: Any = None) -> Result:
    """Kill the worker on every attempt of :data:`DIE_ALWAYS_ON_JOB`, raise for
    :data:`RAISE_ON_JOB` (one marker line per attempt of each); others: ``synthetic``."""
    if job.id == DIE_ALWAYS_ON_JOB:
        _note(f"attempt-{job.id}")
        os._exit(1)
    if job.id == RAISE_ON_JOB:
        _note(f"attempt-{job.id}")
        raise RuntimeError("a bug in the evaluator")
    return synthetic_result(job)


def slow(job: Job, device: Any = None) -> Result:
    """Note the start, sleep :data:`SLOW_S`, note the end: a job to cancel mid-way."""
    _note(f"started-{job.id}")
    time.sleep(SLOW_S)
    _note(f"done-{job.id}")
    return synthetic_result(job)
