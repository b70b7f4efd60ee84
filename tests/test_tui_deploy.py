"""Pilot tests of the TUI's deployment actions (issue 11) and GPU display (issue 10): export
and train-from-scratch of a candidate, a final-training run's epochs, the compare view, and the
Overview's GPUs (through a fake ``pynvml``: no GPU here).

Databases are written by the real random searcher and synthetic evaluator (``tui_support``);
a final-training run is created by :func:`create_final_run` and its epochs are recorded
through the store exactly as :class:`workbench.runner.final_train.FinalTrainer` writes them.
"""

from __future__ import annotations

import asyncio
import json
import sys
import types
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static
from tui_support import fixed_clock, make_db, record_final_epochs, text_of, wait_for

from workbench import tui_data
from workbench.analysis import compare_runs
from workbench.app import NaswApp
from workbench.components import overview as overview_module
from workbench.runner.final_train import create_final_run
from workbench.screens.compare import CompareScreen
from workbench.screens.detail import RunDetailScreen
from workbench.screens.modals import ConfirmScreen, ExportFormatScreen
from workbench.store import Store
from workbench.widgets.plots import ParetoFrontsPlot, TrainingPlot


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three finished/failed runs (read-only tests share it)."""
    return make_db(tmp_path_factory.mktemp("deploy") / "nasw.db")


@pytest.fixture(autouse=True)
def no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same screens with or without a GPU on the test machine (tests that want GPUs
    install a fake ``pynvml``)."""
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([]))


def app_on(path: Path, **kwargs) -> NaswApp:
    clock = fixed_clock(path)
    return NaswApp(path, clock=lambda: clock, poll_interval=0.1, **kwargs)


async def open_detail(pilot, app: NaswApp) -> RunDetailScreen:
    def ready() -> bool:
        screen = app.screen
        overview = isinstance(screen, RunDetailScreen) and screen.component("overview")
        return bool(overview) and screen.run is not None and bool(overview.data)

    await wait_for(pilot, ready)
    return app.screen


# -- export and train from the Candidates / Architecture tabs ----------------------------------
def test_export_a_candidate_writes_the_file_from_the_candidates_tab(
        db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    async def go() -> None:
        app = app_on(db, run_id=1)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_detail(pilot, app)
            await pilot.press("1", "e")  # not offered on the Overview
            assert not isinstance(app.screen, ExportFormatScreen)
            await pilot.press("2", "down", "down")
            chosen = screen.selected_id
            assert chosen is not None and chosen != screen.run.get("best_candidate")
            await pilot.press("e")
            assert isinstance(app.screen, ExportFormatScreen)
            await pilot.press("escape")  # cancel: nothing written
            assert app.screen is screen and not list(tmp_path.iterdir())
            await pilot.press("e", "j")
            target = tmp_path / f"run1-c{chosen}.json"
            await wait_for(pilot, target.exists, timeout=60)
            await pilot.press("4", "e", "d")  # the Architecture tab exports too
            await wait_for(pilot, (tmp_path / f"run1-c{chosen}.dot").exists)
            document = json.loads(target.read_text())
            with Store(db) as store:
                candidate = store.candidate(1, chosen)
            assert document["genotype"]["choices"] == candidate["genotype"]["choices"]
            assert document["provenance"]["candidate"] == chosen
            assert document["costs"]["params"] == pytest.approx(candidate["costs"]["params"])
            assert "->" in (tmp_path / f"run1-c{chosen}.dot").read_text()
            assert not list(tmp_path.glob(".*.tmp"))  # verify-then-rename left no temp file
    asyncio.run(go())


def test_export_report_and_failure_are_notified(db: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The notification names the path, the check and the re-measured costs; a failed export
    is an error notification naming the problem."""
    from searchers.errors import NaswError

    monkeypatch.chdir(tmp_path)
    messages: list[tuple[str, str]] = []

    async def go() -> None:
        app = app_on(db, run_id=1)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await open_detail(pilot, app)
            monkeypatch.setattr(screen, "notify", lambda message, severity="information",
                                **kw: messages.append((message, severity)))
            await pilot.press("2", "e", "d")
            await wait_for(pilot, lambda: any(m.startswith("wrote") for m, _ in messages))

            def unwritable(*args, **kwargs):
                raise NaswError("output", "run1-c0.onnx", "a writable location")

            monkeypatch.setattr(tui_data, "export_candidate", unwritable)
            await pilot.press("e", "o")
            await wait_for(pilot, lambda: any(s == "error" for _, s in messages))
    asyncio.run(go())
    wrote = next(m for m, _ in messages if m.startswith("wrote"))
    assert "(dot; written)" in wrote and "params" in wrote and "MAdds" in wrote
    assert "re-measured" in wrote
    assert [p.name for p in tmp_path.iterdir()] == [wrote.split()[1]]
    error = next(m for m, s in messages if s == "error")
    assert error.startswith("export failed") and "writable" in error


def test_train_a_candidate_asks_then_creates_launches_and_opens_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import workbench.runner

    db = make_db(tmp_path / "nasw.db")
    launched: list[int] = []
    monkeypatch.setattr(workbench.runner, "launch_detached",
                        lambda db_path, run_id: launched.append(run_id) or 0)

    async def go() -> None:
        app = app_on(db, run_id=1)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_detail(pilot, app)
            await pilot.press("2", "down")
            chosen = screen.selected_id
            await pilot.press("t")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("n")  # declined: nothing created
            await pilot.pause(0.2)
            assert not launched and app.screen is screen
            await pilot.press("t", "y")
            await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen)
                           and app.screen.run_id == 4)
            await wait_for(pilot, lambda: app.screen.is_final)
            await pilot.press("3")
            await wait_for(pilot, lambda: app.screen.query_one(
                "#training-plot", TrainingPlot).total_epochs == 30)
            await pilot.press("escape")
            assert app.screen is screen
            return chosen

    chosen = asyncio.run(go())
    assert launched == [4]
    with Store(db) as store:
        run = store.run(4)
    assert run["searcher"] == "final" and run["status"] == "created"
    params = run["config"]["searcher"]["params"]
    assert params["source"] == {"run": 1, "candidate": chosen}


def test_candidate_actions_are_in_the_command_palette_and_help(db: Path) -> None:
    async def go() -> None:
        app = app_on(db, run_id=1)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await open_detail(pilot, app)
            titles = [c.title for c in screen.palette_commands()]
            assert "Export candidate" in titles and "Train candidate from scratch" in titles
            export = next(c for c in screen.palette_commands() if c.title == "Export candidate")
            export.callback()  # from any tab
            await pilot.pause(0.1)
            assert isinstance(app.screen, ExportFormatScreen)
            await pilot.press("escape", "question_mark")
            help_text = str(app.screen.query_one(Static).render())
            assert "e exports the selected candidate" in help_text
            assert "C        compare the marked runs" in help_text
    asyncio.run(go())


# -- a final-training run ----------------------------------------------------------------------
def test_a_final_training_run_shows_epochs_live(tmp_path: Path) -> None:
    db = make_db(tmp_path / "nasw.db")
    final = create_final_run(db, 1, candidate_id=3, epochs=12)
    with Store(db) as store:
        created = store.run(final)["created"]
        record_final_epochs(store, final, range(1, 4), created)

    async def go() -> None:
        app = app_on(db, run_id=final)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_detail(pilot, app)
            await wait_for(pilot, lambda: screen.is_final and "Epoch" in text_of(
                screen.query_one("#overview-body", Static)))
            overview = text_of(screen.query_one("#overview-body", Static))
            assert "3/12 (25%)" in overview and "val accuracy 0.6200" in overview
            assert "loss 0.4000" in overview and "ETA" in overview
            await pilot.press("3")
            plot = screen.query_one("#training-plot", TrainingPlot)
            await wait_for(pilot, lambda: plot.epochs_done == 3)
            assert plot.display and not screen.query_one("#curves-plot").display
            assert plot.points["train/val_accuracy"] == {1: 0.54, 2: 0.58, 3: pytest.approx(0.62)}
            with Store(db) as store:  # the trainer goes on while the screen is open
                record_final_epochs(store, final, range(4, 7), created)
            await wait_for(pilot, lambda: plot.epochs_done == 6)
            await pilot.pause(0.2)
            rendered = str(plot.render())
            assert "epoch 6/12" in rendered
            await pilot.press("1")
            await wait_for(pilot, lambda: "6/12 (50%)" in text_of(
                screen.query_one("#overview-body", Static)))
    asyncio.run(go())


# -- the compare view --------------------------------------------------------------------------
def test_compare_marked_runs(db: Path) -> None:
    expected = {cost: compare_runs(Store(db), [1, 2], cost) for cost in ("params", "madds")}

    async def go() -> None:
        app = app_on(db)
        async with app.run_test(size=(80, 24)) as pilot:
            table = app.screen.query_one("#runs-table", DataTable)
            await wait_for(pilot, lambda: table.row_count == 3)
            await pilot.press("C")  # nothing marked: a warning, no screen
            assert not isinstance(app.screen, CompareScreen)
            await pilot.press("space", "space", "space")  # runs 3, 2, 1 (newest first)
            await pilot.press("up", "up", "up", "space")  # run 3 unmarked again
            assert app.screen.marked == {1, 2}
            assert str(table.get_row_at(1)[0]) == "●2" and str(table.get_row_at(0)[0]) == "3"
            await pilot.press("C")
            await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen)
                           and app.screen.query_one(DataTable).row_count == 2)
            compare = app.screen
            rows = [[str(c) for c in compare.query_one(DataTable).get_row_at(i)]
                    for i in range(2)]
            for row, summary in zip(rows, expected["params"], strict=True):
                assert row[0].startswith(str(summary["id"]))
                assert row[2] == f"{summary['best_accuracy']:.4f}"
                assert row[5] == str(summary["evaluations_to_best"])
                assert row[7] == str(summary["evaluations"])
            plot = compare.query_one("#compare-plot", ParetoFrontsPlot)
            assert plot.metric == "params" and len(plot.fronts) == 2
            assert [len(f) for f in plot.fronts.values()] == [
                len(s["pareto_front"]) for s in expected["params"]]
            await pilot.press("m")
            assert plot.metric == "madds"
            assert [x for x, _ in next(iter(plot.fronts.values()))] == sorted(
                p["madds"] for p in expected["madds"][0]["pareto_front"])
            await pilot.press("escape")
            assert not isinstance(app.screen, CompareScreen)
            # the command palette offers the same on the runs screen
            titles = [c.title for c in app.screen.palette_commands()]
            assert "Compare marked runs" in titles
    asyncio.run(go())


# -- GPUs in the Overview ----------------------------------------------------------------------
def fake_pynvml(gpus: list[tuple[str, int, int, int]], calls: list[str] | None = None,
                driver: bool = True) -> types.ModuleType:
    """A stand-in for nvidia-ml-py: ``gpus`` as (name, used bytes, total bytes, util %)."""
    module = types.ModuleType("pynvml")
    calls = calls if calls is not None else []

    def init() -> None:
        calls.append("init")
        if not driver:
            raise RuntimeError("NVML Shared Library Not Found")

    module.nvmlInit = init
    module.nvmlShutdown = lambda: calls.append("shutdown")
    module.nvmlDeviceGetCount = lambda: len(gpus)
    module.nvmlDeviceGetHandleByIndex = lambda i: i
    module.nvmlDeviceGetName = lambda h: gpus[h][0].encode()
    module.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(
        used=gpus[h][1], total=gpus[h][2], free=gpus[h][2] - gpus[h][1])
    module.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=gpus[h][3],
                                                                           memory=0)
    return module


def test_gpu_status_reads_nvml_and_is_empty_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(
        [("NVIDIA H100 80GB HBM3", 12 * 2**30, 80 * 2**30, 45)]))
    assert tui_data.gpu_status() == [{"index": 0, "name": "NVIDIA H100 80GB HBM3",
                                      "memory_used": 12 * 2**30, "memory_total": 80 * 2**30,
                                      "utilization": 45}]
    assert str(tui_data.describe_gpu(tui_data.gpu_status()[0])) == (
        "0 NVIDIA H100 80GB HBM3  mem ██░░░░░░░░░░ 12.0/80.0 GiB  util 45%")
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([], driver=False))
    assert tui_data.gpu_status() == []
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed: import fails
    assert tui_data.gpu_status() == []


def test_overview_shows_gpus_polling_only_while_shown(db: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(
        [("NVIDIA H100", 2**30, 80 * 2**30, 45), ("NVIDIA H100", 60 * 2**30, 80 * 2**30, 97)],
        calls))
    monkeypatch.setattr(overview_module, "GPU_POLL_S", 0.05)

    async def go() -> None:
        app = app_on(db, run_id=1)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await open_detail(pilot, app)
            body = screen.query_one("#overview-body", Static)
            await wait_for(pilot, lambda: "GPUs" in text_of(body))
            lines = [line.strip() for line in text_of(body).splitlines()]
            assert "GPUs      0 NVIDIA H100  mem ░░░░░░░░░░░░ 1.0/80.0 GiB  util 45%" in lines
            assert "1 NVIDIA H100  mem █████████░░░ 60.0/80.0 GiB  util 97%" in lines
            await pilot.press("2")  # Overview hidden: no more polls
            await wait_for(pilot, lambda: not screen.component("overview").gpu_in_flight)
            polls = calls.count("init")
            await pilot.pause(0.4)
            assert calls.count("init") == polls
            await pilot.press("1")
            await wait_for(pilot, lambda: calls.count("init") > polls + 2)
    asyncio.run(go())


def test_no_gpu_shows_nothing_and_stops_asking(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([], calls, driver=False))
    monkeypatch.setattr(overview_module, "GPU_POLL_S", 0.05)

    async def go() -> None:
        app = app_on(db, run_id=1)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_detail(pilot, app)
            await wait_for(pilot, lambda: screen.component("overview").gpu_polls >= 1)
            await pilot.pause(0.4)
            assert calls.count("init") == 1 and "GPU" not in text_of(
                screen.query_one("#overview-body", Static))
    asyncio.run(go())
