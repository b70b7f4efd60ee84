"""The Accuracy table tab: the PONAS accuracy-loss table as a heatmap that fills in live.

Columns are the blocks by name (``k3e3`` … ``k7e6se``: the space's ``option_label``), rows
the layers, the right column each layer's importance. The table is at most layers x choices
rows; it is re-read, in a thread worker, only when its row count or newest write changes.
"""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.containers import ScrollableContainer
from textual.message import Message
from textual.widgets import Static

from workbench import tui_data
from workbench.components.base import RunComponent
from workbench.widgets.heatmap import AccuracyHeatmap


def block_labels(space: str | None, preset: str | None) -> list[str] | None:
    """The space's names of its choices (``k3e3``, ``k7e6se``, ...), or None when the space
    has no per-choice names (or is unknown)."""
    try:
        from searchers.spaces import get_space

        built = get_space(str(space), preset)
        return [built.option_label(i) for i in range(built.num_options)]
    except Exception:
        return None


class TableLoaded(Message):
    def __init__(self, rows: list[dict[str, Any]], labels: list[str] | None,
                 shape: tuple[int | None, int | None], validation: str = "") -> None:
        super().__init__()
        self.rows = rows
        self.labels = labels
        self.shape = shape
        self.validation = validation


class AccuracyTableTab(RunComponent):
    def __init__(self, db_path: Any, run_id: int, **kwargs: Any) -> None:
        super().__init__(db_path, run_id, **kwargs)
        self.labels: list[str] | None = None
        self.table_stamp: tuple[int, float] | None = None

    def compose(self) -> ComposeResult:
        with ScrollableContainer(id="heatmap-scroll"):
            yield AccuracyHeatmap(id="heatmap")
        # `nasw ponas validate` result (Kendall tau); shown only once a validation is stored
        validation = Static("", id="table-validation", markup=False)
        validation.display = False
        yield validation

    def focus_target(self) -> Any:
        return self.query_one("#heatmap-scroll")

    @property
    def heatmap(self) -> AccuracyHeatmap:
        return self.query_one("#heatmap", AccuracyHeatmap)

    def load(self) -> None:
        stamp = self.stamp.table if self.stamp else None
        if stamp != self.table_stamp or self.labels is None:
            self.table_stamp = stamp
            run = self.run or {}
            self.fetch(run.get("space"), run.get("preset"), self.labels is None)

    @work(thread=True, exclusive=True, group="accuracy-table")
    def fetch(self, space: str | None, preset: str | None, with_labels: bool) -> None:
        rows = tui_data.accuracy_table(self.db_path, self.run_id)
        labels = block_labels(space, preset) if with_labels else self.labels
        shape: tuple[int | None, int | None] = (None, None)
        if labels is not None:
            from searchers.spaces import get_space

            built = get_space(str(space), preset)
            shape = (getattr(built, "num_positions", None), len(labels))
        from workbench.ponas_validate import latest_validation, summary
        from workbench.text import plain_text

        validation = plain_text(summary(latest_validation(self.db_path, self.run_id)))
        self.post_message(TableLoaded(rows, labels, shape, validation))

    def on_table_loaded(self, message: TableLoaded) -> None:
        message.stop()
        heatmap = self.heatmap
        if message.labels != self.labels:
            self.labels = message.labels or []
            heatmap.labels = message.labels
        if message.rows:
            heatmap.shape = message.shape
        heatmap.add_rows(message.rows)
        line = self.query_one("#table-validation", Static)
        line.update(message.validation)
        line.display = bool(message.validation)


__all__ = ["AccuracyTableTab", "block_labels"]
