"""TUI speed at scale: how long nasw takes to show its screens, as ratios to a bare Textual app.

1. **Time to first screen** (fresh interpreters, median of N alternating starts, process start
   to the paint): the baseline is a bare Textual app (Header, a one-row DataTable, Footer)
   exiting after its first paint. Against it: nasw's runs screen with its rows painted, and
   ``nasw``'s run detail opened straight on a big run (as ``nasw run --tui`` does) with its
   Overview painted with the run's figures. Goal: both <= 1.5x the bare app.
   Every program starts from compiled bytecode, as an installed package does: the children
   share a private bytecode cache (``PYTHONPYCACHEPREFIX`` in the run's temporary folder,
   written by a first, untimed start of each program), whatever ``PYTHONDONTWRITEBYTECODE``
   says. With ``--bytecode inherit`` they run in this environment as it is instead (where
   ``PYTHONDONTWRITEBYTECODE`` is set, nasw's own modules, which no installer compiled here,
   are compiled from source at every start while Textual's come precompiled by pip).
2. **In the app** (one process, the run open): time from a tab's action (what its key runs,
   without the tab underline's animation) to the tab showing its
   data (Candidates' first page, Curves, Pareto), paging in the next 200 rows, sorting by
   accuracy, and a refresh after a coordinator writes 10 candidates and 100 metric points
   (poll + the shown tab's reads + drawing). Goal: every one well under the bare app's start.
   While Curves and Pareto are first shown (and, for reference, while the open app is idle
   for 1 s), the UI thread's longest stall: the most an asyncio task sleeping 2 ms at a time
   in the app's event loop woke up late (what a key press would have waited).

Sizes: 10,000 candidates / 100,000 metric points and 100,000 / 1,000,000 (``--sizes``).
The big runs are written through :meth:`Store.record` as a coordinator writes them (genotypes
drawn from a pool of 500 samples of the ``ponas-digits`` space, so writing stays quick).

    .venv/bin/python bench/bench_tui.py [--starts 5] [--refreshes 10] [--sizes 10000 100000]
        [--repeats 1] [--bytecode cached|inherit] [--no-in-app]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
        print(time.time(), time.process_time(), flush=True)
        self.exit()

Bare().run(headless=True, size=(120, 40))
"""

NASW_APP = """
import time
from workbench.app import NaswApp

RUN = {run!r}

class FirstScreen(NaswApp):
    done = False

    def on_mount(self):
        self.set_interval(0.002, self.check)

    def ready(self):
        screen = self.screen
        if RUN is None:
            return bool(screen.query("#runs-table")) and screen.query_one("#runs-table").row_count
        overview = getattr(screen, "components", {{}}).get("overview")
        return overview is not None and bool(overview.data) and screen.run is not None

    def check(self):
        if not self.done and self.ready():
            self.done = True
            self.call_after_refresh(self.painted)

    def painted(self):
        print(time.time(), time.process_time(), flush=True)
        self.exit()

FirstScreen({db!r}, run_id=RUN).run(headless=True, size=(120, 40))
"""


def child_env(bytecode_cache: Path | None) -> dict[str, str]:
    """The children's environment: with ``bytecode_cache``, every module (the standard
    library, Textual, nasw) is compiled once into that folder and loaded from it after."""
    env = dict(os.environ)
    if bytecode_cache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(bytecode_cache)
    return env


def time_start(code: str, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Seconds from spawning the interpreter to the app's paint, and the CPU seconds the
    process had used by then (all its threads; what a loaded machine inflates least). Both
    printed by the child at its paint."""
    started = time.time()
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env,
                         capture_output=True, text=True).stdout
    painted, cpu = (float(x) for x in out.strip().splitlines()[-1].split())
    return painted - started, cpu


def bench_starts(codes: dict[str, str], starts: int,
                 env: dict[str, str] | None = None) -> dict[str, tuple[float, float]]:
    """Median (wall to paint, CPU) of each program, the programs alternating (same load)."""
    for code in codes.values():  # warm the file cache and bytecode
        time_start(code, env)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in codes}
    for _ in range(starts):
        for name, code in codes.items():
            times[name].append(time_start(code, env))
    return {name: (statistics.median(w for w, _ in values), statistics.median(c for _, c in values))
            for name, values in times.items()}


def big_run(path: Path, candidates: int, metrics: int) -> int:
    """A finished random-search run of ``candidates`` candidates and ``metrics`` points."""
    import numpy as np

    from searchers.spaces import get_space
    from workbench.store import CandidateRow, Progress, Store

    space = get_space("mbconv", "ponas-digits")
    rng = np.random.default_rng(0)
    pool = [space.sample(rng) for _ in range(500)]
    costs = [space.costs(g) for g in pool]
    with Store(path) as store:
        run_id = store.create_run({"name": "big", "space": {"name": "mbconv",
                                   "preset": "ponas-digits"}, "searcher": {"name": "random"},
                                   "evaluator": "synthetic", "constraints": ["params<=60k"],
                                   "budget": {"candidates": candidates}})
        created = store.run(run_id)["created"]
        per_candidate = max(1, metrics // candidates)
        batch = 5000
        best = (-1.0, None)
        for start in range(0, candidates, batch):
            rows, points = [], []
            for cid in range(start, min(candidates, start + batch)):
                k = int(rng.integers(len(pool)))
                acc = float(rng.uniform(0.5, 0.95))
                feasible = costs[k]["params"] <= 60e3
                if feasible and acc > best[0]:
                    best = (acc, cid)
                rows.append(CandidateRow(id=cid, genotype=pool[k], status="ok", costs=costs[k],
                                         accuracy=acc, reward=acc, feasible=feasible,
                                         tag="bench", device=f"cpu:{cid % 2}", wall_time=1.0,
                                         started=created + cid, finished=created + cid + 1))
                points += [(cid, f"random/m{j}", acc) for j in range(per_candidate)]
            store.record(run_id, Progress(candidates=rows, metrics=points, summary={
                "n_done": start + len(rows), "n_asked": start + len(rows),
                "n_ok": start + len(rows), "best_accuracy": best[0],
                "best_candidate": best[1], "best_feasible": 1}))
        store.update_run(run_id, status="finished", started=created,
                         finished=created + candidates + 1)
    return run_id


class StallMonitor:
    """The event loop's longest stall while running: a task sleeps ``tick`` seconds at a time
    and records how much later than asked it woke up (the UI thread runs the loop)."""

    def __init__(self, tick: float = 0.002) -> None:
        self.tick = tick
        self.longest = 0.0
        self.task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(self.tick)
            self.longest = max(self.longest, time.perf_counter() - asked - self.tick)

    def __enter__(self) -> StallMonitor:
        self.task = asyncio.get_running_loop().create_task(self._watch())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            self.task.cancel()

    @property
    def longest_ms(self) -> float:
        return 1000 * self.longest


def drawn(plot: Any) -> bool:
    """The plot shows its latest figure (built in a worker; ``drawn`` is absent on code from
    before that, where the figure was built as the plot rendered)."""
    return bool(getattr(plot, "drawn", True))


async def until(pilot: Any, condition: Callable[[], bool], timeout: float = 120.0) -> float:
    """Milliseconds until ``condition()`` holds, polling every millisecond."""
    started = time.perf_counter()
    while not condition():
        if time.perf_counter() - started > timeout:
            raise TimeoutError("the TUI did not get there in time")
        await pilot.pause(0.001)
    return 1000 * (time.perf_counter() - started)


def bench_in_app(db: Path, run_id: int, candidates: int, refreshes: int) -> dict[str, float]:
    """Key press -> data shown, for each tab and action, in one running app. Run it in a fresh
    interpreter (:func:`in_app_child`): the first showing of Curves and Pareto includes
    whatever they import (numpy, plotext), which this function itself imports only after
    them, for the refreshes."""
    from workbench.app import NaswApp
    from workbench.screens.detail import RunDetailScreen

    figures: dict[str, float] = {}

    async def go() -> None:
        app = NaswApp(db, poll_interval=3600)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.screen.query("#runs-table")
                        and app.screen.query_one("#runs-table").row_count > 0)
            started = time.perf_counter()
            app.open_run(run_id)

            def overview_ready() -> bool:
                screen = app.screen
                tab = isinstance(screen, RunDetailScreen) and screen.component("overview")
                return bool(tab) and bool(tab.data)

            await until(pilot, overview_ready)
            figures["open (overview shown)"] = 1000 * (time.perf_counter() - started)
            screen = app.screen
            await until(pilot, lambda: not busy(app, None))  # the Overview's reads are done
            with StallMonitor() as idle:
                await asyncio.sleep(1.0)
            figures["UI stall, idle 1 s (reference)"] = idle.longest_ms
            started = time.perf_counter()
            screen.action_show_tab("candidates")
            await until(pilot, lambda: screen.component("candidates") is not None
                        and screen.component("candidates").table.row_count > 0)
            figures["candidates tab, first page"] = 1000 * (time.perf_counter() - started)
            table = screen.component("candidates")
            before = table.table.row_count
            started = time.perf_counter()
            table.table.move_cursor(row=before - 1)
            table.table.focus()
            await until(pilot, lambda: table.table.row_count > before or before >= candidates)
            figures["next page (200 rows)"] = 1000 * (time.perf_counter() - started)
            started = time.perf_counter()
            generation = table.generation
            screen.action_sort()  # by accuracy, best first
            await until(pilot, lambda: table.generation > generation
                        and table.sort_column == "Accuracy" and table.table.row_count > 0
                        and not busy(app, "candidate-page"))
            figures["sort by accuracy (SQL)"] = 1000 * (time.perf_counter() - started)
            await until(pilot, lambda: not busy(app, None))
            started = time.perf_counter()
            with StallMonitor() as stall:
                screen.action_show_tab("curves")

                def curves_drawn() -> bool:
                    tab = screen.component("curves")
                    plot = tab.query_one("#curves-plot") if tab is not None else None
                    return plot is not None and plot.points == candidates and drawn(plot) \
                        and drawn(tab.query_one("#metrics-plot"))

                await until(pilot, curves_drawn)
                figures["curves tab, drawn"] = 1000 * (time.perf_counter() - started)
            figures["UI stall, curves tab first shown"] = stall.longest_ms
            started = time.perf_counter()
            with StallMonitor() as stall:
                screen.action_show_tab("pareto")
                await until(pilot, lambda: screen.component("pareto") is not None
                            and screen.component("pareto").plot.view.get("n") == candidates
                            and drawn(screen.component("pareto").plot))
                figures["pareto tab, drawn"] = 1000 * (time.perf_counter() - started)
            figures["UI stall, pareto tab first shown"] = stall.longest_ms
            screen.action_show_tab("candidates")
            if not refreshes:
                return
            import numpy as np

            from searchers.spaces import get_space
            from workbench.store import CandidateRow, Progress, Store

            space = get_space("mbconv", "ponas-digits")
            rng = np.random.default_rng(1)
            writer = Store(db)
            timings = []
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
                    (next_id, "random/m0", 0.5)] * 100, summary={"n_done": next_id + 10}))
                next_id += 10
                loads = table.loads
                started = time.perf_counter()
                screen.poll()
                await until(pilot, lambda loads=loads, total=next_id: table.loads > loads
                            and table.total == total and not busy(app, "candidate-page"))
                timings.append(1000 * (time.perf_counter() - started))
            writer.close()
            figures["refresh (10 new candidates, 100 points)"] = statistics.median(timings)

    asyncio.run(go())
    return figures


def in_app_child(db: Path, run_id: int, candidates: int, refreshes: int,
                 root: Path = ROOT) -> dict[str, float]:
    """:func:`bench_in_app` in a fresh interpreter (nothing imported yet but the bench), on the
    code of ``root`` (another checkout, with this bench copied into its ``bench/``)."""
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(db)) as conn:  # the runs before grew by the refreshes
        candidates = conn.execute("SELECT count(*) FROM candidates WHERE run_id = ? AND status"
                                  " != 'running' AND accuracy IS NOT NULL", (run_id,)).fetchone()[0]
    code = (f"import json, sys; sys.path.insert(0, {str(root / 'bench')!r}); import bench_tui; "
            f"print(json.dumps(bench_tui.bench_in_app(bench_tui.Path({str(db)!r}), {run_id}, "
            f"{candidates}, {refreshes})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True)
    if done.returncode:
        raise RuntimeError(f"the in-app bench failed on {root}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def busy(app: Any, group: str | None) -> bool:
    """Whether a worker of ``group`` (None: any) is still pending or running."""
    from textual.worker import WorkerState

    return any((group is None or w.group == group)
               and w.state in (WorkerState.PENDING, WorkerState.RUNNING) for w in app.workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--refreshes", type=int, default=10)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--points-per-candidate", type=int, default=10)
    parser.add_argument("--bytecode", choices=("cached", "inherit"), default="cached",
                        help="cached: every program starts from compiled bytecode (a private "
                        "cache); inherit: this environment as it is")
    parser.add_argument("--repeats", type=int, default=1,
                        help="repeat the alternating starts; medians over the repeats")
    parser.add_argument("--no-in-app", dest="in_app", action="store_false",
                        help="time to first screen only")
    parser.add_argument("--in-app-repeats", type=int, default=1,
                        help="fresh interpreters per in-app run; medians")
    parser.add_argument("--before", type=Path, default=None,
                        help="a checkout of older code (with this bench copied into its bench/):"
                        " its in-app figures beside this tree's, from the same databases")
    args = parser.parse_args()
    from tui_support import make_db

    with tempfile.TemporaryDirectory() as tmp:
        small = make_db(Path(tmp) / "small.db")
        dbs = {}
        for size in args.sizes:
            t0 = time.perf_counter()
            path = Path(tmp) / f"big{size}.db"
            dbs[size] = (path, big_run(path, size, size * args.points_per_candidate))
            print(f"wrote a run of {size} candidates and {size * args.points_per_candidate} "
                  f"metric points in {time.perf_counter() - t0:.1f} s", flush=True)
        codes = {"bare": BARE_APP, "runs": NASW_APP.format(db=str(small), run=None)}
        for size, (path, run_id) in dbs.items():
            codes[f"detail {size}"] = NASW_APP.format(db=str(path), run=run_id)
        env = child_env(Path(tmp) / "pycache" if args.bytecode == "cached" else None)
        load = os.getloadavg()[0]
        rounds = [bench_starts(codes, args.starts, env) for _ in range(args.repeats)]
        medians = {name: (statistics.median(r[name][0] for r in rounds),
                          statistics.median(r[name][1] for r in rounds)) for name in codes}
        bare, bare_cpu = medians["bare"]
        print(f"\ntime to first screen (median of {args.repeats} x {args.starts} alternating "
              "starts): wall = process start to the paint, CPU = the process's CPU time at the "
              f"paint; bytecode {args.bytecode}; load average {load:.1f} before, "
              f"{os.getloadavg()[0]:.1f} after")
        print(f"  {'':<44} {'wall':>7} {'ratio':>6} {'CPU':>7} {'ratio':>6}"
              + ("  CPU ratio per repeat" if args.repeats > 1 else ""))

        def line(label: str, name: str) -> None:
            wall, cpu = medians[name]
            each = " ".join(f"{r[name][1] / r['bare'][1]:.2f}" for r in rounds)
            print(f"  {label:<44} {1000 * wall:5.0f}ms {wall / bare:5.2f}x {1000 * cpu:5.0f}ms "
                  f"{cpu / bare_cpu:5.2f}x" + (f"  {each}" if args.repeats > 1 else ""))

        line("bare Textual app (header, table, footer)", "bare")
        line("nasw runs screen, rows painted", "runs")
        for size in dbs:
            line(f"nasw run detail, {size} candidates, overview", f"detail {size}")
        print("  (goal: runs screen and run detail <= 1.5x the bare app)")
        for size, (path, run_id) in (dbs.items() if args.in_app else ()):
            print(f"\nin the app, run of {size} candidates / {size * args.points_per_candidate}"
                  " points (ms, and as a fraction of the bare app's start):")
            nows, befores = [], []
            for _ in range(args.in_app_repeats):  # alternating: the same load for both
                nows.append(in_app_child(path, run_id, size, args.refreshes))
                if args.before:  # no refreshes: older code refuses a newer schema
                    befores.append(in_app_child(path, run_id, size, 0, args.before))
            now = {k: statistics.median(r[k] for r in nows) for k in nows[0]}
            before = {k: statistics.median(r[k] for r in befores) for k in befores[0]} \
                if befores else {}
            print(f"  (medians of {args.in_app_repeats} fresh interpreters each, alternating)")
            if before:
                print(f"  {'':<42} {'this tree':>19}   {'before':>19}")
            for name, ms in now.items():
                was = before.get(name)
                print(f"  {name:<42} {ms:7.1f} ms  {ms / (1000 * bare):5.2f}x" + (
                    f"   {was:7.1f} ms  {was / (1000 * bare):5.2f}x" if was is not None else ""))


if __name__ == "__main__":
    main()
