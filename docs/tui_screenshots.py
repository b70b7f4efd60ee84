"""Regenerate the TUI screenshots in docs/ (SVG from Textual, PNG via cairosvg).

    .venv/bin/pip install cairosvg      # docs only, not a runtime dependency
    .venv/bin/python docs/tui_screenshots.py

The database is written like the tests' (real random searcher, synthetic evaluator, a PONAS
accuracy table), with a longer random run so the curves and the Pareto front have shape.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent / "tests"))
sys.path.insert(0, str(DOCS.parent))

from tui_support import fixed_clock, make_run, record_final_epochs  # noqa: E402

from workbench.app import NaswApp  # noqa: E402
from workbench.screens.detail import RunDetailScreen  # noqa: E402
from workbench.store import Store  # noqa: E402

SIZE = (120, 40)


def make_docs_db(path: Path) -> None:
    with Store(path) as store:
        make_run(store, "random-synthetic", 200, budget=200)
        make_run(store, "ponas-digits", 24, table=True, budget=24)
        failed = make_run(store, "too-tight", 3, status="failed", budget=50,
                          constraints=("params<=20k",))
        store.update_run(failed, error="RuntimeError: CUDA out of memory")
        make_run(store, "epnas-live", 60, status="running", budget=400, pid=os.getpid(),
                 in_flight=2, constraints=("params<=50k", "madds<=900k"))
    from workbench.runner.final_train import create_final_run

    final = create_final_run(path, 1, candidate_id=3, epochs=12)  # run 5, 7 epochs done
    with Store(path) as store:
        store.update_run(final, pid=os.getpid())
        record_final_epochs(store, final, range(1, 8), store.run(1)["created"])


async def shoot(db: Path, name: str, run_id: int | None, keys: list[str],
                value: tuple[str, str] | None = None) -> Path:
    clock = fixed_clock(db)
    app = NaswApp(Path("nasw.db"), run_id=run_id, clock=lambda: clock, poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(200):
            await pilot.pause(0.05)
            screen = app.screen
            if run_id is None and screen.query("#runs-table") and screen.query_one(
                    "#runs-table").row_count:
                break
            overview = isinstance(screen, RunDetailScreen) and screen.component("overview")
            if overview and overview.data:
                break
        for key in keys:
            await pilot.press(key)
            await pilot.pause(0.3)
        for _ in range(100):  # the shown tab's worker has drawn (architecture: its graph)
            screen = app.screen
            tab = screen.query_one("#run-tabs").active if isinstance(
                screen, RunDetailScreen) else None
            if tab != "architecture" or screen.component(tab).graph_for is not None:
                break
            await pilot.pause(0.05)
        if value is not None:
            app.screen.query_one(value[0]).value = value[1]
            await pilot.press("enter")
            await pilot.pause(1.0)
        await pilot.pause(0.5)
        svg = app.save_screenshot(filename=f"tui-{name}.svg", path=str(db.parent))
    png = DOCS / f"tui-{name}.png"
    import cairosvg

    # the SVG asks for Fira Code (web font); draw it with a local monospace font so the cells
    # line up in the PNG as they do in a terminal
    text = Path(svg).read_text().replace("Fira Code", "DejaVu Sans Mono")
    cairosvg.svg2png(bytestring=text.encode(), write_to=str(png))
    return png


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "nasw.db"
        make_docs_db(db)
        os.chdir(tmp)
        shots = [
            ("runs", None, [], None),
            ("new-run", None, ["n"], None),
            ("overview", 4, ["1"], None),
            ("candidates", 1, ["2", "s"], None),
            ("curves", 1, ["3"], None),
            ("architecture", 1, ["4"], None),
            ("pareto", 1, ["5"], None),
            ("accuracy-table", 2, ["6"], None),
            ("specialize", 2, ["7"], ("#constraint-input", "params<=45k, madds<=900k")),
            ("final-training", 5, ["3"], None),
            ("compare", None, ["down", "space", "down", "space", "space", "C"], None),
            ("help", None, ["question_mark"], None),
        ]
        for name, run_id, keys, value in shots:
            print(await shoot(db, name, run_id, keys, value))


if __name__ == "__main__":
    asyncio.run(main())
