"""The run detail's tabs, one component per module (as harlequin's ``components/``).

Each component is a widget that reads its own data from the store in thread workers and posts
the result back to itself as a message, so the screen only composes them and routes the run,
its change stamps and the selected candidate (:class:`base.RunComponent`). A component loads
nothing until its tab is first shown, so opening a big run costs one tab's reads, and each can
be mounted alone in a tiny App with a fixture database (``tests/test_tui_components.py``).
"""

from __future__ import annotations

#: tab id -> (module, class); imported when the tab is first shown
COMPONENTS = {
    "overview": ("workbench.components.overview", "OverviewTab"),
    "candidates": ("workbench.components.candidates", "CandidatesTab"),
    "curves": ("workbench.components.curves", "CurvesTab"),
    "architecture": ("workbench.components.architecture", "ArchitectureTab"),
    "pareto": ("workbench.components.pareto", "ParetoTab"),
    "table": ("workbench.components.accuracy_table", "AccuracyTableTab"),
    "specialize": ("workbench.components.specialize", "SpecializeTab"),
}

__all__ = ["COMPONENTS"]
