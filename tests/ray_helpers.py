"""Evaluators for the Ray backend tests, importable by Ray workers (tests/ is on their path)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from searchers.base import Job, Result
from searchers.objectives import synthetic_result

DIE_ON_JOBS = {2, 5}


def die_once(job: Job, device: Any = None) -> Result:
    """Kill the worker process the first time jobs 2 and 5 run; answer like ``synthetic``."""
    marker = Path(os.environ["NASW_TEST_MARKER_DIR"]) / f"job-{job.id}"
    if job.id in DIE_ON_JOBS and not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(1)
    return synthetic_result(job)
