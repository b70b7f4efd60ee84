"""Real proxy training through the whole engine: spawned CPU worker, digits, the train evaluator."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

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


class _Killed(BaseException):
    """Stands for a SIGKILL landing between two statements of the final trainer."""


@pytest.mark.slow
def test_final_training_killed_between_checkpoint_and_commit_loses_no_epoch(tmp_path,
                                                                           monkeypatch):
    """`nasw train`: an epoch's checkpoint and its metrics land together. A kill after the
    epoch-2 checkpoint is written but before its metrics are committed resumes from epoch 1's
    checkpoint (the committed one): every epoch is recorded exactly once."""
    from workbench.runner.final_train import create_final_run, run_dir

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "sample_configs"
                             / "quickstart.yaml").read_text())
    config.update(budget={"candidates": 1}, backend={"kind": "local", "workers": 0})
    config["train"] = {**config.get("train", {}), "epochs": 1, "max_batches": 2}
    db = tmp_path / "nasw.db"
    search = start_run(db, parse_config(config))
    assert Coordinator(db, search).run() == "finished"
    final = create_final_run(db, search, candidate_id=0, epochs=3)
    real_record = Store.record

    def record(self, run_id, progress):
        if any(step == 2 and key == "train/loss" for step, key, _ in progress.metrics):
            raise _Killed
        return real_record(self, run_id, progress)

    monkeypatch.setattr(Store, "record", record)
    monkeypatch.setattr(Store, "update_run", lambda *a, **k: None)  # a kill writes nothing
    with pytest.raises(_Killed):
        Coordinator(db, final).run()
    folder = run_dir(db, final)
    assert sorted(p.name for p in folder.glob("checkpoint-*.pt")) == [
        "checkpoint-00001.pt", "checkpoint-00002.pt"]  # epoch 2's file, not committed
    monkeypatch.undo()
    with Store(db) as store:
        store.update_run(final, status="interrupted", pid=None)
        assert [m["step"] for m in store.metrics(final) if m["key"] == "train/loss"] == [1]
    assert Coordinator(db, final).run() == "finished"
    with Store(db) as store:
        steps = [m["step"] for m in store.metrics(final) if m["key"] == "train/loss"]
        assert steps == [1, 2, 3] and store.candidate(final, 0)["epochs"] == 3
    assert [p.name for p in folder.glob("checkpoint-*.pt")] == ["checkpoint-00003.pt"]
