"""Evaluator registry: how a job becomes a result.

``train`` runs real proxy training (:func:`searchers.training.train`); ``synthetic`` is the
instant deterministic objective of :mod:`searchers.objectives`. Workers call :func:`evaluate`
and rely on it never raising for a bad candidate: every failure comes back as a ``Result``
(``failed`` with the error text, ``oom``, ``diverged``). Only an unknown evaluator name -- a
configuration error, not a candidate's fault -- raises :class:`UnknownName`.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from typing import Any

from searchers.base import Job, Result
from searchers.errors import UnknownName


def _train(job: Job, device: Any = None) -> Result:
    from searchers.training import train  # imports torch: only when training is asked for

    return train(job, device=device)


def _synthetic(job: Job, device: Any = None) -> Result:
    from searchers.objectives import synthetic_result

    return synthetic_result(job)


_EVALUATORS: dict[str, Callable[[Job, Any], Result]] = {
    "synthetic": _synthetic,
    "train": _train,
}


def evaluator_names() -> list[str]:
    return sorted(_EVALUATORS)


def check_evaluator(name: str) -> str:
    """Return ``name`` if it is a known evaluator, else raise UnknownName listing them."""
    if name not in _EVALUATORS:
        raise UnknownName("evaluator", name, evaluator_names())
    return name


def evaluate(job: Job, evaluator: str = "train", device: Any = None) -> Result:
    """Evaluate ``job`` with the named evaluator on ``device`` (None: CUDA if present, else CPU).

    Raises only for an unknown evaluator name; anything that goes wrong with the candidate
    itself is returned as a ``failed`` result carrying the traceback's tail.
    """
    check_evaluator(evaluator)
    started = time.perf_counter()
    try:
        if job.meta.get("supernet_layer") is not None:  # PONAS: one layer's 12-path supernet
            from searchers.ponas_supernet import evaluate_supernet

            return evaluate_supernet(job, evaluator, device)
        return _EVALUATORS[evaluator](job, device)
    except Exception as exc:
        tail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-3:])
        return Result(status="failed", error=f"{type(exc).__name__}: {exc}\n{tail}"[-4000:],
                      wall_time=time.perf_counter() - started,
                      device=str(device) if device is not None else "")


__all__ = ["check_evaluator", "evaluate", "evaluator_names"]
