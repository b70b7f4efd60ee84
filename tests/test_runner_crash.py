"""Crash tests with real processes: SIGKILL the coordinator, SIGKILL a worker, two runs at once.

Runs start detached (``launch_detached``: new session, log file) with the ``slow_synthetic``
evaluator of ``runner_helpers`` so there is time to kill things mid-run; ``nasw ls`` and
``nasw resume`` run as real CLI processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from workbench.config import parse_config
from workbench.runner import launch_detached, start_run
from workbench.store import Store, pid_alive

pytestmark = pytest.mark.slow
TESTS = Path(__file__).parent
SLOW = "runner_helpers:slow_synthetic"


def config(budget: int, workers: int, seed: int = 0) -> dict:
    return {"name": f"crash-{seed}", "space": {"name": "mbconv", "preset": "ponas-digits"},
            "evaluator": "synthetic", "searcher": {"name": "random"},
            "constraints": ["params<=70k"], "budget": {"candidates": budget},
            "backend": {"workers": workers}, "seed": seed}


@pytest.fixture(autouse=True)
def _helpers_on_path(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]))


def nasw(*args: str, db: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from workbench.cli import main; main()", *args,
                           "--db", str(db)],
                          capture_output=True, text=True, timeout=timeout)


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigkill_coordinator_then_resume_finishes_the_budget_exactly(tmp_path, monkeypatch):
    monkeypatch.setenv("NASW_TEST_DELAY", "0.02")
    db = tmp_path / "nasw.db"
    budget = 120
    run_id = start_run(db, parse_config(config(budget, workers=0)))
    launch_detached(db, run_id, evaluator=SLOW)
    store = Store(db)
    pid = wait_for(lambda: store.run(run_id)["pid"], what="coordinator pid")
    wait_for(lambda: store.run(run_id)["n_done"] >= 40, what="40 candidates")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), what="coordinator death")
    before = {c["id"]: c for c in store.candidates(run_id)}
    finished_before = {i: c for i, c in before.items() if c["status"] != "running"}
    in_flight = sorted(i for i, c in before.items() if c["status"] == "running")
    assert 40 <= len(finished_before) < budget and in_flight

    listed = nasw("ls", "--json", db=db)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[0]["status"] == "interrupted"

    resumed = nasw("resume", str(run_id), db=db)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = {c["id"]: c for c in store.candidates(run_id)}
    run = store.run(run_id)
    reissued = store.events(run_id, kind="run")[-1]["data"]["reissued"]
    store.close()
    assert run["status"] == "finished" and run["n_done"] == budget
    assert sorted(after) == list(range(budget))
    assert all(c["status"] == "ok" for c in after.values())
    for cid, row in finished_before.items():  # finished before the kill: untouched
        assert after[cid] == row
    assert sorted(reissued) == in_flight  # exactly the jobs in flight were issued again
    assert all(after[i]["attempts"] == 2 for i in in_flight)
    assert len({c["hash"] for c in after.values()}) == budget  # no genotype twice
    assert sum(c["attempts"] for c in after.values()) == budget + len(in_flight)


def test_sigkill_a_worker_retries_its_job_and_the_run_completes(tmp_path, monkeypatch):
    # a job lasts much longer than reading the summary and killing: the worker the summary
    # shows busy with a job is still on that job when the signal lands, even on a loaded box
    monkeypatch.setenv("NASW_TEST_DELAY", "1.0")
    log = tmp_path / "evaluations.log"
    monkeypatch.setenv("NASW_TEST_EVAL_LOG", str(log))
    db = tmp_path / "nasw.db"
    run_id = start_run(db, parse_config(config(8, workers=2)))
    launch_detached(db, run_id, evaluator=SLOW)
    store = Store(db)

    def busy_worker():
        workers = store.run(run_id).get("workers") or []
        return next((w for w in workers if w.get("job_id") is not None and w.get("pid")), None)

    victim = wait_for(busy_worker, what="a busy worker")
    os.kill(victim["pid"], signal.SIGKILL)
    wait_for(lambda: store.run(run_id)["status"] == "finished", timeout=120, what="the end")
    cands = {c["id"]: c for c in store.candidates(run_id)}
    kinds = [e["kind"] for e in store.events(run_id)]
    retried = [e["data"] for e in store.events(run_id, kind="job_retried")]
    store.close()
    assert sorted(cands) == list(range(8)) and all(c["status"] == "ok" for c in cands.values())
    assert "worker_died" in kinds and retried
    assert retried[0]["job"] == victim["job_id"]
    assert cands[victim["job_id"]]["attempts"] == 2
    evaluated = Counter(int(line.split()[0]) for line in log.read_text().splitlines())
    assert sorted(evaluated) == list(range(8))  # every job answered (the killed one too)
    # only the victim's job may have run twice: it can be killed after computing its result
    assert all(n == 1 for job, n in evaluated.items() if job != victim["job_id"])


def test_two_runs_in_one_database_and_a_50ms_reader_never_see_locked(tmp_path, monkeypatch):
    monkeypatch.setenv("NASW_TEST_DELAY", "0.002")
    db = tmp_path / "nasw.db"
    runs = [start_run(db, parse_config(config(150, workers=0, seed=s))) for s in (1, 2)]
    for run_id in runs:
        launch_detached(db, run_id, evaluator=SLOW)
    errors: list[str] = []
    polls = 0
    stop = threading.Event()

    def poll() -> None:
        nonlocal polls
        with Store(db) as reader:
            while not stop.is_set():
                try:
                    reader.runs()
                    for run_id in runs:
                        reader.candidates(run_id)
                        reader.metrics(run_id)
                    polls += 1
                except Exception as err:  # the assertion below reports it
                    errors.append(repr(err))
                time.sleep(0.05)

    thread = threading.Thread(target=poll)
    thread.start()
    with Store(db) as store:
        try:
            wait_for(lambda: all(store.run(r)["status"] == "finished" for r in runs),
                     timeout=120, what="both runs")
        finally:
            stop.set()
            thread.join()
        results = [store.run(r) for r in runs]
        hashes = [{c["hash"] for c in store.candidates(r)} for r in runs]
    assert not errors, errors[:3]
    assert polls > 3
    assert [r["n_done"] for r in results] == [150, 150]
    assert hashes[0] != hashes[1]  # different seeds, independent runs
    for run_id in runs:
        log = (tmp_path / "nasw-logs" / f"run-{run_id}.log").read_text()
        assert "locked" not in log


def test_sigterm_stops_cleanly_and_a_killed_coordinator_leaves_no_workers(tmp_path, monkeypatch):
    monkeypatch.setenv("NASW_TEST_DELAY", "0.3")
    db = tmp_path / "nasw.db"
    runs = [start_run(db, parse_config(config(400, workers=2, seed=s))) for s in (3, 4)]
    for run_id in runs:
        launch_detached(db, run_id, evaluator=SLOW)
    store = Store(db)

    def workers_of(run_id):
        """Both workers started (pids known) and at least one of them in the middle of a job.

        A summary is written between a result and the next submission, so both workers are
        rarely shown busy at once; one busy worker is enough to leave a job in flight."""
        workers = store.run(run_id).get("workers") or []
        started = len(workers) == 2 and all(w.get("pid") for w in workers)
        busy = any(w.get("job_id") is not None for w in workers)
        return workers if started and busy else None

    terminated, killed = runs
    term_workers = wait_for(lambda: workers_of(terminated), timeout=120, what="busy workers")
    kill_workers = wait_for(lambda: workers_of(killed), timeout=120, what="busy workers")
    os.kill(store.run(terminated)["pid"], signal.SIGTERM)
    os.kill(store.run(killed)["pid"], signal.SIGKILL)
    wait_for(lambda: store.run(terminated)["stored_status"] == "interrupted", what="SIGTERM stop")
    pids = [w["pid"] for w in term_workers + kill_workers]
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=20, what="workers to exit")
    run = store.run(terminated)
    cancelled = store.candidates(terminated, status="cancelled")
    store.close()
    assert run["status"] == "interrupted" and run["workers"] == []
    assert cancelled and all(c["error"] == "run interrupted" for c in cancelled)
