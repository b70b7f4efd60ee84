"""The store is safe to share: nothing in it executes, one writer per run, a busy file is
waited for, run files are never reused, untrusted text cannot break the CLI.

* a malicious pickle planted in the checkpoint -- and then in every text and blob column of a
  real store -- is never executed by ``resume``, ``show``, ``ls``, ``export``,
  ``specialize --estimate`` or the TUI's resume; each answers with a clear message;
* a coordinator stopped with SIGSTOP whose run is taken over from another host writes nothing
  when it is continued, and exits;
* a writer holding the lock past the busy timeout does not fail another run in the file;
* a run id may be reused by SQLite, its files' folder (the uid) never is;
* liveness is pid + process start time, never a command line.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from workbench.cli import main
from workbench.config import parse_config
from workbench.runner import Coordinator, InlineBackend, launch_detached, start_run
from workbench.state_codec import LEGACY_MESSAGE, StateFormatError, decode_state
from workbench.store import LeaseLost, Progress, Store, pid_alive

TESTS = Path(__file__).parent
RANDOM = {"name": "random-run", "space": {"name": "mbconv", "preset": "ponas-digits"},
          "evaluator": "synthetic", "searcher": {"name": "random"},
          "constraints": ["params<=70k"], "budget": {"candidates": 12}, "seed": 0,
          "backend": {"workers": 0}}
PONAS = {"name": "ponas-run", "space": {"name": "mbconv", "preset": "ponas-digits"},
         "evaluator": "synthetic", "searcher": {"name": "ponas", "preset": "ponas-digits"},
         "budget": {"candidates": 73}, "seed": 0, "backend": {"workers": 0}}


class _Plant:
    """Unpickling this creates ``path``: proof that something was executed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def _payload(marker: Path) -> bytes:
    return pickle.dumps({"state": _Plant(marker)}, protocol=5)


def _cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=True)


def _clean(result: Any, allowed: tuple[int, ...]) -> None:
    assert result.exit_code in allowed, (result.exit_code, result.output)
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)


def _finished_db(path: Path) -> tuple[int, int]:
    random_run = start_run(path, parse_config(RANDOM))
    assert Coordinator(path, random_run).run() == "finished"
    ponas_run = start_run(path, parse_config(PONAS))
    assert Coordinator(path, ponas_run).run() == "finished"
    with sqlite3.connect(path) as conn:  # a stopped run: what `nasw resume` is for
        conn.execute("UPDATE runs SET status = 'interrupted', pid = NULL WHERE id = ?",
                     (random_run,))
    conn.close()
    return random_run, ponas_run


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("safety") / "source.db"
    _finished_db(path)
    return path


def _copy(source: Path, target: Path) -> Path:
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()
    return target


async def _tui_resume(db: Path, run_id: int) -> list[str]:
    from tui_support import wait_for

    from workbench.app import NaswApp
    from workbench.screens.runs import RunsScreen

    app = NaswApp(db, poll_interval=0.1)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.rows)
        screen = app.screen
        table = screen.query_one("#runs-table")
        for row in range(table.row_count):
            table.move_cursor(row=row)
            await pilot.pause()
            if screen.selected_run_id() == run_id:
                break
        await pilot.press("r")
        await wait_for(pilot, lambda: len(app._notifications) > 0, timeout=20)
        return [str(n.message) for n in app._notifications]


def test_a_planted_checkpoint_is_never_unpickled(finished, tmp_path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS))
    db = _copy(finished, tmp_path / "nasw.db")
    marker = tmp_path / "EXECUTED"
    payload = _payload(marker)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE searcher_state SET blob = ?", (payload,))
        conn.execute("UPDATE state_blobs SET data = ?", (payload,))
        conn.execute("INSERT INTO state_blobs (run_id, digest, data) VALUES (1, 'x', ?)",
                     (payload,))
    conn.close()
    with pytest.raises(StateFormatError):
        decode_state(payload, lambda digest: payload)

    resume = _cli("resume", "1", "--db", str(db))
    _clean(resume, (2,))
    assert "older nasw in an unsafe format" in resume.output
    show = _cli("show", "1", "--db", str(db))
    _clean(show, (0,))
    assert "cannot be resumed" in show.output
    _clean(_cli("ls", "--db", str(db)), (0,))
    _clean(_cli("export", "1", "-o", str(tmp_path / "g.json"), "--db", str(db)), (0,))
    estimate = _cli("specialize", "2", "-c", "params<=60k", "--estimate", "--db", str(db))
    _clean(estimate, (2,))
    assert "older nasw" in estimate.output
    with pytest.raises(StateFormatError, match="older nasw"):
        launch_detached(db, 1)
    notes = asyncio.run(_tui_resume(db, 1))
    assert any("older nasw" in note for note in notes), notes
    assert not marker.exists()
    with Store(db) as store:
        assert store.checkpoint_problem(1) == LEGACY_MESSAGE
        assert store.run(1)["status"] == "interrupted"  # still viewable, untouched


def _plant_everywhere(db: Path, payload: bytes) -> int:
    """The payload in every TEXT and BLOB column of every table (unique ones made unique)."""
    planted = 0
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        for table in tables:
            for _, column, kind, *_ in conn.execute(f"PRAGMA table_info({table})").fetchall():
                if kind.upper() not in ("TEXT", "BLOB", ""):
                    continue
                for (rowid,) in conn.execute(f"SELECT rowid FROM {table}").fetchall():
                    conn.execute(f'UPDATE {table} SET "{column}" = ? WHERE rowid = ?',
                                 (payload + str(rowid).encode(), rowid))
                    planted += 1
    conn.close()
    return planted


def test_a_pickle_in_every_column_executes_nothing(finished, tmp_path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS))
    db = _copy(finished, tmp_path / "nasw.db")
    marker = tmp_path / "EXECUTED"
    assert _plant_everywhere(db, _payload(marker)) > 100
    _clean(_cli("ls", "--db", str(db)), (0,))
    _clean(_cli("ls", "--json", "--db", str(db)), (0,))
    _clean(_cli("show", "1", "--db", str(db)), (0,))
    _clean(_cli("show", "2", "--json", "--db", str(db)), (0,))
    for args in (["resume", "1"], ["resume", "2"],
                 ["export", "1", "-o", str(tmp_path / "x.json")],
                 ["specialize", "2", "-c", "params<=60k", "--estimate"]):
        result = _cli(*args, "--db", str(db))
        _clean(result, (2,))
        assert "error:" in result.output, (args, result.output)
    for run_id in (1, 2):
        with pytest.raises(Exception) as err:
            launch_detached(db, run_id)
        assert "damaged" in str(err.value) or "older nasw" in str(err.value)
    assert not marker.exists()


# -- one writer per run, fenced -----------------------------------------------------------------
def _wait(predicate, timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _lock_free(db: Path) -> bool:
    conn = sqlite3.connect(db, timeout=0.05)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def _rows(db: Path, run_id: int) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, seq, status, told, attempts FROM candidates"
                            " WHERE run_id = ? ORDER BY id", (run_id,)).fetchall()
        rows.append(conn.execute("SELECT status, n_done, lease_token FROM runs WHERE id = ?",
                                 (run_id,)).fetchone())
    conn.close()
    return rows


@pytest.mark.slow
def test_a_stopped_coordinator_taken_over_writes_nothing_when_continued(tmp_path,
                                                                         monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("NASW_TEST_DELAY", "0.05")
    db = tmp_path / "nasw.db"
    budget = 60
    run_id = start_run(db, parse_config({**RANDOM, "budget": {"candidates": budget}}))
    launch_detached(db, run_id, evaluator="runner_helpers:slow_synthetic")
    with Store(db) as store:
        pid = _wait(lambda: store.run(run_id)["pid"], what="coordinator pid")
        _wait(lambda: store.run(run_id)["n_done"] >= 8, what="8 candidates")
    for _ in range(50):  # stop it outside a write transaction (those last milliseconds)
        os.kill(pid, signal.SIGSTOP)
        time.sleep(0.05)
        if _lock_free(db):
            break
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.01)
    else:
        pytest.fail("the coordinator always held the write lock")
    try:
        with sqlite3.connect(db) as conn:  # time passes: its heartbeat goes stale
            conn.execute("UPDATE runs SET heartbeat = heartbeat - 120 WHERE id = ?", (run_id,))
        conn.close()
        monkeypatch.setenv("NASW_HOST", "another-host")  # we are someone else now
        with Store(db) as store:
            assert store.run(run_id)["status"] == "interrupted"
        assert Coordinator(db, run_id).run() == "finished"
        after_takeover = _rows(db, run_id)
    finally:
        os.kill(pid, signal.SIGCONT)
    _wait(lambda: not pid_alive(pid), timeout=30, what="the stale coordinator to exit")
    assert _rows(db, run_id) == after_takeover  # not one row written after it woke
    status, n_done, _ = after_takeover[-1]
    assert status == "finished" and n_done == budget
    assert all(row[2] != "running" for row in after_takeover[:-1])
    with Store(db) as store:
        log = Path(store.run(run_id)["log_path"]).read_text()
    assert "stopping without writing" in log or "stopped without writing" in log


def test_a_lost_lease_fences_every_write(tmp_path) -> None:
    db = tmp_path / "nasw.db"
    run_id = start_run(db, parse_config(RANDOM))
    with Store(db) as first, Store(db) as second:
        first.claim_run(run_id, os.getpid())
        with sqlite3.connect(db) as conn:  # the run looks abandoned to the second host
            conn.execute("UPDATE runs SET status = 'interrupted' WHERE id = ?", (run_id,))
        conn.close()
        second.claim_run(run_id, os.getpid())
        second.send_command(run_id, "pause")  # something for take_commands to consume
        before = _rows(db, run_id)
        for write in (lambda: first.heartbeat(run_id),
                      lambda: first.update_run(run_id, status="failed"),
                      lambda: first.record(run_id, Progress(state={"x": 1})),
                      lambda: first.take_commands(run_id)):
            with pytest.raises(LeaseLost):
                write()
        assert _rows(db, run_id) == before
        assert second.take_commands(run_id) == ["pause"]
        second.heartbeat(run_id)  # the holder writes on


def test_a_lock_held_past_the_busy_timeout_does_not_fail_another_run(tmp_path) -> None:
    db = tmp_path / "nasw.db"
    stuck = start_run(db, parse_config({**RANDOM, "name": "stuck"}))
    other = start_run(db, parse_config({**RANDOM, "name": "other"}))
    holding, release = threading.Event(), threading.Event()

    def stuck_writer() -> None:  # a coordinator stopped inside its write transaction
        conn = sqlite3.connect(db, timeout=5)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE runs SET heartbeat = 1 WHERE id = ?", (stuck,))
        holding.set()
        release.wait(30)
        conn.execute("COMMIT")
        conn.close()

    holder = threading.Thread(target=stuck_writer)
    holder.start()
    holding.wait(10)
    timer = threading.Timer(2.0, release.set)  # 2 s: well past the 0.3 s busy timeout
    timer.start()
    started = time.monotonic()
    try:
        status = Coordinator(db, other, busy_timeout_ms=300,
                             backend=InlineBackend("synthetic")).run()
        waited = time.monotonic() - started
    finally:
        release.set()
        holder.join()
    assert status == "finished" and waited >= 1.5
    with Store(db) as store:
        assert store.run(other)["n_done"] == RANDOM["budget"]["candidates"]
        busy = store.events(other, kind="db_busy")
    assert busy and busy[0]["data"]["waited_s"] > 0.3


def test_cli_on_a_locked_database_exits_2_with_a_message(tmp_path) -> None:
    db = tmp_path / "nasw.db"
    run_id = start_run(db, parse_config(RANDOM))
    conn = sqlite3.connect(db, timeout=5)
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = CliRunner().invoke(main, ["cancel", str(run_id), "--db", str(db)],
                                    env={"NASW_BUSY_TIMEOUT_MS": "200"}, catch_exceptions=True)
    finally:
        conn.execute("ROLLBACK")
        conn.close()
    _clean(result, (2,))
    assert "busy" in result.output


# -- run files, liveness, text --------------------------------------------------------------------
def test_a_deleted_runs_files_go_with_it_and_are_never_reused(tmp_path) -> None:
    db = tmp_path / "nasw.db"
    first = start_run(db, parse_config(RANDOM))
    with Store(db) as store:
        folder = store.run_dir(first)
        folder.mkdir(parents=True)
        (folder / "weights.pt").write_bytes(b"old weights")
        store.update_run(first, status="finished")
        store.delete_run(first)
        assert not folder.exists()
    second = start_run(db, parse_config(RANDOM))
    with Store(db) as store:
        assert second == first  # SQLite reuses the newest id...
        assert store.run_dir(second) != folder  # ...its files' folder is new


def test_liveness_is_pid_and_start_time_not_a_command_line(tmp_path) -> None:
    db = tmp_path / "nasw.db"
    run_id = start_run(db, parse_config(RANDOM))
    with Store(db) as store:
        store.claim_run(run_id, os.getpid())
        assert store.run(run_id)["status"] == "running"  # this very process: alive
        with sqlite3.connect(db) as conn:  # same pid, another start time: a reused pid
            conn.execute("UPDATE runs SET pid_started = pid_started - 1000, heartbeat = ?"
                         " WHERE id = ?", (time.time(), run_id))
        conn.close()
        assert store.run(run_id)["status"] == "interrupted"  # though pytest's pid is alive


def test_markup_and_escapes_in_names_are_shown_literally(tmp_path) -> None:
    db = tmp_path / "nasw.db"
    hostile = "[/bold] oops [red\x1b[31m\x1b]0;title\x07"
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**RANDOM, "name": hostile}))
    assert _cli("run", str(config), "--db", str(db)).exit_code == 0
    for args in (["ls"], ["show", "1"], ["compare", "1", "--no-plot"]):
        result = _cli(*args, "--db", str(db))
        _clean(result, (0,))
        assert "[/bold] oops [red" in result.output, (args, result.output)
        assert "\x1b" not in result.output and "\x07" not in result.output


def test_ls_into_a_pipe_prints_whole_values(tmp_path) -> None:
    db = tmp_path / "nasw.db"
    long_name = "a-very-long-run-name-that-a-table-would-cut-" + "x" * 80
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**RANDOM, "name": long_name}))
    assert _cli("run", str(config), "--db", str(db)).exit_code == 0
    with Store(db) as store:
        store.update_run(1, status="interrupted", pid=None)
    result = _cli("ls", "--db", str(db))  # CliRunner's stdout is not a terminal: a pipe
    lines = result.output.splitlines()
    assert lines[0].split("\t")[:3] == ["id", "name", "status"]
    assert long_name in result.output and "\tinterrupted\t" in lines[1]
