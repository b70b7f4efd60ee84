"""Search algorithms, search spaces, cost model and proxy training.

Pure logic plus torch: nothing here imports ``workbench``, ``textual``, ``sqlite_utils`` or
``ray`` (``tests/test_import_hygiene.py`` proves it). Importing this package is cheap: its
public names load on first use (PEP 562), so the TUI can import ``searchers.constraints`` to
format a number without loading the searcher base classes, and torch is imported only by the
modules that build or train models.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> the module that defines it
_EXPORTS = {
    "Event": "searchers.base", "Job": "searchers.base", "Result": "searchers.base",
    "Searcher": "searchers.base", "TrainSpec": "searchers.base",
    "get_searcher": "searchers.base", "searcher_names": "searchers.base",
    "Constraint": "searchers.constraints", "parse_constraints": "searchers.constraints",
    "GenotypeError": "searchers.errors", "NaswError": "searchers.errors",
    "UnknownName": "searchers.errors",
}

if TYPE_CHECKING:
    from searchers.base import Event, Job, Result, Searcher, TrainSpec, get_searcher, searcher_names
    from searchers.constraints import Constraint, parse_constraints
    from searchers.errors import GenotypeError, NaswError, UnknownName


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'searchers' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "Constraint", "Event", "GenotypeError", "Job", "NaswError", "Result", "Searcher",
    "TrainSpec", "UnknownName", "get_searcher", "parse_constraints", "searcher_names",
]
