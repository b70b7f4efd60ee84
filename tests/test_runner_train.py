"""Real proxy training through the whole engine: spawned CPU worker, digits, the train evaluator."""

from __future__ import annotations

import pytest

from workbench.config import parse_config
from workbench.runner import Coordinator, start_run
from workbench.store import Store

pytestmark = pytest.mark.slow


def test_train_evaluator_in_a_spawned_worker_records_real_results(tmp_path) -> None:
    config = parse_config({
        "name": "train-smoke", "space": {"name": "layerwise", "preset": "epnas-digits"},
        "dataset": {"name": "digits"}, "evaluator": "train", "searcher": {"name": "random"},
        "budget": {"candidates": 2}, "train": {"epochs": 2, "batch_size": 64},
        "backend": {"kind": "local", "workers": 1}, "seed": 0})
    db = tmp_path / "nasw.db"
    run_id = start_run(db, config)
    assert Coordinator(db, run_id).run() == "finished"
    with Store(db) as store:
        cands = store.candidates(run_id)
        run = store.run(run_id)
    assert [c["status"] for c in cands] == ["ok", "ok"], [c["error"] for c in cands]
    assert all(0.0 < c["accuracy"] <= 1.0 and c["epochs"] == 2 for c in cands)
    assert all(len(c["loss_curve"]) >= 1 and c["wall_time"] > 0 for c in cands)
    assert all(c["device"].startswith("cpu") for c in cands)
    assert run["best_accuracy"] == max(c["accuracy"] for c in cands)
