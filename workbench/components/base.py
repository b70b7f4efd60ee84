"""What every tab of the run detail shares: the run, its change stamp, the selection, and
loading only while shown.

The screen polls one cheap :class:`~workbench.tui_data.RunStamp` and hands it, with the run's
row, to every mounted component (:meth:`RunComponent.update_run`). A component whose tab is
shown and whose stamp moved calls :meth:`RunComponent.load`, which starts its thread worker; a
hidden one only remembers that it is stale and loads when it is shown again. A component never
reads the run whole: each asks ``tui_data`` for just what it draws.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from textual.containers import Vertical
from textual.message import Message

from workbench.tui_data import RunStamp


class CandidateSelected(Message):
    """A candidate was picked in a tab; ``show`` asks for its architecture to be shown."""

    def __init__(self, candidate_id: int, show: bool = False) -> None:
        super().__init__()
        self.candidate_id = candidate_id
        self.show = show


class RunComponent(Vertical):
    """One tab's widget: ``run_id`` in the database ``db_path``."""

    DEFAULT_CSS = """
    RunComponent { height: 1fr; }
    """

    def __init__(self, db_path: str | Path, run_id: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.db_path = Path(db_path)
        self.run_id = run_id
        self.run: dict[str, Any] | None = None
        self.stamp: RunStamp | None = None
        self.loaded_stamp: RunStamp | None = None
        self.selected_id: int | None = None
        self.active = False
        self.loads = 0

    # -- routed by the screen --------------------------------------------------------------
    def update_run(self, run: dict[str, Any], stamp: RunStamp) -> None:
        """The screen's poll: the run's row and its change stamp."""
        first = self.run is None
        self.run = run
        self.stamp = stamp
        if first:
            self.run_known()
        self.run_updated()
        self.maybe_load()

    def activate(self) -> None:
        """The tab is shown: load if anything changed while it was hidden."""
        self.active = True
        self.maybe_load()

    def deactivate(self) -> None:
        self.active = False

    def select(self, candidate_id: int | None) -> None:
        """The candidate selected in any tab (the run's best until the user picks one)."""
        if candidate_id == self.selected_id:
            return
        self.selected_id = candidate_id
        self.selection_changed()

    # -- for subclasses --------------------------------------------------------------------
    def maybe_load(self) -> None:
        if self.active and self.run is not None and self.stamp != self.loaded_stamp:
            self.loaded_stamp = self.stamp
            self.loads += 1
            self.load()

    def load(self) -> None:
        """Start the thread worker that reads this tab's data (the stamp moved)."""

    def run_known(self) -> None:
        """The run's row arrived for the first time (constraints, searcher, space)."""

    def run_updated(self) -> None:
        """Every poll, with ``self.run`` updated (cheap: no reads)."""

    def selection_changed(self) -> None:
        """``self.selected_id`` changed."""

    def stale(self) -> None:
        """Read again when next shown (a selection made while the tab was hidden)."""
        self.loaded_stamp = None

    def clock(self) -> float:
        return float(getattr(self.app, "clock", time.time)())

    @property
    def is_final(self) -> bool:
        """A final-training run (``nasw train``): one candidate, epochs for progress."""
        return (self.run or {}).get("searcher") == "final"


__all__ = ["CandidateSelected", "RunComponent"]
