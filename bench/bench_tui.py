"""TUI speed: time to first screen vs a bare Textual app, and the run-detail refresh time.

1. **Time to first screen**: a fresh interpreter starts ``nasw``'s app on a database with a few
   runs and exits as soon as the runs table has painted its rows; the baseline is a bare
   Textual app (Header, a one-row DataTable, Footer) exiting after its first paint, started the
   same way in the same run. Median of N alternating starts each. Goal: ratio <= 1.5.
2. **Refresh of the run detail** on a run with 10,000 candidates and 100,000 metric points: the
   initial load once, then per refresh (10 new candidates and 100 metric points written by
   another connection, as a coordinator does) the time of the incremental poll (store queries)
   plus applying it to every tab. Goal: < 100 ms per refresh.

    .venv/bin/python bench/bench_tui.py [--starts 5] [--refreshes 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

BARE_APP = """
import time
from textual.app import App
from textual.widgets import DataTable, Footer, Header

class Bare(App):
    def compose(self):
        yield Header()
        yield DataTable()
        yield Footer()

    def on_mount(self):
        table = self.query_one(DataTable)
        table.add_columns("a", "b")
        table.add_row("1", "2")
        self.call_after_refresh(self.painted)

    def painted(self):
        print(time.time(), flush=True)
        self.exit()

Bare().run(headless=True, size=(120, 40))
"""

NASW_APP = """
import time
from workbench.app import NaswApp
from workbench.screens.runs import RunsScreen

WAIT_FOR_ROWS = {rows!r}

class FirstScreen(NaswApp):
    def on_mount(self):
        super().on_mount()
        if WAIT_FOR_ROWS:
            self.set_interval(0.002, self.check)
        else:  # exactly as the bare app: its first paint
            self.call_after_refresh(self.painted)

    def check(self):
        screen = self.screen
        if not self.done and isinstance(screen, RunsScreen) and (
                not WAIT_FOR_ROWS or screen.query_one('#runs-table').row_count):
            self.done = True
            self.call_after_refresh(self.painted)

    def painted(self):
        print(time.time(), flush=True)
        self.exit()

    done = False

FirstScreen({db!r}).run(headless=True, size=(120, 40))
"""


def time_start(code: str) -> float:
    """Seconds from spawning the interpreter to the app's paint (printed by the child)."""
    started = time.time()
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1]) - started


def bench_start(db: Path, starts: int) -> None:
    """First paint of the runs screen (the store loads in a worker thread meanwhile), and the
    moment its rows are painted, each against the bare app."""
    first_paint = NASW_APP.format(db=str(db), rows=False)
    with_rows = NASW_APP.format(db=str(db), rows=True)
    for code in (BARE_APP, first_paint, with_rows):  # warm the file cache and bytecode
        time_start(code)
    bare, paint, rows = [], [], []
    for _ in range(starts):
        bare.append(time_start(BARE_APP))
        paint.append(time_start(first_paint))
        rows.append(time_start(with_rows))
    b, p, r = (statistics.median(x) for x in (bare, paint, rows))
    print(f"time to first screen (median of {starts} starts, process start to the paint):")
    print(f"  bare Textual app (header, table, footer)   {1000 * b:6.0f} ms")
    print(f"  nasw runs screen, first paint             {1000 * p:6.0f} ms -> ratio {p / b:.2f}"
          " (goal <= 1.5)")
    print(f"  nasw runs screen, with its rows painted   {1000 * r:6.0f} ms -> ratio {r / b:.2f}")


def big_run(path: Path, candidates: int, metrics: int) -> int:
    import numpy as np

    from searchers.spaces import get_space
    from workbench.store import CandidateRow, Progress, Store

    space = get_space("mbconv", "ponas-digits")
    rng = np.random.default_rng(0)
    with Store(path) as store:
        run_id = store.create_run({"name": "big", "space": {"name": "mbconv",
                                   "preset": "ponas-digits"}, "searcher": {"name": "random"},
                                   "evaluator": "synthetic", "constraints": ["params<=60k"],
                                   "budget": {"candidates": candidates + 1000}})
        created = store.run(run_id)["created"]
        per_metric = metrics // candidates
        for start in range(0, candidates, 1000):
            rows, points = [], []
            for cid in range(start, start + 1000):
                g = space.sample(rng)
                costs = space.costs(g)
                acc = float(rng.uniform(0.5, 0.95))
                rows.append(CandidateRow(id=cid, genotype=g, status="ok", costs=costs,
                                         accuracy=acc, reward=acc,
                                         feasible=costs["params"] <= 60e3, tag="bench",
                                         device="cpu:0", wall_time=1.0, started=created + cid,
                                         finished=created + cid + 1))
                points += [(cid, f"random/m{k}", acc) for k in range(per_metric)]
            store.record(run_id, Progress(candidates=rows, metrics=points,
                                          summary={"n_done": start + 1000}))
        store.update_run(run_id, status="running", started=created)
    return run_id


def bench_refresh(db: Path, refreshes: int, candidates: int, metrics: int) -> None:
    import numpy as np

    from searchers.spaces import get_space
    from workbench.app import NaswApp
    from workbench.screens.detail import RunDetailScreen
    from workbench.store import CandidateRow, Progress, Store

    t0 = time.perf_counter()
    run_id = big_run(db, candidates, metrics)
    print(f"wrote a run with {candidates} candidates and {metrics} metric points in "
          f"{time.perf_counter() - t0:.1f} s")
    space = get_space("mbconv", "ponas-digits")
    rng = np.random.default_rng(1)

    async def go() -> None:
        app = NaswApp(db, run_id=run_id, poll_interval=3600)
        async with app.run_test(size=(120, 40)) as pilot:
            started = time.perf_counter()
            while not (isinstance(app.screen, RunDetailScreen)
                       and len(app.screen.candidates) == candidates):
                await pilot.pause(0.01)
            screen = app.screen
            print(f"initial load of the run detail: {1000 * (time.perf_counter() - started):.0f}"
                  f" ms wall (poll {screen.last_refresh_ms - screen.apply_ms:.0f} ms + apply "
                  f"{screen.apply_ms:.0f} ms)")
            timings, polls = [], []
            writer = Store(db)
            next_id = candidates
            for _ in range(refreshes):
                rows = []
                for cid in range(next_id, next_id + 10):
                    g = space.sample(rng)
                    acc = float(rng.uniform(0.5, 0.95))
                    rows.append(CandidateRow(id=cid, genotype=g, status="ok",
                                             costs=space.costs(g), accuracy=acc, reward=acc,
                                             feasible=True, finished=time.time()))
                writer.record(run_id, Progress(candidates=rows, metrics=[
                    (next_id, "random/m0", 0.5)] * 100))
                next_id += 10
                before = screen.feed.polls
                screen.poll()
                while screen.feed.polls == before or len(screen.candidates) != next_id:
                    await pilot.pause(0.001)
                timings.append(screen.last_refresh_ms)
                polls.append(screen.last_refresh_ms - screen.apply_ms)
            writer.close()
            print(f"refresh of the run detail (10 candidates + 100 points new): median "
                  f"{statistics.median(timings):.1f} ms (store queries "
                  f"{statistics.median(polls):.1f} ms), max {max(timings):.1f} ms over "
                  f"{refreshes} refreshes (goal < 100 ms)")

    asyncio.run(go())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--refreshes", type=int, default=20)
    parser.add_argument("--candidates", type=int, default=10_000)
    parser.add_argument("--metrics", type=int, default=100_000)
    args = parser.parse_args()
    from tui_support import make_db

    with tempfile.TemporaryDirectory() as tmp:
        small = make_db(Path(tmp) / "small.db")
        bench_start(small, args.starts)
        bench_refresh(Path(tmp) / "big.db", args.refreshes, args.candidates, args.metrics)


if __name__ == "__main__":
    main()
