"""Start-up hygiene of the TUI, checked in fresh interpreters (``sys.modules`` does not lie).

``import workbench.app`` must not load torch, numpy, sqlite-utils, networkx, plotext or
pydantic (they load when a screen needs them); starting the app, visiting every tab of a
run and comparing runs must never load torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tui_support import make_db

HEAVY_AT_IMPORT = ("torch", "numpy", "sqlite_utils", "networkx", "plotext", "textual_plotext",
                   "pydantic", "yaml")


def _modules_after(code: str, cwd: Path | None = None) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True, cwd=cwd,
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_importing_the_app_loads_no_heavy_module() -> None:
    loaded = _modules_after("import workbench.app")
    assert "textual.app" in loaded
    assert not [m for m in HEAVY_AT_IMPORT if m in loaded]


#: the subprocess scripts' wait for the run detail screen to have its run
WAIT_FOR_DETAIL = """
async def wait_for_detail(app, pilot):
    for _ in range(400):
        await pilot.pause(0.05)
        screen = app.screen
        if isinstance(screen, RunDetailScreen) and screen.run is not None:
            return
"""


def test_the_nasw_command_does_not_import_torch() -> None:
    loaded = _modules_after("import workbench.cli\nfrom workbench.app import NaswApp")
    assert "torch" not in loaded


def test_running_the_app_through_every_tab_never_imports_torch(tmp_path: Path) -> None:
    db = make_db(tmp_path / "nasw.db")
    code = f"""
import asyncio
from workbench.app import NaswApp
from workbench.screens.compare import CompareScreen
from workbench.screens.detail import RunDetailScreen
{WAIT_FOR_DETAIL}
async def main():
    app = NaswApp({str(db)!r}, run_id=2, poll_interval=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for_detail(app, pilot)
        await pilot.press("2", "3", "4")
        for _ in range(400):
            await pilot.pause(0.05)
            if app.screen.component("architecture").graph_for is not None:
                break
        assert app.screen.component("architecture").graph_for is not None
        await pilot.press("5", "6", "7")
        app.screen.query_one("#constraint-input").value = "params<=45k"
        await pilot.press("enter")
        for _ in range(400):
            await pilot.pause(0.05)
            if app.screen.query_one("#specialize-pane").result:
                break
        assert app.screen.query_one("#specialize-pane").result["feasible"]
        await pilot.press("escape", "escape")  # out of the text box, back to the runs
        for _ in range(400):
            await pilot.pause(0.05)
            if app.screen.query("#runs-table") and app.screen.query_one("#runs-table").row_count == 3:
                break
        await pilot.press("down", "space", "space", "C")  # compare runs 2 and 1
        for _ in range(400):
            await pilot.pause(0.05)
            if isinstance(app.screen, CompareScreen) and app.screen.summaries:
                break
        assert isinstance(app.screen, CompareScreen) and app.screen.summaries
asyncio.run(main())
"""
    loaded = _modules_after(code)
    assert "textual_plotext" in loaded and "networkx" in loaded  # the tabs did load
    assert "torch" not in loaded


def test_opening_a_finished_run_needs_neither_the_store_nor_the_plots(tmp_path: Path) -> None:
    """The runs list and a finished run's Overview read with plain sqlite3: sqlite-utils,
    plotext and networkx wait until a live run, an action or another tab needs them."""
    db = make_db(tmp_path / "nasw.db")
    code = f"""
import asyncio
from workbench.app import NaswApp
from workbench.screens.detail import RunDetailScreen

async def main():
    app = NaswApp({str(db)!r}, poll_interval=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(400):
            await pilot.pause(0.05)
            if app.screen.query("#runs-table") and app.screen.query_one("#runs-table").row_count:
                break
        await pilot.press("enter")
        for _ in range(400):
            await pilot.pause(0.05)
            screen = app.screen
            if isinstance(screen, RunDetailScreen) and screen.component("overview").data:
                break
        assert app.screen.component("overview").data
asyncio.run(main())
"""
    loaded = _modules_after(code)
    assert "workbench.components.overview" in loaded
    assert not [m for m in ("sqlite_utils", "workbench.store", "textual_plotext", "networkx",
                            "torch") if m in loaded]


def test_curves_and_pareto_import_and_draw_off_the_ui_thread(tmp_path: Path) -> None:
    """plotext and textual-plotext (and numpy, if anything needs it) are first imported by
    the tabs' thread workers, never by the UI thread (it blocked ~0.3-0.5 s importing them as a tab was first shown),
    and every plotext figure is built in a worker too (a thinned cloud of 20,000 points takes
    plotext ~0.1 s)."""
    db = make_db(tmp_path / "nasw.db")
    code = f"""
import asyncio, json, sys, threading

WATCHED = ("numpy", "plotext", "textual_plotext")
ON_UI_THREAD = {{}}

class ImportSpy:
    def find_spec(self, name, path=None, target=None):
        if name in WATCHED and name not in ON_UI_THREAD:
            ON_UI_THREAD[name] = threading.current_thread() is threading.main_thread()
        return None

sys.meta_path.insert(0, ImportSpy())
BUILDS = []

from workbench.app import NaswApp
from workbench.screens.detail import RunDetailScreen
{WAIT_FOR_DETAIL}
async def main():
    app = NaswApp({str(db)!r}, run_id=1, poll_interval=3600)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for_detail(app, pilot)
        await pilot.press("3")
        for _ in range(400):
            await pilot.pause(0.05)
            plot = app.screen.component("curves").query_one("#curves-plot")
            if plot.points == 40 and getattr(plot, "drawn", True):
                break
        await pilot.pause(0.3)
        import textual_plotext.plot as plot_module  # loaded by now; spy on later builds
        build = plot_module.Plot.build

        def spied(self):
            BUILDS.append(threading.current_thread() is threading.main_thread())
            return build(self)

        plot_module.Plot.build = spied
        await pilot.press("5")
        for _ in range(400):
            await pilot.pause(0.05)
            pareto = app.screen.component("pareto")
            if pareto.plot.view.get("n") == 40 and getattr(pareto.plot, "drawn", True):
                break
        await pilot.pause(0.3)
        assert pareto.plot.view.get("n") == 40
asyncio.run(main())
print(json.dumps({{"imports": ON_UI_THREAD, "builds": BUILDS}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    assert {"plotext", "textual_plotext"} <= set(seen["imports"])  # numpy: not needed now
    assert not [name for name, on_ui in seen["imports"].items() if on_ui], seen
    assert seen["builds"] and not any(seen["builds"]), seen
