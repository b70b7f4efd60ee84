"""Latency tables a user can trust: measured properly, keyed by the machine, portable,
calibrated against whole models.

A table gives, for a search space preset, a runtime (``torch`` eager or ``onnxruntime``), a
device and a batch size, the median latency of every candidate block at its position
(``blocks[l][c]``, ms) and of the fixed stem + head (``base``), so a choice vector's latency is
a table sum and PONAS specialization stays an exact knapsack.

* **Measurement** (:func:`workbench.lut_kit.time_interleaved`): warm-up, then interleaved
  rounds of single-call timings; median and interquartile range; the thread count is fixed
  (``--threads``, default 1) and recorded. With onnxruntime the blocks are cut out of whole
  exported networks (one dynamo export per candidate choice, split at the layer boundaries the
  exporter records), so a block's graph is exactly what it is inside a deployed model.
* **Fingerprint**: every table carries the machine's (CPU model, cores, threads, GPU, runtime
  and version, device, OS); a table built here is refused on a machine whose fingerprint
  differs (``--force`` overrides), because latency does not carry over between machines.
* **Portability**: :func:`export_table` / :func:`import_table` (JSON or CSV; an imported file is
  untrusted and validated field by field), and :func:`write_kit`: block ONNX files plus one
  script (:mod:`workbench.lut_kit`, numpy + onnxruntime only) that measures the table on the
  target device. Imported tables predict for their device; measuring them here needs
  ``--force``.
* **Calibration**: the sum of per-block latencies misses what a whole model adds or saves
  (per-call overhead paid once instead of per block, caches shared across blocks).
  :func:`calibrate` measures K sampled architectures end to end and fits ``measured ~= slope *
  sum + intercept`` by least squares on relative error (what MAPE measures), stores the fit
  with the table and reports in-sample and leave-one-out MAPE. Scaling the blocks by the slope
  and adding the intercept to the base keeps the prediction a table sum, so specialization
  uses the calibrated prediction exactly.

Storage: the store's ``latency_luts`` table, keyed by (space, preset, name, batch size); a
table built here is named ``<runtime>:<device>`` (``onnxruntime:cpu``, ``torch:cuda:0``), an
imported one ``--name`` or ``<runtime>:<device>@<fingerprint id>``.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import hashlib
import io
import json
import math
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from searchers.errors import NaswError
from workbench import lut_kit
from workbench.lut_kit import (
    DEFAULT_REPEATS,
    DEFAULT_ROUNDS,
    DEFAULT_WARMUP,
    FINGERPRINT_KEYS,
    KIT_FORMAT,
    TABLE_FORMAT,
)

RUNTIMES = ("torch", "onnxruntime")
TABLE_VERSION = 2
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.:@+-]{1,80}")
#: longest string accepted in an imported table (CPU names are ~60 characters)
MAX_TEXT = 200
#: what is accepted in an imported table's numbers: positive, finite, below a minute
MAX_MS = 60_000.0


# -- names and fingerprints --------------------------------------------------------------------
def table_name(runtime: str, device: str) -> str:
    """The name of a table built on this machine: ``<runtime>:<device>``."""
    return f"{runtime}:{device}"


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise NaswError("runtime", runtime, RUNTIMES)
    if runtime == "onnxruntime":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise NaswError("runtime", runtime, ["torch"],
                            hint="install the export extra: pip install 'nasw[export]'") from None
    return runtime


def check_device(runtime: str, device: str) -> str:
    """NaswError unless ``device`` exists here for ``runtime``; returns its canonical name."""
    check_runtime(runtime)
    if runtime == "torch":
        import torch

        try:
            parsed = torch.device(device)
        except (RuntimeError, ValueError):
            raise NaswError("device", device, "cpu, cuda, cuda:N") from None
        if parsed.type not in ("cpu", "cuda"):
            raise NaswError("device", device, "cpu, cuda, cuda:N")
        if parsed.type == "cuda":
            if not torch.cuda.is_available():
                raise NaswError("device", device, "cpu (no CUDA device is available here)")
            index = 0 if parsed.index is None else parsed.index
            if index >= torch.cuda.device_count():
                raise NaswError("device", device,
                                [f"cuda:{i}" for i in range(torch.cuda.device_count())])
            return f"cuda:{index}"
        return "cpu"
    import onnxruntime

    available = [k for k, v in lut_kit.PROVIDERS.items()
                 if v in onnxruntime.get_available_providers()]
    if device not in available:
        raise NaswError("device", device, available,
                        hint="onnxruntime devices are its execution providers")
    return device


def local_fingerprint(runtime: str, device: str, threads: int) -> dict[str, Any]:
    """This machine's fingerprint for ``runtime`` on ``device`` with ``threads``."""
    if runtime == "onnxruntime":
        return lut_kit.onnxruntime_fingerprint(device, threads)
    import torch

    gpu = None
    if device.startswith("cuda"):
        try:
            gpu = torch.cuda.get_device_name(torch.device(device))
        except (RuntimeError, AssertionError, ValueError):  # no such GPU here: no match
            gpu = None
    return lut_kit.fingerprint("torch", torch.__version__, device, threads, gpu=gpu)


def check_fingerprint(table: Mapping[str, Any], *, force: bool = False,
                      action: str = "use it") -> list[str]:
    """NaswError when ``table`` was measured on another machine than this one (unless
    ``force``); returns the differing fields (empty when it matches)."""
    stored = table.get("fingerprint")
    if not isinstance(stored, Mapping):
        if force:
            return list(FINGERPRINT_KEYS)
        raise NaswError("fingerprint", None, "a table with a device fingerprint",
                        hint=f"table {table.get('name')!r} predates fingerprints: rebuild it "
                             "with nasw lut build, or pass --force")
    here = local_fingerprint(stored["runtime"], stored["device"], int(stored["threads"]))
    differing = lut_kit.fingerprint_diff(stored, here)
    if differing and not force:
        details = "; ".join(f"{k}: table {stored.get(k)!r}, here {here.get(k)!r}"
                            for k in differing)
        raise NaswError("fingerprint", lut_kit.fingerprint_id(stored),
                        f"this machine's fingerprint {lut_kit.fingerprint_id(here)}",
                        hint=f"table {table.get('name')!r} was measured on another machine "
                             f"({details}); latency does not carry over, so {action} only "
                             "with --force, or build a table here (nasw lut build)")
    return differing


# -- tables in the store -----------------------------------------------------------------------
def save_table(store: Any, table: Mapping[str, Any]) -> None:
    store.save_latency_lut(table["space"], table["preset"], table["name"],
                           int(table["batch_size"]), dict(table))


def list_tables(store: Any) -> list[dict[str, Any]]:
    """Every stored table, newest first, without its block arrays."""
    rows = store.conn.execute(
        'SELECT space, preset, device, batch_size, "table", created FROM latency_luts '
        "ORDER BY created DESC").fetchall()
    out = []
    for space, preset, name, batch, text, created in rows:
        table = json.loads(text)
        calibration = table.get("calibration") or {}
        out.append({"space": space, "preset": preset, "name": name, "batch_size": batch,
                    "runtime": table.get("runtime"), "device": table.get("device"),
                    "origin": table.get("origin"), "version": table.get("version", 1),
                    "fingerprint_id": table.get("fingerprint_id"),
                    "machine": (lut_kit.describe(table["fingerprint"])
                                if isinstance(table.get("fingerprint"), Mapping) else None),
                    "calibrated": bool(calibration),
                    "mape_calibrated": calibration.get("mape_loo"),
                    "mape_raw": calibration.get("mape_raw"), "created": created})
    return out


def load_table(store: Any, space: Any, name: str | None, batch_size: int) -> dict[str, Any]:
    """The stored table ``name`` of ``space`` at ``batch_size`` (or NaswError listing what
    exists). ``name=None`` picks the only table there is for the preset and batch size."""
    known = [t for t in list_tables(store) if t["space"] == space.name
             and t["preset"] == space.preset and t["batch_size"] == int(batch_size)]
    if name is None:
        if len(known) == 1:
            name = known[0]["name"]
        else:
            raise NaswError("lut", None, sorted(t["name"] for t in known) or "a latency table",
                            hint=_build_hint(space, batch_size) if not known else
                            "several tables exist: choose one with --lut NAME")
    raw = store.latency_lut(space.name, space.preset, name, int(batch_size))
    if raw is None:
        raise NaswError("lut", name, sorted(t["name"] for t in known) or "a latency table",
                        hint=_build_hint(space, batch_size))
    table = dict(raw)
    table.setdefault("name", name)
    blocks = np.asarray(table["blocks"], dtype=np.float64)
    expected = (int(space.num_positions), int(space.num_options))
    if blocks.shape != expected:
        raise NaswError("lut.blocks", list(blocks.shape), [list(expected)],
                        hint="rebuild the table for this preset")
    return table


def _build_hint(space: Any, batch_size: int) -> str:
    return (f"build one: nasw lut build --space {space.name} --preset {space.preset} "
            f"--runtime onnxruntime --batch-size {batch_size} (or nasw lut import FILE)")


def select_table(store: Any, space: Any, *, name: str | None = None, runtime: str | None = None,
                 device: str | None = None, batch_size: int = 1,
                 force: bool = False) -> dict[str, Any]:
    """The table specialization uses: ``name`` (``--lut``), else ``<runtime>:<device>`` when
    either is given (runtime defaults to torch, device to cpu), else the only table there is.

    A table measured on a machine (origin ``measured``) is refused where the fingerprint
    differs unless ``force``: its numbers describe that machine, not this one. An imported
    or kit table describes the device it was measured on by design and is used as it is."""
    if name is None and (runtime is not None or device is not None):
        name = table_name(runtime or "torch", device or "cpu")
    table = load_table(store, space, name, batch_size)
    if table.get("origin", "measured") == "measured":
        check_fingerprint(table, force=force, action="specialize with it")
    return table


def latency_budget(constraints: Sequence[Any]) -> float | None:
    """The tightest upper bound on ``latency_ms`` among parsed constraints (None if none)."""
    bounds = [float(c.value) for c in constraints
              if c.metric == "latency_ms" and c.op in ("<=", "<")]
    return min(bounds) if bounds else None


def latency_report(space: Any, genotype: Mapping[str, Any], table: Mapping[str, Any],
                   constraints: Sequence[Any], *, measure: bool | None = None,
                   verify: bool = False, force: bool = False,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Predicted (raw and calibrated) and, when measured, measured latency of ``genotype``,
    with a warning when the measurement exceeds the latency budget.

    Measuring happens with ``verify`` (refused for a table from another machine unless
    ``force``), or when ``measure`` is not False and the table is this machine's."""
    choices = list(genotype["choices"])
    fit = table.get("calibration") or None
    fp = table.get("fingerprint")
    differing = check_fingerprint(table, force=True) if isinstance(fp, Mapping) else ["all"]
    if verify and differing:
        check_fingerprint(table, force=force, action="verify against it here")
    report: dict[str, Any] = {
        "table": table.get("name"), "runtime": table.get("runtime", "torch"),
        "device": table.get("device"), "batch_size": int(table["batch_size"]),
        "threads": table.get("threads"), "origin": table.get("origin", "measured"),
        "fingerprint_id": table.get("fingerprint_id"),
        "predicted_ms": predict(table, choices), "raw_ms": predict(table, choices, False),
        "calibrated": fit is not None,
        "calibration_mape": fit.get("mape_loo") if fit else None,
        "measured_ms": None, "measured_iqr_ms": None,
        "budget_ms": latency_budget(constraints), "exceeds_budget": None, "warning": None,
        "note": None,
    }
    if verify or (measure is not False and not differing):
        stats = measure_models(space, [genotype], table, progress=progress)[0]
        report["measured_ms"], report["measured_iqr_ms"] = stats["median_ms"], stats["iqr_ms"]
    elif measure is not False:
        report["note"] = ("not measured: the table describes another machine "
                          f"({lut_kit.describe(fp) if isinstance(fp, Mapping) else 'unknown'})")
    budget, measured = report["budget_ms"], report["measured_ms"]
    if budget is not None and measured is not None:
        report["exceeds_budget"] = bool(measured > budget)
        if measured > budget:
            report["warning"] = (
                f"measured latency {measured:.3f} ms exceeds the budget latency_ms<={budget:g} "
                f"(predicted {report['predicted_ms']:.3f} ms"
                f"{', calibrated' if fit else ', not calibrated'}); the table under-predicts "
                f"here: nasw lut calibrate --preset {space.preset} --lut {report['table']}, "
                "then specialize again")
    return report


# -- prediction --------------------------------------------------------------------------------
def raw_tables(table: Mapping[str, Any]) -> tuple[float, np.ndarray]:
    return float(table["base"]), np.asarray(table["blocks"], dtype=np.float64)


def calibrated_tables(table: Mapping[str, Any]) -> tuple[float, np.ndarray, bool]:
    """``(base, blocks, calibrated)``: with a calibration, ``slope * blocks`` and ``slope *
    base + intercept``, so the table sum is the calibrated prediction."""
    base, blocks = raw_tables(table)
    fit = table.get("calibration")
    if not fit:
        return base, blocks, False
    return fit["slope"] * base + fit["intercept"], fit["slope"] * blocks, True


def predict(table: Mapping[str, Any], choices: Sequence[int], calibrated: bool = True) -> float:
    """Predicted latency (ms) of a choice vector: the calibrated sum when the table has a fit."""
    base, blocks, _ = calibrated_tables(table) if calibrated else (*raw_tables(table), False)
    return float(base + blocks[np.arange(len(choices)), np.asarray(choices, dtype=int)].sum())


# -- measuring blocks --------------------------------------------------------------------------
def _uniform(space: Any, choice: int) -> dict[str, Any]:
    return {"space": space.name, "preset": space.preset,
            "choices": [int(choice)] * int(space.num_positions)}


def _input_shapes(model: Any, input_shape: Sequence[int]) -> dict[str, tuple[int, ...]]:
    """Each top-level piece's input shape (C, H, W): ``stem``, ``layers.<i>``, ``head``."""
    import torch

    shapes: dict[str, tuple[int, ...]] = {}
    pieces = {"stem": model.stem, "head": model.head,
              **{f"layers.{k}": m for k, m in model.layers.items()}}
    hooks = [module.register_forward_pre_hook(
        lambda _m, args, key=key: shapes.__setitem__(key, tuple(args[0].shape[1:])))
        for key, module in pieces.items()]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros((1, *input_shape)))
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def _signature(module: Any, shape: Sequence[int]) -> str:
    """Blocks with the same structure and input shape have the same latency: time them once."""
    return hashlib.sha256(f"{tuple(shape)}|{module!r}".encode()).hexdigest()[:12]


def _piece_layout(space: Any) -> tuple[list[Any], dict[str, Any]]:
    """The uniform networks (one per choice) and, per piece key ``(scope, choice)``, its
    module, input shape and signature."""
    import torch

    models = []
    layout: dict[str, Any] = {}
    for choice in range(int(space.num_options)):
        torch.manual_seed(choice)
        model = space.build(_uniform(space, choice), space.input_shape,
                            space.num_classes).eval()
        shapes = _input_shapes(model, space.input_shape)
        scopes = ["stem", "head"] if choice == 0 else []
        scopes += [f"layers.{k}" for k in model.layers]
        for scope in scopes:
            module = model.get_submodule(scope)
            layout[f"{scope}|{choice}"] = {"scope": scope, "choice": choice, "module": module,
                                           "shape": shapes[scope],
                                           "signature": _signature(module, shapes[scope])}
        models.append(model)
    return models, layout


def _assemble(space: Any, per_piece: Mapping[str, float]) -> tuple[float, list[list[float]]]:
    L, C = int(space.num_positions), int(space.num_options)
    base = per_piece["stem|0"] + per_piece["head|0"]
    blocks = [[per_piece[f"layers.{layer}|{choice}"] for choice in range(C)]
              for layer in range(L)]
    return base, blocks


def _measure_torch(space: Any, device: str, batch_size: int, threads: int, warmup: int,
                   repeats: int, rounds: int, timer: str = "wall") -> dict[str, Any]:
    import torch

    _, layout = _piece_layout(space)
    distinct: dict[str, dict[str, Any]] = {}
    for piece in layout.values():
        distinct.setdefault(piece["signature"], piece)
    target = torch.device(device)
    calls = [_torch_call(p["module"], p["shape"], target, batch_size, seed=i)
             for i, p in enumerate(distinct.values())]
    with _torch_threads(threads), torch.no_grad():
        stats = dict(zip(distinct, lut_kit.time_interleaved(calls, warmup, repeats, rounds,
                                                            timer=timer)))
    medians = {key: stats[p["signature"]]["median_ms"] for key, p in layout.items()}
    iqrs = {key: stats[p["signature"]]["iqr_ms"] for key, p in layout.items()}
    base, blocks = _assemble(space, medians)
    base_iqr, blocks_iqr = _assemble(space, iqrs)
    return {"base": base, "blocks": blocks, "base_iqr": base_iqr, "blocks_iqr": blocks_iqr,
            "layer_shapes": [list(layout[f"layers.{k}|0"]["shape"])
                             for k in range(int(space.num_positions))]}


def _torch_call(module: Any, shape: Sequence[int], target: Any, batch_size: int,
                seed: int) -> Callable[[], Any]:
    import torch

    runner = module.to(target).eval()
    x = torch.randn((batch_size, *shape), generator=torch.Generator().manual_seed(seed))
    x = x.to(target)
    if target.type == "cuda":
        def call() -> Any:
            out = runner(x)
            torch.cuda.synchronize(target)
            return out
        return call
    return lambda: runner(x)


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Fix torch's intra-op threads for a measurement, restore them after."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# -- the kit: block ONNX files cut out of whole exported networks ------------------------------
def _node_scope(node: Any) -> str | None:
    """The top-level module a node of an exported graph belongs to (``stem``, ``layers.3``,
    ``head``): from the dynamo exporter's ``pkg.torch.onnx.name_scopes`` metadata, or the
    legacy exporter's ``/layers.3/...`` node names."""
    for entry in node.metadata_props:
        if entry.key == "pkg.torch.onnx.name_scopes":
            scopes = ast.literal_eval(entry.value)
            return scopes[1] if len(scopes) > 1 and scopes[1] else None
    if node.name.startswith("/"):
        parts = node.name.split("/")
        return parts[1] if len(parts) > 2 else None
    return None


def split_by_scope(model: Any) -> dict[str, Any]:
    """Cut an exported chain network (stem -> layers -> head) into one ONNX model per
    top-level scope, each with one input and one output, exactly the nodes of the whole graph."""
    import onnx
    from onnx.utils import Extractor

    graph = model.graph
    groups: dict[str, list[Any]] = {}
    for node in graph.node:
        scope = _node_scope(node)
        if scope is not None:
            top = scope if not scope.startswith("layers.") else ".".join(scope.split(".")[:2])
            groups.setdefault(top, []).append(node)
    produced = {scope: {o for n in nodes for o in n.output} for scope, nodes in groups.items()}
    activations = set().union(*produced.values()) | {i.name for i in graph.input}
    outputs = {o.name for o in graph.output}
    # the cut points need their shapes (the legacy exporter records none for intermediates)
    extractor = Extractor(onnx.shape_inference.infer_shapes(model))
    pieces = {}
    for scope, nodes in groups.items():
        consumed = {i for n in nodes for i in n.input if i}
        entering = sorted((consumed & activations) - produced[scope])
        others = {i for s, ns in groups.items() if s != scope for n in ns for i in n.input}
        leaving = sorted(produced[scope] & (others | outputs))
        if len(entering) != 1 or len(leaving) != 1:
            raise NaswError("lut.kit", scope, "a chain piece with one input and one output",
                            hint=f"inputs {entering}, outputs {leaving}")
        piece = extractor.extract_model(entering, leaving)
        onnx.checker.check_model(piece)
        pieces[scope] = piece
    return pieces


def write_kit(space: Any, folder: Path, *, models: int = 0, seed: int = 0,
              exporter: str = "auto", progress: Callable[[str], None] | None = None,
              ) -> dict[str, Any]:
    """Write the measuring kit of ``space`` into ``folder`` (created; must be empty): the
    distinct block, stem and head ONNX files, ``models`` sampled whole architectures (for
    calibration), ``manifest.json`` and ``measure_latency.py`` (:mod:`workbench.lut_kit`).
    Returns the manifest."""
    import onnx
    import torch

    from workbench.export import onnx_export

    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise NaswError("output", str(folder), "a new or empty folder")
    if models < 0:
        raise NaswError("models", models, "an integer >= 0")
    say = progress or (lambda _text: None)
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    _, layout = _piece_layout(space)
    files: dict[str, dict[str, Any]] = {}
    names: dict[str, str] = {}
    exporters = set()
    with tempfile.TemporaryDirectory() as scratch:
        for choice in range(int(space.num_options)):
            say(f"exporting the uniform network of choice {choice + 1}/{space.num_options}")
            torch.manual_seed(choice)
            model = space.build(_uniform(space, choice), space.input_shape,
                                space.num_classes).eval()
            whole = Path(scratch) / f"uniform-{choice}.onnx"
            used = onnx_export(model, torch.randn(2, *space.input_shape), whole, exporter)
            exporters.add(used["name"])
            pieces = split_by_scope(onnx.load(str(whole)))
            for scope, piece_model in pieces.items():
                piece = layout.get(f"{scope}|{choice}")
                if piece is None:  # stem and head are taken from the first network
                    continue
                kind = scope.split(".")[0].rstrip("s")
                name = f"{kind}-{piece['signature']}.onnx"
                names[f"{scope}|{choice}"] = name
                if name not in files:
                    onnx.save(piece_model, str(folder / name))
                    files[name] = {"input_shape": list(piece["shape"])}
        model_entries = []
        rng = np.random.default_rng(seed)
        for index in range(models):
            genotype = space.sample(rng)
            say(f"exporting sampled architecture {index + 1}/{models}")
            torch.manual_seed(index)
            model = space.build(genotype, space.input_shape, space.num_classes).eval()
            name = f"model-{index:03d}.onnx"
            onnx_export(model, torch.randn(2, *space.input_shape), folder / name, exporter)
            files[name] = {"input_shape": list(space.input_shape)}
            model_entries.append({"file": name, "choices": [int(c) for c in
                                                            genotype["choices"]]})
    for name, info in files.items():
        info["sha256"] = lut_kit.sha256_file(str(folder / name))
    L, C = int(space.num_positions), int(space.num_options)
    manifest = {
        "format": KIT_FORMAT, "space": space.name, "preset": space.preset,
        "num_positions": L, "num_options": C, "input_shape": list(space.input_shape),
        "layer_shapes": [list(layout[f"layers.{k}|0"]["shape"]) for k in range(L)],
        "files": files, "base": [names["stem|0"], names["head|0"]],
        "blocks": [[names[f"layers.{k}|{c}"] for c in range(C)] for k in range(L)],
        "models": model_entries, "exporter": sorted(exporters),
    }
    manifest["kit_id"] = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()
                                        ).hexdigest()[:12]
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    shutil.copyfile(Path(lut_kit.__file__), folder / "measure_latency.py")
    (folder / "README.txt").write_text(_KIT_README.format(space=space.name, preset=space.preset,
                                                          blocks=len(files) - models,
                                                          models=models))
    manifest["build_s"] = time.perf_counter() - started
    return manifest


_KIT_README = """NAS Workbench latency kit: {space}/{preset}, {blocks} distinct block files, {models} whole
models for calibration.

On the device you deploy to (Python 3.8+, `pip install numpy onnxruntime`, or the
onnxruntime build for its accelerator):

    python measure_latency.py . --provider cpu --threads 4 --batch-size 1 -o table.json

(--provider cuda for onnxruntime-gpu; --threads as you will run the model.) Then, where you
search:

    nasw lut import table.json --name my-device
    nasw specialize RUN -c 'latency_ms<=5' --lut my-device
"""


def _measure_onnxruntime(space: Any, device: str, batch_size: int, threads: int, warmup: int,
                         repeats: int, rounds: int, exporter: str = "auto", timer: str = "wall",
                         progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build a kit in a temporary folder and run it here: the same code as on a device."""
    with tempfile.TemporaryDirectory() as scratch:
        kit = Path(scratch) / "kit"
        manifest = write_kit(space, kit, exporter=exporter, progress=progress)
        table = lut_kit.measure_kit(str(kit), device, threads, batch_size, warmup, repeats,
                                    rounds, models=False, log=progress, timer=timer)
        table["exporter"] = manifest["exporter"][0]
        return table


def build_table(space: Any, runtime: str = "torch", device: str = "cpu", batch_size: int = 1, *,
                threads: int = 1, warmup: int = DEFAULT_WARMUP, repeats: int = DEFAULT_REPEATS,
                rounds: int = DEFAULT_ROUNDS, exporter: str = "auto", timer: str = "wall",
                progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure ``space``'s latency table here (see the module docstring). ``exporter``
    (onnxruntime only): the ONNX exporter of the block files, recorded in ``method`` and used
    again for whole models (:func:`measure_models`), so blocks and models match. ``timer``:
    ``wall`` (default) or ``cpu`` (this process's CPU time; one thread on the CPU only; for a
    machine shared with other work, see docs/deployment.md)."""
    device = check_device(runtime, device)
    if batch_size < 1:
        raise NaswError("batch_size", batch_size, "a positive integer")
    if threads < 1:
        raise NaswError("threads", threads, "a positive integer")
    try:
        lut_kit.check_timer(timer, threads, device)
    except ValueError as err:
        raise NaswError("timer", timer, list(lut_kit.TIMERS), hint=str(err)) from None
    started = time.perf_counter()
    if runtime == "torch":
        measured = _measure_torch(space, device, batch_size, threads, warmup, repeats, rounds,
                                  timer)
    else:
        measured = _measure_onnxruntime(space, device, batch_size, threads, warmup, repeats,
                                        rounds, exporter=exporter, timer=timer,
                                        progress=progress)
    fp = local_fingerprint(runtime, device, threads)
    return {
        "format": TABLE_FORMAT, "version": TABLE_VERSION, "space": space.name,
        "preset": space.preset, "name": table_name(runtime, device), "runtime": runtime,
        "device": device, "batch_size": int(batch_size), "threads": int(threads),
        "fingerprint": fp, "fingerprint_id": lut_kit.fingerprint_id(fp),
        "method": {"warmup": int(warmup), "repeats": int(repeats), "rounds": int(rounds),
                   "statistic": "median", "spread": "iqr", "timer": lut_kit.TIMERS[timer],
                   **({"exporter": measured["exporter"]} if "exporter" in measured else {})},
        "base": measured["base"], "blocks": measured["blocks"],
        "base_iqr": measured["base_iqr"], "blocks_iqr": measured["blocks_iqr"],
        "input_shape": list(space.input_shape), "layer_shapes": measured["layer_shapes"],
        "calibration": None, "origin": "measured",
        "build_s": time.perf_counter() - started, "created": time.time(),
    }


# -- measuring whole models --------------------------------------------------------------------
def measure_models(space: Any, genotypes: Sequence[Mapping[str, Any]], table: Mapping[str, Any],
                   *, progress: Callable[[str], None] | None = None) -> list[dict[str, float]]:
    """End-to-end latency of whole models, timed as ``table`` was (runtime, device, batch,
    threads, warm-up, repeats, rounds; all models interleaved), so predicted and measured are
    comparable."""
    import torch

    method = table.get("method") or {}
    warmup = int(method.get("warmup", DEFAULT_WARMUP))
    repeats = int(method.get("repeats", DEFAULT_REPEATS))
    rounds = int(method.get("rounds", DEFAULT_ROUNDS))
    timer = {v: k for k, v in lut_kit.TIMERS.items()}.get(method.get("timer"), "wall")
    runtime, device = table.get("runtime", "torch"), str(table["device"])
    threads = int(table.get("threads") or table["fingerprint"]["threads"])
    batch = int(table["batch_size"])
    say = progress or (lambda _text: None)
    built = []
    for index, genotype in enumerate(genotypes):
        torch.manual_seed(index)
        built.append(space.build(genotype, space.input_shape, space.num_classes).eval())
    if runtime == "torch":
        target = torch.device(device)
        calls = [_torch_call(m, space.input_shape, target, batch, seed=i)
                 for i, m in enumerate(built)]
        with _torch_threads(threads), torch.no_grad():
            return lut_kit.time_interleaved(calls, warmup, repeats, rounds, timer=timer)
    from workbench.export import onnx_export

    with tempfile.TemporaryDirectory() as scratch:
        calls = []
        for index, model in enumerate(built):
            say(f"exporting model {index + 1}/{len(built)} to ONNX")
            path = Path(scratch) / f"model-{index}.onnx"
            onnx_export(model, torch.randn(2, *space.input_shape), path,
                        method.get("exporter", "auto"))
            session = lut_kit.open_session(str(path), device, threads)
            calls.append(lut_kit.session_call(session, space.input_shape, batch, seed=index))
        say(f"timing {len(calls)} model(s)")
        return lut_kit.time_interleaved(calls, warmup, repeats, rounds, timer=timer)


# -- calibration -------------------------------------------------------------------------------
def mape(predicted: Sequence[float], measured: Sequence[float]) -> float:
    """Mean absolute percentage error (%) of ``predicted`` against ``measured``."""
    p, m = np.asarray(predicted, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    return float(np.mean(np.abs(p - m) / m) * 100.0)


def _relative_fit(raw: np.ndarray, measured: np.ndarray) -> tuple[float, float]:
    """``slope, intercept`` minimising the summed squared *relative* error: each row of the
    least-squares system is divided by its measurement, which is what MAPE weighs."""
    design = np.stack([raw, np.ones_like(raw)], axis=1) / measured[:, None]
    (slope, intercept), *_ = np.linalg.lstsq(design, np.ones_like(raw), rcond=None)
    return float(slope), float(intercept)


def fit_calibration(table: Mapping[str, Any], points: Sequence[Mapping[str, Any]],
                    ) -> dict[str, Any]:
    """Fit ``measured ~= slope * raw_sum + intercept`` over ``points`` (``{"choices",
    "measured_ms"}``); reports raw, in-sample and leave-one-out MAPE."""
    if len(points) < 3:
        raise NaswError("samples", len(points), "at least 3 measured architectures")
    raw = np.array([predict(table, p["choices"], calibrated=False) for p in points])
    measured = np.array([float(p["measured_ms"]) for p in points])
    slope, intercept = _relative_fit(raw, measured)
    loo = []
    for i in range(len(points)):
        keep = np.arange(len(points)) != i
        s, b = _relative_fit(raw[keep], measured[keep])
        loo.append(s * raw[i] + b)
    return {"slope": slope, "intercept": intercept, "samples": len(points),
            "mape_raw": mape(raw, measured),
            "mape_calibrated": mape(slope * raw + intercept, measured),
            "mape_loo": mape(loo, measured),
            "points": [{"choices": [int(c) for c in p["choices"]],
                        "measured_ms": float(p["measured_ms"]), "raw_ms": float(r),
                        **({"iqr_ms": float(p["iqr_ms"])} if "iqr_ms" in p else {})}
                       for p, r in zip(points, raw)],
            "fitted": time.time()}


def calibrate(space: Any, table: dict[str, Any], samples: int = 20, seed: int = 0, *,
              force: bool = False, progress: Callable[[str], None] | None = None,
              ) -> dict[str, Any]:
    """Measure ``samples`` random architectures end to end here, fit the calibration and
    return the table with it (the caller stores it). Refused on another machine unless
    ``force``."""
    if samples < 3:
        raise NaswError("samples", samples, "an integer >= 3")
    check_fingerprint(table, force=force, action="calibrate it here")
    rng = np.random.default_rng(seed)
    genotypes = [space.sample(rng) for _ in range(samples)]
    stats = measure_models(space, genotypes, table, progress=progress)
    points = [{"choices": g["choices"], "measured_ms": s["median_ms"], "iqr_ms": s["iqr_ms"]}
              for g, s in zip(genotypes, stats)]
    return {**table, "calibration": {**fit_calibration(table, points), "seed": int(seed)}}


# -- export and import -------------------------------------------------------------------------
CSV_COLUMNS = ("layer", "choice", "median_ms", "iqr_ms")
#: metadata lines of the CSV form, ``# key: <json>``, in this order
CSV_META = ("format", "space", "preset", "runtime", "device", "batch_size", "threads",
            "fingerprint", "method", "base", "base_iqr", "input_shape", "layer_shapes",
            "calibration", "calibration_points", "origin", "created")
#: fields an exported/imported table may have (anything else is refused)
TABLE_FIELDS = {*CSV_META, "blocks", "blocks_iqr", "fingerprint_id", "name", "version", "kit",
                "build_s"}


def export_table(table: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """Write ``table`` as JSON (``.json``) or CSV (``.csv``: one row per block, metadata and
    the fingerprint as ``# key: <json>`` lines)."""
    from workbench.export import write_atomically

    path = Path(path)
    doc = {k: v for k, v in table.items() if k in TABLE_FIELDS}
    doc["format"] = TABLE_FORMAT
    if path.suffix == ".json":
        text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
    elif path.suffix == ".csv":
        buffer = io.StringIO()
        for key in CSV_META:
            if key in doc:
                buffer.write(f"# {key}: {json.dumps(doc[key], sort_keys=True)}\n")
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        iqr = doc.get("blocks_iqr")
        for layer, row in enumerate(doc["blocks"]):
            for choice, value in enumerate(row):
                writer.writerow([layer, choice, repr(float(value)),
                                 repr(float(iqr[layer][choice])) if iqr else ""])
        text = buffer.getvalue()
    else:
        raise NaswError("output", str(path), "a .json or .csv file")
    write_atomically(path, lambda tmp: tmp.write_text(text))
    return {"path": str(path), "format": path.suffix[1:], "name": table.get("name")}


def read_table_file(path: Path) -> dict[str, Any]:
    """Parse a JSON or CSV table file into a dict (not yet validated)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise NaswError("file", str(path), "a readable UTF-8 .json or .csv table",
                        hint=str(err)) from None
    if path.suffix == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise NaswError("file", str(path), "valid JSON", hint=str(err)) from None
        if not isinstance(doc, dict):
            raise NaswError("file", type(doc).__name__, "a JSON object")
        return doc
    if path.suffix != ".csv":
        raise NaswError("file", str(path), "a .json or .csv file")
    doc: dict[str, Any] = {}
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("#"):
            key, sep, value = line[1:].partition(":")
            key = key.strip()
            if not sep or key not in CSV_META:
                raise NaswError(f"line {number}", line[:60], [f"# {k}: <json>" for k in CSV_META])
            try:
                doc[key] = json.loads(value)
            except json.JSONDecodeError as err:
                raise NaswError(key, value.strip()[:60], "a JSON value", hint=str(err)) from None
        elif line.strip():
            rows.append((number, line))
    reader = csv.reader([line for _, line in rows])
    header = next(reader, None)
    if header is None or tuple(header) != CSV_COLUMNS:
        raise NaswError("columns", header, [",".join(CSV_COLUMNS)])
    cells: dict[tuple[int, int], tuple[float, float | None]] = {}
    for (number, _), row in zip(rows[1:], reader):
        if len(row) != len(CSV_COLUMNS):
            raise NaswError(f"line {number}", row, f"{len(CSV_COLUMNS)} columns")
        try:
            key = (int(row[0]), int(row[1]))
            cells[key] = (float(row[2]), float(row[3]) if row[3] else None)
        except ValueError:
            raise NaswError(f"line {number}", row, "layer,choice (integers), median_ms, "
                            "iqr_ms (numbers)") from None
    if cells:
        L = 1 + max(k[0] for k in cells)
        C = 1 + max(k[1] for k in cells)
        missing = [k for k in ((i, j) for i in range(L) for j in range(C)) if k not in cells]
        if missing:
            raise NaswError("blocks", f"missing layer {missing[0][0]} choice {missing[0][1]}",
                            f"one row per layer and choice ({L} x {C})")
        doc["blocks"] = [[cells[(i, j)][0] for j in range(C)] for i in range(L)]
        if all(v[1] is not None for v in cells.values()):
            doc["blocks_iqr"] = [[cells[(i, j)][1] for j in range(C)] for i in range(L)]
    return doc


def _text(field: str, value: Any, allow_none: bool = False) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT \
            or any(ord(ch) < 32 for ch in value):
        raise NaswError(field, _short(value), f"a string of 1..{MAX_TEXT} printable characters"
                        + (" or null" if allow_none else ""))
    return value


def _int(field: str, value: Any, low: int, high: int, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise NaswError(field, _short(value), f"an integer in {low}..{high}"
                        + (" or null" if allow_none else ""))
    return int(value)


def _ms(field: str, value: Any, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not (value >= 0 if allow_zero else value > 0) \
            or value > MAX_MS:
        raise NaswError(field, _short(value), f"a finite number of milliseconds in "
                        f"{'[0' if allow_zero else '(0'}, {MAX_MS:g}]")
    return float(value)


def _short(value: Any) -> Any:
    text = repr(value)
    return value if len(text) <= 60 else text[:57] + "..."


def _matrix(field: str, value: Any, shape: tuple[int, int], allow_zero: bool) -> list[list[float]]:
    if not isinstance(value, list) or len(value) != shape[0] or not all(
            isinstance(row, list) and len(row) == shape[1] for row in value):
        raise NaswError(field, "a matrix of another shape" if isinstance(value, list)
                        else _short(value), f"{shape[0]} rows of {shape[1]} numbers")
    return [[_ms(f"{field}[{i}][{j}]", v, allow_zero) for j, v in enumerate(row)]
            for i, row in enumerate(value)]


def _points(field: str, points: Any, shape: tuple[int, int],
            extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Validated calibration points: ``{choices, measured_ms[, iqr_ms]}`` each."""
    if not isinstance(points, list) or len(points) > 10_000:
        raise NaswError(field, _short(points), "a list of at most 10000 points")
    allowed = {"choices", "measured_ms", "iqr_ms", *extra}
    checked = []
    for i, point in enumerate(points):
        where = f"{field}[{i}]"
        if not isinstance(point, Mapping) or set(point) - allowed:
            raise NaswError(where, _short(point), "{" + ", ".join(sorted(allowed)) + "}")
        choices = point.get("choices")
        if not isinstance(choices, list) or len(choices) != shape[0]:
            raise NaswError(f"{where}.choices", _short(choices), f"{shape[0]} choices")
        entry = {"choices": [_int(f"{where}.choices[{j}]", c, 0, shape[1] - 1)
                             for j, c in enumerate(choices)],
                 "measured_ms": _ms(f"{where}.measured_ms", point.get("measured_ms"))}
        if point.get("iqr_ms") is not None:
            entry["iqr_ms"] = _ms(f"{where}.iqr_ms", point["iqr_ms"], allow_zero=True)
        checked.append(entry)
    return checked


def validate_table(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A strictly checked copy of an untrusted table (from a file or a kit): known fields only,
    a known space and preset, block matrices of the preset's shape with positive finite
    latencies, a complete fingerprint of plain values. NaswError names the first bad field."""
    from searchers.spaces import get_space

    if not isinstance(doc, Mapping):
        raise NaswError("table", type(doc).__name__, "a JSON object")
    unknown = sorted(set(doc) - TABLE_FIELDS)
    if unknown:
        raise NaswError(unknown[0], _short(doc[unknown[0]]), sorted(TABLE_FIELDS))
    if doc.get("format") != TABLE_FORMAT:
        raise NaswError("format", _short(doc.get("format")), [TABLE_FORMAT])
    space_name = _text("space", doc.get("space"))
    if space_name != "mbconv":
        raise NaswError("space", space_name, ["mbconv"])
    preset = _text("preset", doc.get("preset"))
    space = get_space(space_name, preset)  # NaswError naming the presets
    runtime = doc.get("runtime")
    if runtime not in RUNTIMES:
        raise NaswError("runtime", _short(runtime), RUNTIMES)
    device = _text("device", doc.get("device"))
    batch = _int("batch_size", doc.get("batch_size"), 1, 1 << 16)
    fp_doc = doc.get("fingerprint")
    if not isinstance(fp_doc, Mapping):
        raise NaswError("fingerprint", _short(fp_doc), "an object with " + ", ".join(
            FINGERPRINT_KEYS))
    extra = sorted(set(fp_doc) - set(FINGERPRINT_KEYS))
    if extra:
        raise NaswError(f"fingerprint.{extra[0]}", _short(fp_doc[extra[0]]), FINGERPRINT_KEYS)
    fp = {
        "cpu": _text("fingerprint.cpu", fp_doc.get("cpu")),
        "cores_logical": _int("fingerprint.cores_logical", fp_doc.get("cores_logical"), 1,
                              1 << 16, allow_none=True),
        "cores_physical": _int("fingerprint.cores_physical", fp_doc.get("cores_physical"), 1,
                               1 << 16, allow_none=True),
        "threads": _int("fingerprint.threads", fp_doc.get("threads"), 1, 1 << 16),
        "gpu": _text("fingerprint.gpu", fp_doc.get("gpu"), allow_none=True),
        "runtime": fp_doc.get("runtime"),
        "runtime_version": _text("fingerprint.runtime_version", fp_doc.get("runtime_version")),
        "device": _text("fingerprint.device", fp_doc.get("device")),
        "os": _text("fingerprint.os", fp_doc.get("os")),
        "machine": _text("fingerprint.machine", fp_doc.get("machine")),
    }
    if fp["runtime"] != runtime:
        raise NaswError("fingerprint.runtime", _short(fp["runtime"]), [runtime])
    if fp["device"] != device:
        raise NaswError("fingerprint.device", fp["device"], [device])
    threads = doc.get("threads", fp["threads"])
    if threads != fp["threads"]:
        raise NaswError("threads", _short(threads), [fp["threads"]])
    shape = (int(space.num_positions), int(space.num_options))
    table: dict[str, Any] = {
        "format": TABLE_FORMAT, "version": TABLE_VERSION, "space": space_name,
        "preset": preset, "runtime": runtime, "device": device, "batch_size": batch,
        "threads": fp["threads"], "fingerprint": fp, "fingerprint_id": lut_kit.fingerprint_id(fp),
        "base": _ms("base", doc.get("base")),
        "blocks": _matrix("blocks", doc.get("blocks"), shape, allow_zero=False),
        "input_shape": list(space.input_shape),
    }
    if doc.get("base_iqr") is not None:
        table["base_iqr"] = _ms("base_iqr", doc["base_iqr"], allow_zero=True)
    if doc.get("blocks_iqr") is not None:
        table["blocks_iqr"] = _matrix("blocks_iqr", doc["blocks_iqr"], shape, allow_zero=True)
    method = doc.get("method")
    if method is not None:
        if not isinstance(method, Mapping):
            raise NaswError("method", _short(method), "an object")
        table["method"] = {
            "warmup": _int("method.warmup", method.get("warmup"), 0, 1 << 20),
            "repeats": _int("method.repeats", method.get("repeats"), 1, 1 << 20),
            "rounds": _int("method.rounds", method.get("rounds", 1), 1, 1 << 20),
            "statistic": "median", "spread": "iqr", "timer": method.get("timer",
                                                                        "perf_counter_ns")}
        if table["method"]["timer"] not in lut_kit.TIMERS.values():
            raise NaswError("method.timer", _short(table["method"]["timer"]),
                            sorted(lut_kit.TIMERS.values()))
        if method.get("exporter") is not None:
            if method["exporter"] not in ("dynamo", "legacy"):
                raise NaswError("method.exporter", _short(method["exporter"]),
                                ["dynamo", "legacy"])
            table["method"]["exporter"] = method["exporter"]
    checked_points = _points("calibration_points", doc.get("calibration_points") or [], shape)
    table["calibration_points"] = checked_points
    calibration = doc.get("calibration")
    table["calibration"] = None
    if calibration is not None:  # its numbers are never trusted: refitted from its points
        if not isinstance(calibration, Mapping) or not isinstance(calibration.get("points"),
                                                                  list):
            raise NaswError("calibration", _short(calibration), "null or a fit with its points")
        fit_points = _points("calibration.points", calibration["points"], shape,
                             extra=("raw_ms",))
        table["calibration"] = fit_calibration(table, fit_points)
    if table["calibration"] is None and len(checked_points) >= 3:
        table["calibration"] = fit_calibration(table, checked_points)
    return table


def import_table(store: Any, path: Path, name: str | None = None, *,
                 replace: bool = False) -> dict[str, Any]:
    """Validate a table file and store it under ``name`` (default ``<runtime>:<device>@<fp>``).
    Refuses to overwrite an existing table unless ``replace``."""
    table = validate_table(read_table_file(path))
    if name is None:
        name = f"{table['runtime']}:{table['device']}@{table['fingerprint_id']}"
    if not NAME_PATTERN.fullmatch(name):
        raise NaswError("name", name, "1..80 of A-Z a-z 0-9 _ . : @ + -")
    if not replace and store.latency_lut(table["space"], table["preset"], name,
                                         table["batch_size"]) is not None:
        raise NaswError("name", name, "a name not in use",
                        hint="pass --replace to overwrite it, or --name another")
    table.update(name=name, origin="imported", created=time.time())
    save_table(store, table)
    return table


__all__ = [
    "RUNTIMES", "build_table", "calibrate", "calibrated_tables", "check_device",
    "check_fingerprint", "export_table", "fit_calibration", "import_table", "list_tables",
    "latency_budget", "latency_report", "load_table", "local_fingerprint", "mape", "measure_models", "predict", "read_table_file",
    "save_table", "select_table", "split_by_scope", "table_name", "validate_table", "write_kit",
]
