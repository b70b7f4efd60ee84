"""``nasw specialize`` and ``nasw lut build`` against runs made by the real coordinator."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from searchers.constraints import parse_constraint
from searchers.costs import measure
from searchers.spaces import get_space
from workbench.cli import main
from workbench.config import parse_config
from workbench.runner import Coordinator, start_run
from workbench.runner.backend import InlineBackend
from workbench.store import Store

PONAS = {"name": "ponas-test", "space": {"name": "mbconv", "preset": "ponas-digits"},
         "dataset": {"name": "digits", "val_fraction": 0.2}, "evaluator": "synthetic",
         "searcher": {"name": "ponas", "preset": "ponas-digits"},
         "constraints": ["params<=60k"], "budget": {"candidates": 73},
         "backend": {"kind": "local", "workers": 0}, "seed": 0}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Timing and tiny-model training on a shared 2-core box: one thread avoids
    oversubscription (and the LUT stores how many threads it was measured with)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cli(db, *args):
    return CliRunner().invoke(main, [*args, "--db", str(db)], catch_exceptions=False)


def run_config(db, config):
    run_id = start_run(db, parse_config(config))
    assert Coordinator(db, run_id).run() == "finished"
    return run_id


@pytest.fixture(scope="module")
def ponas_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("ponas") / "nasw.db"
    run_id = run_config(db, PONAS)
    return db, run_id


def specialization_count(db) -> int:
    with Store(db) as store:
        return len(list(store.db.query("SELECT id FROM specializations")))


def test_a_ponas_run_fills_the_accuracy_table_in_the_db(ponas_db) -> None:
    db, run_id = ponas_db
    with Store(db) as store:
        rows = store.accuracy_table(run_id)
        table_events = store.events(run_id, kind="table_row")
    L = get_space("mbconv", preset="ponas-digits").num_positions
    assert len(rows) == L * 12
    assert {(r["layer"], r["choice"]) for r in rows} == {(layer, c) for layer in range(L)
                                                         for c in range(12)}
    for layer in range(L):
        losses = [r["loss"] for r in rows if r["layer"] == layer]
        assert min(losses) == 0.0 and all(x >= 0 for x in losses)
    assert len(table_events) >= L * 12


def test_specialize_json_satisfies_the_traced_costs_and_is_stored(ponas_db) -> None:
    db, run_id = ponas_db
    before = specialization_count(db)
    out = cli(db, "specialize", str(run_id), "-c", "params<=40k", "-c", "madds<=700k", "--json")
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["feasible"] and result["optimal"] and result["solver"] == "exact"
    space = get_space("mbconv", preset="ponas-digits")
    traced = measure(space.build(result["genotype"]), space.input_shape)
    assert traced["params"] <= 40e3 and traced["madds"] <= 700e3
    assert traced["params"] == result["costs"]["params"]
    assert specialization_count(db) == before + 1
    with Store(db) as store:
        stored = store.specializations(run_id)[-1]
    assert stored["solver"] == "exact" and stored["solve_ms"] > 0
    assert stored["result"]["choices"] == result["choices"]
    assert stored["constraints"] == [{"metric": "params", "op": "<=", "value": 40e3},
                                     {"metric": "madds", "op": "<=", "value": 700e3}]
    ga = json.loads(cli(db, "specialize", str(run_id), "-c", "params<=40k", "-c",
                        "madds<=700k", "--solver", "ga", "--json").output)
    assert ga["optimal"] is False and ga["loss"] >= result["loss"] - 1e-12


def test_human_output_and_infeasible_exit_code(ponas_db) -> None:
    db, run_id = ponas_db
    out = cli(db, "specialize", str(run_id), "-c", "params<=45k")
    assert out.exit_code == 0 and "proven optimal" in out.output and "blocks: 0:" in out.output
    out = cli(db, "specialize", str(run_id), "-c", "params<=1k", "-c", "intensity>=1")
    assert out.exit_code == 1
    assert "no architecture" in out.output and "params: smallest reachable" in out.output


@pytest.mark.parametrize("args, message", [
    (["99"], "run: got 99"),
    (["{run}", "-c", "params<=lots"], "constraint[0]"),
    (["{run}", "-c", "watts<=3"], "constraint[0].metric"),
    (["{run}", "-c", "latency_ms<=8"], "nasw lut build"),
    (["{run}", "--solver", "annealing"], "annealing"),
])
def test_bad_input_exits_2_and_writes_nothing(ponas_db, args, message) -> None:
    db, run_id = ponas_db
    before = specialization_count(db)
    out = CliRunner().invoke(main, ["specialize", *[a.format(run=run_id) for a in args],
                                    "--db", str(db)])
    assert out.exit_code == 2, out.output
    assert message in out.output
    assert specialization_count(db) == before


def test_runs_that_are_not_ponas_or_unfinished_are_refused(ponas_db) -> None:
    db, _ = ponas_db
    random_run = run_config(db, {**PONAS, "searcher": {"name": "random"},
                                 "budget": {"candidates": 3}})
    with Store(db) as store:
        unfinished = store.create_run(parse_config(PONAS).to_dict())
        store.record(unfinished, _rows([{"layer": 0, "choice": 0, "accuracy": 0.5,
                                         "loss": 0.0, "costs": {}}]))
    before = specialization_count(db)
    out = CliRunner().invoke(main, ["specialize", str(random_run), "--db", str(db)])
    assert out.exit_code == 2 and "only PONAS builds an accuracy table" in out.output
    out = CliRunner().invoke(main, ["specialize", str(unfinished), "--db", str(db)])
    assert out.exit_code == 2 and "1 of 72 entries measured" in out.output
    assert specialization_count(db) == before


def _rows(rows):
    from workbench.store import Progress

    return Progress(table_rows=rows)


def test_latency_lut_build_and_latency_constraint(ponas_db) -> None:
    db, run_id = ponas_db
    out = cli(db, "lut", "build", "--space", "mbconv", "--preset", "ponas-digits", "--device",
              "cpu", "--batch-size", "4", "--warmup", "1", "--repeats", "3", "--threads", "1", "--json")
    assert out.exit_code == 0, out.output
    luts = json.loads(out.output)
    assert [lut["batch_size"] for lut in luts] == [1, 4]
    with Store(db) as store:
        stored = store.latency_lut("mbconv", "ponas-digits", "torch:cpu", 4)
    assert len(stored["blocks"]) == 6 and all(len(row) == 12 for row in stored["blocks"])
    assert all(v > 0 for row in stored["blocks"] for v in row) and stored["base"] > 0
    assert stored["threads"] == 1
    blocks = stored["blocks"]
    middle = stored["base"] + sum(sorted(row)[6] for row in blocks)
    out = cli(db, "specialize", str(run_id), "-c", f"latency_ms<={middle}", "--device", "cpu",
              "--batch-size", "4", "--json")
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)  # a budget warning, if any, goes to stderr
    latency = result["latency"]
    assert latency["predicted_ms"] <= middle and latency["measured_ms"] > 0
    assert latency["predicted_ms"] == pytest.approx(result["costs"]["latency_ms"])
    human = cli(db, "specialize", str(run_id), "-c", f"latency_ms<={middle}", "--device", "cpu",
                "--batch-size", "4")
    assert "predicted" in human.output and "measured" in human.output
    bad = CliRunner().invoke(main, ["lut", "build", "--device", "tpu:0", "--db", str(db)])
    assert bad.exit_code == 2 and "device" in bad.output
    bad = CliRunner().invoke(main, ["lut", "build", "--space", "cell", "--db", str(db)])
    assert bad.exit_code == 2 and "space: got 'cell'" in bad.output
    bad = CliRunner().invoke(main, ["lut", "build", "--preset", "huge", "--db", str(db)])
    assert bad.exit_code == 2 and "space.preset" in bad.output
    fresh = db.parent / "never.db"
    bad = CliRunner().invoke(main, ["lut", "build", "--device", "mps", "--db", str(fresh)])
    assert bad.exit_code == 2 and not fresh.exists()


def test_estimate_without_weights_says_why(ponas_db) -> None:
    db, run_id = ponas_db
    out = cli(db, "specialize", str(run_id), "-c", "params<=45k", "--estimate", "--json")
    assert out.exit_code == 0
    assert "no weights" in json.loads(out.output)["estimate"]["note"]


@pytest.mark.slow
def test_full_ponas_run_with_real_training_and_an_estimated_specialization(tmp_path) -> None:
    """Digits preset on CPU, real training with a tiny spec: the whole pipeline through the DB."""
    tiny = {"augment": False, "batch_size": 32, "val_fraction": 0.1}
    config = {**PONAS, "evaluator": "train", "searcher": {
        "name": "ponas", "preset": "ponas-digits", "params": {
            "meta_train": {**tiny, "epochs": 2, "max_batches": 15, "lr": 0.05},
            "finetune": {**tiny, "epochs": 1, "max_batches": 1}}}}
    db = tmp_path / "real.db"
    run_id = run_config(db, config)
    with Store(db) as store:
        rows = store.accuracy_table(run_id)
        state = store.load_state(run_id)
    assert len(rows) == 72 and state["stage"] == "done"
    assert state["supernet"] is not None and len(state["layer_sources"]) == 6
    out = cli(db, "specialize", str(run_id), "-c", "params<=40k", "--estimate", "--json")
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    space = get_space("mbconv", preset="ponas-digits")
    traced = measure(space.build(result["genotype"]), space.input_shape)
    assert traced["params"] <= 40e3
    estimate = result["estimate"]
    assert estimate["status"] == "ok" and 0.0 <= estimate["accuracy"] <= 1.0
    assert estimate["calibration_batches"] == 50


def test_interrupted_mid_layer_resumes_at_that_layer_with_its_rows(tmp_path) -> None:
    """A stop in the middle of layer 1 (as SIGTERM does); `nasw resume` finishes the table.
    (The per-candidate variant: 12 jobs per layer, so a stop can land between them.)"""
    db = tmp_path / "resume.db"
    config = {**PONAS, "searcher": {"name": "ponas", "preset": "ponas-digits",
                                    "params": {"stage2": "per-candidate"}}}
    run_id = start_run(db, parse_config(config))
    # three evaluations per loop iteration, so a stop can land in the middle of a layer
    coordinator = Coordinator(db, run_id, backend=InlineBackend("synthetic", capacity=3))

    def stop_mid_layer(_run):
        searcher = coordinator.searcher
        if searcher.layer == 1 and len(searcher.rows.get(1, {})) >= 5:
            coordinator.stop_requested = True

    coordinator.on_progress = stop_mid_layer
    assert coordinator.run() == "interrupted"
    with Store(db) as store:
        state = store.load_state(run_id)
        rows_before = {(r["layer"], r["choice"]): r["accuracy"]
                       for r in store.accuracy_table(run_id)}
        done_before = store.run(run_id)["n_done"]
    measured = int((state["table_status"][1] > 0).sum())
    assert state["stage"] == "finetune" and state["layer"] == 1
    assert 5 <= measured < 12
    assert len(rows_before) == 12 + measured
    assert Coordinator(db, run_id).run() == "finished"
    with Store(db) as store:
        rows = {(r["layer"], r["choice"]): r["accuracy"] for r in store.accuracy_table(run_id)}
        candidates = store.candidates(run_id)
        history = store.history(run_id)
    assert len(rows) == 72 and all(rows[key] == acc for key, acc in rows_before.items())
    assert len(candidates) == 73 and len({c["id"] for c in candidates}) == 73
    assert len(history) == 73 and done_before < 73


# -- every documented specialize example runs, feasibly, on its preset ---------------------------
ROOT = Path(__file__).resolve().parent.parent
#: where examples are written down, and the preset of the run they talk about
DOCUMENTED = {"README.md": "ponas-cifar", "docs/ponas-and-specialization.md": "ponas-cifar",
              "sample_configs/ponas-cifar.yaml": "ponas-cifar",
              "sample_configs/ponas-paper.yaml": "ponas-imagenet",
              "sample_configs/ponas-digits.yaml": "ponas-digits"}
_COMMAND = re.compile(r"nasw specialize (?:RUN|\d+)((?:\s+(?:-c|--constraint)\s+'[^']+')+)"
                      r"((?:[ \t]+--?[a-z-]+(?:[ \t]+[a-z0-9]+)?)*)")


def documented_examples() -> list[tuple[str, str, list[str], list[str]]]:
    """(file, preset, constraints, flags) of every `nasw specialize` example with constraints.

    Latency examples (``latency_ms``) need a device LUT and are the deployment guide's; they
    are left out here."""
    found = []
    for name, preset in DOCUMENTED.items():
        for match in _COMMAND.finditer((ROOT / name).read_text()):
            constraints = re.findall(r"'([^']+)'", match.group(1))
            flags = match.group(2).split()
            if any(c.startswith("latency_ms") for c in constraints):
                continue
            found.append((name, preset, constraints, flags))
    return found


def test_documented_examples_are_found() -> None:
    examples = documented_examples()
    assert {name for name, *_ in examples} == set(DOCUMENTED)
    assert len(examples) >= 9


@pytest.fixture(scope="module")
def preset_runs(tmp_path_factory):
    """One finished synthetic PONAS run per preset (supernet mode: 1 + L jobs each)."""
    db = tmp_path_factory.mktemp("presets") / "nasw.db"
    runs = {}
    for preset, searcher_preset in (("ponas-digits", "ponas-digits"),
                                    ("ponas-cifar", "ponas-cifar"),
                                    ("ponas-imagenet", "ponas-paper")):
        config = {**PONAS, "name": f"docs-{preset}", "constraints": [],
                  "space": {"name": "mbconv", "preset": preset},
                  "searcher": {"name": "ponas", "preset": searcher_preset},
                  "budget": {"candidates": 20}}
        if preset != "ponas-digits":
            config["dataset"] = {"name": "cifar10" if preset == "ponas-cifar" else "imagefolder",
                                 **({"root": "/nonexistent"} if preset == "ponas-imagenet"
                                    else {})}
        run_id = start_run(db, parse_config(config))
        coordinator = Coordinator(db, run_id, backend=InlineBackend("synthetic", capacity=1))
        assert coordinator.run() == "finished"
        runs[preset] = run_id
    return db, runs


@pytest.mark.parametrize("name,preset,constraints,flags", documented_examples(),
                         ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_documented_example_is_feasible_on_its_preset(preset_runs, name, preset, constraints,
                                                      flags) -> None:
    db, runs = preset_runs
    args = ["specialize", str(runs[preset])]
    for constraint in constraints:
        args += ["-c", constraint]
    out = cli(db, *args, *flags, "--json")
    assert out.exit_code == 0, f"{name}: {' '.join(args)} -> {out.output}"
    result = json.loads(out.output)
    assert result["feasible"], result
    assert result["optimal"] == (result["solver"] == "exact")
    space = get_space("mbconv", preset=preset)
    costs = space.costs(result["genotype"])
    for constraint in constraints:
        metric, op, value = parse_constraint(constraint)
        assert (costs[metric] <= value * (1 + 1e-9)) if op == "<=" else \
            (costs[metric] >= value * (1 - 1e-9)), (constraint, costs[metric])


def test_a_first_exact_solve_at_a_terminal_says_it_compiles(monkeypatch, capsys) -> None:
    """Only a person at a terminal is told (once per install the kernel compiles); pipes,
    scripts and --json readers never see the line."""
    import io

    import searchers._specialize_kernel as kernel
    from workbench.cli import specialize as command

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(command.click, "get_text_stream", lambda name: terminal)
    monkeypatch.setattr(kernel, "needs_compiling", lambda: True)
    command._say_if_compiling("exact")
    assert "compiling the exact solver" in capsys.readouterr().err
    command._say_if_compiling("ga")
    monkeypatch.setattr(kernel, "needs_compiling", lambda: False)
    command._say_if_compiling("exact")
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(command.click, "get_text_stream", lambda name: io.StringIO())
    monkeypatch.setattr(kernel, "needs_compiling", lambda: True)
    command._say_if_compiling("exact")  # not a terminal
    assert capsys.readouterr().err == ""
