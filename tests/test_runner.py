"""The coordinator loop in-process: budgets, checkpoints, commands, validation, backends."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from searchers.base import Result
from searchers.errors import NaswError
from workbench.config import make_searcher, parse_config
from workbench.runner import Coordinator, start_run
from workbench.runner.backend import InlineBackend, make_backend
from workbench.runner.local import LocalBackend, Slot, plan_slots
from workbench.store import Store

BASE = {"name": "engine", "space": {"name": "mbconv", "preset": "ponas-digits"},
        "evaluator": "synthetic", "searcher": {"name": "random"},
        "constraints": ["params<=60k"], "budget": {"candidates": 40}, "seed": 1}


def _run(db, config=BASE, **kwargs):
    run_id = start_run(db, parse_config(config))
    status = Coordinator(db, run_id, **kwargs).run()
    return run_id, status


def test_a_run_evaluates_exactly_its_budget_and_checkpoints_the_searcher(tmp_path) -> None:
    db = tmp_path / "nasw.db"
    run_id, status = _run(db)
    assert status == "finished"
    with Store(db) as store:
        run = store.run(run_id)
        cands = store.candidates(run_id)
        state = store.load_state(run_id)
        history = store.history(run_id)
        keys = set(store.metric_keys(run_id))
        events = store.events(run_id, kind="run")
    assert run["status"] == "finished" and run["n_done"] == 40 and run["progress"] == 1.0
    assert sorted(c["id"] for c in cands) == list(range(40))
    assert all(c["status"] == "ok" and c["costs"]["params"] > 0 for c in cands)
    assert len({c["hash"] for c in cands}) == 40
    assert state["next_id"] == 40 and "history" not in state and not state["pending"]
    assert [h["id"] for h in history] == [c["id"] for c in sorted(cands, key=lambda c: c["told"])]
    assert len(history) == 40
    assert {"candidate/accuracy", "candidate/reward", "best/accuracy",
            "feasible/fraction"} <= keys
    assert events[0]["data"]["action"] == "started"
    best = max((c for c in cands if c["feasible"]), key=lambda c: c["accuracy"])
    assert run["best_candidate"] == best["id"] and run["best_accuracy"] == best["accuracy"]


def test_the_engine_gives_the_searcher_trajectory_of_a_plain_ask_tell_loop(tmp_path) -> None:
    """Same seed, same candidates and values as driving the searcher by hand."""
    from searchers.evaluators import evaluate

    run_id, _ = _run(tmp_path / "a.db")
    with Store(tmp_path / "a.db") as store:
        stored = {c["id"]: (c["hash"], c["accuracy"]) for c in store.candidates(run_id)}
    space, searcher = make_searcher(parse_config(BASE))
    expected = {}
    while not searcher.done():
        for job in searcher.ask(7):
            result = evaluate(job, "synthetic")
            searcher.tell(job, result)
            expected[job.id] = (space.hash(job.genotype), result.accuracy)
    assert stored == expected


def test_wall_time_budget_ends_a_run(tmp_path) -> None:
    config = {**BASE, "budget": {"wall_time_s": 0.3}, "backend": {"workers": 0}}
    run_id = start_run(tmp_path / "w.db", parse_config(config))
    status = Coordinator(tmp_path / "w.db", run_id,
                         evaluator="runner_helpers:slow_synthetic").run()
    with Store(tmp_path / "w.db") as store:
        run = store.run(run_id)
        kinds = [e["data"].get("action") for e in store.events(run_id, kind="run")]
    assert status == "finished" and "wall_time" in kinds
    assert 0 < run["n_done"] < 1000 and run["elapsed"] >= 0.3


def test_pause_resume_and_cancel_commands_are_obeyed(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NASW_TEST_DELAY", "0.01")
    db = tmp_path / "c.db"
    config = {**BASE, "budget": {"candidates": 100000}, "constraints": [],
              "backend": {"workers": 0}}
    run_id = start_run(db, parse_config(config))
    statuses: list[str] = []
    result: dict[str, str] = {}
    coordinator = Coordinator(db, run_id, evaluator="runner_helpers:slow_synthetic",
                              on_progress=lambda run: statuses.append(run["stored_status"]))
    thread = threading.Thread(target=lambda: result.update(status=coordinator.run()))
    thread.start()
    with Store(db) as store:
        _wait(lambda: store.run(run_id)["n_done"] > 0)
        store.send_command(run_id, "pause")
        _wait(lambda: store.run(run_id)["stored_status"] == "paused")
        done_when_paused = store.run(run_id)["n_done"]
        time.sleep(0.5)
        assert store.run(run_id)["n_done"] == done_when_paused  # nothing new while paused
        store.send_command(run_id, "resume")
        _wait(lambda: store.run(run_id)["n_done"] > done_when_paused)
        store.send_command(run_id, "cancel")
        thread.join(timeout=30)
        run = store.run(run_id)
        state = store.load_state(run_id)
        cancelled = store.candidates(run_id, status="cancelled")
    assert result["status"] == "cancelled" and run["status"] == "cancelled"
    assert "paused" in statuses
    # cancelled in-flight jobs stay pending in the checkpoint: a resume would issue them again
    assert sorted(data["id"] for data, _ in state["pending"]) == sorted(c["id"] for c in cancelled)


def test_sigterm_style_stop_leaves_a_resumable_run_that_finishes_on_resume(tmp_path) -> None:
    db = tmp_path / "s.db"
    config = {**BASE, "budget": {"candidates": 30}}
    run_id = start_run(db, parse_config(config))
    coordinator = Coordinator(db, run_id)
    coordinator.request_stop()
    assert coordinator.run() == "interrupted"
    assert Coordinator(db, run_id).run() == "finished"
    with Store(db) as store:
        cands = store.candidates(run_id)
        assert store.run(run_id)["resumes"] == 1
    assert sorted(c["id"] for c in cands) == list(range(30))
    assert {c["status"] for c in cands} == {"ok"}
    with pytest.raises(NaswError, match="finished"):
        Coordinator(db, run_id).run()


def test_invalid_results_are_recorded_as_failures_not_crashes(tmp_path) -> None:
    config = {**BASE, "budget": {"candidates": 6}, "constraints": []}
    run_id = start_run(tmp_path / "v.db", parse_config(config))

    class Broken(InlineBackend):
        def results(self, timeout):
            out = []
            for item in super().results(timeout):
                bad = {0: Result(status="ok", accuracy=float("nan")),
                       1: Result(status="ok", accuracy=3.0),
                       2: Result(status="ok", accuracy=None)}.get(item.job.id, item.result)
                out.append(item._replace(result=bad))
            return out

    status = Coordinator(tmp_path / "v.db", run_id, backend=Broken("synthetic")).run()
    with Store(tmp_path / "v.db") as store:
        cands = {c["id"]: c for c in store.candidates(run_id)}
        run = store.run(run_id)
    assert status == "finished"
    assert [cands[i]["status"] for i in range(3)] == ["diverged", "failed", "diverged"]
    assert cands[0]["costs"]["params"] > 0  # costs filled in from the space
    assert all(cands[i]["status"] == "ok" for i in range(3, 6))
    assert run["n_failed"] == 3 and run["n_ok"] == 3


def test_backend_selection(monkeypatch) -> None:
    synthetic = parse_config(BASE)
    assert isinstance(make_backend(synthetic), InlineBackend)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,3")
    assert plan_slots(["0", "3"], None, jobs_per_gpu=2, cpus=8) == [
        Slot("0", 2), Slot("0", 2), Slot("3", 2), Slot("3", 2)]
    assert plan_slots([], None, cpus=8) == [Slot(None, 2)] * 4
    assert plan_slots([], 3, cpus=2) == [Slot(None, 1)] * 3


def test_gpus_come_from_cuda_visible_devices_then_nvml_then_torch(monkeypatch) -> None:
    import sys
    import types

    import torch

    from workbench.runner.backend import cuda_devices

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 5")
    assert cuda_devices() == ["2", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert cuda_devices() == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    nvml = types.SimpleNamespace(nvmlInit=lambda: None, nvmlShutdown=lambda: None,
                                 nvmlDeviceGetCount=lambda: 3)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    assert cuda_devices() == ["0", "1", "2"]

    def no_driver() -> None:
        raise RuntimeError("NVML Shared Library Not Found")

    monkeypatch.setattr(nvml, "nvmlInit", no_driver)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert cuda_devices() == ["0", "1"]  # NVML unreadable: torch still finds the GPUs
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert cuda_devices() == []


def _evaluate_in_workers(evaluator: str, slots: list[Slot], n: int) -> tuple[list, list]:
    """Submit ``n`` jobs of the base config to a LocalBackend; (finished items, workers)."""
    _, searcher = make_searcher(parse_config({**BASE, "budget": {"candidates": n}}))
    with LocalBackend(evaluator, slots) as backend:
        for job in searcher.ask(n):
            backend.submit(job)
        got: list = []
        deadline = time.time() + 90
        while len(got) < n and time.time() < deadline:
            got += backend.results(0.5)
        return got, backend.workers()


def test_local_backend_runs_jobs_in_spawned_workers(tmp_path) -> None:
    got, workers = _evaluate_in_workers("synthetic", [Slot(None, 1), Slot(None, 1)], 4)
    assert sorted(item.job.id for item in got) == [0, 1, 2, 3]
    assert all(item.result.ok and item.attempts == 1 for item in got)
    assert {w.pid for w in workers} and all(w.device == "cpu" for w in workers)
    assert all("pid" in item.result.device or item.result.device for item in got)


def test_each_gpu_slot_gets_a_worker_that_sees_only_its_gpu(monkeypatch) -> None:
    """Worker-per-GPU placement, checked without a GPU: a worker for GPU ``g`` runs with
    ``CUDA_VISIBLE_DEVICES=g`` and evaluates on ``cuda:0`` (the only GPU it can see), and
    ``jobs_per_gpu: 2`` puts two workers on each GPU."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(Path(__file__).parent), *filter(None, [os.environ.get("PYTHONPATH")])]))
    slots = plan_slots(["0", "3"], None, jobs_per_gpu=2, cpus=4)
    got, workers = _evaluate_in_workers("runner_helpers:where_am_i", slots, 8)
    assert sorted(item.job.id for item in got) == list(range(8))
    placements = {}
    for item in got:
        device, visible, pid = item.result.device.split()
        assert device == "cuda:0"
        placements.setdefault(pid, set()).add(visible)
    assert all(len(seen) == 1 for seen in placements.values())  # a worker keeps its GPU
    assert sorted(w.device for w in workers) == ["cuda:0", "cuda:0", "cuda:3", "cuda:3"]
    assert {v for seen in placements.values() for v in seen} <= {"visible=0", "visible=3"}


def test_checkpoint_matches_candidates_after_every_write(tmp_path) -> None:
    """Every transaction leaves checkpoint pending == rows in flight, history == rows done."""
    db = tmp_path / "k.db"
    config = {**BASE, "budget": {"candidates": 50}, "constraints": []}
    run_id = start_run(db, parse_config(config))
    mismatches: list[str] = []
    reader = Store(db)

    def check(_run) -> None:
        state = reader.load_state(run_id)
        rows = reader.candidates(run_id)
        running = sorted(c["id"] for c in rows if c["status"] == "running")
        done = sorted(c["id"] for c in rows if c["status"] not in ("running", "cancelled"))
        if running != sorted(d["id"] for d, _ in state["pending"]):
            mismatches.append(f"pending {running}")
        if done != sorted(h["id"] for h in reader.history(run_id)):
            mismatches.append(f"history {done}")

    Coordinator(db, run_id, on_progress=check).run()
    reader.close()
    assert not mismatches, mismatches[:3]


def _wait(predicate, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def test_heartbeat_thread_beats_while_the_main_thread_is_busy(tmp_path, monkeypatch) -> None:
    from workbench.runner import process

    monkeypatch.setattr(process, "HEARTBEAT_S", 0.05)
    db = tmp_path / "nasw.db"
    run_id = start_run(db, parse_config(BASE))
    with Store(db) as store:
        store.heartbeat(run_id)
        first = store.run(run_id)["heartbeat"]
        with process.Heartbeat(db, run_id):
            time.sleep(0.5)  # the "searcher" holds the main thread
            during = store.run(run_id)["heartbeat"]
        after = store.run(run_id)["heartbeat"]
        time.sleep(0.3)
        assert store.run(run_id)["heartbeat"] == after  # stopped with the block
    assert during > first
