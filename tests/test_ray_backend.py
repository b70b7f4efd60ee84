"""The Ray backend against a local Ray instance and a `ray start --head` cluster on loopback."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from ray_helpers import DIE_ALWAYS_ON_JOB, RAISE_ON_JOB, SLOW_S  # noqa: E402

from workbench.config import parse_config  # noqa: E402
from workbench.runner import Coordinator, start_run  # noqa: E402
from workbench.runner.backend import MAX_RETRIES  # noqa: E402
from workbench.store import Store  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]
TESTS = Path(__file__).parent


def config(backend: dict, budget: int = 12) -> dict:
    return {
        "name": "ray-vs-local",
        "space": {"name": "mbconv", "preset": "ponas-digits"},
        "dataset": {"name": "digits"},
        "evaluator": "synthetic",
        "searcher": {"name": "random"},
        "constraints": ["params<=200k"],
        "budget": {"candidates": budget},
        "backend": backend,
        "seed": 3,
    }


def run_to_end(db: Path, cfg: dict, evaluator: str | None = None) -> list[dict]:
    run_id = start_run(db, parse_config(cfg))
    status = Coordinator(db, run_id, evaluator=evaluator).run()
    assert status == "finished"
    with Store(db) as store:
        return sorted(store.candidates(run_id), key=lambda c: c["id"])


def summary(rows: list[dict]) -> list[tuple]:
    return [(r["id"], r["hash"], r["status"], round(r["accuracy"], 9)) for r in rows]


@pytest.fixture
def local_ray(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(TESTS),
                                       "NASW_TEST_MARKER_DIR": str(markers)}})
    yield markers
    ray.shutdown()


def test_ray_gives_the_local_candidates_and_retries_killed_workers(tmp_path, local_ray) -> None:
    local = run_to_end(tmp_path / "local.db", config({"kind": "local", "workers": 0}))
    on_ray = run_to_end(tmp_path / "ray.db", config({"kind": "ray", "cpus_per_job": 1}),
                        evaluator="ray_helpers:die_once")
    assert len(on_ray) == 12
    assert summary(on_ray) == summary(local)
    died = sorted(p.name for p in local_ray.iterdir())
    assert died == ["job-2", "job-5"]  # those workers were killed mid-job, and retried


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting for its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_a_job_whose_worker_always_dies_fails_after_bounded_retries(tmp_path, local_ray) -> None:
    rows = run_to_end(tmp_path / "die.db", config({"kind": "ray", "cpus_per_job": 1}, budget=6),
                      evaluator="ray_helpers:unreliable")
    attempts = (local_ray / f"attempt-{DIE_ALWAYS_ON_JOB}").read_text().split()
    assert len(attempts) == MAX_RETRIES + 1  # the first try and MAX_RETRIES retries, no more
    assert len(set(attempts)) == MAX_RETRIES + 1  # each in a fresh worker process
    by_id = {r["id"]: r for r in rows}
    dead = by_id.pop(DIE_ALWAYS_ON_JOB)
    assert dead["status"] == "failed" and "WorkerCrashedError" in dead["error"]
    assert dead["attempts"] == MAX_RETRIES + 1
    # an exception in the evaluator is not a lost worker: no retry, failed with its message
    assert len((local_ray / f"attempt-{RAISE_ON_JOB}").read_text().split()) == 1
    raised = by_id.pop(RAISE_ON_JOB)
    assert raised["status"] == "failed" and raised["attempts"] == 1
    assert "a bug in the evaluator" in raised["error"]
    assert sorted(by_id) == [0, 1, 2, 5] and {r["status"] for r in by_id.values()} == {"ok"}
    with Store(tmp_path / "die.db") as store:
        lost = store.events(rows[0]["run_id"], kind="worker_lost")
    assert [e["data"]["job"] for e in lost] == [DIE_ALWAYS_ON_JOB]


def test_cancelling_the_run_cancels_its_ray_tasks(tmp_path, local_ray) -> None:
    db = tmp_path / "cancel.db"
    run_id = start_run(db, parse_config(config({"kind": "ray", "cpus_per_job": 1}, budget=6)))
    outcome: dict[str, str] = {}
    coordinator = Coordinator(db, run_id, evaluator="ray_helpers:slow")
    thread = threading.Thread(target=lambda: outcome.update(status=coordinator.run()))
    thread.start()
    try:
        # both CPUs busy: jobs 0 and 1 are sleeping on two Ray workers (starting two Ray
        # workers that import torch took over 60 s once, beside another test process on 2 cores)
        wait_for(lambda: sorted(p.name for p in local_ray.iterdir())
                 == ["started-0", "started-1"], timeout=180)
        started_at = time.monotonic()
        with Store(db) as store:
            store.send_command(run_id, "cancel")  # what `nasw cancel` does for a live run
    finally:
        thread.join(timeout=60)
    assert outcome["status"] == "cancelled"
    pids = {int(line) for job in (0, 1)
            for line in (local_ray / f"started-{job}").read_text().split()}
    time.sleep(max(0.0, started_at + SLOW_S + 1.0 - time.monotonic()))
    # past the end of the sleeps: no task finished, none was retried, no other job started
    assert sorted(p.name for p in local_ray.iterdir()) == ["started-0", "started-1"]
    assert len(pids) == 2  # one attempt each
    # and none is still running: force-cancelling ended the worker processes
    wait_for(lambda: all(process_gone(pid) for pid in pids), timeout=30)
    with Store(db) as store:
        run = store.run(run_id)
        rows = store.candidates(run_id)
    assert run["status"] == "cancelled" and run["n_done"] == 0
    assert [(r["id"], r["status"], r["error"]) for r in rows] == [
        (0, "cancelled", "run cancelled"), (1, "cancelled", "run cancelled")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connects_to_a_head_node_by_address(tmp_path) -> None:
    ray_cli = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    port = _free_port()
    start = subprocess.run(
        [ray_cli, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
         "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
        capture_output=True, text=True, timeout=120)
    assert start.returncode == 0, start.stderr
    try:
        rows = run_to_end(tmp_path / "head.db",
                          config({"kind": "ray", "address": f"127.0.0.1:{port}"}, budget=6))
        assert [r["status"] for r in rows] == ["ok"] * 6
        assert not ray.is_initialized()  # the backend disconnected when the run ended
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120)
