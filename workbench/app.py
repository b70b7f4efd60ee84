"""The Textual workbench: ``nasw`` opens it on a database, ``run_app(db, run_id)`` on a run.

Start-up is kept light: this module imports Textual only; the first screen (the runs list,
or the run detail when opened on a run) is imported when it is made. The store
(sqlite-utils), the run-detail screen (plots: plotext), networkx and the spaces are imported
when first needed, in thread workers where they would block the UI, and torch never is (a
subprocess test checks ``sys.modules``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

STYLES = Path(__file__).with_name("workbench.tcss")


class NaswApp(App[None]):
    """Runs list first; ``run_id`` opens straight on a run's detail (``nasw run --tui``).

    ``clock`` (seconds since the epoch) and ``poll_interval`` are injectable so tests and
    snapshots can freeze ages and drive polls themselves.
    """

    CSS_PATH = str(STYLES)
    TITLE = "NAS Workbench"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
    ]

    def __init__(self, db_path: str | Path, run_id: int | None = None,
                 clock: Callable[[], float] = time.time, poll_interval: float = 1.0) -> None:
        super().__init__()
        self.db_path = Path(db_path)
        self.initial_run_id = run_id
        self.clock = clock
        self.poll_interval = poll_interval
        self.sub_title = str(self.db_path)

    def get_default_screen(self) -> Screen[Any]:
        """The runs list is the base screen (no blank default screen to paint first); opened
        on a run, the run's detail is, and the runs list is made when it is first asked for
        (escape), so the run paints without composing and polling a screen nobody sees."""
        if self.initial_run_id is not None:
            from workbench.screens.detail import RunDetailScreen

            return RunDetailScreen(self.initial_run_id)
        from workbench.screens.runs import RunsScreen

        return RunsScreen()

    # -- navigation ----------------------------------------------------------------------
    def open_run(self, run_id: int, tab: str | None = None) -> None:
        from workbench.screens.detail import RunDetailScreen

        self.push_screen(RunDetailScreen(run_id, tab=tab))

    def action_new_run(self) -> None:
        from workbench.screens.new_run import NewRunScreen

        self.push_screen(NewRunScreen())

    def action_help(self) -> None:
        from workbench.screens.modals import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("New run", "Pick a template, edit it, launch it", self.action_new_run)
        yield SystemCommand("Help", "Key bindings of every screen", self.action_help)
        yield SystemCommand("Runs", "Back to the list of runs", self.action_show_runs)
        yield from getattr(screen, "palette_commands", lambda: [])()

    def action_show_runs(self) -> None:
        from workbench.screens.runs import RunsScreen

        while len(self.screen_stack) > 1 and not isinstance(self.screen, RunsScreen):
            self.pop_screen()
        if not isinstance(self.screen, RunsScreen):
            self.push_screen(RunsScreen())

    def leave_screen(self) -> None:
        """Back from a screen: pop it, or, from the run detail the app was opened on (the
        bottom screen, which cannot be popped), show the runs list over it (the detail stops
        polling while it is covered)."""
        from workbench.screens.runs import RunsScreen

        if len(self.screen_stack) > 1:
            self.pop_screen()
        else:
            self.push_screen(RunsScreen())


def run_app(db_path: str | Path, run_id: int | None = None) -> None:
    """Open the TUI on ``db_path`` (which may not exist yet: the runs list is then empty)."""
    NaswApp(db_path, run_id=run_id).run()
