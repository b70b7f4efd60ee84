"""Export round trips for every format: ONNX (dynamo exporter, legacy fallback) equals torch in
onnxruntime, pt2 and TorchScript reload equal, JSON re-imports the same, DOT lists the graph."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from searchers.errors import NaswError
from searchers.spaces import get_space
from workbench.export import export, load_genotype_document

SMALL_PRESETS = [("mbconv", "ponas-digits"), ("rcas", "rcas-digits"),
                 ("layerwise", "epnas-digits"), ("cell", "pnas-digits")]


@pytest.fixture(params=SMALL_PRESETS, ids=lambda p: p[0])
def genotype(request):
    name, preset = request.param
    space = get_space(name, preset)
    return space.sample(np.random.default_rng(3))


def test_onnx_matches_torch(genotype, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    report = export(genotype, "onnx", tmp_path / "model.onnx")
    assert (tmp_path / "model.onnx").stat().st_size > 0
    assert report["exporter"] == {"name": "dynamo", "opset": 18, "fallback_reason": None}
    assert "onnx.checker ok" in report["check"] and "exporter: dynamo" in report["check"]
    _assert_runs_in_onnxruntime(genotype, tmp_path / "model.onnx")


def _assert_runs_in_onnxruntime(genotype, path, batches=(1, 3)) -> None:
    """Reload the file independently: any batch size runs and matches torch within 1e-4."""
    import onnxruntime
    import torch

    space = get_space(genotype["space"], genotype["preset"])
    torch.manual_seed(0)
    model = space.build(genotype, space.input_shape, space.num_classes).eval()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in batches:
        x = torch.randn(batch, *space.input_shape)
        with torch.no_grad():
            want = model(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert np.max(np.abs(got - want)) <= 1e-4


def test_onnx_falls_back_to_the_legacy_exporter_and_says_why(tmp_path, monkeypatch) -> None:
    pytest.importorskip("onnxruntime")
    import torch

    def broken(*args, **kwargs):
        if kwargs.get("dynamo"):
            raise RuntimeError("unsupported operator")
        return real(*args, **kwargs)

    real = torch.onnx.export
    monkeypatch.setattr(torch.onnx, "export", broken)
    g = get_space("mbconv", "ponas-digits").sample(np.random.default_rng(0))
    report = export(g, "onnx", tmp_path / "m.onnx")
    assert report["exporter"]["name"] == "legacy" and report["exporter"]["opset"] == 17
    assert "unsupported operator" in report["exporter"]["fallback_reason"]
    _assert_runs_in_onnxruntime(g, tmp_path / "m.onnx")
    with pytest.raises(NaswError, match="dynamo exporter failed"):  # no fallback when asked
        export(g, "onnx", tmp_path / "d.onnx", onnx_exporter="dynamo")
    assert not (tmp_path / "d.onnx").exists()
    legacy = export(g, "onnx", tmp_path / "l.onnx", onnx_exporter="legacy")
    assert legacy["exporter"] == {"name": "legacy", "opset": 17, "fallback_reason": None}


def test_pt2_reloads_equal(genotype, tmp_path) -> None:
    import torch

    report = export(genotype, "pt2", tmp_path / "model.pt2")
    assert float(report["check"].split()[-1]) <= 1e-4
    space = get_space(genotype["space"], genotype["preset"])
    torch.manual_seed(0)
    model = space.build(genotype, space.input_shape, space.num_classes).eval()
    program = torch.export.load(str(tmp_path / "model.pt2"))  # written by this test: trusted
    x = torch.randn(5, *space.input_shape)  # a batch size never traced: the axis is dynamic
    with torch.no_grad():
        assert torch.allclose(program.module()(x), model(x), atol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt2"]  # no temporary file left


def test_torchscript_reloads_equal_and_is_marked_legacy(genotype, tmp_path) -> None:
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # TorchScript's deprecation warnings never reach users
        report = export(genotype, "torchscript", tmp_path / "model.pt")
    assert float(report["check"].split()[-1]) <= 1e-4
    assert report["legacy"] is True and report["check"].startswith("legacy format")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reloaded = torch.jit.load(str(tmp_path / "model.pt"))
    space = get_space(genotype["space"], genotype["preset"])
    assert reloaded(torch.randn(2, *space.input_shape)).shape == (2, space.num_classes)


def test_json_reimports_to_the_same_hash_and_costs(genotype, tmp_path) -> None:
    space = get_space(genotype["space"], genotype["preset"])
    report = export(genotype, "json", tmp_path / "g.json", provenance={"run": 1, "seed": 0})
    doc = load_genotype_document(tmp_path / "g.json")
    assert space.hash(doc["genotype"]) == space.hash(genotype)
    assert doc["costs"] == report["costs"]
    assert space.costs(doc["genotype"]) == pytest.approx(report["costs"])
    assert doc["provenance"] == {"run": 1, "seed": 0}


def test_dot_lists_every_node(genotype, tmp_path) -> None:
    space = get_space(genotype["space"], genotype["preset"])
    export(genotype, "dot", tmp_path / "g.dot")
    text = (tmp_path / "g.dot").read_text()
    assert text.startswith("digraph")
    edges = [line for line in text.splitlines() if line.endswith(";") and "\" -> \"" in line]
    assert len(edges) == space.graph(genotype).number_of_edges()


def test_bad_format_and_unwritable_path_leave_nothing(tmp_path) -> None:
    g = get_space("mbconv", "ponas-digits").sample(np.random.default_rng(0))
    with pytest.raises(NaswError, match="format"):
        export(g, "tflite", tmp_path / "x")
    with pytest.raises(NaswError, match="output"):
        export(g, "json", tmp_path / "missing-folder" / "g.json")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(NaswError, match="output"):
        export(g, "json", tmp_path / "a-file" / "g.json")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if not os.access(locked, os.W_OK):  # root may write anywhere: nothing to prove then
            with pytest.raises(NaswError, match="output"):
                export(g, "json", locked / "g.json")
    finally:
        locked.chmod(stat.S_IRWXU)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "locked"]
    assert list(locked.iterdir()) == []


def test_failed_check_leaves_no_file(tmp_path, monkeypatch) -> None:
    import workbench.export as exporter

    monkeypatch.setattr(exporter, "TOLERANCE", -1.0)  # every comparison now fails
    g = get_space("mbconv", "ponas-digits").sample(np.random.default_rng(0))
    with pytest.raises(NaswError, match="torchscript"):
        export(g, "torchscript", tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []
    json.dumps(g)
