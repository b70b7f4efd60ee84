"""Search algorithms, search spaces, cost model and proxy training.

Pure logic plus torch: nothing here imports ``workbench``, ``textual``, ``sqlite_utils`` or
``ray`` (``tests/test_import_hygiene.py`` proves it). Importing this package is cheap; torch is
imported only by the modules that build or train models.
"""

from searchers.base import Event, Job, Result, Searcher, TrainSpec, get_searcher, searcher_names
from searchers.constraints import Constraint, parse_constraints
from searchers.errors import GenotypeError, NaswError, UnknownName

__all__ = [
    "Constraint", "Event", "GenotypeError", "Job", "NaswError", "Result", "Searcher",
    "TrainSpec", "UnknownName", "get_searcher", "parse_constraints", "searcher_names",
]
