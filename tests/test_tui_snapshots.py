"""Snapshot tests (pytest-textual-snapshot) of the main screens at 80x24 and 120x40.

Deterministic: the database is written by the synthetic evaluator from fixed seeds, the app's
clock is pinned to 90 minutes after the first run was created, the database is opened by a
relative name (the header shows ``nasw.db``), and polling is left to the first load.
Update after an intended change with ``pytest tests/test_tui_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tui_support import fixed_clock, make_db, plots_drawn

from workbench.app import NaswApp
from workbench.screens.detail import RunDetailScreen

SIZES = [(80, 24), (120, 40)]


@pytest.fixture(scope="module")
def snapshot_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_db(tmp_path_factory.mktemp("snap") / "nasw.db")


def make_app(db: Path, monkeypatch: pytest.MonkeyPatch, run_id: int | None = None) -> NaswApp:
    from workbench import tui_data

    monkeypatch.chdir(db.parent)
    monkeypatch.setattr(tui_data, "gpu_status", lambda: [])  # the same with or without GPUs
    clock = fixed_clock(db)
    return NaswApp(Path("nasw.db"), run_id=run_id, clock=lambda: clock, poll_interval=3600)


#: per tab key: when its component has drawn what it read
TAB_READY = {
    "1": lambda c: bool(c.data) and c.counts is not None,  # counted, not the first paint
    "2": lambda c: c.table.row_count > 0,
    "3": lambda c: c.query_one("#curves-plot").points > 0 and plots_drawn(c),
    "4": lambda c: c.graph_for is not None,
    "5": lambda c: bool(c.plot.view.get("n")) and plots_drawn(c),
    "6": lambda c: len(c.heatmap.table) > 0,
    "7": lambda c: bool(c.pane.rows),
}
TAB_IDS = dict(zip("1234567", ("overview", "candidates", "curves", "architecture", "pareto",
                               "table", "specialize"), strict=True))


async def settle(pilot, run_id: int | None, tab: str | None = None) -> None:
    """Wait for the runs table, or for the run detail's Overview and then the tab's data."""
    app = pilot.app

    def ready(key: str) -> bool:
        screen = app.screen
        if not isinstance(screen, RunDetailScreen) or screen.run is None:
            return False
        component = screen.component(TAB_IDS[key])
        return component is not None and TAB_READY[key](component)

    for _ in range(200):
        await pilot.pause(0.05)
        screen = app.screen
        if run_id is None:
            if screen.query("#runs-table") and screen.query_one("#runs-table").row_count:
                break
        elif ready("1"):
            break
    if tab is not None:
        await pilot.press(tab)
        for _ in range(200):
            await pilot.pause(0.05)
            if ready(tab):
                break
    await pilot.pause(0.2)


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "120x40"])
def test_runs_screen(snapshot_db, monkeypatch, snap_compare, size) -> None:
    app = make_app(snapshot_db, monkeypatch)
    assert snap_compare(app, terminal_size=size, run_before=lambda pilot: settle(pilot, None))


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "120x40"])
@pytest.mark.parametrize("tab", ["1", "2", "3", "4", "5"],
                         ids=["overview", "candidates", "curves", "architecture", "pareto"])
def test_run_detail_tabs(snapshot_db, monkeypatch, snap_compare, size, tab) -> None:
    app = make_app(snapshot_db, monkeypatch, run_id=1)
    assert snap_compare(app, terminal_size=size,
                        run_before=lambda pilot: settle(pilot, 1, tab))


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "120x40"])
def test_accuracy_table(snapshot_db, monkeypatch, snap_compare, size) -> None:
    app = make_app(snapshot_db, monkeypatch, run_id=2)
    assert snap_compare(app, terminal_size=size, run_before=lambda pilot: settle(pilot, 2, "6"))


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "120x40"])
def test_specialize(snapshot_db, monkeypatch, snap_compare, size) -> None:
    import workbench.specialize

    solve = workbench.specialize.specialize_run
    monkeypatch.setattr(workbench.specialize, "specialize_run",  # the one varying number
                        lambda *args, **kwargs: {**solve(*args, **kwargs), "solve_ms": 1.0})
    app = make_app(snapshot_db, monkeypatch, run_id=2)

    async def run_before(pilot) -> None:
        await settle(pilot, 2, "7")
        pane = app.screen.query_one("#specialize-pane")
        box = app.screen.query_one("#constraint-input")
        box.cursor_blink = False
        box.value = "params<=45k, madds<=900k"
        await pilot.press("enter")
        for _ in range(200):
            await pilot.pause(0.05)
            if pane.result is not None:
                break
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_compare_screen(snapshot_db, monkeypatch, snap_compare) -> None:
    """Runs 1 and 2 marked (space), compared (C): the table and the Pareto fronts on params."""
    app = make_app(snapshot_db, monkeypatch)

    async def run_before(pilot) -> None:
        from workbench.screens.compare import CompareScreen

        await settle(pilot, None)
        await pilot.press("down", "space", "space", "C")
        for _ in range(200):
            await pilot.pause(0.05)
            screen = app.screen
            if isinstance(screen, CompareScreen) and screen.summaries \
                    and plots_drawn(screen):
                break
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
