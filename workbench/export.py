"""Getting the chosen architecture out: JSON genotype, ONNX, ``torch.export`` (pt2),
TorchScript (legacy), Graphviz DOT.

Every format is written to a temporary file beside the target and renamed into place only
after it has been verified (ONNX checked by ``onnx.checker`` and run in onnxruntime against the
torch output, the pt2 program and the TorchScript module reloaded and compared), so a failed
export never leaves a half-written file. Costs are re-measured by tracing the built model on
every export. torch, onnx and onnxruntime are imported only when a format needs them.

Which path each format takes, and why:

* ``onnx``: the ``torch.export``-based exporter (``torch.onnx.export(..., dynamo=True)``, the
  default since PyTorch 2.9; it needs ``onnxscript``) at opset :data:`DYNAMO_OPSET`, with its
  graph optimiser on (without it the batch-norms stay unfused and onnxruntime runs the graph
  several times slower). When it is missing or fails, the TorchScript-based exporter
  (``dynamo=False``, deprecated upstream) at opset :data:`ONNX_OPSET` is the fallback; the
  report's ``exporter`` says which one wrote the file and why the fallback was taken.
* ``pt2``: :func:`torch.export.export` with a dynamic batch dimension, saved with
  :func:`torch.export.save`: the format PyTorch now recommends for deployment (AOTInductor,
  ExecuTorch, and the input of the ONNX exporter itself).
* ``torchscript``: a traced module, kept for runtimes that still load TorchScript (LibTorch
  C++ and older mobile runtimes); TorchScript is deprecated upstream, so the report says
  ``legacy`` and the deprecation warnings are silenced here instead of reaching the user.
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

FORMATS = ("json", "onnx", "pt2", "torchscript", "dot")
SUFFIX = {"json": ".json", "onnx": ".onnx", "pt2": ".pt2", "torchscript": ".pt", "dot": ".dot"}
#: formats that are no longer what PyTorch recommends, kept for runtimes that need them
LEGACY_FORMATS = ("torchscript",)
ONNX_OPSET = 17  # legacy exporter; supported by every onnxruntime release since 1.15
DYNAMO_OPSET = 18  # the dynamo exporter's native opset (no version conversion); ORT >= 1.14
ONNX_EXPORTERS = ("auto", "dynamo", "legacy")
TOLERANCE = 1e-4
#: the largest batch the exported graphs promise to accept (the batch axis is dynamic)
MAX_BATCH = 4096


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
    # the temporary name keeps the suffix: torch.export.save insists on ".pt2"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}",
                                    dir=folder)
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
           weights: Mapping[str, Any] | None = None,
           onnx_exporter: str = "auto") -> dict[str, Any]:
    """Export one architecture; returns ``{"path", "format", "costs", "check"}`` (plus
    ``"exporter"`` for ONNX, ``"legacy": True`` for TorchScript).

    ``weights`` (a state dict) are loaded into the model for ONNX/pt2/TorchScript when given;
    otherwise the exported graph carries freshly initialised weights (the architecture).
    ``onnx_exporter``: ``auto`` (dynamo, the legacy exporter as fallback), ``dynamo`` or
    ``legacy`` (no fallback).
    """
    check_format(fmt)
    if onnx_exporter not in ONNX_EXPORTERS:
        raise NaswError("onnx_exporter", onnx_exporter, ONNX_EXPORTERS)
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

    examples = example_inputs(input_shape)
    with torch.no_grad():
        expected = [model(x).numpy() for x in examples]
    if fmt == "onnx":
        error, exporter = write_atomically(
            path, lambda tmp: write_onnx(model, examples, expected, tmp, onnx_exporter))
        report["exporter"] = exporter
        report["check"] = (f"onnx.checker ok, onnxruntime max abs diff {error:.2e} "
                           f"(exporter: {exporter['name']}, opset {exporter['opset']})")
    elif fmt == "pt2":
        error = write_atomically(path, lambda tmp: _write_pt2(model, examples, expected, tmp))
        report["check"] = f"torch.export.load reloaded, max abs diff {error:.2e}"
    else:
        error = write_atomically(path, lambda tmp: _write_torchscript(model, examples, expected,
                                                                      tmp))
        report["legacy"] = True
        report["check"] = (f"legacy format (TorchScript is deprecated; prefer pt2 or onnx): "
                           f"reloaded, max abs diff {error:.2e}")
    return report


def example_inputs(input_shape: tuple[int, ...]) -> list[Any]:
    """Two seeded batches (2 and 1 samples): the export traces the first, and both must run
    through the exported artifact, which proves its batch axis is dynamic."""
    import torch

    generator = torch.Generator().manual_seed(1)
    return [torch.randn(2, *input_shape, generator=generator),
            torch.randn(1, *input_shape, generator=generator)]


def _batch_dim() -> Any:
    import torch

    return torch.export.Dim("batch", min=1, max=MAX_BATCH)


def _onnx_modules() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise NaswError("format", "onnx", FORMATS,
                        hint="install the export extra: pip install 'nasw[export]'") from None
    return onnx, onnxruntime


def onnx_export(model: Any, example: Any, path: Path, exporter: str = "auto") -> dict[str, Any]:
    """Write ``model`` as ONNX (input ``input``, output ``logits``, dynamic batch axis) to
    ``path``; returns ``{"name", "opset", "fallback_reason"}``.

    ``auto`` tries the dynamo exporter and falls back to the TorchScript-based one when it is
    not installed (``onnxscript`` missing) or fails on this model; ``dynamo`` / ``legacy``
    take one path only. Nothing is checked here (see :func:`write_onnx`)."""
    import contextlib
    import io

    import torch

    if exporter not in ONNX_EXPORTERS:
        raise NaswError("onnx_exporter", exporter, ONNX_EXPORTERS)
    reason = None
    if exporter in ("auto", "dynamo"):
        try:
            import onnxscript  # noqa: F401  (the dynamo exporter needs it)

            # the exporter prints progress lines on stdout: keep them out of --json output
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.onnx.export(model, (example,), None, input_names=["input"],
                                            output_names=["logits"], opset_version=DYNAMO_OPSET,
                                            dynamic_shapes=({0: _batch_dim()},), dynamo=True,
                                            external_data=False, optimize=True, verbose=False)
            program.save(str(path), external_data=False)
            return {"name": "dynamo", "opset": DYNAMO_OPSET, "fallback_reason": None}
        except Exception as err:  # any failure of the new path: the legacy one may still work
            if exporter == "dynamo":
                raise NaswError("onnx_exporter", "dynamo", ["legacy", "auto"],
                                hint=f"the dynamo exporter failed: {err}") from None
            reason = (f"onnxscript is not installed ({err})" if isinstance(err, ImportError)
                      else f"the dynamo exporter failed: {type(err).__name__}: {err}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (example,), str(path), input_names=["input"],
                          output_names=["logits"], opset_version=ONNX_OPSET,
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          dynamo=False)
    return {"name": "legacy", "opset": ONNX_OPSET, "fallback_reason": reason}


def write_onnx(model: Any, examples: list[Any], expected: list[Any], path: Path,
               exporter: str = "auto") -> tuple[float, dict[str, Any]]:
    """Export, then ``onnx.checker`` and onnxruntime (CPU) on every example against the torch
    outputs; returns the largest absolute difference and the exporter used."""
    onnx, onnxruntime = _onnx_modules()
    used = onnx_export(model, examples[0], path, exporter)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    error = max(_check_close("onnx", session.run(None, {"input": x.numpy()})[0], want)
                for x, want in zip(examples, expected))
    return error, used


def _write_pt2(model: Any, examples: list[Any], expected: list[Any], path: Path) -> float:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(model, (examples[0],), dynamic_shapes=({0: _batch_dim()},))
        torch.export.save(program, str(path))
        reloaded = torch.export.load(str(path)).module()
    with torch.no_grad():
        return max(_check_close("pt2", reloaded(x).numpy(), want)
                   for x, want in zip(examples, expected))


def _write_torchscript(model: Any, examples: list[Any], expected: list[Any], path: Path) -> float:
    import torch

    # TorchScript is deprecated upstream (torch.jit.* warn since 2.11); the report says
    # "legacy" instead of letting the warnings reach the user.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.trace(model, examples[0], check_trace=False)
        scripted.save(str(path))
        reloaded = torch.jit.load(str(path))
        return max(_check_close("torchscript", reloaded(x).numpy(), want)
                   for x, want in zip(examples, expected))


def _check_close(fmt: str, got: Any, expected: Any) -> float:
    """The largest absolute difference to the torch output; raises past :data:`TOLERANCE`."""
    import numpy as np

    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        raise NaswError(fmt, f"output shape {list(got.shape)}", [list(expected.shape)])
    error = float(np.max(np.abs(got - expected)))
    if not error <= TOLERANCE:
        raise NaswError(fmt, f"max |exported - torch| = {error:.2e}", f"<= {TOLERANCE:g}")
    return error
