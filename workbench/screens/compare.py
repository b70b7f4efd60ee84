"""Several runs side by side: what ``nasw compare`` prints, and their Pareto fronts overlaid.

Opened from the runs list (``space`` marks runs, ``C`` compares them) or the command palette.
The numbers are :func:`workbench.analysis.compare_runs` (the library behind ``nasw compare``),
read once in a thread worker: best accuracy, best feasible accuracy, whether a feasible
candidate was found, evaluations to reach the best and to the first feasible candidate, and
wall time. ``m`` switches the fronts between params and MAdds; ``r`` reads the runs again.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from workbench import tui_data
from workbench.text import plain_text
from workbench.tui_data import fmt_accuracy, fmt_duration
from workbench.widgets.footer import KeyFooter
from workbench.widgets.plots import ParetoFrontsPlot

#: narrow enough for 80 columns; ``→best`` / ``→feas``: evaluations to reach the best (feasible)
#: accuracy and the first feasible candidate
COLUMNS = ("Run", "Search", "Best", "Best feas", "Feas", "→best", "→feas", "Evals", "Wall")
NAME_WIDTH = 12


class CompareLoaded(Message):
    def __init__(self, summaries: dict[str, list[dict[str, Any]]], error: str = "") -> None:
        super().__init__()
        self.summaries = summaries
        self.error = error


def run_label(summary: dict[str, Any]) -> str:
    """``7 my-run`` (the name from the database, control characters removed, cut)."""
    return f"{summary['id']} {plain_text(summary.get('name') or '', max_len=NAME_WIDTH)}"


class CompareScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Runs"),
        Binding("m", "toggle_metric", "Params/MAdds"),
        Binding("r", "reload", "Reload"),
    ]

    def __init__(self, run_ids: list[int]) -> None:
        super().__init__()
        self.run_ids = list(run_ids)
        self.metric = "params"
        self.summaries: dict[str, list[dict[str, Any]]] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="compare-table", cursor_type="row", zebra_stripes=True)
        yield Static(f"Comparing runs {', '.join(map(str, self.run_ids))}: loading…",
                     id="compare-status")
        yield ParetoFrontsPlot(id="compare-plot")
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for column in COLUMNS:
            table.add_column(column, key=column)
        table.focus()
        self.load()

    @work(thread=True, exclusive=True, group="compare")
    def load(self) -> None:
        try:
            summaries = tui_data.compare(self.app.db_path, self.run_ids)
        except Exception as err:  # a run deleted meanwhile, a database being replaced
            self.post_message(CompareLoaded({}, error=f"cannot compare: {err}"))
            return
        self.post_message(CompareLoaded(summaries))

    def on_compare_loaded(self, message: CompareLoaded) -> None:
        status = self.query_one("#compare-status", Static)
        if message.error:
            status.update(Text(plain_text(message.error), style="red"))
            return
        self.summaries = message.summaries
        table = self.query_one(DataTable)
        table.clear()
        for row in self.summaries.get("params", []):
            table.add_row(*self.cells(row), key=str(row["id"]))
        self.show_fronts()

    @staticmethod
    def cells(row: dict[str, Any]) -> list[Any]:
        found = row.get("feasible_found")
        return [
            Text(run_label(row)), Text(plain_text(row.get("searcher") or "")),
            fmt_accuracy(row.get("best_accuracy")),
            fmt_accuracy(row.get("best_feasible_accuracy")),
            Text("yes", style="green") if found else Text("no", style="red"),
            str(row.get("evaluations_to_best") or "-"),
            str(row.get("evaluations_to_first_feasible") or "-"),
            str(row.get("evaluations") or 0), fmt_duration(row.get("wall_time_s")),
        ]

    def show_fronts(self) -> None:
        rows = self.summaries.get(self.metric, [])
        fronts = {run_label(row): [(float(p[self.metric]), float(p["accuracy"]))
                                   for p in row.get("pareto_front") or []] for row in rows}
        self.query_one("#compare-plot", ParetoFrontsPlot).set_fronts(self.metric, fronts)
        sizes = ", ".join(f"{row['id']}: {len(row.get('pareto_front') or [])}" for row in rows)
        self.query_one("#compare-status", Static).update(
            f"{len(rows)} runs · Pareto front sizes on {self.metric} {sizes} · m params/MAdds")

    def action_toggle_metric(self) -> None:
        self.metric = "madds" if self.metric == "params" else "params"
        if self.summaries:
            self.show_fronts()

    def action_reload(self) -> None:
        self.load()
