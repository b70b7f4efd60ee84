"""One run, live: Overview, Candidates, Curves, Architecture, Pareto, Accuracy table, Specialize.

The screen only composes the tabs and routes: each tab is a component of its own
(:mod:`workbench.components`), mounted when its tab is first shown, that reads just what it
draws in thread workers. The screen's own poll, in a thread worker, reads the run's row and a
:class:`~workbench.tui_data.RunStamp` (a few index look-ups, whatever the size of the run) and
hands both to every mounted component; only the shown one reads again, the others catch up
when shown. So opening a run with 100,000 candidates costs the Overview's handful of queries,
not the run.

Selecting a candidate in any tab (:class:`~workbench.components.base.CandidateSelected`)
selects it everywhere: the Architecture tab draws it, the Pareto plot marks it, the Overview
names it; ``e`` exports it and ``t`` trains it from scratch as a new run (Candidates and
Architecture tabs, and the command palette). Until the user picks one, the run's best is
selected.
"""

from __future__ import annotations

import importlib
import threading
import time
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Header, Input, Static

from workbench import tui_data
from workbench.components import COMPONENTS
from workbench.text import plain_text
from workbench.tui_data import RunStamp, fmt_accuracy, fmt_cost, status_text
from workbench.widgets.footer import KeyFooter
from workbench.widgets.tab_bar import TabBar

TABS = ("overview", "candidates", "curves", "architecture", "pareto", "table", "specialize")
TAB_TITLES = ("Overview", "Candidates", "Curves", "Architecture", "Pareto", "Accuracy table",
              "Specialize")
TAB_LABELS = ("1 Overview", "2 Candidates", "3 Curves", "4 Arch", "5 Pareto", "6 Table",
              "7 Specialize")
#: actions on the selected candidate, offered on the tabs that show candidates
CANDIDATE_ACTIONS = ("export", "train")
CANDIDATE_TABS = ("candidates", "architecture")


class RunPolled(Message):
    def __init__(self, run: dict[str, Any] | None, stamp: RunStamp, elapsed_ms: float) -> None:
        super().__init__()
        self.run = run
        self.stamp = stamp
        self.elapsed_ms = elapsed_ms


class RunDetailScreen(Screen[None]):
    #: the shown tab's content takes the focus as the screen mounts (:meth:`apply_focus`);
    #: no auto focus first (``None`` would mean the app's: the tab bar), so the first frame
    #: has one focus change, not two
    AUTO_FOCUS = ""
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
        self.run: dict[str, Any] | None = None
        self.stamp = RunStamp()
        self.components: dict[str, Any] = {}
        self.poll_lock = threading.Lock()
        self.polls = 0
        self.gone = False
        self.user_selected = False
        self.last_poll_ms = 0.0
        self.poll_timer: Timer | None = None
        self.suspended = False
        self.focus_wanted: str | None = None

    # -- layout --------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        """The tab bar is one widget (:class:`~workbench.widgets.tab_bar.TabBar`) and only
        the shown tab's component is composed, in the first layout: one paint, with the
        run's figures; the other tabs' components are mounted when first shown."""
        yield Header()
        yield Static(f"Run {self.run_id}: loading…", id="run-summary")
        yield TabBar(list(zip(TABS, TAB_LABELS, strict=True)), self.initial_tab, id="run-tabs")
        with Container(id="run-panes"):
            yield self.make_component(self.initial_tab)
        yield KeyFooter()

    def make_component(self, tab: str) -> Any:
        module, name = COMPONENTS[tab]
        cls = getattr(importlib.import_module(module), name)
        component = cls(self.app.db_path, self.run_id, id=f"{tab}-tab")
        self.components[tab] = component
        return component

    async def on_mount(self) -> None:
        """A finished run is read right here (index look-ups, a few milliseconds at any size),
        so the first frame already shows it; a live one is polled from a worker at once
        (asking whether its coordinator lives imports the store)."""
        run = tui_data.settled_run(self.app.db_path, self.run_id)
        if run is not None:
            self.on_run_polled(RunPolled(run, tui_data.run_stamp(self.app.db_path, self.run_id),
                                         0.0))
        else:
            self.poll()
        self.poll_timer = self.set_interval(self.app.poll_interval, self.poll)
        await self.show_component(self.initial_tab)
        self.focus_wanted = self.initial_tab
        self.apply_focus()

    def on_screen_suspend(self) -> None:
        """Covered (by the runs list, a modal, another run): stop polling until shown again."""
        self.suspended = True
        if self.poll_timer is not None:
            self.poll_timer.pause()

    def on_screen_resume(self) -> None:
        """Shown again after being covered: poll at once (not on the resume that follows the
        first mount, which has just read the run: a second read would redraw the first
        frame)."""
        if self.suspended and self.poll_timer is not None:
            self.suspended = False
            self.poll_timer.resume()
            self.poll()

    def component(self, tab: str) -> Any:
        """The tab's component, or None while its tab has never been shown."""
        return self.components.get(tab)

    async def show_component(self, tab: str) -> None:
        """Mount the tab's component on its first showing (its module is imported then),
        hand it the run, the stamp and the selection, and make it the one that loads."""
        component = self.components.get(tab)
        if component is None:
            component = self.make_component(tab)
            component.display = False
            await self.query_one("#run-panes", Container).mount(component)
            component.select(self.selected_id)
            if self.run is not None:
                component.update_run(self.run, self.stamp)
        for other, widget in self.components.items():
            if other != tab:
                widget.display = False
                widget.deactivate()
        component.display = True
        component.activate()
        if self.focus_wanted == tab:
            self.apply_focus()

    # -- polling -------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="run-poll")
    def poll(self) -> None:
        """The run's row and its stamp; one poll at a time (a cancelled thread worker keeps
        running, so the lock, not ``exclusive``, keeps two from overlapping)."""
        if self.gone or not self.poll_lock.acquire(blocking=False):
            return
        try:
            started = time.perf_counter()
            try:
                stamp = tui_data.run_stamp(self.app.db_path, self.run_id)
                run = tui_data.run_summary(self.app.db_path, self.run_id)
            except Exception as err:  # the DB being migrated or replaced: say so, keep polling
                self.app.call_from_thread(self.show_error, f"cannot read the run: {err}")
                return
            self.post_message(RunPolled(run, stamp, 1000 * (time.perf_counter() - started)))
        finally:
            self.poll_lock.release()

    def show_error(self, message: str) -> None:
        self.query_one("#run-summary", Static).update(Text(plain_text(message), style="red"))

    def on_run_polled(self, message: RunPolled) -> None:
        self.polls += 1
        self.last_poll_ms = message.elapsed_ms
        if message.run is None:
            self.gone = True
            self.query_one("#run-summary", Static).update(Text(
                f"Run {self.run_id} no longer exists in {plain_text(self.app.db_path)} "
                "(deleted?). Press escape to go back to the runs.", style="bold red"))
            return
        self.run = message.run
        self.stamp = message.stamp
        best = self.run.get("best_candidate")
        if not self.user_selected and best is not None and self.selected_id != best:
            self.selected_id = best
        elif self.selected_id is None and self.is_final:
            self.selected_id = 0  # the architecture being trained
        for component in self.components.values():
            component.select(self.selected_id)  # (the watcher does not run before mount)
            component.update_run(self.run, self.stamp)
        self.update_summary()

    @property
    def is_final(self) -> bool:
        """A final-training run (``nasw train``): one candidate trained for its epochs."""
        return (self.run or {}).get("searcher") == "final"

    def update_summary(self) -> None:
        run = self.run or {}
        line = Text()
        line.append(f"Run {self.run_id} · {plain_text(run.get('name'), max_len=40)} ",
                    style="bold")
        line.append_text(status_text(plain_text(run.get("status"))))
        line.append(f"  {plain_text(run.get('searcher'))} on {plain_text(run.get('space'))}/"
                    f"{plain_text(run.get('preset'))}"
                    f" · {run.get('n_done') or 0}/{run.get('budget') or '?'} candidates"
                    f" · best {fmt_accuracy(run.get('best_accuracy'))}")
        if self.selected_id is not None:
            line.append(f" · selected #{self.selected_id}", style="cyan")
        self.query_one("#run-summary", Static).update(line)

    # -- selection -----------------------------------------------------------------------
    def on_candidate_selected(self, message: Any) -> None:
        """A tab picked a candidate: select it everywhere (``show``: and draw it)."""
        message.stop()
        self.user_selected = True
        self.selected_id = message.candidate_id
        if message.show:
            self.action_show_tab("architecture")

    def watch_selected_id(self, candidate_id: int | None) -> None:
        if candidate_id is None or not self.is_mounted:
            return
        for component in self.components.values():
            component.select(candidate_id)
        self.update_summary()

    # -- tabs ----------------------------------------------------------------------------
    @on(TabBar.TabActivated, "#run-tabs")
    async def tab_activated(self, event: TabBar.TabActivated) -> None:
        self.refresh_bindings()  # export / train are offered on some tabs only
        await self.show_component(event.tab)

    def action_show_tab(self, tab: str) -> None:
        self.query_one("#run-tabs", TabBar).active = tab
        self.focus_tab_content(tab)

    def focus_tab_content(self, tab: str) -> None:
        """Focus the tab's content (its table, scroll or input) once its component is there:
        a key typed right after switching acts on the tab."""
        self.focus_wanted = tab
        self.call_after_refresh(self.apply_focus)

    def apply_focus(self) -> None:
        tab = self.focus_wanted
        component = self.components.get(tab) if tab else None
        if component is None or not component.is_mounted:
            return  # show_component focuses it once mounted
        self.focus_wanted = None
        target = getattr(component, "focus_target", None)
        widget = target() if target else None
        (widget or self.query_one("#run-tabs", TabBar)).focus()

    def action_back(self) -> None:
        """Escape leaves a text box first (so 1..7 switch tabs again), then the screen."""
        focused = self.focused
        if isinstance(focused, Input):
            if focused.id == "candidate-filter" and "candidates" in self.components:
                self.components["candidates"].table.focus()
            else:
                self.query_one("#run-tabs", TabBar).focus()
            return
        self.app.leave_screen()

    # -- keys routed to the tab they act on ----------------------------------------------
    def action_sort(self) -> None:
        if "candidates" in self.components:
            self.components["candidates"].cycle_sort()

    def action_filter(self) -> None:
        self.action_show_tab("candidates")

        def open_filter() -> None:
            if "candidates" in self.components:
                self.components["candidates"].open_filter()

        self.call_after_refresh(open_filter)

    def action_toggle_axis(self) -> None:
        if "curves" in self.components:
            self.components["curves"].toggle_axis()

    def action_cycle_metric(self) -> None:
        if "curves" in self.components:
            self.components["curves"].cycle_metric()

    def action_toggle_pareto_metric(self) -> None:
        if "pareto" in self.components:
            self.components["pareto"].toggle_metric()

    # -- run commands --------------------------------------------------------------------
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
            self.notify(f"{command} failed: {plain_text(err)}", severity="error", markup=False)
            return
        self.notify(f"{command} sent to run {self.run_id}")

    @work(thread=True, group="run-action")
    def relaunch(self) -> None:
        try:
            tui_data.resume_run(self.app.db_path, self.run_id)
        except Exception as err:
            self.app.call_from_thread(self.notify, f"resume failed: {plain_text(err)}",
                                      severity="error", markup=False)
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
            return self.query_one("#run-tabs", TabBar).active in CANDIDATE_TABS
        return True

    def selected_candidate_id(self) -> int | None:
        if self.selected_id is None:
            self.notify("select a candidate first (Candidates tab)", severity="warning")
        return self.selected_id

    def action_export(self) -> None:
        """Choose a format, then export the selected candidate in a worker (torch loads
        there, never at start-up)."""
        from workbench.export import FORMATS, default_path
        from workbench.screens.modals import ExportFormatScreen

        candidate_id = self.selected_candidate_id()
        if candidate_id is None:
            return
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
            self.app.call_from_thread(self.notify, f"export failed: {plain_text(err)}",
                                      severity="error", timeout=10, markup=False)
            return
        costs = report.get("costs") or {}
        self.app.call_from_thread(
            self.notify, f"wrote {report['path']} ({fmt}; {report['check']})\n"
            f"params {fmt_cost(costs.get('params'))} · MAdds {fmt_cost(costs.get('madds'))} "
            "(re-measured)", timeout=10, markup=False)

    def action_train(self) -> None:
        from workbench.screens.modals import ConfirmScreen

        candidate_id = self.selected_candidate_id()
        if candidate_id is None:
            return

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
            self.app.call_from_thread(self.notify, f"train failed: {plain_text(err)}",
                                      severity="error", timeout=10, markup=False)
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


__all__ = ["CANDIDATE_TABS", "TABS", "RunDetailScreen"]
