"""``nasw ponas validate``: table-spread networks, Kendall's tau, the plot, stored with the run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from searchers.base import Result
from searchers.errors import NaswError
from workbench.cli import main
from workbench.config import parse_config
from workbench.ponas_validate import (
    kendall_tau,
    loss_accuracy_plot,
    validate_run,
    validation_networks,
    validations,
)
from workbench.runner import Coordinator, start_run
from workbench.runner.backend import InlineBackend
from workbench.store import Store

PONAS = {"name": "ponas-validate", "space": {"name": "mbconv", "preset": "ponas-digits"},
         "dataset": {"name": "digits", "val_fraction": 0.2}, "evaluator": "synthetic",
         "searcher": {"name": "ponas", "preset": "ponas-digits"}, "constraints": [],
         "budget": {"candidates": 7}, "backend": {"kind": "local", "workers": 0}, "seed": 0}


@pytest.fixture(scope="module")
def ponas_run(tmp_path_factory):
    db = tmp_path_factory.mktemp("validate") / "nasw.db"
    run_id = start_run(db, parse_config(PONAS))
    assert Coordinator(db, run_id, backend=InlineBackend("synthetic")).run() == "finished"
    return db, run_id


def test_networks_spread_from_the_best_to_the_worst_of_the_table() -> None:
    rng = np.random.default_rng(0)
    loss = rng.random((6, 12))
    loss -= loss.min(axis=1, keepdims=True)
    picked = validation_networks(loss, 6)
    assert len({tuple(p) for p in picked}) == 6
    totals = [loss[np.arange(6), p].sum() for p in picked]
    assert totals[0] == 0.0 and totals[-1] == pytest.approx(loss.max(axis=1).sum())
    assert totals == sorted(totals)
    with pytest.raises(NaswError, match="networks"):
        validation_networks(loss, 1)


def test_kendall_tau_and_the_plot() -> None:
    assert kendall_tau([1, 2, 3, 4], [0.1, 0.2, 0.3, 0.4])[0] == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [0.4, 0.3, 0.2, 0.1])[0] == pytest.approx(-1.0)
    plot = loss_accuracy_plot([0.0, 0.1, 0.2], [0.9, 0.8, 0.85])
    assert "table accuracy loss" in plot and "\x1b[" not in plot and plot.count("o") >= 3


def _fake_train(slope):
    """Accuracy a linear function of the network's real capacity; no torch."""

    def train(job):
        from searchers.spaces import space_of

        params = space_of(job.genotype).costs(job.genotype)["params"]
        return Result(status="ok", accuracy=float(np.clip(0.5 + slope * params / 1e5, 0, 1)))

    return train


def test_validate_run_reports_tau_and_stores_it(ponas_run) -> None:
    db, run_id = ponas_run
    with Store(db) as store:
        good = validate_run(store, run_id, 5, epochs=1, train=_fake_train(+1.0))
        bad = validate_run(store, run_id, 5, epochs=1, train=_fake_train(-1.0))
        stored = validations(store, run_id)
    losses = [n["table_loss"] for n in good["networks"]]
    assert losses == sorted(losses) and len(good["networks"]) == 5
    # the synthetic table prefers bigger blocks: bigger networks have smaller loss, so a
    # trainer that rewards capacity agrees with the table and one that punishes it does not
    assert good["tau"] > 0.5 and bad["tau"] < -0.5
    assert good["tau"] == pytest.approx(-bad["tau"])
    assert good["spec"]["epochs"] == 1 and good["paper_tau"] == 0.733
    assert [s["tau"] for s in stored] == [good["tau"], bad["tau"]]
    assert stored[0]["networks"][0]["choices"] == good["networks"][0]["choices"]


def test_cli_prints_and_stores_and_refuses_bad_input(ponas_run, monkeypatch) -> None:
    import searchers.training

    db, run_id = ponas_run
    monkeypatch.setattr(searchers.training, "train", _fake_train(+1.0))
    runner = CliRunner()
    out = runner.invoke(main, ["ponas", "validate", str(run_id), "--networks", "4",
                               "--epochs", "1", "--db", str(db)])
    assert out.exit_code == 0, out.output
    assert "Kendall tau" in out.output and "0.733" in out.output
    assert "table accuracy loss" in out.output
    out = runner.invoke(main, ["ponas", "validate", str(run_id), "-k", "3", "--epochs", "1",
                               "--json", "--db", str(db)])
    data = json.loads(out.output)
    assert len(data["networks"]) == 3 and data["tau"] is not None
    with Store(db) as store:
        before = len(validations(store, run_id))
    for args, field in ((["999"], "run"), ([str(run_id), "--networks", "1"], "networks"),
                        ([str(run_id), "--epochs", "0"], "epochs")):
        out = runner.invoke(main, ["ponas", "validate", *args, "--db", str(db)])
        assert out.exit_code == 2 and field in out.output.lower(), out.output
    with Store(db) as store:
        assert len(validations(store, run_id)) == before


@pytest.mark.slow
def test_validate_trains_real_networks(ponas_run) -> None:
    db, run_id = ponas_run
    with Store(db) as store:
        result = validate_run(store, run_id, 3, epochs=1)
    assert result["trained"] == 3
    assert all(0.0 <= n["accuracy"] <= 1.0 for n in result["networks"])
    assert -1.0 <= result["tau"] <= 1.0


def test_latest_validation_and_its_summary_line(ponas_run, tmp_path) -> None:
    from workbench.ponas_validate import latest_validation, summary

    db, run_id = ponas_run
    with Store(db) as store:
        validate_run(store, run_id, 3, epochs=2, train=_fake_train(+1.0))
    latest = latest_validation(db, run_id)
    assert latest is not None and latest["spec"]["epochs"] == 2
    line = summary(latest)
    assert "Kendall tau" in line and "3 networks" in line and "0.733" in line
    assert latest_validation(db, 999) is None and summary(None) == ""
    assert latest_validation(tmp_path / "missing.db", run_id) is None


def test_the_accuracy_table_tab_shows_the_latest_validation(ponas_run) -> None:
    import asyncio

    from textual.app import App, ComposeResult
    from textual.widgets import Static
    from tui_support import text_of, wait_for

    from workbench import tui_data
    from workbench.components.accuracy_table import AccuracyTableTab

    db, run_id = ponas_run
    with Store(db) as store:
        result = validate_run(store, run_id, 4, epochs=2, train=_fake_train(+1.0))
    tab = AccuracyTableTab(db, run_id)

    class Host(App[None]):
        def compose(self) -> ComposeResult:
            yield tab

    async def go() -> None:
        async with Host().run_test(size=(120, 40)) as pilot:
            tab.update_run(tui_data.run_summary(db, run_id), tui_data.run_stamp(db, run_id))
            tab.activate()
            line = tab.query_one("#table-validation", Static)
            await wait_for(pilot, lambda: bool(line.display))
            text = text_of(line)
            assert f"Kendall tau {result['tau']:.3f} over 4 networks" in text

    asyncio.run(go())
