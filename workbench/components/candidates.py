"""The Candidates tab: every candidate of a run, sorted and filtered in SQL, paged in.

The table never holds the run: it shows a first page (:data:`PAGE` rows) and reads the next
page when the cursor comes within :data:`LOOKAHEAD` rows of the end, so 100,000 candidates
open as fast as 100. Sorting (``s``) and filtering (``/``: ``feasible``, ``acc>0.9``,
``params<3M``, a tag word) are ``ORDER BY`` / ``WHERE`` clauses
(:func:`workbench.tui_data.candidate_page`); a poll that saw new or updated candidates re-reads
the pages already shown. Moving the cursor selects the candidate everywhere, enter also shows
its architecture.

The first page of a newly shown tab is read on the UI thread (a ``LIMIT`` on the primary key:
about a millisecond at 100,000 candidates), so keys typed right after switching to the tab
act on rows that are there; every later read runs in a thread worker.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.message import Message
from textual.widgets import DataTable, Input, Static

from workbench import tui_data
from workbench.components.base import CandidateSelected, RunComponent
from workbench.text import plain_text
from workbench.tui_data import (
    FILTER_COMPARISON,
    SUFFIX_SCALE,
    fmt_accuracy,
    fmt_cost,
    status_text,
)

COLUMNS = ("ID", "Status", "Accuracy", "Reward", "Feasible", "Params", "MAdds", "Tag",
           "Device", "Time")
SORT_ORDER = ("ID", "Accuracy", "Reward", "Params", "MAdds", "Status", "Time")
#: rows read per page, and how close to the last loaded row the cursor gets before the next
PAGE = 200
LOOKAHEAD = 20


def candidate_matches(cand: dict[str, Any], query: str) -> bool:
    """The filter language on one decoded candidate, in Python: the reference that
    :func:`workbench.tui_data.filter_sql` must agree with (a test checks both on a run)."""
    for word in query.lower().split():
        match = FILTER_COMPARISON.match(word)
        if match:
            key = {"acc": "accuracy"}.get(match["key"], match["key"])
            value = cand.get(key) if key in ("accuracy", "reward", "id") else (
                cand.get("costs") or {}).get(key)
            if value is None:
                return False
            bound = float(match["num"]) * SUFFIX_SCALE[match["suffix"]]
            ok = {"<": value < bound, "<=": value <= bound, ">": value > bound,
                  ">=": value >= bound, "=": value == bound}[match["op"]]
            if not ok:
                return False
        elif word == "feasible":
            if not cand.get("feasible"):
                return False
        elif word == "infeasible":
            if cand.get("feasible") is not False:
                return False
        elif word not in " ".join(str(cand.get(k) or "") for k in
                                  ("status", "tag", "device", "id")).lower():
            return False
    return True


def candidate_cells(row: dict[str, Any]) -> list[Any]:
    """A table row; tag and device come from the database, so they are plain ``Text``
    (a ``str`` cell would be parsed as markup)."""
    feasible = row.get("feasible")
    return [
        str(row["id"]), status_text(plain_text(row.get("status"))),
        fmt_accuracy(row.get("accuracy")), fmt_accuracy(row.get("reward")),
        Text("yes", style="green") if feasible else
        Text("no", style="red") if feasible == 0 else Text("-", style="dim"),
        fmt_cost(row.get("params")), fmt_cost(row.get("madds")),
        Text(plain_text(row.get("tag") or "", max_len=24)),
        Text(plain_text(row.get("device") or "", max_len=16)),
        f"{row['wall_time']:.1f}s" if row.get("wall_time") else "-",
    ]


class PageLoaded(Message):
    def __init__(self, generation: int, offset: int, rows: list[dict[str, Any]], total: int,
                 replace: bool) -> None:
        super().__init__()
        self.generation = generation
        self.offset = offset
        self.rows = rows
        self.total = total
        self.replace = replace


class CandidatesTab(RunComponent):
    def __init__(self, db_path: Any, run_id: int, **kwargs: Any) -> None:
        super().__init__(db_path, run_id, **kwargs)
        self.sort_column = "ID"
        self.sort_reverse = False
        self.filter_text = ""
        self.total = 0
        self.generation = 0
        self.loading_more = False
        self.shown_generation = -1
        self._programmatic: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter: feasible, acc>0.9, params<3M, a tag…",
                    id="candidate-filter", classes="hidden")
        yield DataTable(id="candidate-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="candidate-status")

    def on_mount(self) -> None:
        table = self.table
        for column in COLUMNS:
            table.add_column(column, key=column)

    @property
    def table(self) -> DataTable[Any]:
        return self.query_one("#candidate-table", DataTable)

    def focus_target(self) -> Any:
        return self.table

    # -- reading -----------------------------------------------------------------------------
    def load(self) -> None:
        """The run changed (or the tab was first shown): re-read the rows shown."""
        limit = max(PAGE, self.table.row_count)
        if not self.table.row_count:
            self.show_page(PageLoaded(self.generation, 0, *self.read(0, limit), replace=True))
        else:
            self.fetch(self.generation, 0, limit, True)

    def read(self, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        rows = tui_data.candidate_page(self.db_path, self.run_id, sort=self.sort_column,
                                       reverse=self.sort_reverse, query=self.filter_text,
                                       offset=offset, limit=limit)
        if offset == 0 and len(rows) < limit:
            return rows, len(rows)
        return rows, tui_data.candidate_count(self.db_path, self.run_id, self.filter_text)

    @work(thread=True, exclusive=True, group="candidate-page")
    def fetch(self, generation: int, offset: int, limit: int, replace: bool) -> None:
        self.post_message(PageLoaded(generation, offset, *self.read(offset, limit), replace))

    def requery(self) -> None:
        """Sort or filter changed: start again from the first page."""
        self.generation += 1
        self.loading_more = False
        self.fetch(self.generation, 0, PAGE, True)

    def load_more(self) -> None:
        if not self.loading_more and self.table.row_count < self.total:
            self.loading_more = True
            self.fetch(self.generation, self.table.row_count, PAGE, False)

    def on_page_loaded(self, message: PageLoaded) -> None:
        message.stop()
        self.show_page(message)

    def show_page(self, page: PageLoaded) -> None:
        if page.generation != self.generation:
            return  # an answer to an older sort or filter
        table = self.table
        self.total = page.total
        self.shown_generation = page.generation
        keys = [str(row["id"]) for row in page.rows]
        if not page.replace:
            self.loading_more = False
            if page.offset == table.row_count:
                for key, row in zip(keys, page.rows, strict=True):
                    if key not in table.rows:
                        table.add_row(*candidate_cells(row), key=key)
        elif keys == [k.value for k in list(table.rows)[:len(keys)]] and (
                len(keys) >= table.row_count):
            for key, row in zip(keys, page.rows, strict=True):  # same rows: rewrite in place
                for column, value in zip(COLUMNS, candidate_cells(row), strict=True):
                    table.update_cell(key, column, value)
        else:
            self.rebuild(keys, page.rows)
        self.update_status()

    def rebuild(self, keys: list[str], rows: list[dict[str, Any]]) -> None:
        table = self.table
        first_fill = not table.row_count  # the table opens at its top row
        cursor_row = table.cursor_row
        table.clear()
        for key, row in zip(keys, rows, strict=True):
            table.add_row(*candidate_cells(row), key=key)
        if keys:
            self._programmatic.add(keys[0])  # adding the first row highlights it
        selected = str(self.selected_id) if self.selected_id is not None else None
        target = 0 if first_fill else keys.index(selected) if selected in keys else min(
            cursor_row, len(keys) - 1)
        if target > 0:
            self._programmatic.add(keys[target])
            table.move_cursor(row=target)

    def update_status(self) -> None:
        mark = "▼" if self.sort_reverse else "▲"
        shown = self.table.row_count
        more = f" (first {shown}, more as you scroll)" if shown < self.total else ""
        self.query_one("#candidate-status", Static).update(Text(
            f"{self.total} candidates{more} · sort {self.sort_column} {mark} (s) · "
            f"filter (/) {plain_text(self.filter_text, max_len=40) or '-'} · "
            "enter: select + architecture"))

    # -- selection ---------------------------------------------------------------------------
    @on(DataTable.RowHighlighted, "#candidate-table")
    def highlighted(self, event: DataTable.RowHighlighted) -> None:
        """The user moving the cursor selects (not the table placing it while rows load);
        near the end of the loaded rows, the next page is read."""
        event.stop()
        key = event.row_key.value
        if key is None:
            return
        if event.cursor_row >= self.table.row_count - LOOKAHEAD:
            self.load_more()
        if key in self._programmatic:
            self._programmatic.discard(key)
            return
        if event.data_table.has_focus:
            self.selected_id = int(key)
            self.post_message(CandidateSelected(int(key)))

    @on(DataTable.RowSelected, "#candidate-table")
    def chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.selected_id = int(event.row_key.value)
            self.post_message(CandidateSelected(int(event.row_key.value), show=True))

    def selection_changed(self) -> None:
        """Selected elsewhere (Pareto, the run's best): put the cursor on it if it is loaded."""
        key = str(self.selected_id)
        table = self.table
        if self.selected_id is not None and key in table.rows:
            row = table.get_row_index(key)
            if row != table.cursor_row:
                self._programmatic.add(key)
                table.move_cursor(row=row)

    # -- sort and filter ---------------------------------------------------------------------
    def cycle_sort(self) -> None:
        self.sort_column = SORT_ORDER[(SORT_ORDER.index(self.sort_column) + 1) % len(SORT_ORDER)]
        self.sort_reverse = self.sort_column in ("Accuracy", "Reward")
        self.requery()

    def open_filter(self) -> None:
        box = self.query_one("#candidate-filter", Input)
        box.remove_class("hidden")
        self.call_after_refresh(box.focus)

    @on(Input.Changed, "#candidate-filter")
    def filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.filter_text = event.value.strip()
        self.requery()

    @on(Input.Submitted, "#candidate-filter")
    def filter_done(self, event: Input.Submitted) -> None:
        event.stop()
        self.table.focus()


__all__ = ["COLUMNS", "PAGE", "CandidatesTab", "candidate_cells", "candidate_matches"]
