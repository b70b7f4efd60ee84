"""Latency tables: fingerprints refused on another machine, export/import (JSON, CSV) with
strict validation, the measuring kit run end to end, calibration, ``specialize --verify``."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from searchers.errors import NaswError
from searchers.spaces import get_space
from workbench import latency, lut_kit
from workbench.cli import main
from workbench.config import parse_config
from workbench.runner import Coordinator, start_run
from workbench.store import Store

PRESET = "ponas-digits"
PONAS = {"name": "ponas-lut", "space": {"name": "mbconv", "preset": PRESET},
         "dataset": {"name": "digits", "val_fraction": 0.2}, "evaluator": "synthetic",
         "searcher": {"name": "ponas", "preset": PRESET},
         "constraints": ["params<=60k"], "budget": {"candidates": 73},
         "backend": {"kind": "local", "workers": 0}, "seed": 0}
QUICK = ["--warmup", "1", "--repeats", "3", "--rounds", "2"]


@pytest.fixture(autouse=True)
def one_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cli(db, *args):
    return CliRunner().invoke(main, [*args, "--db", str(db)], catch_exceptions=False)


@pytest.fixture(scope="module")
def ponas_db(tmp_path_factory):
    """A finished (synthetic) PONAS run and a torch table of this machine."""
    db = tmp_path_factory.mktemp("lut") / "nasw.db"
    run_id = start_run(db, parse_config(PONAS))
    assert Coordinator(db, run_id).run() == "finished"
    out = cli(db, "lut", "build", "--preset", PRESET, "--runtime", "torch", *QUICK, "--json")
    assert out.exit_code == 0, out.output
    return db, run_id


@pytest.fixture
def space():
    return get_space("mbconv", PRESET)


def stored(db, name="torch:cpu"):
    with Store(db) as store:
        return store.latency_lut("mbconv", PRESET, name, 1)


def store_table(db, table):
    with Store(db) as store:
        latency.save_table(store, table)


def table_count(db) -> int:
    with Store(db) as store:
        return len(latency.list_tables(store))


# -- measurement and fingerprint ---------------------------------------------------------------
def test_a_built_table_records_how_and_where_it_was_measured(ponas_db, space) -> None:
    db, _ = ponas_db
    table = stored(db)
    assert table["origin"] == "measured" and table["runtime"] == "torch"
    assert table["method"] == {"warmup": 1, "repeats": 3, "rounds": 2, "statistic": "median",
                               "spread": "iqr", "timer": "perf_counter_ns"}
    fp = table["fingerprint"]
    assert set(fp) == set(lut_kit.FINGERPRINT_KEYS) and fp["threads"] == 1
    assert fp["cpu"] == lut_kit.cpu_model() and fp["runtime_version"].startswith("2.")
    assert table["fingerprint_id"] == lut_kit.fingerprint_id(fp)
    blocks = np.asarray(table["blocks"])
    assert blocks.shape == (space.num_positions, space.num_options) and (blocks > 0).all()
    assert (np.asarray(table["blocks_iqr"]) >= 0).all() and table["base"] > 0
    assert latency.check_fingerprint(table) == []  # this machine: accepted


def test_time_interleaved_reports_median_and_iqr() -> None:
    calls = []
    stats = lut_kit.time_interleaved([lambda: calls.append(1)], warmup=3, repeats=4, rounds=5)
    assert len(calls) == 3 + 4 * 5 and stats[0]["runs"] == 20
    assert stats[0]["q1_ms"] <= stats[0]["median_ms"] <= stats[0]["q3_ms"]
    assert stats[0]["iqr_ms"] == pytest.approx(stats[0]["q3_ms"] - stats[0]["q1_ms"])


def test_the_cpu_timer_ignores_time_the_process_did_not_run() -> None:
    """A shared machine takes the core away mid-call; a sleep stands for that: the wall clock
    counts it, the CPU timer does not."""
    import time

    wall, cpu = (lut_kit.time_interleaved([lambda: time.sleep(0.002)], warmup=0, repeats=3,
                                          rounds=1, timer=timer)[0]["median_ms"]
                 for timer in ("wall", "cpu"))
    assert wall >= 2.0 and cpu < 0.5
    with pytest.raises(ValueError, match="threads 1"):
        lut_kit.check_timer("cpu", threads=2)
    with pytest.raises(ValueError, match="timer"):
        lut_kit.check_timer("sundial", threads=1)


@pytest.mark.parametrize("field, value", [("cpu", "Some Other CPU"),
                                          ("runtime_version", "1.0.0"), ("cores_logical", 96)])
def test_a_table_from_another_machine_is_refused_unless_forced(ponas_db, field, value) -> None:
    db, run_id = ponas_db
    table = stored(db)
    foreign = {**table, "name": "torch:other", "fingerprint": {**table["fingerprint"],
                                                               field: value}}
    store_table(db, foreign)
    budget = ["-c", "latency_ms<=1000"]
    before = _specializations(db)
    out = CliRunner().invoke(main, ["specialize", str(run_id), *budget, "--lut", "torch:other",
                                    "--db", str(db)])
    assert out.exit_code == 2, out.output
    assert "fingerprint" in out.output and field in out.output and "--force" in out.output
    assert _specializations(db) == before  # nothing written
    forced = cli(db, "specialize", str(run_id), *budget, "--lut", "torch:other", "--force",
                 "--no-measure", "--json")
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout)["latency"]["table"] == "torch:other"
    out = CliRunner().invoke(main, ["lut", "calibrate", "--preset", PRESET, "--lut",
                                    "torch:other", "--db", str(db)])
    assert out.exit_code == 2 and "fingerprint" in out.output
    mine = stored(db)  # a shared database: this machine's build does not clobber another's
    store_table(db, {**foreign, "name": "torch:cpu"})
    try:
        out = CliRunner().invoke(main, ["lut", "build", "--preset", PRESET, *QUICK, "--db",
                                        str(db)])
        assert out.exit_code == 2 and "replace it only with --force" in out.output
    finally:
        store_table(db, mine)


def _specializations(db) -> int:
    with Store(db) as store:
        return len(list(store.db.query("SELECT id FROM specializations")))


def test_a_table_without_fingerprint_must_be_rebuilt(ponas_db) -> None:
    db, run_id = ponas_db
    old = {k: v for k, v in stored(db).items() if k not in ("fingerprint", "origin")}
    store_table(db, {**old, "name": "cpu"})  # what `nasw lut build` stored before issue 20
    out = CliRunner().invoke(main, ["specialize", str(run_id), "-c", "latency_ms<=1000",
                                    "--lut", "cpu", "--db", str(db)])
    assert out.exit_code == 2 and "predates fingerprints" in out.output


# -- export and import -------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_export_import_round_trip(ponas_db, tmp_path, suffix) -> None:
    db, _ = ponas_db
    path = tmp_path / f"table{suffix}"
    out = cli(db, "lut", "export", "--preset", PRESET, "--lut", "torch:cpu", "-o", str(path))
    assert out.exit_code == 0, out.output
    if suffix == ".csv":
        text = path.read_text()
        assert "# fingerprint: {" in text and "layer,choice,median_ms,iqr_ms" in text
    name = f"copy{suffix.replace('.', '-')}"
    out = cli(db, "lut", "import", str(path), "--name", name, "--json")
    assert out.exit_code == 0, out.output
    original, copy = stored(db), stored(db, name)
    assert copy["origin"] == "imported" and copy["name"] == name
    assert copy["fingerprint"] == original["fingerprint"]
    assert copy["fingerprint_id"] == original["fingerprint_id"]
    np.testing.assert_array_equal(copy["blocks"], original["blocks"])
    np.testing.assert_array_equal(copy["blocks_iqr"], original["blocks_iqr"])
    assert copy["base"] == original["base"] and copy["method"] == original["method"]
    again = CliRunner().invoke(main, ["lut", "import", str(path), "--name", name, "--db",
                                      str(db)])
    assert again.exit_code == 2 and "--replace" in again.output
    listed = json.loads(cli(db, "lut", "ls", "--json").output)
    assert {name, "torch:cpu"} <= {t["name"] for t in listed}


def _good_doc(db) -> dict:
    doc = {k: v for k, v in stored(db).items() if k in latency.TABLE_FIELDS}
    return json.loads(json.dumps(doc))


@pytest.mark.parametrize("change, field", [
    (lambda d: d.update(format="something/1"), "format"),
    (lambda d: d.update(surprise=1), "surprise"),
    (lambda d: d.update(preset="ponas-huge"), "preset"),
    (lambda d: d.update(space="cell"), "space"),
    (lambda d: d.update(runtime="tflite"), "runtime"),
    (lambda d: d.update(batch_size=0), "batch_size"),
    (lambda d: d.update(base=-1.0), "base"),
    (lambda d: d["blocks"].pop(), "blocks"),
    (lambda d: d["blocks"][2].__setitem__(3, math.inf), "blocks[2][3]"),
    (lambda d: d["blocks"][0].__setitem__(0, "1.0"), "blocks[0][0]"),
    (lambda d: d["fingerprint"].pop("cpu"), "fingerprint.cpu"),
    (lambda d: d["fingerprint"].update(cpu="x" * 500), "fingerprint.cpu"),
    (lambda d: d["fingerprint"].update(os="Linux\x1b[31m"), "fingerprint.os"),
    (lambda d: d["fingerprint"].update(shell="rm -rf"), "fingerprint.shell"),
    (lambda d: d["fingerprint"].update(threads=True), "fingerprint.threads"),
    (lambda d: d.update(calibration_points=[{"choices": [0] * 6, "measured_ms": 0}]),
     "calibration_points[0].measured_ms"),
    (lambda d: d.update(calibration_points=[{"choices": [12] * 6, "measured_ms": 1}]),
     "calibration_points[0].choices[0]"),
])
def test_import_refuses_bad_input_naming_the_field(ponas_db, tmp_path, change, field) -> None:
    db, _ = ponas_db
    doc = _good_doc(db)
    change(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    before = table_count(db)
    out = CliRunner().invoke(main, ["lut", "import", str(path), "--name", "bad", "--db",
                                    str(db)])
    assert out.exit_code == 2, out.output
    assert f"{field}:" in out.output
    assert table_count(db) == before


def test_import_refuses_broken_files(ponas_db, tmp_path) -> None:
    db, _ = ponas_db
    cases = {"a.json": "{not json", "b.json": "[1, 2]", "c.txt": "{}",
             "d.csv": "# format: \"nasw-latency-table/2\"\nlayer,choice,median_ms,iqr_ms\n"
                      "0,0,abc,1\n",
             "e.csv": "# format: \"nasw-latency-table/2\"\n# evil: 1\n"}
    before = table_count(db)
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        out = CliRunner().invoke(main, ["lut", "import", str(tmp_path / name), "--db", str(db)])
        assert out.exit_code == 2, (name, out.output)
    csv_doc = tmp_path / "missing.csv"
    latency.export_table(stored(db), csv_doc)
    lines = csv_doc.read_text().splitlines()
    csv_doc.write_text("\n".join(line for line in lines if not line.startswith("3,7,")) + "\n")
    out = CliRunner().invoke(main, ["lut", "import", str(csv_doc), "--db", str(db)])
    assert out.exit_code == 2 and "missing layer 3 choice 7" in out.output
    assert table_count(db) == before


def test_an_imported_calibration_is_refitted_not_trusted(ponas_db, space) -> None:
    db, _ = ponas_db
    doc = _good_doc(db)
    rng = np.random.default_rng(0)
    points = []
    for _ in range(6):
        choices = space.sample(rng)["choices"]
        raw = latency.predict(doc, choices, calibrated=False)
        points.append({"choices": choices, "measured_ms": 2.0 * raw + 0.5, "raw_ms": raw})
    doc["calibration"] = {"slope": 1000.0, "intercept": -5.0, "points": points}
    table = latency.validate_table(doc)
    assert table["calibration"]["slope"] == pytest.approx(2.0)
    assert table["calibration"]["intercept"] == pytest.approx(0.5)


# -- calibration -------------------------------------------------------------------------------
def test_calibration_fits_a_linear_map_and_beats_the_raw_sum(ponas_db, space) -> None:
    db, _ = ponas_db
    table = stored(db)
    rng = np.random.default_rng(1)
    points = []
    for i in range(12):
        choices = space.sample(rng)["choices"]
        raw = latency.predict(table, choices, calibrated=False)
        noise = 1 + 0.02 * (-1) ** i
        points.append({"choices": choices, "measured_ms": (0.6 * raw + 0.3) * noise})
    exact = latency.fit_calibration(table, [{**p, "measured_ms": p["measured_ms"] / (
        1 + 0.02 * (-1) ** i)} for i, p in enumerate(points)])
    assert exact["slope"] == pytest.approx(0.6) and exact["intercept"] == pytest.approx(0.3)
    assert exact["mape_calibrated"] < 1e-6
    fit = latency.fit_calibration(table, points)
    assert fit["mape_calibrated"] < 3 < fit["mape_raw"]
    assert fit["mape_loo"] < 5
    calibrated = {**table, "calibration": fit}
    choices = points[0]["choices"]
    base, blocks, used = latency.calibrated_tables(calibrated)
    assert used and latency.predict(calibrated, choices) == pytest.approx(
        base + blocks[np.arange(len(choices)), choices].sum())
    # the ablation: without the fit, the same points are predicted far worse
    raw = [latency.predict(table, p["choices"]) for p in points]
    assert latency.mape(raw, [p["measured_ms"] for p in points]) > 3 * fit["mape_calibrated"]
    with pytest.raises(NaswError, match="samples"):
        latency.fit_calibration(table, points[:2])


def test_lut_calibrate_measures_models_here_and_stores_the_fit(ponas_db) -> None:
    db, _ = ponas_db
    out = cli(db, "lut", "calibrate", "--preset", PRESET, "--lut", "torch:cpu", "--samples", "4",
              "--json")
    assert out.exit_code == 0, out.output
    fit = json.loads(out.stdout)
    assert fit["samples"] == 4 and len(fit["points"]) == 4
    assert all(p["measured_ms"] > 0 for p in fit["points"])
    assert stored(db)["calibration"]["slope"] == pytest.approx(fit["slope"])
    human = cli(db, "lut", "ls")
    assert "calibrated, MAPE" in human.output


# -- specialize --verify -----------------------------------------------------------------------
def test_verify_warns_when_the_measurement_exceeds_the_budget(ponas_db) -> None:
    db, run_id = ponas_db
    table = stored(db)
    under = {**table, "name": "torch:cpu", "calibration": None,
             "base": table["base"] / 1000,
             "blocks": (np.asarray(table["blocks"]) / 1000).tolist()}  # predicts 1000x too fast
    store_table(db, under)
    try:
        fastest = under["base"] + np.asarray(under["blocks"]).min(axis=1).sum()
        budget = f"latency_ms<={fastest * 50:.6f}"  # feasible on the table, never in reality
        out = cli(db, "specialize", str(run_id), "-c", budget, "--lut", "torch:cpu", "--verify",
                  "--json")
        assert out.exit_code == 0, out.output
        report = json.loads(out.stdout)["latency"]
        assert report["predicted_ms"] <= fastest * 50 < report["measured_ms"]
        assert report["exceeds_budget"] is True and "exceeds the budget" in report["warning"]
        assert "WARNING:" in out.stderr
        human = cli(db, "specialize", str(run_id), "-c", budget, "--lut", "torch:cpu",
                    "--verify")
        assert any(line.startswith("WARNING: measured latency") for line in
                   human.stdout.splitlines())
        roomy = cli(db, "specialize", str(run_id), "-c", "latency_ms<=60000", "--lut",
                    "torch:cpu", "--verify", "--json")
        report = json.loads(roomy.stdout)["latency"]
        assert report["exceeds_budget"] is False and report["warning"] is None
    finally:
        store_table(db, table)


def test_verify_refuses_a_foreign_table_unless_forced(ponas_db) -> None:
    db, run_id = ponas_db
    table = stored(db)
    phone = {**table, "name": "phone", "origin": "imported",
             "fingerprint": {**table["fingerprint"], "cpu": "Cortex-A78"}}
    store_table(db, phone)
    plain = cli(db, "specialize", str(run_id), "-c", "latency_ms<=1000", "--lut", "phone",
                "--json")
    assert plain.exit_code == 0  # predicting for another device is what imports are for
    report = json.loads(plain.stdout)["latency"]
    assert report["measured_ms"] is None and "another machine" in report["note"]
    out = CliRunner().invoke(main, ["specialize", str(run_id), "-c", "latency_ms<=1000",
                                    "--lut", "phone", "--verify", "--db", str(db)])
    assert out.exit_code == 2 and "fingerprint" in out.output


# -- the measuring kit -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """A kit of the digits preset (legacy exporter: ~40x faster to write than dynamo, the same
    splitting code; the dynamo split is checked below)."""
    space = get_space("mbconv", PRESET)
    folder = tmp_path_factory.mktemp("kit") / "kit"
    manifest = latency.write_kit(space, folder, models=4, seed=0, exporter="legacy")
    return folder, manifest


def test_kit_script_runs_with_only_numpy_and_onnxruntime_and_imports(ponas_db, kit,
                                                                      tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    db, run_id = ponas_db
    folder, manifest = kit
    assert (folder / "measure_latency.py").read_text() == \
        (latency.Path(lut_kit.__file__)).read_text()
    assert len(manifest["models"]) == 4 and manifest["exporter"] == ["legacy"]
    output = tmp_path / "device-table.json"
    # torch and the workbench are made unimportable: the script must not need them
    guard = ("import runpy, sys\n"
             "for name in ('torch', 'workbench', 'searchers', 'onnx'):\n"
             "    sys.modules[name] = None\n"
             f"sys.argv = ['measure_latency.py', {str(folder)!r}, '--warmup', '1', "
             f"'--repeats', '3', '--rounds', '2', '-o', {str(output)!r}]\n"
             f"runpy.run_path({str(folder / 'measure_latency.py')!r}, run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", guard], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and output.exists()
    out = cli(db, "lut", "import", str(output), "--json")
    assert out.exit_code == 0, out.output
    imported = json.loads(out.stdout)
    assert imported["name"].startswith("onnxruntime:cpu@") and imported["origin"] == "imported"
    assert imported["calibration"]["samples"] == 4  # fitted from the kit's whole models
    assert imported["method"]["exporter"] == "legacy"  # whole models re-measured the same way
    spec = cli(db, "specialize", str(run_id), "-c", "latency_ms<=1000", "--lut",
               imported["name"], "--no-measure", "--json")
    assert spec.exit_code == 0, spec.output
    assert json.loads(spec.stdout)["latency"]["calibrated"] is True


def test_kit_script_rejects_a_tampered_kit(kit, tmp_path) -> None:
    folder, manifest = kit
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(folder, copy)
    block = next(name for name in manifest["files"] if name.startswith("layer-"))
    (copy / block).write_bytes(b"not onnx")
    done = subprocess.run([sys.executable, str(copy / "measure_latency.py"), str(copy), "-o",
                           str(tmp_path / "t.json")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "differs from the kit" in done.stderr
    assert not (tmp_path / "t.json").exists()


def test_blocks_cut_from_a_dynamo_export_compose_to_the_whole_model(space, tmp_path) -> None:
    """The pieces of a uniform network, run one after another in onnxruntime, give the whole
    exported network's output: the kit times exactly the graph a deployed model contains."""
    pytest.importorskip("onnxscript")
    onnx = pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    import torch

    from workbench.export import onnx_export

    genotype = {"space": "mbconv", "preset": PRESET, "choices": [7] * space.num_positions}
    model = space.build(genotype, space.input_shape, space.num_classes).eval()
    whole = tmp_path / "whole.onnx"
    assert onnx_export(model, torch.randn(2, *space.input_shape), whole)["name"] == "dynamo"
    pieces = latency.split_by_scope(onnx.load(str(whole)))
    order = ["stem", *[f"layers.{i}" for i in range(space.num_positions)], "head"]
    assert sorted(pieces) == sorted(order)
    x = np.random.default_rng(0).standard_normal((3, *space.input_shape)).astype(np.float32)
    value = x
    for scope in order:
        session = onnxruntime.InferenceSession(pieces[scope].SerializeToString(),
                                               providers=["CPUExecutionProvider"])
        value = session.run(None, {session.get_inputs()[0].name: value})[0]
    full = onnxruntime.InferenceSession(str(whole), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(value, full.run(None, {"input": x})[0], atol=1e-5)


def test_onnxruntime_table_built_here_matches_its_fingerprint(space, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    table = latency.build_table(space, "onnxruntime", "cpu", 1, threads=1, warmup=1, repeats=2,
                                rounds=1, exporter="legacy")
    assert table["fingerprint"]["runtime"] == "onnxruntime"
    assert table["fingerprint"]["device"] == "cpu" and table["method"]["exporter"] == "legacy"
    assert np.asarray(table["blocks"]).shape == (space.num_positions, space.num_options)
    assert latency.check_fingerprint({**table, "name": "onnxruntime:cpu"}) == []
    stats = latency.measure_models(space, [space.sample(np.random.default_rng(0))], table)
    assert stats[0]["median_ms"] > 0


def test_the_specialize_tab_shows_predicted_and_measured() -> None:
    from workbench.screens.specialize_pane import latency_text

    over = latency_text({"table": "onnxruntime:cpu", "predicted_ms": 1.98, "calibrated": True,
                         "measured_ms": 2.31, "exceeds_budget": True,
                         "warning": "measured latency 2.310 ms exceeds the budget"})
    assert "predicted 1.980 ms (calibrated)" in over.plain and "measured 2.310 ms" in over.plain
    assert "warning: measured latency" in over.plain
    assert any("red" in str(span.style) for span in over.spans)
    foreign = latency_text({"table": "phone\x1b[2J", "predicted_ms": 3.0, "calibrated": False,
                            "measured_ms": None, "note": "not measured: another machine"})
    assert "measured n/a (not measured: another machine)" in foreign.plain
    assert "\x1b" not in foreign.plain


def test_lut_measure_compares_one_model_with_its_prediction(ponas_db, space, tmp_path) -> None:
    from workbench.export import export

    db, _ = ponas_db
    genotype = space.sample(np.random.default_rng(5))
    export(genotype, "json", tmp_path / "g.json")
    out = cli(db, "lut", "measure", str(tmp_path / "g.json"), "--lut", "torch:cpu", "--json")
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["measured_ms"] > 0 and report["raw_ms"] > 0
    assert report["predicted_ms"] == pytest.approx(latency.predict(stored(db),
                                                                   genotype["choices"]))


def test_lut_kit_refuses_a_folder_in_use(tmp_path) -> None:
    (tmp_path / "kit").mkdir()
    (tmp_path / "kit" / "mine.txt").write_text("keep me")
    out = CliRunner().invoke(main, ["lut", "kit", "--preset", PRESET, "-o",
                                    str(tmp_path / "kit")])
    assert out.exit_code == 2 and "a new or empty folder" in out.output
    assert [p.name for p in (tmp_path / "kit").iterdir()] == ["mine.txt"]
    out = CliRunner().invoke(main, ["lut", "build", "--runtime", "tvm", "--db",
                                    str(tmp_path / "x.db")])
    assert out.exit_code == 2 and "runtime: got 'tvm'" in out.output
    assert not (tmp_path / "x.db").exists()
