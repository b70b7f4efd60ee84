"""The Ray backend against a local Ray instance and a `ray start --head` cluster on loopback."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from workbench.config import parse_config  # noqa: E402
from workbench.runner import Coordinator, start_run  # noqa: E402
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
