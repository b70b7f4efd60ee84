"""The `nasw` commands over a real database: run, ls, show, resume, pause, cancel, cost, doctor."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from searchers.spaces import get_space
from workbench.cli import main
from workbench.store import Store

SAMPLES = Path(__file__).parent.parent / "sample_configs"
SYNTHETIC = str(SAMPLES / "random-synthetic.yaml")


def nasw(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def finished_db(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("cli") / "nasw.db"
    result = nasw("run", SYNTHETIC, "--db", str(db), "--json")
    assert result.exit_code == 0, result.output
    return db


def test_run_attached_reports_json(finished_db) -> None:
    with Store(finished_db) as store:
        run = store.run(1)
    assert run["status"] == "finished" and run["n_done"] == 200


def test_db_option_before_or_after_the_command_and_from_the_environment(finished_db) -> None:
    after = json.loads(nasw("ls", "--json", "--db", str(finished_db)).output)
    before = json.loads(nasw("--db", str(finished_db), "ls", "--json").output)
    from_env = json.loads(nasw("ls", "--json", env={"NASW_DB": str(finished_db)}).output)
    assert after == before == from_env
    assert after[0]["status"] == "finished" and after[0]["best_feasible"] is True
    table = nasw("ls", "--db", str(finished_db)).output
    assert "finished" in table and "random" in table


def test_show_json_lists_candidates_with_costs_and_the_best(finished_db) -> None:
    shown = json.loads(nasw("show", "1", "--json", "--db", str(finished_db)).output)
    assert shown["status"] == "finished" and len(shown["candidates"]) == 200
    assert all(c["costs"]["params"] == c["params"] for c in shown["candidates"])
    assert all(c["params"] <= 60_000 for c in shown["candidates"])  # hard constraint held
    best = max(shown["candidates"], key=lambda c: c["accuracy"])
    assert shown["best"]["id"] == best["id"] == shown["best_candidate"]
    assert shown["best_accuracy"] == best["accuracy"]
    assert shown["pid"] and shown["heartbeat"] and shown["config"]["searcher"]["name"] == "random"
    checkpoint = shown["checkpoint"]  # the random searcher's state: no large arrays
    assert checkpoint["state_bytes"] > 0 and checkpoint["arrays"] == 0
    assert checkpoint["state_bytes"] < 4096 and checkpoint["problem"] is None  # no history
    text = nasw("show", "1", "--db", str(finished_db)).output
    assert "best: candidate" in text and "coordinator pid" in text
    assert "checkpoint " in text and "0 arrays" in text


def test_bad_run_ids_and_finished_runs_exit_2(finished_db) -> None:
    for args in (["show", "9"], ["resume", "1"], ["pause", "1"], ["cancel", "1"],
                 ["resume", "9"]):
        result = CliRunner().invoke(main, [*args, "--db", str(finished_db)])
        assert result.exit_code == 2, (args, result.output)
        assert "run" in result.output


def test_reading_commands_never_create_a_database(tmp_path) -> None:
    db = tmp_path / "none.db"
    assert "no runs" in nasw("ls", "--db", str(db)).output
    assert CliRunner().invoke(main, ["show", "1", "--db", str(db)]).exit_code == 2
    assert not db.exists()


def test_cost_of_a_genotype_file_and_of_a_config(tmp_path) -> None:
    space = get_space("mbconv", "ponas-digits")
    genotype = space.sample(np.random.default_rng(3))
    path = tmp_path / "g.json"
    path.write_text(json.dumps(genotype))
    row = json.loads(nasw("cost", str(path), "--json").output)
    assert row["costs"] == space.costs(genotype) and row["hash"] == space.hash(genotype)
    rows = json.loads(nasw("cost", SYNTHETIC, "--count", "3", "--json").output)
    assert len(rows) == 3 and all(r["feasible"] == (r["costs"]["params"] <= 60_000) for r in rows)
    assert "params" in nasw("cost", str(path)).output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"space": "mbconv", "preset": "ponas-digits", "choices": [99]}))
    result = CliRunner().invoke(main, ["cost", str(bad)])
    assert result.exit_code == 2 and "genotype" in result.output


def test_doctor_reports_health_and_flags_a_world_writable_database(finished_db, tmp_path) -> None:
    ok = nasw("doctor", "--json", "--db", str(finished_db))
    report = json.loads(ok.output)
    assert ok.exit_code == 0 and report["problems"] == []
    assert report["database"]["journal_mode"] == "wal"
    assert report["database"]["integrity"] == "ok" and report["torch"]["installed"]
    exposed = tmp_path / "open.db"
    Store(exposed).close()
    os.chmod(exposed, 0o666)
    flagged = nasw("doctor", "--db", str(exposed))
    assert flagged.exit_code == 1 and "world-writable" in flagged.output


def test_detached_run_survives_and_cancel_of_an_interrupted_run(tmp_path) -> None:
    db = tmp_path / "d.db"
    started = nasw("run", SYNTHETIC, "--detach", "--json", "--db", str(db))
    info = json.loads(started.output)
    assert started.exit_code == 0 and info["pid"] and info["run_id"] == 1
    with Store(db) as store:
        deadline = time.time() + 60
        while store.run(1)["status"] != "finished" and time.time() < deadline:
            time.sleep(0.05)
        assert store.run(1)["status"] == "finished"
        assert store.run(1)["pid"] == info["pid"]  # the grandchild recorded itself
        assert Path(store.run(1)["log_path"]).exists()
        run_id = store.create_run(store.run(1)["config"])
        store.update_run(run_id, status="running", pid=2**22 + 12345, host="elsewhere",
                         heartbeat=time.time() - 3600)
    assert json.loads(nasw("ls", "--json", "--db", str(db)).output)[1]["status"] == "interrupted"
    assert "cancelled" in nasw("cancel", str(run_id), "--db", str(db)).output
    with Store(db) as store:
        assert store.run(run_id)["status"] == "cancelled"


def test_every_command_has_help() -> None:
    listing = nasw("--help").output
    for command in ("run", "resume", "ls", "show", "pause", "cancel", "cost", "doctor"):
        assert command in listing
        text = nasw(command, "--help").output
        assert "--db" in text
        assert len(text.split("\n\n")[1].strip()) > 10  # a real description


def test_tui_flag_launches_detached_then_opens_the_app_on_the_run(tmp_path, monkeypatch) -> None:
    import workbench.app

    opened: list[tuple] = []
    monkeypatch.setattr(workbench.app, "run_app", lambda db, run_id=None: opened.append((db, run_id)))
    db = tmp_path / "t.db"
    result = nasw("run", SYNTHETIC, "--tui", "--db", str(db))
    assert result.exit_code == 0, result.output
    assert opened == [(db, 1)]
    with Store(db) as store:
        deadline = time.time() + 60
        while store.run(1)["status"] != "finished" and time.time() < deadline:
            time.sleep(0.05)
        assert store.run(1)["status"] == "finished"


def test_resume_of_a_paused_run_with_a_live_coordinator_sends_a_command(tmp_path) -> None:
    import socket

    db = tmp_path / "p.db"
    with Store(db) as store:
        run_id = store.create_run({"name": "p", "budget": {"candidates": 1}})
        store.update_run(run_id, status="paused", pid=os.getpid(), host=socket.gethostname(),
                         heartbeat=time.time())
    assert "resume sent" in nasw("resume", str(run_id), "--db", str(db)).output
    assert "pause sent" in nasw("pause", str(run_id), "--db", str(db)).output
    with Store(db) as store:
        assert store.take_commands(run_id) == ["resume", "pause"]


def test_doctor_never_writes_to_a_foreign_database(tmp_path) -> None:
    import hashlib
    import sqlite3

    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE notes (text)")
    before = hashlib.sha256(foreign.read_bytes()).hexdigest()
    result = nasw("doctor", "--json", "--db", str(foreign))
    report = json.loads(result.output)
    assert result.exit_code == 1
    assert any("another application's SQLite database" in p for p in report["problems"])
    assert hashlib.sha256(foreign.read_bytes()).hexdigest() == before
