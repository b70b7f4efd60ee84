"""Pilot tests of every screen and action of the workbench, on databases written through the
real store API by the real random searcher and synthetic evaluator (see ``tui_support``)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path

import pytest
from textual.command import CommandPalette
from textual.widgets import DataTable, Input, Static
from tui_support import (
    SPACE,
    config_for,
    fixed_clock,
    get_space,
    make_db,
    make_run,
    record_candidates,
    record_table,
    text_of,
    wait_for,
)

from searchers import get_searcher
from workbench import tui_data
from workbench.app import NaswApp
from workbench.components.candidates import candidate_matches
from workbench.screens.detail import RunDetailScreen
from workbench.screens.modals import ConfirmScreen, HelpScreen
from workbench.screens.new_run import NewRunScreen, field_for_error
from workbench.screens.runs import RunsScreen
from workbench.store import Store


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three finished/failed runs (read-only tests share it)."""
    return make_db(tmp_path_factory.mktemp("tui") / "nasw.db")


def app_on(path: Path, **kwargs) -> NaswApp:
    clock = fixed_clock(path) if path.exists() else time.time()
    return NaswApp(path, clock=lambda: clock, poll_interval=0.1, **kwargs)


def runs_table(app: NaswApp) -> DataTable:
    return app.screen.query_one("#runs-table", DataTable)


def detail(app: NaswApp) -> RunDetailScreen:
    assert isinstance(app.screen, RunDetailScreen)
    return app.screen


async def opened(pilot, app: NaswApp) -> RunDetailScreen:
    """The run detail with its run read and its Overview filled in."""
    def ready() -> bool:
        screen = app.screen
        overview = isinstance(screen, RunDetailScreen) and screen.component("overview")
        return bool(overview) and screen.run is not None and bool(overview.data)

    await wait_for(pilot, ready)
    return detail(app)


def shown(screen: RunDetailScreen, tab: str):
    """The tab's component (mounted on its first showing)."""
    component = screen.component(tab)
    assert component is not None, f"the {tab} tab was never shown"
    return component


# -- runs screen -------------------------------------------------------------------------------
def test_runs_screen_lists_every_run_with_its_summary(db: Path) -> None:
    async def go() -> None:
        app = app_on(db)
        async with app.run_test(size=(120, 30)) as pilot:
            await wait_for(pilot, lambda: runs_table(app).row_count == 3)
            table = runs_table(app)
            rows = {table.get_row_at(i)[0]: [str(c) for c in table.get_row_at(i)]
                    for i in range(3)}
            assert rows["1"][1:5] == ["random-synthetic", "finished", "random/mbconv", "40/40"]
            assert rows["3"][2] == "failed" and rows["3"][4] == "3/50"
            assert rows["2"][7] == "1h ago"  # created 90 min before the pinned clock
            with Store(db) as store:
                assert rows["1"][5] == f"{store.run(1)['best_accuracy']:.4f}"
            assert rows["1"][6] == "yes" and rows["3"][6] == "no"
            assert [table.get_row_at(i)[0] for i in range(3)] == ["3", "2", "1"]  # newest first
    asyncio.run(go())


def test_runs_sort_and_filter(db: Path) -> None:
    async def go() -> None:
        app = app_on(db)
        async with app.run_test(size=(100, 24)) as pilot:
            await wait_for(pilot, lambda: runs_table(app).row_count == 3)
            await pilot.press("s")  # -> Name, descending
            names = [str(runs_table(app).get_row_at(i)[1]) for i in range(3)]
            assert names == sorted(names, reverse=True)
            await pilot.press("S")
            names = [str(runs_table(app).get_row_at(i)[1]) for i in range(3)]
            assert names == sorted(names)
            await pilot.press("slash", *"failed")
            await wait_for(pilot, lambda: runs_table(app).row_count == 1)
            assert str(runs_table(app).get_row_at(0)[1]) == "too-tight"
            await pilot.press("enter", "escape")  # leave the box, then clear the filter
            await wait_for(pilot, lambda: runs_table(app).row_count == 3)
    asyncio.run(go())


def test_missing_database_shows_an_empty_list_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"

    async def go() -> None:
        app = app_on(path)
        async with app.run_test() as pilot:
            await pilot.pause(0.3)
            message = text_of(app.screen.query_one("#runs-message", Static))
            assert "No runs in" in message and runs_table(app).row_count == 0
    asyncio.run(go())
    assert not path.exists()


def test_empty_database_and_help_and_command_palette(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    Store(path).close()

    async def go() -> None:
        app = app_on(path)
        async with app.run_test() as pilot:
            await pilot.pause(0.2)
            assert "No runs in" in text_of(app.screen.query_one("#runs-message", Static))
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape")
            assert isinstance(app.screen, RunsScreen)
            await pilot.press("ctrl+p")
            await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
            await pilot.press(*"new run")
            await pilot.pause(0.3)
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen))
    asyncio.run(go())


def test_pause_and_cancel_write_command_rows_after_confirmation(tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    with Store(path) as store:
        run_id = make_run(store, "live", 5, status="running", pid=os.getpid())

    async def go() -> None:
        app = app_on(path)
        async with app.run_test() as pilot:
            await wait_for(pilot, lambda: runs_table(app).row_count == 1)
            assert str(runs_table(app).get_row_at(0)[2]) == "running"
            await pilot.press("p")
            await pilot.press("c")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("n")  # declined: nothing written
            await pilot.press("c")
            await pilot.press("y")
            await pilot.pause(0.1)
    asyncio.run(go())
    with Store(path) as store:
        assert store.take_commands(run_id) == ["pause", "cancel"]


def test_delete_asks_then_removes_the_run_and_its_rows(tmp_path: Path) -> None:
    path = make_db(tmp_path / "del.db")

    async def go() -> None:
        app = app_on(path)
        async with app.run_test() as pilot:
            await wait_for(pilot, lambda: runs_table(app).row_count == 3)
            await pilot.press("d")  # cursor on run 3 (newest first)
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("y")
            await wait_for(pilot, lambda: runs_table(app).row_count == 2)
    asyncio.run(go())
    with Store(path) as store:
        assert store.run_ids() == [1, 2]
        assert store.candidates(3) == []


def test_resume_relaunches_an_interrupted_run(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "int.db"
    with Store(path) as store:
        run_id = make_run(store, "killed", 5, status="running", pid=2 ** 22 + 12345)
        assert store.run(run_id)["status"] == "interrupted"  # its coordinator is gone
    relaunched: list[int] = []
    monkeypatch.setattr(tui_data, "resume_run", lambda db, rid: relaunched.append(rid))

    async def go() -> None:
        app = app_on(path)
        async with app.run_test() as pilot:
            await wait_for(pilot, lambda: runs_table(app).row_count == 1)
            await pilot.press("r")
            await wait_for(pilot, lambda: relaunched == [run_id])
    asyncio.run(go())


# -- run detail --------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
def test_every_tab_of_a_finished_run(db: Path, size: tuple[int, int]) -> None:
    async def go() -> None:
        app = app_on(db, run_id=1)
        async with app.run_test(size=size) as pilot:
            screen = await opened(pilot, app)
            assert list(screen.components) == ["overview"]  # only the shown tab loaded
            overview = text_of(screen.query_one("#overview-body", Static))
            assert "40/40 (100%)" in overview and "params<=60k" in overview
            with Store(db) as store:
                best = store.best_candidate(1)
            await wait_for(pilot, lambda: f"#{best['id']} accuracy {best['accuracy']:.4f}"
                           in text_of(screen.query_one("#overview-body", Static)))
            await pilot.press("2")
            table = screen.query_one("#candidate-table", DataTable)
            assert table.row_count == 40
            await wait_for(pilot, lambda: app.focused is table)
            await pilot.press("3")
            curves = shown(screen, "curves").query_one("#curves-plot")
            await wait_for(pilot, lambda: curves.points == 40)
            await pilot.press("4")
            await wait_for(pilot, lambda: shown(screen, "architecture").graph_for == best["id"])
            arch = text_of(screen.query_one("#arch-view", Static))
            assert f"Candidate #{best['id']}" in arch and "L0 " in arch and "params" in arch
            await pilot.press("5")
            pareto = shown(screen, "pareto")
            await wait_for(pilot, lambda: pareto.plot.view.get("n") == 40)
            assert best["id"] in pareto.front()  # the best feasible is on the feasible front
            await pilot.press("m")
            assert pareto.metric == "madds"
            await pilot.press("6", "7")
            assert "specialization needs a PONAS" in text_of(
                screen.query_one("#specialize-status", Static))
            await pilot.press("escape", "escape")
            assert isinstance(app.screen, RunsScreen)
    asyncio.run(go())


def test_footer_shows_each_tabs_keys_and_rebuilds_only_when_they_change(db: Path) -> None:
    """Export / train are offered on the Candidates and Architecture tabs only; the footer's
    keys are built once when the screen opens and rebuilt only when the keys change."""
    from textual.widgets._footer import FooterKey

    from workbench.widgets.footer import KeyFooter

    def keys(screen: RunDetailScreen) -> list[str]:
        return [key.description for key in screen.query(FooterKey)]

    async def go() -> None:
        app = app_on(db, run_id=1)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await opened(pilot, app)
            footer = screen.query_one(KeyFooter)
            await wait_for(pilot, lambda: "Runs" in keys(screen))
            assert footer.rebuilds == 1 and "Export" not in keys(screen)
            await pilot.press("2")
            await wait_for(pilot, lambda: "Export" in keys(screen))
            assert "Train" in keys(screen) and footer.rebuilds == 2
            await pilot.press("3")
            await wait_for(pilot, lambda: "Export" not in keys(screen))
            await pilot.press("5", "1")  # the same keys: nothing to rebuild
            await pilot.pause(0.2)
            assert footer.rebuilds == 3 and keys(screen)[:4] == ["Runs", "Pause", "Resume",
                                                                  "Cancel"]
    asyncio.run(go())


def test_candidate_filter_sort_and_selection_everywhere(db: Path) -> None:
    async def go() -> None:
        app = app_on(db, run_id=1)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await opened(pilot, app)
            await pilot.press("5", "2", "slash", *"feasible", "enter")
            tab = shown(screen, "candidates")
            table = screen.query_one("#candidate-table", DataTable)
            await wait_for(pilot, lambda: tab.shown_generation == tab.generation)
            with Store(db) as store:
                feasible = [c for c in store.candidates(1) if c["feasible"]]
            assert 0 < table.row_count == len(feasible) < 40
            await pilot.press("s")  # sort by accuracy, best first
            await wait_for(pilot, lambda: tab.shown_generation == tab.generation)
            accuracies = [float(str(table.get_row_at(i)[2])) for i in range(table.row_count)]
            assert accuracies == sorted(accuracies, reverse=True)
            await pilot.press("down", "enter")  # the second best: selected everywhere
            chosen = int(str(table.get_row_at(1)[0]))
            assert screen.selected_id == chosen
            assert shown(screen, "pareto").selected_id == chosen
            await wait_for(pilot, lambda: shown(screen, "architecture").graph_for == chosen)
            assert screen.query_one("#run-tabs").active == "architecture"
            assert f"selected #{chosen}" in text_of(screen.query_one("#run-summary", Static))
            await pilot.press("1")
            await wait_for(pilot, lambda: f"Selected  #{chosen}" in text_of(
                screen.query_one("#overview-body", Static)))
    asyncio.run(go())


def test_untrusted_text_shows_literally(tmp_path: Path) -> None:
    """A run name, an error, a tag and event data holding Rich markup or ANSI escapes are shown
    as the characters stored (escapes removed), on the runs list and in the run detail."""
    from workbench.store import CandidateRow, Progress

    path = tmp_path / "evil.db"
    evil = "[/bold] oops [red"
    ansi = "\x1b[31mred\x1b[0m\x1b]0;title\x07"
    with Store(path) as store:
        run_id = make_run(store, evil + ansi, 3, status="failed")
        store.update_run(run_id, error=f"boom {evil}\nRuntimeError: {evil}{ansi}")
        genotype = store.candidate(run_id, 0)["genotype"]
        store.record(run_id, Progress(
            candidates=[CandidateRow(id=9, genotype=genotype, status="ok", accuracy=0.5,
                                     tag=evil + ansi, device="[b]gpu", finished=1.0)],
            events=[(9, "[red]kind", {"note": evil + ansi})]))

    async def go() -> None:
        app = app_on(path)
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_for(pilot, lambda: runs_table(app).row_count == 1)
            name = str(runs_table(app).get_row_at(0)[1])
            assert name.startswith("[/bold] oops") and "\x1b" not in name
            await pilot.press("enter")
            screen = await opened(pilot, app)
            summary = text_of(screen.query_one("#run-summary", Static))
            assert f"{evil}red" in summary and "\x1b" not in summary and "\x07" not in summary
            overview = text_of(screen.query_one("#overview-body", Static))
            assert f"RuntimeError: {evil}red" in overview and "\x1b" not in overview
            assert "[red]kind" in overview
            await pilot.press("2")
            table = screen.query_one("#candidate-table", DataTable)
            await wait_for(pilot, lambda: table.row_count == 4)
            row = [str(c) for c in table.get_row_at(3)]
            assert row[7].startswith("[/bold] oops [red") and row[8] == "[b]gpu"
            app.save_screenshot(str(tmp_path / "evil.svg"))  # renders without MarkupError
    asyncio.run(go())


def test_worker_description() -> None:
    from workbench.components.overview import describe_workers

    assert describe_workers([{"index": 0, "device": "cuda:0", "job_id": 12, "restarts": 0},
                             {"index": 1, "device": "cuda:1", "job_id": None, "restarts": 2}]) \
        == "2 (busy 1/2): w0 cuda:0 -> #12, w1 cuda:1 idle (restarts 2)"


def test_candidate_filter_language() -> None:
    cand = {"id": 7, "status": "ok", "accuracy": 0.91, "reward": 0.9, "feasible": False,
            "costs": {"params": 2.5e6, "madds": 4e8}, "tag": "level 2", "device": "cuda:1"}
    assert candidate_matches(cand, "acc>0.9 params<3M infeasible cuda:1")
    assert not candidate_matches(cand, "madds<=300M")
    assert not candidate_matches(cand, "feasible")
    assert candidate_matches(cand, "level")


def test_accuracy_table_and_specialize_on_a_ponas_run(tmp_path: Path, monkeypatch) -> None:
    import workbench.runner

    db = make_db(tmp_path / "ponas.db")  # this test adds a specialization and a run
    monkeypatch.chdir(tmp_path)  # where the export lands
    launched: list[int] = []
    monkeypatch.setattr(workbench.runner, "launch_detached",
                        lambda db_path, run_id: launched.append(run_id) or 0)

    async def go() -> None:
        app = app_on(db, run_id=2)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await opened(pilot, app)
            await pilot.press("6")
            await wait_for(pilot, lambda: len(screen.query_one("#heatmap").table) == 72)
            heat = text_of(screen.query_one("#heatmap", Static))
            assert "72/72 cells measured" in heat and "importance" in heat
            await pilot.press("7", *"params<=45k", "enter")
            out = screen.query_one("#specialize-result", Static)
            await wait_for(pilot, lambda: "Best architecture" in text_of(out)
                           or "red" in str(out.render().spans))
            text = text_of(out)
            assert "optimal (proven)" in text and "estimated accuracy" in text
            result = screen.query_one("#specialize-pane").result
            assert result["feasible"] and result["costs"]["params"] <= 45e3
            pane = screen.query_one("#specialize-pane")
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: pane.saved_id is not None)
            await pilot.press("ctrl+o")  # the JSON genotype document, via workbench.export
            exported = tmp_path / f"run2-s{pane.saved_id}.json"
            await wait_for(pilot, exported.exists, timeout=60)
            await pilot.press("ctrl+t", "y")  # a final-training run, launched, then opened
            await wait_for(pilot, lambda: launched)
            await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen)
                           and app.screen.run_id == launched[0])
            await pilot.press("escape")
            assert app.screen is screen
            await pilot.press("escape")  # out of the input: digits switch tabs again
            await pilot.press("1")
            assert screen.query_one("#run-tabs").active == "overview"
            await pilot.press("7")
            screen.query_one("#constraint-input", Input).value = ""
            await pilot.press(*"params<=1k", "enter")
            await wait_for(pilot, lambda: "No architecture" in text_of(out))
            assert "Smallest reachable" in text_of(out)
    asyncio.run(go())
    with Store(db) as store:
        saved = store.specializations(2)
        final = store.run(launched[0])
    assert len(saved) == 1 and saved[0]["constraints"][0]["metric"] == "params"
    assert saved[0]["result"]["genotype"]["space"] == SPACE
    assert final["status"] == "created" and final["id"] == 4
    document = json.loads((tmp_path / f"run2-s{saved[0]['id']}.json").read_text())
    assert saved[0]["result"]["genotype"]["choices"] == result_choices(document)


def result_choices(document: dict) -> list[int]:
    """The choices of an exported genotype document (``{"genotype": {...}, ...}``)."""
    genotype = document.get("genotype", document)
    return list(genotype["choices"])


def test_a_run_written_during_the_test_fills_in_live(tmp_path: Path) -> None:
    """A writer thread records candidates and table rows while the app polls."""
    path = tmp_path / "live.db"
    with Store(path) as store:
        run_id = store.create_run(config_for("live", "ponas", budget=30))
        store.update_run(run_id, status="running", pid=os.getpid(),
                         started=store.run(run_id)["created"])
    done = threading.Event()

    def writer() -> None:
        with Store(path) as store:
            space = get_space(SPACE, "ponas-digits")
            searcher = get_searcher("random", space=space, budget=30, seed=0,
                                    constraints=["params<=60k"])
            created = store.run(run_id)["created"]
            for _ in range(6):
                record_candidates(store, run_id, searcher, 5, created)
                time.sleep(0.05)
            record_table(store, run_id, space, layers=3)
            store.update_run(run_id, status="finished")
        done.set()

    async def go() -> None:
        app = app_on(path, run_id=run_id)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen))
            screen = detail(app)
            thread = threading.Thread(target=writer)
            thread.start()
            await pilot.press("2")
            await wait_for(pilot, lambda: done.is_set()
                           and screen.query_one("#candidate-table").row_count == 30
                           and (screen.run or {}).get("status") == "finished", timeout=10)
            thread.join()
            assert screen.polls > 2  # it was polled while the writer wrote
            assert shown(screen, "candidates").loads > 1  # and the shown tab re-read
            await pilot.press("6")
            await wait_for(pilot, lambda: len(screen.query_one("#heatmap").table) == 36)
            await pilot.press("3")
            curves = shown(screen, "curves").query_one("#curves-plot")
            await wait_for(pilot, lambda: curves.points == 30)
    asyncio.run(go())


def test_a_run_that_disappears_is_reported_not_fatal(tmp_path: Path) -> None:
    path = make_db(tmp_path / "gone.db")

    async def go() -> None:
        app = app_on(path, run_id=3)
        async with app.run_test() as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen)
                           and detail(app).run is not None)
            tui_data.delete_run(path, 3)
            await wait_for(pilot, lambda: detail(app).gone)
            assert "no longer exists" in text_of(app.screen.query_one("#run-summary", Static))
            await pilot.press("escape")
            await wait_for(pilot, lambda: runs_table(app).row_count == 2)
    asyncio.run(go())


def test_detail_pause_resume_cancel_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    with Store(path) as store:
        run_id = make_run(store, "live", 5, status="running", pid=os.getpid())

    async def go() -> None:
        app = app_on(path, run_id=run_id)
        async with app.run_test() as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen)
                           and detail(app).run is not None)
            await pilot.press("p", "r")  # resume refused: the run is running, not paused
            await pilot.press("c", "y")
            await pilot.pause(0.1)
    asyncio.run(go())
    with Store(path) as store:
        assert store.take_commands(run_id) == ["pause", "cancel"]


# -- new run -----------------------------------------------------------------------------------
def test_field_for_error_maps_config_paths_to_form_fields() -> None:
    assert field_for_error("budget.candidates") == "candidates"
    assert field_for_error("constraints[0].value") == "constraints"
    assert field_for_error("searcher.params.max_tries") == "params"
    assert field_for_error("space.preset") == "preset"
    assert field_for_error("budget") == "candidates"
    assert field_for_error("train.lr") is None


def test_new_run_form_validates_like_the_cli_then_launches_a_live_run(tmp_path: Path) -> None:
    """Template -> form -> inline error (the CLI's message) -> fix -> launch detached -> the
    run's detail fills in live from the real coordinator."""
    from searchers.errors import NaswError
    from workbench.config import parse_config
    from workbench.screens.new_run import templates

    path = tmp_path / "new.db"
    names = [p.name for p in templates()]
    assert names[0] == "quickstart.yaml"  # the default template comes first
    index = names.index("random-synthetic.yaml")

    async def go() -> None:
        app = app_on(path)
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen))
            form = app.screen
            await pilot.press(*["down"] * index, "enter")
            field = form.query_one("#field-candidates", Input)
            await wait_for(pilot, lambda: field.value == "200" and form.valid)
            assert form.query_one("#field-name", Input).value == "random-synthetic"
            field.value = "-5"
            error = form.query_one("#error-candidates", Static)
            await wait_for(pilot, lambda: text_of(error) != "")
            data = form.config_data()
            with pytest.raises(NaswError) as cli_error:
                parse_config(data)
            assert text_of(error) == str(cli_error.value)
            assert "budget.candidates" in text_of(error)
            await pilot.press("ctrl+l")  # refused while invalid
            assert app.screen is form
            field.value = "30"
            form.query_one("#field-constraints", Input).value = "params<=50k"
            await wait_for(pilot, lambda: form.valid and text_of(error) == "")
            await pilot.press("ctrl+l")
            await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen), timeout=30)
            screen = detail(app)
            await wait_for(pilot, lambda: (screen.run or {}).get("status") == "finished"
                           and screen.run.get("n_done") == 30, timeout=60)
            assert screen.run["name"] == "random-synthetic"
            assert screen.run["constraints"] == ["params<=50k"]
            assert tui_data.candidate_count(path, screen.run_id, "feasible") == 30  # hard
    asyncio.run(go())
