"""`nasw train`, `nasw export`, `nasw compare`: from a finished search to a deployable model."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from workbench.cli import main
from workbench.config import parse_config
from workbench.runner import Coordinator, launch_detached, start_run
from workbench.runner.final_train import create_final_run, load_weights, run_dir, weights_path
from workbench.store import Store

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def quickstart(budget: int = 2) -> dict:
    config = yaml.safe_load((ROOT / "sample_configs" / "quickstart.yaml").read_text())
    config["budget"] = {"candidates": budget}
    config["backend"] = {"kind": "local", "workers": 0}  # train in this process: fast to test
    return config


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> tuple[Path, int, dict]:
    db = tmp_path_factory.mktemp("final") / "nasw.db"
    run_id = start_run(db, parse_config(quickstart()))
    assert Coordinator(db, run_id).run() == "finished"
    with Store(db) as store:
        best = store.best_candidate(run_id)
    return db, run_id, best


def cli(db: Path, *args: str):
    return CliRunner().invoke(main, ["--db", str(db), *args], catch_exceptions=False)


def test_train_from_scratch_reaches_the_search_accuracy(searched) -> None:
    db, run_id, best = searched
    new_run = create_final_run(db, run_id, candidate_id=best["id"], epochs=8)
    assert Coordinator(db, new_run).run() == "finished"
    with Store(db) as store:
        run = store.run(new_run)
        final = store.candidate(new_run, 0)
        curve = [m for m in store.metrics(new_run) if m["key"] == "train/val_accuracy"]
    assert run["searcher"] == "final" and run["status"] == "finished"
    assert final["genotype"] == best["genotype"] and final["epochs"] == 8
    assert final["accuracy"] >= best["accuracy"]
    assert [m["step"] for m in curve] == list(range(1, 9))
    weights = load_weights(weights_path(db, new_run))  # weights_only=True
    assert all(hasattr(v, "shape") for v in weights.values())


def test_killed_training_resumes_from_its_checkpoint(searched) -> None:
    db, run_id, best = searched
    new_run = create_final_run(db, run_id, candidate_id=best["id"], epochs=12)
    pid = launch_detached(db, new_run)
    folder = run_dir(db, new_run)
    deadline = time.time() + 180
    with Store(db) as store:
        while time.time() < deadline:
            steps = [m["step"] for m in store.metrics(new_run) if m["key"] == "train/loss"]
            if steps and any(folder.glob("checkpoint-*.pt")):
                break
            time.sleep(0.2)
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        assert store.run(new_run)["status"] == "interrupted"
        before = [m["step"] for m in store.metrics(new_run) if m["key"] == "train/loss"]
    assert before and before == list(range(1, len(before) + 1))
    assert Coordinator(db, new_run).run() == "finished"
    with Store(db) as store:
        steps = [m["step"] for m in store.metrics(new_run) if m["key"] == "train/loss"]
        final = store.candidate(new_run, 0)
        run = store.run(new_run)
    # every epoch trained and recorded exactly once: the resumed run starts after the kill
    assert steps == list(range(1, 13))
    assert final["epochs"] == 12 and run["resumes"] == 1


def test_export_cli_round_trips(searched, tmp_path) -> None:
    db, run_id, best = searched
    out = tmp_path / "best.json"
    result = cli(db, "export", str(run_id), "--format", "json", "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["genotype"]["choices"] == best["genotype"]["choices"]
    assert doc["provenance"]["candidate"] == best["id"]
    onnx_out = tmp_path / "best.onnx"
    result = cli(db, "export", str(run_id), "--candidate", str(best["id"]), "--format", "onnx",
                 "-o", str(onnx_out))
    assert result.exit_code == 0, result.output
    assert "onnxruntime max abs diff" in result.output and onnx_out.exists()


@pytest.mark.parametrize("args, field", [
    (["export", "99"], "run"),
    (["export", "{run}", "--candidate", "999"], "candidate"),
    (["export", "{run}", "--format", "tflite"], "format"),
    (["export", "{run}", "-o", "/nonexistent-dir/x.json"], "output"),
    (["train", "99", "--candidate", "0"], "run"),
    (["train", "{run}", "--candidate", "999"], "candidate"),
    (["train", "{run}"], "candidate"),
    (["compare", "{run}", "77"], "run"),
    (["compare", "{run}", "--cost", "watts"], "cost"),
])
def test_bad_input_exits_2_and_writes_nothing(searched, tmp_path, monkeypatch, args,
                                              field) -> None:
    db, run_id, _ = searched
    before = db.read_bytes()
    runs_before = Store(db).run_ids()
    monkeypatch.chdir(tmp_path)
    result = cli(db, *[a.format(run=run_id) for a in args])
    assert result.exit_code == 2, result.output
    assert field in result.output
    assert Store(db).run_ids() == runs_before
    assert list(tmp_path.iterdir()) == []
    assert len(db.read_bytes()) == len(before)


def test_compare_reports_each_run(searched) -> None:
    db, run_id, _ = searched
    second = start_run(db, parse_config({**quickstart(2), "evaluator": "synthetic"}))
    assert Coordinator(db, second).run() == "finished"
    result = cli(db, "compare", str(run_id), str(second), "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["id"] for r in rows] == [run_id, second]
    for row in rows:
        assert row["evaluations"] >= 2 and row["best_accuracy"] is not None
        front = row["pareto_front"]
        assert front and all(a["params"] < b["params"] and a["accuracy"] < b["accuracy"]
                             for a, b in zip(front, front[1:]))
    text = cli(db, "compare", str(run_id), str(second))
    assert text.exit_code == 0 and "Pareto fronts" in text.output
