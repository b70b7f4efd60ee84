"""Getting the chosen architecture out: JSON genotype, ONNX, TorchScript, Graphviz DOT.

Every format is written to a temporary file beside the target and renamed into place only
after it has been verified (ONNX run in onnxruntime against the torch output, TorchScript
reloaded and compared), so a failed export never leaves a half-written file. Costs are
re-measured by tracing the built model on every export. torch, onnx and onnxruntime are
imported only when a format needs them.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from searchers.errors import NaswError
from searchers.spaces import space_of

FORMATS = ("json", "onnx", "torchscript", "dot")
SUFFIX = {"json": ".json", "onnx": ".onnx", "torchscript": ".pt", "dot": ".dot"}
ONNX_OPSET = 17  # supported by every onnxruntime release since 1.15
TOLERANCE = 1e-4


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise NaswError("format", fmt, FORMATS)
    return fmt


def default_path(fmt: str, run_id: int, candidate_id: int | str) -> Path:
    return Path(f"run{run_id}-{candidate_id}{SUFFIX[check_format(fmt)]}")


def write_atomically(path: Path, write: Callable[[Path], Any]) -> Any:
    """Call ``write(tmp)`` on a temporary file in ``path``'s folder, then rename it to ``path``.

    Returns what ``write`` returns; if it raises, the temporary file is removed and ``path`` is
    left as it was."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise NaswError("output", str(path), "a path in an existing folder")
    if not os.access(folder, os.W_OK):
        raise NaswError("output", str(path), "a writable location",
                        hint=f"cannot write in {folder}")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        outcome = write(tmp)
        os.replace(tmp, path)
        return outcome
    finally:
        if tmp.exists():
            tmp.unlink()


def genotype_document(genotype: Mapping[str, Any], input_shape: tuple[int, ...],
                      num_classes: int, provenance: Mapping[str, Any] | None = None,
                      costs: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The JSON export: genotype, its hash, shapes, costs and where it came from."""
    space = space_of(genotype)
    canonical = space.canonical(genotype)
    return {
        "format": "nasw-genotype/1",
        "genotype": canonical,
        "hash": space.hash(canonical),
        "input_shape": list(input_shape),
        "num_classes": int(num_classes),
        "costs": dict(costs) if costs is not None else space.costs(canonical, input_shape,
                                                                    num_classes),
        "provenance": dict(provenance or {}),
    }


def load_genotype_document(path: Path) -> dict[str, Any]:
    """Read a JSON export back; validates the genotype against its space."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise NaswError("genotype file", str(path), "a readable JSON genotype export",
                        hint=str(err)) from None
    genotype = doc.get("genotype", doc) if isinstance(doc, Mapping) else doc
    space = space_of(genotype)
    doc = dict(doc) if isinstance(doc, Mapping) and "genotype" in doc else {"genotype": doc}
    doc["genotype"] = space.validate(genotype)
    doc.setdefault("input_shape", list(space.input_shape))
    doc.setdefault("num_classes", space.num_classes)
    return doc


def dot_source(graph: Any, title: str = "architecture") -> str:
    """Graphviz DOT of a space's ``graph(g)``: one box per node with its costs, skips dashed."""

    def quote(text: Any) -> str:
        return '"' + str(text).replace('"', "'") + '"'

    lines = [f"digraph {quote(title)} {{", "  rankdir=TB;",
             '  node [shape=box, style="rounded", fontname="Helvetica"];']
    for node, attrs in graph.nodes(data=True):
        parts = [str(attrs.get("label", node))]
        costs = attrs.get("costs") or {}
        if costs.get("params") is not None:
            parts.append(f"params {int(costs['params']):,}")
        if costs.get("madds") is not None:
            parts.append(f"MAdds {int(costs['madds']):,}")
        label = "\\n".join(p.replace('"', "'") for p in parts)  # DOT's own line break
        lines.append(f'  {quote(node)} [label="{label}"];')
    for src, dst, attrs in graph.edges(data=True):
        style = ' [style="dashed"]' if attrs.get("kind") == "skip" else ""
        lines.append(f"  {quote(src)} -> {quote(dst)}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def export(genotype: Mapping[str, Any], fmt: str, path: Path, *,
           input_shape: tuple[int, ...] | None = None, num_classes: int | None = None,
           provenance: Mapping[str, Any] | None = None,
           weights: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Export one architecture; returns ``{"path", "format", "costs", "check"}``.

    ``weights`` (a state dict) are loaded into the model for ONNX/TorchScript when given;
    otherwise the exported graph carries freshly initialised weights (the architecture).
    """
    check_format(fmt)
    space = space_of(genotype)
    genotype = space.validate(genotype)
    input_shape = tuple(input_shape or space.input_shape)
    num_classes = int(num_classes or space.num_classes)
    report: dict[str, Any] = {"path": str(path), "format": fmt}

    if fmt == "dot":
        text = dot_source(space.graph(genotype), title=space.hash(genotype))
        write_atomically(path, lambda tmp: tmp.write_text(text))
        report["costs"] = space.costs(genotype, input_shape, num_classes)
        report["check"] = "written"
        return report

    import torch

    from searchers.costs import measure

    torch.manual_seed(0)
    model = space.build(genotype, input_shape, num_classes)
    if weights is not None:
        from searchers.training import inherit_weights

        inherit_weights(model, weights)
    model.eval()
    costs = measure(model, input_shape)
    report["costs"] = costs
    if fmt == "json":
        doc = genotype_document(genotype, input_shape, num_classes, provenance, costs)
        write_atomically(path, lambda tmp: tmp.write_text(json.dumps(doc, indent=2) + "\n"))
        report["check"] = f"hash {doc['hash']}"
        return report

    example = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(example).numpy()
    if fmt == "onnx":
        report["check"] = _write_onnx(model, example, expected, path)
    else:
        report["check"] = _write_torchscript(model, example, expected, path)
    return report


def _write_onnx(model: Any, example: Any, expected: Any, path: Path) -> str:
    import torch

    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise NaswError("format", "onnx", FORMATS,
                        hint="install the export extra: pip install 'nasw[export]'") from None

    def write(tmp: Path) -> float:
        # The TorchScript-based exporter: the dynamo one needs onnxscript, not a dependency.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (example,), str(tmp), input_names=["input"],
                              output_names=["logits"], opset_version=ONNX_OPSET,
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                              dynamo=False)
        onnx.checker.check_model(onnx.load(str(tmp)))
        session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(None, {"input": example.numpy()})[0]
        return _check_close("onnx", got, expected)

    return f"onnxruntime max abs diff {write_atomically(path, write):.2e}"


def _write_torchscript(model: Any, example: Any, expected: Any, path: Path) -> str:
    import torch

    def write(tmp: Path) -> float:
        # TorchScript is deprecated upstream but still what most C++/mobile runtimes load.
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", FutureWarning)
            scripted = torch.jit.trace(model, example, check_trace=False)
            scripted.save(str(tmp))
            got = torch.jit.load(str(tmp))(example).numpy()
        return _check_close("torchscript", got, expected)

    return f"reloaded, max abs diff {write_atomically(path, write):.2e}"


def _check_close(fmt: str, got: Any, expected: Any) -> float:
    """The largest absolute difference to the torch output; raises past :data:`TOLERANCE`."""
    import numpy as np

    error = float(np.max(np.abs(np.asarray(got) - np.asarray(expected))))
    if not error <= TOLERANCE:
        raise NaswError(fmt, f"max |exported - torch| = {error:.2e}", f"<= {TOLERANCE:g}")
    return error
