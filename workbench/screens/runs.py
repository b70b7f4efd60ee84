"""The runs list: status, searcher, space, progress, best accuracy, feasibility and age.

Polled by a thread worker; sorting and filtering happen on the rows already loaded, so they
are instant. Pause / resume / cancel write command rows (the coordinator obeys them), resume of
an interrupted run relaunches its coordinator, delete removes the run's rows. ``space`` marks
runs and ``C`` opens the compare view on the marked ones.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Header, Input, Static

from workbench import tui_data
from workbench.text import plain_text
from workbench.tui_data import fmt_accuracy, fmt_age, status_text
from workbench.widgets.footer import KeyFooter

#: narrow enough for 80 columns: searcher and space share a column, long names are cut
COLUMNS = ("ID", "Name", "Status", "Search", "Done", "Best acc", "Feas", "Age")
NAME_WIDTH = 16
SORT_KEYS = {
    "ID": lambda r: r["id"],
    "Name": lambda r: str(r.get("name") or ""),
    "Status": lambda r: str(r.get("status") or ""),
    "Search": lambda r: f"{r.get('searcher') or ''}/{r.get('space') or ''}",
    "Done": lambda r: r.get("n_done") or 0,
    "Best acc": lambda r: r.get("best_accuracy") if r.get("best_accuracy") is not None else -1,
    "Feas": lambda r: bool(r.get("best_feasible")),
    "Age": lambda r: -(r.get("created") or 0),
}


class RunsLoaded(Message):
    def __init__(self, rows: list[dict[str, Any]], error: str = "") -> None:
        super().__init__()
        self.rows = rows
        self.error = error


def run_matches(row: dict[str, Any], text: str) -> bool:
    """Every word of ``text`` appears in one of the run's visible fields."""
    haystack = " ".join(str(row.get(k) or "") for k in
                        ("id", "name", "status", "searcher", "space", "preset", "dataset")).lower()
    return all(word in haystack for word in text.lower().split())


class RunsScreen(Screen[None]):
    #: the table takes the focus as the screen mounts (the app's default, the first focusable
    #: widget, would be the filter box before its ``hidden`` class applies: one more focus
    #: change, and the footer's keys composed once more, on the first frame)
    AUTO_FOCUS = "#runs-table"
    BINDINGS = [
        Binding("enter", "open", "Open", show=True),
        Binding("n", "app.new_run", "New"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("s", "sort", "Sort", show=False),
        Binding("S", "sort_reverse", "Reverse", show=False),
        Binding("p", "pause", "Pause"),
        Binding("r", "resume", "Resume"),
        Binding("c", "cancel", "Cancel"),
        Binding("d", "delete", "Delete"),
        Binding("space", "toggle_mark", "Mark", show=False),
        Binding("C", "compare", "Compare"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self.sort_column = "ID"
        self.sort_reverse = True
        self.filter_text = ""
        self.poll_timer: Timer | None = None
        self.suspended = False
        self.marked: set[int] = set()

    def compose(self) -> ComposeResult:
        """The filter box is mounted when first asked for (``/``): the first frame has one
        widget less to style and lay out (an Input, ~5% of a bare Textual app's start)."""
        yield Header()
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="runs-message")
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for column in COLUMNS:
            table.add_column(column, key=column)
        # finished runs are read right here (one query, plain sqlite3), so the first frame
        # shows them; a run stored as live needs the store's liveness check (importing
        # sqlite-utils: ~0.25 s), so then the first read is a worker's
        try:
            rows = tui_data.settled_runs(self.app.db_path)
        except Exception:  # unreadable now: the worker's poll reports it and retries
            rows = None
        if rows is None:
            self.poll()
        else:
            self.on_runs_loaded(RunsLoaded(rows))
        self.poll_timer = self.set_interval(max(self.app.poll_interval, 0.5), self.poll)

    def on_screen_suspend(self) -> None:
        """Under a run's detail the list is not seen: stop polling until it shows again."""
        self.suspended = True
        if self.poll_timer is not None:
            self.poll_timer.pause()

    def on_screen_resume(self) -> None:
        """Shown again after being covered: poll at once. (The resume that follows the first
        mount is not a return: the first poll is already on its way, and a second one would
        redraw the table during the first paint.)"""
        if self.suspended and self.poll_timer is not None:
            self.suspended = False
            self.poll_timer.resume()
            self.poll()

    # -- data ----------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="runs-poll")
    def poll(self) -> None:
        try:
            rows = tui_data.runs(self.app.db_path)
        except Exception as err:  # a DB being created or migrated: show it, poll again
            self.post_message(RunsLoaded([], error=f"cannot read {self.app.db_path}: {err}"))
            return
        self.post_message(RunsLoaded(rows))

    def on_runs_loaded(self, message: RunsLoaded) -> None:
        self.rows = message.rows
        if self.marked - {r["id"] for r in self.rows}:  # a deleted run is unmarked
            self.marked &= {r["id"] for r in self.rows}
            self.refresh_bindings()
        self.redraw(message.error)

    def visible_rows(self) -> list[dict[str, Any]]:
        rows = [r for r in self.rows if run_matches(r, self.filter_text)]
        return sorted(rows, key=SORT_KEYS[self.sort_column], reverse=self.sort_reverse)

    def redraw(self, error: str = "") -> None:
        table = self.query_one(DataTable)
        selected = self.selected_run_id()
        now = self.app.clock()
        table.clear()
        for row in self.visible_rows():
            budget = row.get("budget")
            progress = f"{row.get('n_done') or 0}/{budget}" if budget else str(row.get("n_done") or 0)
            feasible = row.get("best_feasible")
            # names and kinds come from the database: plain Text, never markup
            name = Text(plain_text(row.get("name") or "", max_len=NAME_WIDTH))
            search = Text(plain_text(f"{row.get('searcher') or '?'}/{row.get('space') or '?'}",
                                     max_len=24))
            table.add_row(
                Text(f"●{row['id']}", style="bold yellow") if row["id"] in self.marked
                else str(row["id"]), name, status_text(plain_text(row.get("status"))),
                search, progress,
                fmt_accuracy(row.get("best_accuracy")),
                Text("yes", style="green") if feasible else
                Text("no", style="red") if feasible is not None else Text("-", style="dim"),
                fmt_age(row.get("created"), now), key=str(row["id"]))
        if selected is not None and str(selected) in table.rows:
            table.move_cursor(row=table.get_row_index(str(selected)))
        sort_mark = "▼" if self.sort_reverse else "▲"
        message = error or (
            f"{len(table.rows)} of {len(self.rows)} runs · sorted by {self.sort_column} "
            f"{sort_mark}" + (f" · filter '{self.filter_text}'" if self.filter_text else "")
            + (f" · marked {', '.join(map(str, sorted(self.marked)))} (C compares)"
               if self.marked else ""))
        if not self.rows and not error:
            message = (f"No runs in {self.app.db_path} yet. Press n to start one "
                       "(or `nasw run sample_configs/quickstart.yaml --detach`).")
        self.query_one("#runs-message", Static).update(Text(plain_text(message)))

    def selected_run_id(self) -> int | None:
        table = self.query_one(DataTable)
        if not table.rows:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:
            return None
        return int(key.value) if key.value is not None else None

    def selected_row(self) -> dict[str, Any] | None:
        run_id = self.selected_run_id()
        return next((r for r in self.rows if r["id"] == run_id), None)

    # -- actions -------------------------------------------------------------------------
    def action_open(self) -> None:
        run_id = self.selected_run_id()
        if run_id is not None:
            self.app.open_run(run_id)

    @on(DataTable.RowSelected, "#runs-table")
    def row_chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_toggle_mark(self) -> None:
        """Mark or unmark the run under the cursor for comparison; the cursor moves down."""
        run_id = self.selected_run_id()
        if run_id is None:
            return
        self.marked ^= {run_id}
        self.refresh_bindings()
        table = self.query_one(DataTable)
        row = table.cursor_row
        self.redraw()
        table.move_cursor(row=min(row + 1, table.row_count - 1))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """``C`` is offered (and shown in the footer) once two runs are marked."""
        if action == "compare":
            return len(self.marked) >= 2
        return True

    def action_compare(self) -> None:
        """The compare view on the marked runs (at least two)."""
        from workbench.screens.compare import CompareScreen

        if len(self.marked) < 2:
            self.notify("mark two runs or more with space, then press C", severity="warning")
            return
        self.app.push_screen(CompareScreen(sorted(self.marked)))

    def palette_commands(self) -> list[Any]:
        from textual.app import SystemCommand

        return [SystemCommand("Compare marked runs", "Best accuracy, feasibility, evaluations, "
                              "wall time and Pareto fronts of the runs marked with space",
                              self.action_compare),
                SystemCommand("Mark run", "Mark / unmark the selected run for comparison",
                              self.action_toggle_mark)]

    async def action_filter(self) -> None:
        boxes = self.query("#runs-filter").results(Input)
        box = next(boxes, None)
        if box is None:
            box = Input(placeholder="filter runs: words match name, status, searcher, space",
                        id="runs-filter")
            await self.mount(box, before=self.query_one(DataTable))
        box.remove_class("hidden")
        box.focus()

    @on(Input.Changed, "#runs-filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.redraw()

    @on(Input.Submitted, "#runs-filter")
    def filter_done(self) -> None:
        self.query_one(DataTable).focus()

    def action_clear_filter(self) -> None:
        for box in self.query("#runs-filter").results(Input):
            box.value = ""
            box.add_class("hidden")
        self.filter_text = ""
        self.query_one(DataTable).focus()
        self.redraw()

    def action_sort(self) -> None:
        self.sort_column = COLUMNS[(COLUMNS.index(self.sort_column) + 1) % len(COLUMNS)]
        self.redraw()

    def action_sort_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self.redraw()

    def action_pause(self) -> None:
        self._command("pause", ("running",))

    def action_resume(self) -> None:
        row = self.selected_row()
        if row is None:
            return
        if row.get("status") == "paused":
            self._command("resume", ("paused",))
        elif row.get("status") == "interrupted":
            self.relaunch(row["id"])
        else:
            self.notify(f"run {row['id']} is {row.get('status')}: only paused or interrupted "
                        "runs resume", severity="warning")

    @work(thread=True, group="runs-action")
    def relaunch(self, run_id: int) -> None:
        try:
            tui_data.resume_run(self.app.db_path, run_id)
        except Exception as err:
            self.app.call_from_thread(self.notify, f"resume failed: {err}", severity="error")
            return
        self.app.call_from_thread(self.notify, f"run {run_id} resumed in the background")
        self.poll()

    def action_cancel(self) -> None:
        row = self.selected_row()
        if row is None:
            return
        if row.get("status") not in ("running", "paused"):
            self.notify(f"run {row['id']} is {row.get('status')}: nothing to cancel",
                        severity="warning")
            return
        self._confirm(f"Cancel run {row['id']} ({row.get('name')})? Finished candidates are kept.",
                      lambda: self._send(row["id"], "cancel"))

    def action_delete(self) -> None:
        row = self.selected_row()
        if row is None:
            return
        if row.get("status") in ("running", "paused"):
            self.notify(f"run {row['id']} is {row.get('status')}: cancel it before deleting",
                        severity="warning")
            return
        self._confirm(f"Delete run {row['id']} ({row.get('name')}) and all its candidates?",
                      lambda: self._delete(row["id"]))

    def _confirm(self, question: str, then: Any) -> None:
        from workbench.screens.modals import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                then()

        self.app.push_screen(ConfirmScreen(question), answered)

    def _command(self, command: str, allowed: tuple[str, ...]) -> None:
        row = self.selected_row()
        if row is None:
            return
        if row.get("status") not in allowed:
            self.notify(f"run {row['id']} is {row.get('status')}: cannot {command}",
                        severity="warning")
            return
        self._send(row["id"], command)

    def _send(self, run_id: int, command: str) -> None:
        try:
            tui_data.send_command(self.app.db_path, run_id, command)
        except Exception as err:
            self.notify(f"{command} failed: {err}", severity="error")
            return
        self.notify(f"{command} sent to run {run_id}")
        self.poll()

    def _delete(self, run_id: int) -> None:
        try:
            tui_data.delete_run(self.app.db_path, run_id)
        except Exception as err:
            self.notify(f"delete failed: {err}", severity="error")
            return
        self.notify(f"run {run_id} deleted")
        self.poll()
