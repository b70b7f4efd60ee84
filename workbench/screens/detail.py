"""One run, live: Overview, Candidates, Curves, Architecture, Pareto, Accuracy table, Specialize.

A thread worker polls the store through :class:`workbench.tui_data.RunFeed` (rows newer than
the last poll only) and posts a :class:`RunUpdated` message; the handler hands each tab just
the new rows. Selecting a candidate in the table selects it everywhere: the Architecture tab
draws it, the Pareto plot marks it, the Overview names it; ``e`` exports it and ``t`` trains it
from scratch as a new run (Candidates and Architecture tabs, and the command palette).

A final-training run (searcher ``final``, made by ``nasw train`` or ``t``) shows its epochs:
loss and validation accuracy per epoch in Curves, epoch progress in the Overview. While the
Overview is shown, a thread worker polls NVML every few seconds for the GPUs' memory and
utilisation (nothing is shown on a machine without GPUs).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import Counter, deque
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import (
    DataTable,
    Footer,
    Header,
    Input,
    Static,
    TabbedContent,
    TabPane,
)

from searchers.constraints import format_number
from workbench import tui_data
from workbench.screens.specialize_pane import SpecializePane
from workbench.tui_data import (
    RunDelta,
    RunFeed,
    constraints_of,
    eta_seconds,
    fmt_accuracy,
    fmt_age,
    fmt_cost,
    fmt_duration,
    status_text,
)
from workbench.widgets.arch_graph import ArchitectureView
from workbench.widgets.heatmap import AccuracyHeatmap
from workbench.widgets.plots import CurvesPlot, MetricsPlot, ParetoPlot, TrainingPlot

TABS = ("overview", "candidates", "curves", "architecture", "pareto", "table", "specialize")
TAB_TITLES = ("Overview", "Candidates", "Curves", "Architecture", "Pareto", "Accuracy table",
              "Specialize")
CANDIDATE_COLUMNS = ("ID", "Status", "Accuracy", "Reward", "Feasible", "Params", "MAdds", "Tag",
                     "Device", "Time")
SORTABLE = {
    "ID": lambda c: c["id"],
    "Accuracy": lambda c: c.get("accuracy") if c.get("accuracy") is not None else -1.0,
    "Reward": lambda c: c.get("reward") if c.get("reward") is not None else -1.0,
    "Params": lambda c: (c.get("costs") or {}).get("params", math.inf),
    "MAdds": lambda c: (c.get("costs") or {}).get("madds", math.inf),
    "Status": lambda c: str(c.get("status")),
    "Time": lambda c: c.get("wall_time") or 0.0,
}
SORT_ORDER = ("ID", "Accuracy", "Reward", "Params", "MAdds", "Status", "Time")
_COMPARISON = re.compile(r"^(?P<key>[a-z_]+)(?P<op><=|>=|<|>|=)(?P<num>[-+]?[\d.]+(e[-+]?\d+)?)"
                         r"(?P<suffix>[kKmMgG]?)$")
_SCALE = {"": 1.0, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "g": 1e9, "G": 1e9}
RECENT_EVENTS = 8
GPU_POLL_S = 3.0
#: actions on the selected candidate, offered on the tabs that show candidates
CANDIDATE_ACTIONS = ("export", "train")
CANDIDATE_TABS = ("candidates", "architecture")


class RunUpdated(Message):
    def __init__(self, delta: RunDelta, elapsed_ms: float) -> None:
        super().__init__()
        self.delta = delta
        self.elapsed_ms = elapsed_ms


class GpusUpdated(Message):
    def __init__(self, gpus: list[dict[str, Any]]) -> None:
        super().__init__()
        self.gpus = gpus


class GraphReady(Message):
    def __init__(self, candidate_id: int, graph: Any, title: str, error: str = "") -> None:
        super().__init__()
        self.candidate_id = candidate_id
        self.graph = graph
        self.title = title
        self.error = error


def candidate_matches(cand: dict[str, Any], query: str) -> bool:
    """Filter words: ``feasible``/``infeasible``, a status, a tag or device word, or a
    comparison such as ``acc>0.9``, ``reward>=0.5``, ``params<3M``, ``madds<=300M``."""
    for word in query.lower().split():
        match = _COMPARISON.match(word)
        if match:
            key = {"acc": "accuracy"}.get(match["key"], match["key"])
            value = cand.get(key) if key in ("accuracy", "reward", "id") else (
                cand.get("costs") or {}).get(key)
            if value is None:
                return False
            bound = float(match["num"]) * _SCALE[match["suffix"]]
            op = match["op"]
            ok = {"<": value < bound, "<=": value <= bound, ">": value > bound,
                  ">=": value >= bound, "=": value == bound}[op]
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


class RunDetailScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Runs"),
        Binding("1", "show_tab('overview')", "Overview", show=False),
        Binding("2", "show_tab('candidates')", "Candidates", show=False),
        Binding("3", "show_tab('curves')", "Curves", show=False),
        Binding("4", "show_tab('architecture')", "Arch", show=False),
        Binding("5", "show_tab('pareto')", "Pareto", show=False),
        Binding("6", "show_tab('table')", "Table", show=False),
        Binding("7", "show_tab('specialize')", "Specialize", show=False),
        Binding("p", "command('pause')", "Pause"),
        Binding("r", "command('resume')", "Resume"),
        Binding("c", "cancel", "Cancel"),
        Binding("e", "export", "Export"),
        Binding("t", "train", "Train"),
        Binding("s", "sort", "Sort", show=False),
        Binding("slash", "filter", "Filter", key_display="/", show=False),
        Binding("x", "toggle_axis", "Step/time", show=False),
        Binding("v", "cycle_metric", "Metric", show=False),
        Binding("m", "toggle_pareto_metric", "Params/MAdds", show=False),
    ]

    selected_id: reactive[int | None] = reactive(None)

    def __init__(self, run_id: int, tab: str | None = None) -> None:
        super().__init__()
        self.run_id = run_id
        self.initial_tab = tab or "overview"
        self.feed: RunFeed | None = None
        self.poll_lock = threading.Lock()
        self.run: dict[str, Any] | None = None
        self.candidates: dict[int, dict[str, Any]] = {}
        self.finished_times: deque[float] = deque(maxlen=200)
        self.devices: Counter[str] = Counter()
        self.in_flight: set[int] = set()
        self.events: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self.sort_column = "ID"
        self.sort_reverse = False
        self.filter_text = ""
        self.gone = False
        self.last_refresh_ms = 0.0
        self.apply_ms = 0.0
        self.graph_for: int | None = None
        self.is_final = False
        self.train_latest: dict[str, float] = {}
        self.gpus: list[dict[str, Any]] = []
        self.gpu_polls = 0
        self.gpu_in_flight = False

    # -- layout --------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"Run {self.run_id}: loading…", id="run-summary")
        with TabbedContent(initial=self.initial_tab, id="run-tabs"):
            with TabPane("1 Overview", id="overview"):
                yield VerticalScroll(Static("", id="overview-body"), id="overview-scroll")
            with TabPane("2 Candidates", id="candidates"), Vertical():
                yield Input(placeholder="filter: feasible, acc>0.9, params<3M, a tag…",
                            id="candidate-filter", classes="hidden")
                yield DataTable(id="candidate-table", cursor_type="row", zebra_stripes=True)
                yield Static("", id="candidate-status")
            with TabPane("3 Curves", id="curves"), Vertical():
                yield CurvesPlot(id="curves-plot")
                yield TrainingPlot(id="training-plot", classes="hidden")
                yield MetricsPlot(id="metrics-plot")
            with TabPane("4 Arch", id="architecture"):
                yield VerticalScroll(ArchitectureView(id="arch-view"), id="arch-scroll")
            with TabPane("5 Pareto", id="pareto"):
                yield ParetoPlot(id="pareto-plot")
            with TabPane("6 Table", id="table"):
                yield VerticalScroll(AccuracyHeatmap(id="heatmap"), id="heatmap-scroll")
            with TabPane("7 Specialize", id="specialize"):
                yield SpecializePane(self.run_id, id="specialize-pane")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#candidate-table", DataTable)
        for column in CANDIDATE_COLUMNS:
            table.add_column(column, key=column)
        self.query_one("#arch-view", ArchitectureView).show_message(
            "Select a candidate (Candidates tab, enter) to draw its architecture; "
            "the best one is shown once results arrive.")
        self.feed = RunFeed(self.app.db_path, self.run_id)
        self.poll()
        self.poll_timer = self.set_interval(self.app.poll_interval, self.poll)
        self.gpu_timer = self.set_interval(GPU_POLL_S, self.maybe_poll_gpus)
        self.call_after_refresh(self.maybe_poll_gpus)
        self.focus_tab_content(self.initial_tab)

    # -- polling -------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="run-poll")
    def poll(self) -> None:
        """One poll at a time: an ``exclusive`` worker cancelled while its thread still runs
        (a slow first poll outlived by the next tick) would otherwise share the feed's cursors
        with the next one, and the run could arrive before its candidates (the selection then
        named a candidate not loaded yet, and its graph was never drawn)."""
        if self.feed is None or self.gone or not self.poll_lock.acquire(blocking=False):
            return
        try:
            started = time.perf_counter()
            try:
                delta = self.feed.poll()
            except Exception as err:  # the DB being migrated or replaced: say so, keep polling
                self.app.call_from_thread(self.show_error, f"cannot read the run: {err}")
                return
            self.post_message(RunUpdated(delta, 1000 * (time.perf_counter() - started)))
        finally:
            self.poll_lock.release()

    def show_error(self, message: str) -> None:
        self.query_one("#run-summary", Static).update(Text(message, style="red"))

    def on_run_updated(self, message: RunUpdated) -> None:
        started = time.perf_counter()
        self.apply(message.delta)
        self.apply_ms = 1000 * (time.perf_counter() - started)
        self.last_refresh_ms = message.elapsed_ms + self.apply_ms

    def apply(self, delta: RunDelta) -> None:
        """Hand every tab the rows that are new since the previous poll."""
        if delta.run is None:
            self.gone = True
            self.query_one("#run-summary", Static).update(Text(
                f"Run {self.run_id} no longer exists in {self.app.db_path} (deleted?). "
                "Press escape to go back to the runs.", style="bold red"))
            return
        first_time = self.run is None
        self.run = delta.run
        if first_time:
            self.query_one("#pareto-plot", ParetoPlot).set_constraints(constraints_of(self.run))
            self.query_one("#specialize-pane", SpecializePane).set_run(self.run)
            if self.run.get("searcher") == "final":
                self.show_final_training()
        new_finished = []
        for cand in delta.candidates:
            previous = self.candidates.get(cand["id"])
            self.candidates[cand["id"]] = cand
            if cand["status"] == "running":
                self.in_flight.add(cand["id"])
                continue
            self.in_flight.discard(cand["id"])
            if previous is None or previous["status"] == "running":
                new_finished.append(cand)
                if cand.get("finished"):
                    self.finished_times.append(cand["finished"])
                if cand.get("device"):
                    self.devices[cand["device"]] += 1
        self.update_candidate_table(delta.candidates)
        if new_finished:
            started = self.run.get("started") or self.run.get("created")
            self.query_one("#curves-plot", CurvesPlot).add_candidates(new_finished, started)
            self.query_one("#pareto-plot", ParetoPlot).add_candidates(new_finished)
        if delta.metrics:
            self.query_one("#metrics-plot", MetricsPlot).add_metrics(delta.metrics)
            if self.is_final:
                self.query_one("#training-plot", TrainingPlot).add_metrics(delta.metrics)
                for row in delta.metrics:
                    if str(row["key"]).startswith("train/"):
                        self.train_latest[row["key"]] = float(row["value"])
                        self.train_latest["epoch"] = max(self.train_latest.get("epoch", 0),
                                                         float(row["step"]))
        self.events.extend(delta.events)
        if delta.table_rows:
            self.query_one("#heatmap", AccuracyHeatmap).add_rows(delta.table_rows)
            self.query_one("#specialize-pane", SpecializePane).set_table(delta.table_rows)
        if self.selected_id is None and self.run.get("best_candidate") is not None:
            self.selected_id = self.run["best_candidate"]
        elif self.selected_id is None and self.is_final and self.candidates:
            self.selected_id = min(self.candidates)  # the architecture being trained
        self.update_summary()
        self.update_overview()

    def show_final_training(self) -> None:
        """A final-training run: its Curves tab plots epochs (``train/*``), not candidates."""
        self.is_final = True
        self.query_one("#curves-plot", CurvesPlot).add_class("hidden")
        self.query_one("#metrics-plot", MetricsPlot).add_class("hidden")
        plot = self.query_one("#training-plot", TrainingPlot)
        plot.remove_class("hidden")
        plot.set_total_epochs(self.total_epochs())

    def total_epochs(self) -> int | None:
        epochs = (((self.run or {}).get("config") or {}).get("train") or {}).get("epochs")
        return int(epochs) if epochs else None

    # -- summary and overview ------------------------------------------------------------
    def update_summary(self) -> None:
        run = self.run or {}
        line = Text()
        line.append(f"Run {self.run_id} · {run.get('name')} ", style="bold")
        line.append_text(status_text(run.get("status")))
        line.append(f"  {run.get('searcher')} on {run.get('space')}/{run.get('preset')}"
                    f" · {run.get('n_done') or 0}/{run.get('budget') or '?'} candidates"
                    f" · best {fmt_accuracy(run.get('best_accuracy'))}")
        if self.selected_id is not None:
            line.append(f" · selected #{self.selected_id}", style="cyan")
        self.query_one("#run-summary", Static).update(line)

    def update_overview(self) -> None:
        run = self.run or {}
        now = self.app.clock()
        done, budget = run.get("n_done") or 0, run.get("budget")
        text = Text()
        if self.is_final:  # one candidate: its epochs are the progress
            self.append_epoch_progress(text, run)
        else:
            _append_bar(text, "Progress  ", done, budget, "candidates")
            text.append("\n")
        elapsed = run.get("elapsed") or 0.0
        live = run.get("status") in ("running", "created")
        if live and run.get("started"):
            elapsed = max(elapsed, now - run["started"])
        text.append(f"          elapsed {fmt_duration(elapsed)}")
        if not self.is_final:
            eta = eta_seconds(self.finished_times, done, budget) if live else None
            text.append(f" · ETA {fmt_duration(eta) if live else '-'}")
        text.append(f" · started {fmt_age(run.get('started') or run.get('created'), now)}\n")
        best_id = run.get("best_candidate")
        best = self.candidates.get(best_id) if best_id is not None else None
        text.append("Best      ", style="bold")
        if best is None:
            text.append("none yet\n", style="dim")
        else:
            costs = best.get("costs") or {}
            text.append(f"#{best_id} accuracy {fmt_accuracy(best.get('accuracy'))}"
                        f" · reward {fmt_accuracy(best.get('reward'))}"
                        f" · params {fmt_cost(costs.get('params'))}"
                        f" · madds {fmt_cost(costs.get('madds'))} ")
            text.append("feasible\n" if best.get("feasible") else "infeasible\n",
                        style="green" if best.get("feasible") else "red")
        constraints = constraints_of(run)
        text.append("Limits    ", style="bold")
        text.append(", ".join(str(c) for c in constraints) or "none")
        n_ok = run.get("n_ok") or 0
        n_feasible = run.get("n_feasible") or 0
        fraction = f"{n_feasible}/{n_ok} ({100 * n_feasible / n_ok:.0f}%)" if n_ok else "-"
        text.append(f" · feasible {fraction} · failed {run.get('n_failed') or 0}\n")
        text.append("Workers   ", style="bold")
        workers = run.get("workers")
        if isinstance(workers, list) and workers:
            text.append(describe_workers(workers))
        elif isinstance(workers, dict) and workers:
            text.append(", ".join(f"{k} {v}" for k, v in sorted(workers.items())))
        else:
            text.append("-", style="dim")
        text.append(f" · in flight {len(self.in_flight)}")
        if self.devices:
            text.append(" · results by device: " + ", ".join(
                f"{d} {n}" for d, n in sorted(self.devices.items())))
        text.append("\n")
        for position, gpu in enumerate(self.gpus):
            text.append("GPUs      " if position == 0 else "          ", style="bold")
            text.append_text(tui_data.describe_gpu(gpu))
            text.append("\n")
        if run.get("error"):
            text.append("Error     ", style="bold red")
            text.append(str(run["error"]).strip().splitlines()[-1] + "\n", style="red")
        if self.selected_id is not None and self.selected_id in self.candidates:
            cand = self.candidates[self.selected_id]
            text.append("Selected  ", style="bold")
            text.append(f"#{cand['id']} {cand.get('status')} accuracy "
                        f"{fmt_accuracy(cand.get('accuracy'))} tag {cand.get('tag') or '-'}\n",
                        style="cyan")
        text.append("\nRecent events\n", style="bold")
        if not self.events:
            text.append("  none yet\n", style="dim")
        for event in reversed(self.events):
            data = event.get("data") or {}
            summary = ", ".join(f"{k}={_short(v, k)}" for k, v in list(data.items())[:4])
            text.append(f"  {fmt_age(event.get('time'), now):>8}  step {event.get('step'):>4}"
                        f"  {event.get('kind'):<12} {summary}\n")
        self.query_one("#overview-body", Static).update(text)

    def append_epoch_progress(self, text: Text, run: dict[str, Any]) -> None:
        """``Epoch  ███░░ 3/30 (10%) · ETA`` and the last epoch's loss, val accuracy, lr.

        ETA: the run's training time so far (``elapsed``, written after every epoch and kept
        across resumes) per epoch done, times the epochs left."""
        latest = self.train_latest
        done = int(latest.get("epoch", 0))
        total = self.total_epochs()
        _append_bar(text, "Epoch     ", done, total, "epochs")
        trained = run.get("elapsed") or 0.0
        if run.get("status") in ("running", "created", "paused") and total and done and trained:
            text.append(f" · ETA {fmt_duration(trained / done * (total - done))}")
        text.append("\n          ")
        if not latest:
            text.append("no epoch finished yet\n", style="dim")
            return
        names = (("train/loss", "loss", "{:.4f}"), ("train/val_accuracy", "val accuracy",
                                                   "{:.4f}"),
                 ("train/val_loss", "val loss", "{:.4f}"), ("train/lr", "lr", "{:.3g}"))
        text.append(" · ".join(f"{label} {fmt.format(latest[key])}"
                               for key, label, fmt in names if key in latest) + "\n")

    # -- GPUs ----------------------------------------------------------------------------
    def maybe_poll_gpus(self) -> None:
        """Poll NVML only while this screen and its Overview are shown; a machine where the
        first poll finds no GPU is not asked again."""
        if self.gpu_polls and not self.gpus:
            self.gpu_timer.stop()
            return
        if (not self.gpu_in_flight and self.is_current
                and self.query_one("#run-tabs", TabbedContent).active == "overview"):
            self.gpu_in_flight = True
            self.poll_gpus()

    @work(thread=True, exclusive=True, group="gpu-poll")
    def poll_gpus(self) -> None:
        self.post_message(GpusUpdated(tui_data.gpu_status()))

    def on_gpus_updated(self, message: GpusUpdated) -> None:
        self.gpu_in_flight = False
        self.gpu_polls += 1
        self.gpus = message.gpus
        if self.run is not None:
            self.update_overview()

    @on(TabbedContent.TabActivated, "#run-tabs")
    def tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.refresh_bindings()
        if event.pane.id == "overview":
            self.maybe_poll_gpus()

    # -- candidates table ----------------------------------------------------------------
    def candidate_cells(self, cand: dict[str, Any]) -> list[Any]:
        costs = cand.get("costs") or {}
        feasible = cand.get("feasible")
        return [
            str(cand["id"]), status_text(cand.get("status")), fmt_accuracy(cand.get("accuracy")),
            fmt_accuracy(cand.get("reward")),
            Text("yes", style="green") if feasible else
            Text("no", style="red") if feasible is False else Text("-", style="dim"),
            fmt_cost(costs.get("params")), fmt_cost(costs.get("madds")),
            str(cand.get("tag") or "")[:24], str(cand.get("device") or ""),
            f"{cand['wall_time']:.1f}s" if cand.get("wall_time") else "-",
        ]

    def update_candidate_table(self, changed: list[dict[str, Any]]) -> None:
        """Add new rows, rewrite updated ones; a full rebuild only for a sort or filter."""
        if not changed:
            return
        table = self.query_one("#candidate-table", DataTable)
        new_rows = []
        for cand in changed:
            key = str(cand["id"])
            if key in table.rows:
                for column, value in zip(CANDIDATE_COLUMNS, self.candidate_cells(cand),
                                         strict=True):
                    table.update_cell(key, column, value)
            elif not self.filter_text or candidate_matches(cand, self.filter_text):
                new_rows.append(cand)
        if self.sort_column != "ID" or self.sort_reverse:
            new_rows.sort(key=SORTABLE[self.sort_column], reverse=self.sort_reverse)
        for cand in new_rows:
            table.add_row(*self.candidate_cells(cand), key=str(cand["id"]))
        self.update_candidate_status()

    def rebuild_candidate_table(self) -> None:
        table = self.query_one("#candidate-table", DataTable)
        selected = self.selected_id
        table.clear()
        rows = [c for c in self.candidates.values()
                if not self.filter_text or candidate_matches(c, self.filter_text)]
        rows.sort(key=SORTABLE[self.sort_column], reverse=self.sort_reverse)
        for cand in rows:
            table.add_row(*self.candidate_cells(cand), key=str(cand["id"]))
        if selected is not None and str(selected) in table.rows:
            table.move_cursor(row=table.get_row_index(str(selected)))
        self.update_candidate_status()

    def update_candidate_status(self) -> None:
        table = self.query_one("#candidate-table", DataTable)
        mark = "▼" if self.sort_reverse else "▲"
        self.query_one("#candidate-status", Static).update(
            f"{len(table.rows)} of {len(self.candidates)} candidates · sort {self.sort_column} "
            f"{mark} (s) · filter (/) {self.filter_text or '-'} · enter: select + architecture")

    @on(DataTable.RowHighlighted, "#candidate-table")
    def candidate_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Moving the cursor selects; the table's own cursor placement while rows load does
        not (until then the run's best candidate is the selection)."""
        if event.data_table.has_focus and event.row_key.value is not None:
            self.selected_id = int(event.row_key.value)

    @on(DataTable.RowSelected, "#candidate-table")
    def candidate_chosen(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.selected_id = int(event.row_key.value)
            self.action_show_tab("architecture")

    def watch_selected_id(self, candidate_id: int | None) -> None:
        if candidate_id is None or not self.is_mounted:
            return
        self.query_one("#pareto-plot", ParetoPlot).select(candidate_id)
        self.update_summary()
        cand = self.candidates.get(candidate_id)
        if cand is not None:
            self.build_graph(candidate_id, cand["genotype"])

    @work(thread=True, exclusive=True, group="graph")
    def build_graph(self, candidate_id: int, genotype: dict[str, Any]) -> None:
        """``space.graph(g)`` off the UI thread: the first call imports networkx and a space."""
        cand = self.candidates.get(candidate_id) or {}
        title = (f"Candidate #{candidate_id} · {genotype.get('space')}/{genotype.get('preset')}"
                 f" · accuracy {fmt_accuracy(cand.get('accuracy'))}")
        try:
            from searchers.spaces import space_of

            graph = space_of(genotype).graph(genotype)
        except Exception as err:
            self.post_message(GraphReady(candidate_id, None, title, error=str(err)))
            return
        self.post_message(GraphReady(candidate_id, graph, title))

    def on_graph_ready(self, message: GraphReady) -> None:
        view = self.query_one("#arch-view", ArchitectureView)
        if message.candidate_id != self.selected_id:
            return
        self.graph_for = message.candidate_id
        if message.error:
            view.show_message(f"{message.title}\ncannot draw it: {message.error}")
        else:
            view.show_graph(message.graph, message.title)

    # -- actions -------------------------------------------------------------------------
    def action_back(self) -> None:
        """Escape leaves a text box first (so 1..7 switch tabs again), then the screen."""
        focused = self.focused
        if isinstance(focused, Input):
            if focused.id == "candidate-filter":
                self.query_one("#candidate-table", DataTable).focus()
            else:
                self.query_one("#run-tabs Tabs").focus()
            return
        self.app.pop_screen()

    def action_show_tab(self, tab: str) -> None:
        self.query_one("#run-tabs", TabbedContent).active = tab
        self.focus_tab_content(tab)

    def focus_tab_content(self, tab: str) -> None:
        target = {"candidates": "#candidate-table", "architecture": "#arch-scroll",
                  "table": "#heatmap-scroll", "overview": "#overview-scroll",
                  "specialize": "#constraint-input"}.get(tab)
        if target:
            self.call_after_refresh(lambda: self.query_one(target).focus())
        else:
            self.call_after_refresh(lambda: self.query_one("#run-tabs Tabs").focus())

    def action_sort(self) -> None:
        self.sort_column = SORT_ORDER[(SORT_ORDER.index(self.sort_column) + 1) % len(SORT_ORDER)]
        self.sort_reverse = self.sort_column in ("Accuracy", "Reward")
        self.rebuild_candidate_table()

    def action_filter(self) -> None:
        self.action_show_tab("candidates")
        box = self.query_one("#candidate-filter", Input)
        box.remove_class("hidden")
        self.call_after_refresh(box.focus)

    @on(Input.Changed, "#candidate-filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.rebuild_candidate_table()

    @on(Input.Submitted, "#candidate-filter")
    def filter_done(self) -> None:
        self.query_one("#candidate-table", DataTable).focus()

    def action_toggle_axis(self) -> None:
        self.query_one("#curves-plot", CurvesPlot).toggle_axis()

    def action_cycle_metric(self) -> None:
        self.query_one("#metrics-plot", MetricsPlot).cycle()

    def action_toggle_pareto_metric(self) -> None:
        self.query_one("#pareto-plot", ParetoPlot).toggle_metric()

    def action_command(self, command: str) -> None:
        status = (self.run or {}).get("status")
        if command == "pause" and status != "running":
            self.notify(f"run is {status}: only a running run pauses", severity="warning")
            return
        if command == "resume":
            if status == "interrupted":
                self.relaunch()
                return
            if status != "paused":
                self.notify(f"run is {status}: only paused or interrupted runs resume",
                            severity="warning")
                return
        try:
            tui_data.send_command(self.app.db_path, self.run_id, command)
        except Exception as err:
            self.notify(f"{command} failed: {err}", severity="error")
            return
        self.notify(f"{command} sent to run {self.run_id}")

    @work(thread=True, group="run-action")
    def relaunch(self) -> None:
        try:
            tui_data.resume_run(self.app.db_path, self.run_id)
        except Exception as err:
            self.app.call_from_thread(self.notify, f"resume failed: {err}", severity="error")
            return
        self.app.call_from_thread(self.notify, f"run {self.run_id} resumed in the background")

    def action_cancel(self) -> None:
        from workbench.screens.modals import ConfirmScreen

        status = (self.run or {}).get("status")
        if status not in ("running", "paused"):
            self.notify(f"run is {status}: nothing to cancel", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.action_command("cancel")

        self.app.push_screen(ConfirmScreen(
            f"Cancel run {self.run_id}? Finished candidates are kept."), answered)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Export and train act on the selected candidate: offered where candidates show."""
        if action in CANDIDATE_ACTIONS and self.is_mounted:
            return self.query_one("#run-tabs", TabbedContent).active in CANDIDATE_TABS
        return True

    def selected_candidate(self) -> dict[str, Any] | None:
        cand = self.candidates.get(self.selected_id) if self.selected_id is not None else None
        if cand is None:
            self.notify("select a candidate first (Candidates tab)", severity="warning")
        return cand

    def action_export(self) -> None:
        """Choose a format, then export the selected candidate in a worker (torch loads
        there, never at start-up)."""
        from workbench.export import FORMATS, default_path
        from workbench.screens.modals import ExportFormatScreen

        cand = self.selected_candidate()
        if cand is None:
            return
        candidate_id = int(cand["id"])
        paths = {fmt: str(default_path(fmt, self.run_id, f"c{candidate_id}")) for fmt in FORMATS}

        def chosen(fmt: str | None) -> None:
            if fmt:
                self.notify(f"exporting candidate #{candidate_id} as {fmt}…", timeout=3)
                self.export_candidate(candidate_id, fmt)

        self.app.push_screen(ExportFormatScreen(
            f"Export candidate #{candidate_id} of run {self.run_id} (into {tui_data.cwd()})",
            paths), chosen)

    @work(thread=True, exclusive=True, group="export")
    def export_candidate(self, candidate_id: int, fmt: str) -> None:
        try:
            report = tui_data.export_candidate(self.app.db_path, self.run_id, candidate_id, fmt)
        except Exception as err:
            self.app.call_from_thread(self.notify, f"export failed: {err}", severity="error",
                                      timeout=10)
            return
        costs = report.get("costs") or {}
        self.app.call_from_thread(
            self.notify, f"wrote {report['path']} ({fmt}; {report['check']})\n"
            f"params {fmt_cost(costs.get('params'))} · MAdds {fmt_cost(costs.get('madds'))} "
            "(re-measured)", timeout=10)

    def action_train(self) -> None:
        from workbench.screens.modals import ConfirmScreen

        cand = self.selected_candidate()
        if cand is None:
            return
        candidate_id = int(cand["id"])

        def answered(yes: bool | None) -> None:
            if yes:
                self.train_candidate(candidate_id)

        self.app.push_screen(ConfirmScreen(
            f"Train candidate #{candidate_id} of run {self.run_id} from scratch with its "
            "preset's full schedule, as a new background run (nasw train --detach)?"), answered)

    @work(thread=True, exclusive=True, group="train")
    def train_candidate(self, candidate_id: int) -> None:
        try:
            new_run = tui_data.train_candidate(self.app.db_path, self.run_id, candidate_id)
        except Exception as err:
            self.app.call_from_thread(self.notify, f"train failed: {err}", severity="error",
                                      timeout=10)
            return
        self.app.call_from_thread(self.notify, f"training run {new_run} started")
        self.app.call_from_thread(self.app.open_run, new_run)

    def palette_commands(self) -> list[Any]:
        from textual.app import SystemCommand

        commands = [SystemCommand(f"Tab: {title}", f"Show the {title} tab of this run",
                                  lambda tab=tab: self.action_show_tab(tab))
                    for tab, title in zip(TABS, TAB_TITLES, strict=True)]
        commands += [
            SystemCommand("Pause run", "Write a pause command row",
                          lambda: self.action_command("pause")),
            SystemCommand("Resume run", "Resume a paused or interrupted run",
                          lambda: self.action_command("resume")),
            SystemCommand("Cancel run", "Cancel (asks first)", self.action_cancel),
            SystemCommand("Export candidate", "Export the selected candidate: json, onnx, "
                          "torchscript or dot", self.action_export),
            SystemCommand("Train candidate from scratch", "The selected candidate as a new "
                          "final-training run (asks first)", self.action_train),
        ]
        return commands


def describe_workers(workers: list[Any]) -> str:
    """``2 (busy 1/2): w0 cpu:0 -> #12, w1 cuda:1 idle (restarts 1)`` from the coordinator's
    worker list (index, device, job_id, restarts)."""
    parts, busy = [], 0
    for position, worker in enumerate(workers):
        if not isinstance(worker, dict):
            parts.append(str(worker))
            continue
        job = worker.get("job_id")
        busy += job is not None
        part = f"w{worker.get('index', position)} {worker.get('device', '?')} "
        part += f"-> #{job}" if job is not None else "idle"
        if worker.get("restarts"):
            part += f" (restarts {worker['restarts']})"
        parts.append(part)
    return f"{len(workers)} (busy {busy}/{len(workers)}): " + ", ".join(parts)


#: event fields that are identifiers, shown as they are (a pid is not a quantity)
_ID_KEYS = ("pid", "job", "job_id", "candidate", "id", "run", "step", "epoch", "layer", "choice")


def _append_bar(text: Text, label: str, done: int, total: int | None, unit: str,
                width: int = 30) -> None:
    """``label ███░░░ done/total (pct%)``, or ``label done unit`` when there is no total."""
    text.append(label, style="bold")
    if not total:
        text.append(f"{done} {unit}")
        return
    filled = round(width * min(1.0, done / total))
    text.append("█" * filled, style="green")
    text.append("░" * (width - filled), style="dim")
    text.append(f" {done}/{total} ({100 * done / total:.0f}%)")


def _short(value: Any, key: str = "") -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        text = str(value)
        quantity = isinstance(value, int) and abs(value) >= 10000 and key not in _ID_KEYS
        return format_number(value) if quantity else (
            text if len(text) <= 20 else text[:19] + "…")
    text = str(value)
    return text if len(text) <= 20 else text[:19] + "…"
