"""Evaluators for the run-engine crash tests, importable by detached coordinators and spawned
workers (the tests put this folder on their ``PYTHONPATH``).

``slow_synthetic`` answers exactly like the ``synthetic`` evaluator, so a run started with it
and resumed with the config's ``synthetic`` evaluator sees one consistent objective, but it
takes ``NASW_TEST_DELAY`` seconds per job, leaving time to kill things mid-run. Each call is
logged to ``NASW_TEST_EVAL_LOG`` (one ``job_id pid`` line) when that is set.
"""

from __future__ import annotations

import os
import time
from typing import Any

from searchers.base import Job, Result
from searchers.objectives import synthetic_result


def slow_synthetic(job: Job, device: Any = None) -> Result:
    time.sleep(float(os.environ.get("NASW_TEST_DELAY", "0.05")))
    log = os.environ.get("NASW_TEST_EVAL_LOG")
    if log:
        with open(log, "a") as handle:
            handle.write(f"{job.id} {os.getpid()}\n")
    return synthetic_result(job)


def where_am_i(job: Job, device: Any = None) -> Result:
    """``synthetic``, with the device it was handed, the GPUs it can see and its pid as the
    result's ``device`` (worker placement tests; never touches CUDA)."""
    from dataclasses import replace

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return replace(synthetic_result(job), device=f"{device} visible={visible} pid={os.getpid()}")
