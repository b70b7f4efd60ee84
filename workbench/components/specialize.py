"""The Specialize tab: constraints in, the best architecture the PONAS table allows out.

A thin wrapper: the pane itself (:class:`workbench.screens.specialize_pane.SpecializePane`,
shared with the deployment work) solves, saves, exports and trains; this component hands it
the run and, in a thread worker, the accuracy table whenever its stamp moves.
"""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.message import Message

from workbench import tui_data
from workbench.components.base import RunComponent
from workbench.screens.specialize_pane import SpecializePane


class SpecializeTableLoaded(Message):
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        super().__init__()
        self.rows = rows


class SpecializeTab(RunComponent):
    def __init__(self, db_path: Any, run_id: int, **kwargs: Any) -> None:
        super().__init__(db_path, run_id, **kwargs)
        self.table_stamp: tuple[int, float] | None = None

    def compose(self) -> ComposeResult:
        yield SpecializePane(self.run_id, id="specialize-pane")

    @property
    def pane(self) -> SpecializePane:
        return self.query_one("#specialize-pane", SpecializePane)

    def focus_target(self) -> Any:
        return self.query_one("#constraint-input")

    def run_known(self) -> None:
        self.pane.set_run(self.run or {})

    def load(self) -> None:
        stamp = self.stamp.table if self.stamp else None
        if stamp != self.table_stamp:
            self.table_stamp = stamp
            self.fetch()

    @work(thread=True, exclusive=True, group="specialize-table")
    def fetch(self) -> None:
        self.post_message(SpecializeTableLoaded(tui_data.accuracy_table(self.db_path,
                                                                        self.run_id)))

    def on_specialize_table_loaded(self, message: SpecializeTableLoaded) -> None:
        message.stop()
        if message.rows:
            self.pane.set_table(message.rows)


__all__ = ["SpecializeTab"]
