"""Each tab of the run detail mounted alone in a tiny App on a fixture database: the
components read their own data (paged, downsampled, incremental) and post their selection."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from textual.app import App, ComposeResult
from tui_support import fixed_clock, make_db, plots_drawn, text_of, wait_for

from workbench import tui_data
from workbench.analysis import pareto_front
from workbench.components import candidates as candidates_module
from workbench.components.accuracy_table import AccuracyTableTab
from workbench.components.architecture import ArchitectureTab
from workbench.components.base import CandidateSelected
from workbench.components.candidates import CandidatesTab, candidate_matches
from workbench.components.curves import CurvesTab
from workbench.components.overview import Activity, OverviewTab, describe_workers
from workbench.components.pareto import IncrementalFront, ParetoTab
from workbench.components.specialize import SpecializeTab
from workbench.store import Store
from workbench.widgets.plots import CurveSeries
from workbench.widgets.tab_bar import TabBar


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run 1: 40 random candidates; run 2: a PONAS run with its table; run 3: failed."""
    return make_db(tmp_path_factory.mktemp("components") / "nasw.db")


class Host(App[None]):
    """A tiny App around one component, with the run's row and stamp handed in as the
    detail screen would."""

    def __init__(self, component: Any, db: Path) -> None:
        super().__init__()
        self.component = component
        self.db_path = db
        now = fixed_clock(db)
        self.clock = lambda: now
        self.selected: list[CandidateSelected] = []

    def compose(self) -> ComposeResult:
        yield self.component

    def on_candidate_selected(self, message: CandidateSelected) -> None:
        self.selected.append(message)


def hosted(cls: type, db: Path, run_id: int, test: Any, size: tuple[int, int] = (120, 40),
           selected: int | None = None) -> None:
    """Mount ``cls`` for ``run_id`` alone, show it, then run ``test(pilot, component)``."""
    component = cls(db, run_id, id="under-test")

    async def go() -> None:
        app = Host(component, db)
        async with app.run_test(size=size) as pilot:
            component.select(selected)
            component.update_run(tui_data.run_summary(db, run_id),
                                 tui_data.run_stamp(db, run_id))
            component.activate()
            await test(pilot, component)
    asyncio.run(go())


def best_of(db: Path, run_id: int) -> dict[str, Any]:
    with Store(db) as store:
        return store.best_candidate(run_id)


def test_overview_alone(db: Path) -> None:
    best = best_of(db, 1)

    async def test(pilot, tab: OverviewTab) -> None:
        await wait_for(pilot, lambda: bool(tab.data) and tab.counts is not None)
        body = text_of(tab.query_one("#overview-body"))
        assert "40/40 (100%)" in body and "params<=60k" in body
        assert f"#{best['id']} accuracy {best['accuracy']:.4f}" in body
        assert "results by device: cpu:0 20, cpu:1 20" in body
        assert f"Selected  #{best['id']}" in body

    hosted(OverviewTab, db, 1, test, selected=best["id"])
    activity = Activity()  # a candidate in flight, then finished: counted once, on its device
    activity.add([(1, 7, "running", "cuda:0"), (2, 8, "ok", "cuda:1")])
    assert activity.in_flight == {7} and activity.devices == {"cuda:1": 1}
    activity.add([(3, 7, "ok", "cuda:0"), (4, 8, "ok", "cuda:0")])  # 8 re-run elsewhere
    assert not activity.in_flight and activity.devices == {"cuda:0": 2}
    assert describe_workers([{"index": 0, "device": "cuda:0", "job_id": 12, "restarts": 0},
                             {"index": 1, "device": "cuda:1", "job_id": None, "restarts": 2}]) \
        == "2 (busy 1/2): w0 cuda:0 -> #12, w1 cuda:1 idle (restarts 2)"


def test_candidates_page_in_sort_filter_and_select(db: Path, monkeypatch) -> None:
    monkeypatch.setattr(candidates_module, "PAGE", 10)
    monkeypatch.setattr(candidates_module, "LOOKAHEAD", 3)

    async def test(pilot, tab: CandidatesTab) -> None:
        table = tab.table
        assert table.row_count == 10 and tab.total == 40  # the first page only
        table.focus()
        await pilot.press(*["down"] * 7)  # within LOOKAHEAD of the end: the next page
        await wait_for(pilot, lambda: table.row_count == 20)
        assert [m.candidate_id for m in pilot.app.selected] == list(range(1, 8))
        tab.cycle_sort()  # accuracy, best first, sorted by SQL over the whole run
        await wait_for(pilot, lambda: tab.shown_generation == tab.generation)
        assert tab.sort_column == "Accuracy" and table.row_count >= 10
        accuracies = [float(str(table.get_row_at(i)[2])) for i in range(table.row_count)]
        assert accuracies == sorted(accuracies, reverse=True)
        assert accuracies[0] == max_accuracy
        tab.filter_text = "feasible params<50k"
        tab.requery()
        await wait_for(pilot, lambda: tab.shown_generation == tab.generation)
        assert tab.total == len(feasible_small)
        assert {int(str(table.get_row_at(i)[0])) for i in range(table.row_count)} \
            <= feasible_small
        await pilot.press("enter")
        assert pilot.app.selected[-1].show

    with Store(db) as store:
        everything = store.candidates(1)
    max_accuracy = round(max(c["accuracy"] for c in everything), 4)
    feasible_small = {c["id"] for c in everything if candidate_matches(c, "feasible params<50k")}
    assert 0 < len(feasible_small) < 40
    hosted(CandidatesTab, db, 1, test)


@pytest.mark.parametrize("query", ["feasible", "infeasible", "acc>0.7", "params<=50k madds>1M",
                                   "cpu:1", "sample 1", "reward>=0.6 feasible", "latency_ms<3",
                                   "ok 12"])
def test_filter_sql_agrees_with_the_python_filter(db: Path, query: str) -> None:
    with Store(db) as store:
        everything = store.candidates(1)
    expected = [c["id"] for c in everything if candidate_matches(c, query)]
    page = tui_data.candidate_page(db, 1, query=query, limit=1000)
    assert [row["id"] for row in page] == expected
    assert tui_data.candidate_count(db, 1, query) == len(expected)


def test_sql_sort_matches_python_sort(db: Path) -> None:
    with Store(db) as store:
        everything = store.candidates(1)
    for column, key in (("Accuracy", lambda c: c["accuracy"]), ("Params",
                        lambda c: c["costs"]["params"])):
        for reverse in (False, True):
            rows = tui_data.candidate_page(db, 1, sort=column, reverse=reverse, limit=1000)
            expected = sorted(everything, key=key, reverse=reverse)
            assert [key(c) for c in expected] == [key({"accuracy": r["accuracy"], "costs": {
                "params": r["params"]}}) for r in rows]


def test_curves_alone_downsampled(db: Path) -> None:
    async def test(pilot, tab: CurvesTab) -> None:
        plot = tab.query_one("#curves-plot")
        await wait_for(pilot, lambda: plot.points == 40)
        metrics = tab.query_one("#metrics-plot")
        await wait_for(pilot, lambda: metrics.key == "random/accuracy")
        assert metrics.keys == ["random/accuracy", "random/reward"] and metrics.count == 40
        legend = text_of(tab.query_one("#curves-legend"))
        assert "feasible fraction (right axis)" in legend
        await wait_for(pilot, lambda: plots_drawn(tab))
        lines = plot.rendered.split()
        assert max(line.cell_len for line in lines) == 120 and len(lines) == plot.size.height
        tab.cycle_metric()
        await wait_for(pilot, lambda: metrics.key == "random/reward" and plots_drawn(tab))
        assert "random/reward" in metrics.rendered.plain
        await pilot.resize_terminal(90, 30)  # each plot builds the figure of its new size
        await wait_for(pilot, lambda: plot.size.width == 90 and plots_drawn(tab))
        assert max(line.cell_len for line in plot.rendered.split()) == 90

    hosted(CurvesTab, db, 1, test)


def test_curve_series_view_keeps_the_envelope_and_running_values() -> None:
    rng = np.random.default_rng(0)
    series = CurveSeries()
    n = 10_000
    accuracy = rng.uniform(0.3, 0.9, n)
    feasible = rng.uniform(size=n) < 0.4
    series.add([(i, float(a), float(a), bool(f), 100.0 + i) for i, (a, f) in
                enumerate(zip(accuracy, feasible, strict=True))], 100.0)
    series.add([(5, 0.99, 0.99, True, 5.0)], 100.0)  # seen again: not counted twice
    view = series.view(200)
    assert view["n"] == n and len(view["x"]) == 200 and len(view["acc_y"]) == 400
    assert min(view["acc_y"]) == accuracy.min() and max(view["acc_y"]) == accuracy.max()
    assert view["feasible_fraction"][-1] == pytest.approx(feasible.mean())
    assert view["best_y"][-1] == accuracy[feasible].max()
    small = series.view(100_000)  # fewer points than buckets: every point
    assert len(small["x"]) == n


def test_metric_series_is_downsampled_in_sql(tmp_path: Path) -> None:
    from workbench.store import Progress

    path = tmp_path / "m.db"
    with Store(path) as store:
        run_id = store.create_run({"name": "m", "space": {"name": "mbconv"},
                                   "searcher": {"name": "random"}})
        store.record(run_id, Progress(metrics=[(step, "loss", float(step % 10))
                                               for step in range(5000)]))
    xs, ys, count = tui_data.metric_series(path, run_id, "loss", buckets=100)
    assert count == 5000 and 90 <= len(xs) <= 100
    assert all(y == pytest.approx(4.5, abs=0.5) for y in ys)
    assert tui_data.metric_keys(path, run_id) == ["loss"]


def test_architecture_alone_draws_the_selection(db: Path) -> None:
    best = best_of(db, 1)

    async def test(pilot, tab: ArchitectureTab) -> None:
        await wait_for(pilot, lambda: tab.graph_for == best["id"])
        text = text_of(tab.query_one("#arch-view"))
        assert f"Candidate #{best['id']}" in text and "L0 " in text
        tab.select(3)
        await wait_for(pilot, lambda: tab.graph_for == 3)

    hosted(ArchitectureTab, db, 1, test, selected=best["id"])


def test_pareto_alone_front_and_selection(db: Path) -> None:
    with Store(db) as store:
        everything = store.candidates(1)
    ok = [c for c in sorted(everything, key=lambda c: c["seq"]) if c["feasible"]]
    expected = [ok[i]["id"] for i in pareto_front([(c["costs"]["params"], c["accuracy"])
                                                   for c in ok])]

    async def test(pilot, tab: ParetoTab) -> None:
        await wait_for(pilot, lambda: tab.plot.view.get("n") == 40)
        assert tab.front() == expected
        assert tab.plot.view["selected"] is not None
        assert "Pareto front" in text_of(tab.query_one("#pareto-legend"))
        tab.toggle_metric()
        await wait_for(pilot, lambda: tab.metric == "madds" and tab.plot.view.get("n") == 40)

    hosted(ParetoTab, db, 1, test, selected=expected[0])


def test_incremental_front_is_the_batch_front() -> None:
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(1, 60))
        # few distinct values: ties in cost, in accuracy and exact duplicates
        points = [(float(rng.integers(0, 8)), float(rng.integers(0, 6))) for _ in range(n)]
        front = IncrementalFront()
        for i, (cost, accuracy) in enumerate(points):
            front.add(cost, accuracy, i)
        assert front.ids == pareto_front(points), (trial, points)


def test_incremental_front_fails_when_domination_is_ignored() -> None:
    """The ablation: a front that keeps every point differs from the batch front."""
    points = [(1.0, 0.5), (2.0, 0.4), (0.5, 0.6)]
    front = IncrementalFront()
    for i, point in enumerate(points):
        front.add(*point, i)
    assert front.ids == pareto_front(points) == [2]
    assert list(range(len(points))) != pareto_front(points)


def test_accuracy_table_alone_names_its_columns_by_block(db: Path) -> None:
    async def test(pilot, tab: AccuracyTableTab) -> None:
        await wait_for(pilot, lambda: len(tab.heatmap.table) == 72)
        header = text_of(tab.heatmap).splitlines()[0].split()
        assert header[:2] == ["layer", "importance"]
        assert header[2:] == ["k3e3", "k3e3se", "k3e6", "k3e6se", "k5e3", "k5e3se", "k5e6",
                                "k5e6se", "k7e3", "k7e3se", "k7e6", "k7e6se"]

    hosted(AccuracyTableTab, db, 2, test)


def test_specialize_alone_gets_the_table(db: Path) -> None:
    async def test(pilot, tab: SpecializeTab) -> None:
        await wait_for(pilot, lambda: len(tab.pane.rows) == 72)
        assert "Table 6 layers x 12 candidates, complete" in text_of(
            tab.query_one("#specialize-status"))

    hosted(SpecializeTab, db, 2, test)


def test_run_stamp_moves_only_with_new_rows(db: Path) -> None:
    assert tui_data.run_stamp(db, 1) == tui_data.run_stamp(db, 1)
    assert tui_data.run_stamp(db, 2).table[0] == 72
    assert tui_data.run_summary(db, 99) is None
    assert not math.isnan(tui_data.run_stamp(db, 1).candidate_seq)


def test_run_rows_decode_as_the_store_decodes_them(db: Path, tmp_path: Path) -> None:
    """The TUI reads runs with plain sqlite3 (no sqlite-utils at start-up): the same dicts as
    :meth:`Store.run`, for finished runs and for a live one whose coordinator is gone."""
    import os

    from tui_support import make_run

    from workbench import store as store_module

    assert tui_data.LIVE_STATUSES == store_module.LIVE_STATUSES
    assert tui_data.RUN_STATUSES == store_module.RUN_STATUSES
    assert tui_data.RUN_JSON_COLUMNS == store_module._JSON_RUN_COLUMNS
    path = make_db(tmp_path / "live.db")
    with Store(path) as store:
        make_run(store, "gone", 2, status="running", pid=2 ** 22 + 12345)
        make_run(store, "here", 2, status="running", pid=os.getpid())
        expected = [store.run(run_id) for run_id in store.run_ids()]
    assert tui_data.runs(path) == expected
    assert [r["status"] for r in expected[-2:]] == ["interrupted", "running"]
    # the runs list's first frame: read without the store unless a run is stored as live
    assert tui_data.settled_runs(path) is None
    assert tui_data.settled_runs(db) == tui_data.runs(db)
    assert tui_data.settled_runs(tmp_path / "absent.db") == []
    assert not (tmp_path / "absent.db").exists()
    assert tui_data.run_summary(path, expected[0]["id"]) == expected[0]


def test_tab_bar_keys_clicks_and_a_narrow_bar() -> None:
    """The run detail's one-widget tab bar: labels and the underline under the active tab;
    ``right``/``left`` (wrapping) and clicks change the tab and post ``TabActivated``; a bar
    narrower than its labels shifts so the active tab shows."""
    tabs = [("one", "1 One"), ("two", "2 Two"), ("three", "3 Three")]

    class BarHost(App[None]):
        def __init__(self) -> None:
            super().__init__()
            self.activated: list[str] = []

        def compose(self) -> ComposeResult:
            yield TabBar(tabs, "two", id="bar")

        def on_tab_bar_tab_activated(self, message: TabBar.TabActivated) -> None:
            self.activated.append(message.tab)

    def rows(bar: TabBar) -> list[str]:
        return [strip.text for strip in bar.render_lines(bar.region.reset_offset)]

    def underline_colours(bar: TabBar) -> list[Any]:
        """The colour of each cell of the underline row."""
        strip = bar.render_lines(bar.region.reset_offset)[1]
        return [segment.style.color for segment in strip for _ in segment.text]

    async def go() -> None:
        app = BarHost()
        async with app.run_test(size=(40, 6)) as pilot:
            bar = app.query_one(TabBar)
            labels, underline = rows(bar)
            assert labels.startswith(" 1 One  2 Two  3 Three ")
            start = labels.index("2 Two")
            assert underline[start:start + 5] == "━━━━━"  # under the active label,
            colours = underline_colours(bar)              # highlighted there only
            highlight = bar.get_component_rich_style("tab-bar--underline").color
            assert [i for i, c in enumerate(colours) if c == highlight] == list(
                range(start, start + 5))
            assert app.activated == []  # the initial tab is not an activation
            bar.focus()
            await pilot.press("right")
            assert bar.active == "three"
            await pilot.press("right")  # wraps
            assert bar.active == "one"
            await pilot.press("left", "left")
            assert bar.active == "two"
            await pilot.click(TabBar, offset=(labels.index("3 Three") + 2, 0))
            assert bar.active == "three"
            await pilot.click(TabBar, offset=(1, 1))  # under a label counts too
            assert bar.active == "one"
            await pilot.pause()
            assert app.activated == ["three", "one", "three", "two", "three", "one"]
            with pytest.raises(ValueError, match="no tab 'four'"):
                TabBar(tabs, "four")
        app = BarHost()
        async with app.run_test(size=(12, 6)) as pilot:
            bar = app.query_one(TabBar)
            bar.active = "three"
            await pilot.pause()
            assert rows(bar)[0].rstrip().endswith("3 Three")

    asyncio.run(go())


# -- the SQL reductions of the Curves and Pareto tabs against their references -----------------
def write_points(path: Path, points: list[tuple[Any, ...]], run_id: int | None = None,
                 started: float = 1000.0) -> int:
    """Candidates ``(id, status, params, madds, accuracy, reward, feasible, finished)``, one
    record per point (so one ``seq`` each, in list order), in a new run unless ``run_id``."""
    from workbench.store import CandidateRow, Progress

    with Store(path) as store:
        if run_id is None:
            run_id = store.create_run({"name": "points", "space": {"name": "mbconv"},
                                       "searcher": {"name": "random"}})
        for cid, status, params, madds, accuracy, reward, feasible, finished in points:
            costs = {k: v for k, v in (("params", params), ("madds", madds)) if v is not None}
            store.record(run_id, Progress(candidates=[CandidateRow(
                id=cid, genotype={"id": cid}, status=status, costs=costs, accuracy=accuracy,
                reward=reward, feasible=feasible, started=started, finished=finished)]))
    return run_id


def random_points(rng: np.random.Generator, n: int, first_id: int = 0) -> list[tuple[Any, ...]]:
    """Few distinct costs and accuracies (ties, exact duplicates), failed and running rows,
    missing rewards, feasibility and costs."""
    points = []
    for k in range(n):
        cid = first_id + k
        kind = rng.uniform()
        if kind < 0.05:
            points.append((cid, "running", None, None, None, None, None, None))
        elif kind < 0.1:
            points.append((cid, "failed", 4e4, 5e5, None, None, None, 1000.0 + 7 * cid))
        else:
            size = int(rng.integers(0, 10))  # larger, more accurate: a front of several
            params = None if kind < 0.12 else float(20 + size) * 1e3
            points.append((cid, "ok", params, float(3 + size + rng.integers(0, 3)) * 1e5,
                           float(50 + size + rng.integers(0, 6)) / 100, None if kind < 0.15 else
                           float(rng.uniform(0, 1)), None if kind < 0.17 else
                           bool(rng.uniform() < 0.4), 1000.0 + 7.5 * cid))
    return points


@pytest.mark.parametrize("buckets", [1, 37, 200, 100_000])
@pytest.mark.parametrize("by_time", [False, True])
def test_curve_view_in_sql_is_the_numpy_view(tmp_path: Path, buckets: int,
                                             by_time: bool) -> None:
    """``tui_data.curve_view`` (one GROUP BY in SQLite) draws what ``CurveSeries.view`` drew
    from every candidate: the same envelope, running values and step/minute centres."""
    path = tmp_path / "c.db"
    run_id = write_points(path, random_points(np.random.default_rng(1), 700))
    series = CurveSeries()
    series.add(((r[1], r[2], r[3], r[4], r[5])
                for r in tui_data.finished_since(path, run_id, 0)), 1000.0)
    expected = series.view(buckets, by_time)
    got = tui_data.curve_view(path, run_id, buckets, by_time, 1000.0)
    assert got["n"] == expected["n"] == len(series) > 600
    for key in ("acc_y", "best_y", "feasible_fraction"):
        assert got[key] == expected[key], key
    for key in ("x", "acc_x", "best_x", "reward"):  # means: SQLite sums exactly, numpy not
        assert got[key] == pytest.approx(expected[key], rel=1e-12, abs=1e-12), key
    assert tui_data.curve_view(path, run_id + 1, buckets) == {"n": 0}


def batch_fronts(rows: list[tuple[Any, ...]], metric: str) -> tuple[list[int], list[int]]:
    """The reference: ``analysis.pareto_front`` over the finished rows in write order."""
    column = 6 if metric == "params" else 7
    known = [r for r in rows if r[2] is not None and r[column] is not None]
    feasible = [r for r in known if r[4]]
    return tuple([group[i][1] for i in pareto_front([(r[column], r[2]) for r in group])]
                 for group in (known, feasible))


@pytest.mark.parametrize("sample", [0, 1, 8, 256])
@pytest.mark.parametrize("metric", ["params", "madds"])
def test_pareto_fronts_in_sql_are_the_batch_fronts(tmp_path: Path, metric: str, sample: int,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the staircase's sample rules out (nothing, a little, most candidates), the
    window finds the batch fronts, also over the candidates written up to a ``seq``."""
    monkeypatch.setattr(tui_data, "FRONT_SAMPLE", sample)
    path = tmp_path / "p.db"
    rng = np.random.default_rng(2)
    run_id = write_points(path, random_points(rng, 400))
    rows = tui_data.finished_since(path, run_id, 0)
    for upto in (rows[len(rows) // 2][0], rows[-1][0]):
        every, feasible = tui_data.pareto_fronts(path, run_id, metric, upto)
        assert ([p[2] for p in every], [p[2] for p in feasible]) == batch_fronts(
            [r for r in rows if r[0] <= upto], metric)
        assert len(every) > 1 and len(feasible) > 1


def test_incremental_fronts_equal_a_full_recompute(tmp_path: Path) -> None:
    """Folding only the newer rows into the stored fronts gives the fronts recomputed from
    scratch, also when a front point is written again worse (the points it hid return)."""
    from workbench.components.pareto import ParetoFronts

    path = tmp_path / "i.db"
    rng = np.random.default_rng(3)
    run_id = write_points(path, random_points(rng, 150))
    kept = {metric: ParetoFronts(metric) for metric in ("params", "madds")}
    for fronts in kept.values():
        fronts.update(path, run_id)
    before = list(kept["params"].every.ids)
    for batch in range(4):
        points = random_points(rng, 60, first_id=150 + 60 * batch)
        if batch == 2:  # the best front point of params comes back far less accurate
            top = kept["params"].every.ids[-1]
            points.append((top, "ok", 29e3, 8e5, 0.01, 0.0, True, 5000.0))
        write_points(path, points, run_id)
        for metric, fronts in kept.items():
            reads = []
            original = tui_data.finished_since

            def spy(*args: Any, reads: list = reads, original: Any = original) -> Any:
                rows = original(*args)
                reads.append(len(rows))
                return rows

            tui_data.finished_since = spy
            try:
                fronts.update(path, run_id)
            finally:
                tui_data.finished_since = original
            assert reads and max(reads) <= len(points)  # only the newer rows
            fresh = ParetoFronts(metric)
            fresh.update(path, run_id)
            assert fronts.every.points() == fresh.every.points(), (batch, metric)
            assert fronts.feasible.points() == fresh.feasible.points(), (batch, metric)
            rows = tui_data.finished_since(path, run_id, 0)
            assert (fronts.every.ids, fronts.feasible.ids) == batch_fronts(rows, metric), \
                (batch, metric)
    assert top not in kept["params"].every.ids and kept["params"].every.ids != before


def numpy_cloud(rows: list[tuple[Any, ...]], metric: str, columns: int,
                lines: int) -> dict[str, Any]:
    """The reference: the numpy thinning the Pareto tab did before it moved to SQL."""
    column = 6 if metric == "params" else 7
    known = [r for r in rows if r[2] is not None and r[column] is not None]
    x = np.asarray([float(r[column]) for r in known])
    y = np.asarray([float(r[2]) for r in known])
    f = np.asarray([bool(r[4]) for r in known])
    lo, hi, ylo, yhi = float(x.min()), float(x.max()), float(y.min()), float(y.max())
    gx = np.minimum(((x - lo) / ((hi - lo) or 1.0) * 2 * columns).astype(np.int64),
                    2 * columns)
    gy = np.minimum(((y - ylo) / ((yhi - ylo) or 1.0) * 4 * lines).astype(np.int64),
                    4 * lines)
    _, keep = np.unique((gx * (4 * lines + 1) + gy) * 2 + f.astype(np.int64),
                        return_index=True)
    x, y, f = x[keep], y[keep], f[keep]
    return {"n": len(known), "lo": lo, "hi": hi, "feasible_x": x[f].tolist(),
            "feasible_y": y[f].tolist(), "infeasible_x": x[~f].tolist(),
            "infeasible_y": y[~f].tolist()}


@pytest.mark.parametrize("metric", ["params", "madds"])
def test_pareto_cloud_in_sql_is_the_numpy_thinning(tmp_path: Path, metric: str) -> None:
    path = tmp_path / "t.db"
    rng = np.random.default_rng(4)
    points = [(cid, "ok", float(rng.uniform(2e4, 6e4)), float(rng.uniform(1e5, 9e5)),
               float(rng.uniform(0.5, 0.95)), 0.5, bool(rng.uniform() < 0.5), 1000.0 + cid)
              for cid in range(3000)]
    run_id = write_points(path, points + random_points(rng, 100, first_id=3000))
    rows = tui_data.finished_since(path, run_id, 0)
    for columns, lines in ((40, 10), (120, 35)):
        got = tui_data.pareto_cloud(path, run_id, metric, columns, lines)
        assert got == numpy_cloud(rows, metric, columns, lines)
        assert got["n"] > len(got["feasible_x"]) + len(got["infeasible_x"])  # thinned
