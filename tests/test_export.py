"""Export round trips: ONNX equals torch, TorchScript reloads equal, JSON re-imports the same."""

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
    report = export(genotype, "onnx", tmp_path / "model.onnx")
    assert (tmp_path / "model.onnx").stat().st_size > 0
    assert report["check"].startswith("onnxruntime max abs diff")
    assert float(report["check"].split()[-1]) <= 1e-4


def test_torchscript_reloads_equal(genotype, tmp_path) -> None:
    report = export(genotype, "torchscript", tmp_path / "model.pt")
    assert float(report["check"].split()[-1]) <= 1e-4


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
