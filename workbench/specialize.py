"""Specialize a finished PONAS run for a device budget, and build per-device latency LUTs.

Glue between the store and :func:`searchers.specialize.solve`:

* :func:`specialize_run` loads a run's accuracy table and its space's cost LUTs (plus a latency
  LUT from the store when a ``latency_ms`` constraint is given), solves, builds the specialized
  genotype, optionally estimates its accuracy at once (the subnet inherits cropped supernet
  weights from the searcher's checkpoint and is evaluated on the validation split, no
  training) and stores the specialization with its solve time. Bad input -- an unknown run, a
  run that is not PONAS, an incomplete table, a bad constraint, a missing latency LUT -- raises
  :class:`NaswError` *before* anything is written.
* :func:`build_latency_lut` times every candidate block in place (its own input shape at its
  position in the network: warm-up, median of repeats) on a device, plus the fixed stem and
  head, so the latency of a choice vector is a table sum like every other metric.
  :func:`save_latency_luts` stores the table for batch 1 and for the chosen batch size.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from searchers.constraints import parse_constraints
from searchers.errors import NaswError
from searchers.specialize import SOLVERS, layer_importance, loss_table_from_accuracy, solve

LUT_VERSION = 1


# -- loading a run ------------------------------------------------------------------------------
def load_ponas_run(store: Any, run_id: int) -> dict[str, Any]:
    """The run, its config, its space and its complete accuracy table (or NaswError)."""
    from workbench.config import build_space, parse_config

    run = store.run(run_id)  # NaswError naming the known runs
    config = parse_config(run["config"])
    if config.searcher.name != "ponas":
        raise NaswError("run", run_id, "a PONAS run",
                        hint=f"run {run_id} used searcher {config.searcher.name!r}; only PONAS "
                             "builds an accuracy table")
    space = build_space(config)
    rows = store.accuracy_table(run_id)
    L, C = int(space.num_positions), int(space.num_options)
    accuracy = np.full((L, C), np.nan)
    for row in rows:
        layer, choice = int(row["layer"]), int(row["choice"])
        if 0 <= layer < L and 0 <= choice < C and row["accuracy"] is not None:
            accuracy[layer, choice] = float(row["accuracy"])
    measured = int(np.isfinite(accuracy).sum())
    if measured < L * C:
        done_layers = int(np.isfinite(accuracy).all(axis=1).sum())
        raise NaswError("run", run_id, f"a run whose accuracy table is complete ({L} x {C})",
                        hint=f"{measured} of {L * C} entries measured, {done_layers} of {L} "
                             f"layers complete; `nasw resume {run_id}` finishes it")
    return {"run": run, "config": config, "space": space, "accuracy": accuracy}


def latency_lut(store: Any, space: Any, device: str, batch_size: int) -> dict[str, Any]:
    """The stored latency LUT of ``space`` on ``device`` at ``batch_size`` (or NaswError)."""
    table = store.latency_lut(space.name, space.preset, device, int(batch_size))
    if table is None:
        raise NaswError("device", device, "a device with a latency LUT",
                        hint=f"build one: nasw lut build --space {space.name} --preset "
                             f"{space.preset} --device {device} --batch-size {batch_size}")
    blocks = np.asarray(table["blocks"], dtype=np.float64)
    expected = (int(space.num_positions), int(space.num_options))
    if blocks.shape != expected:
        raise NaswError("latency_lut.blocks", list(blocks.shape), [list(expected)],
                        hint="rebuild the LUT for this preset")
    return {**table, "blocks": blocks}


# -- specialization -----------------------------------------------------------------------------
def specialize_run(store: Any, run_id: int, constraints: Iterable[Any], solver: str = "exact", *,
                   device: str | None = None, batch_size: int = 1, estimate: bool = False,
                   calibration_batches: int = 50, measure: bool | None = None, seed: int = 0,
                   save: bool = True) -> dict[str, Any]:
    """Solve a specialization of PONAS run ``run_id`` and store it (unless ``save=False``).

    Returns the solver's result plus ``run_id``, ``genotype`` (None when infeasible),
    ``importance`` (per layer), ``estimate`` (``{"accuracy", "val_loss"}`` with
    ``estimate=True``), ``latency`` (``{"device", "batch_size", "predicted_ms",
    "measured_ms"}`` when a latency LUT is used; the whole model is re-measured when
    ``measure`` is true, by default whenever a LUT was used) and ``id`` (the stored row).
    """
    if solver not in SOLVERS:
        raise NaswError("solver", solver, SOLVERS)
    parsed = parse_constraints(constraints, field="constraint")
    loaded = load_ponas_run(store, run_id)
    space, accuracy = loaded["space"], loaded["accuracy"]
    input_shape, num_classes = space.input_shape, space.num_classes
    base, tables = space.cost_tables(input_shape, num_classes)
    lut = None
    wants_latency = any(c.metric == "latency_ms" for c in parsed)
    if wants_latency or device is not None:
        lut = latency_lut(store, space, device or "cpu", batch_size)
        tables = {**tables, "latency_ms": lut["blocks"]}
        base = {**base, "latency_ms": float(lut["base"])}
    loss = loss_table_from_accuracy(accuracy)
    result = solve(loss, tables, parsed, base=base, solver=solver, seed=seed)
    result["run_id"] = int(run_id)
    result["importance"] = layer_importance(loss).tolist()
    genotype = None
    if result["feasible"]:
        genotype = space.validate({"space": space.name, "preset": space.preset,
                                   "choices": result["choices"]})
        result["accuracy_table_sum"] = float(accuracy[np.arange(len(accuracy)),
                                                      result["choices"]].sum())
    result["genotype"] = genotype
    if genotype is not None and estimate:
        result["estimate"] = estimate_accuracy(store, run_id, loaded["config"], genotype,
                                               calibration_batches=calibration_batches)
    if genotype is not None and lut is not None:
        predicted = result["costs"]["latency_ms"]
        latency = {"device": lut["device"], "batch_size": int(batch_size),
                   "predicted_ms": predicted, "measured_ms": None}
        if measure is None or measure:
            latency["measured_ms"] = measure_whole_model(space, genotype, lut)
        result["latency"] = latency
    if save:
        result["id"] = store.add_specialization(
            run_id, [c.as_dict() for c in parsed], _stored(result), solver, result["solve_ms"])
    return result


def _stored(result: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "id"}


def estimate_accuracy(store: Any, run_id: int, config: Any, genotype: Mapping[str, Any], *,
                      calibration_batches: int = 50) -> dict[str, Any]:
    """Validation accuracy of ``genotype`` with weights cropped from the run's supernet.

    Uses the searcher checkpoint's :meth:`PONASSearcher.specialization_weights` (each layer's
    largest block as its candidates were cropped from). Cropping changes what every
    batch-norm layer sees, so its running statistics are first recalibrated on up to
    ``calibration_batches`` training batches with the weights frozen (a pass at learning rate
    0, as Once-for-All does before evaluating a subnet); ``0`` evaluates the cropped weights as
    they are. Then the validation split of the run's dataset is evaluated.
    """
    if calibration_batches < 0:
        raise NaswError("calibration_batches", calibration_batches, "an integer >= 0")
    from searchers.base import Job
    from searchers.training import train
    from workbench.config import make_searcher

    _, searcher = make_searcher(config)
    if not store.restore_searcher(run_id, searcher):  # safe codec: nothing executed
        raise NaswError("run", run_id, "a run with a searcher checkpoint",
                        hint="the run has not started")
    weights = searcher.specialization_weights()
    if weights is None:
        return {"accuracy": None, "val_loss": None,
                "note": "the run's evaluator returned no weights (synthetic?): nothing to crop"}
    spec = searcher.finetune_spec.with_(epochs=0)
    if calibration_batches:
        spec = spec.with_(epochs=1, lr=0.0, lr_min=0.0, weight_decay=0.0, warmup_epochs=0,
                          schedule="constant", augment=False, label_smoothing=0.0,
                          max_batches=int(calibration_batches))
    job = Job(id=0, genotype=dict(genotype), train=spec, input_shape=searcher.input_shape,
              num_classes=searcher.num_classes, inherit=weights)
    outcome = train(job)
    return {"accuracy": outcome.accuracy, "val_loss": outcome.val_loss,
            "status": outcome.status, "error": outcome.error or None,
            "device": outcome.device, "calibration_batches": int(calibration_batches)}


# -- latency LUTs -------------------------------------------------------------------------------
def measure_whole_model(space: Any, genotype: Mapping[str, Any], lut: Mapping[str, Any]) -> float:
    """Latency of the whole specialized model, timed as the LUT was (device, batch, warm-up,
    repeats and torch's CPU threads), so predicted and measured are comparable."""
    import torch

    from searchers.costs import measure_latency

    model = space.build(genotype, space.input_shape, space.num_classes)
    previous = torch.get_num_threads()
    threads = lut.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return measure_latency(model, space.input_shape, device=lut["device"],
                               batch_size=int(lut["batch_size"]),
                               warmup=int(lut.get("warmup", 5)),
                               repeats=int(lut.get("repeats", 20)))
    finally:
        torch.set_num_threads(previous)


def _layer_input_shapes(model: Any, input_shape: Sequence[int]) -> tuple[list[tuple[int, ...]],
                                                                          tuple[int, ...]]:
    """Per searchable layer its input shape (C, H, W), and the head's, by one traced forward."""
    import torch

    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []
    for name, layer in model.layers.items():
        hooks.append(layer.register_forward_pre_hook(
            lambda _m, args, name=name: shapes.__setitem__(name, tuple(args[0].shape[1:]))))
    hooks.append(model.head.register_forward_pre_hook(
        lambda _m, args: shapes.__setitem__("head", tuple(args[0].shape[1:]))))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros((1, *input_shape)))
    finally:
        for hook in hooks:
            hook.remove()
    return [shapes[name] for name in model.layers], shapes["head"]


def check_device(device: str) -> None:
    """NaswError unless ``device`` names a torch device that exists here."""
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
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise NaswError("device", device,
                            [f"cuda:{i}" for i in range(torch.cuda.device_count())])


def build_latency_lut(space: Any, device: str = "cpu", batch_size: int = 1, *, warmup: int = 5,
                      repeats: int = 20, threads: int | None = None,
                      progress: Any = None) -> dict[str, Any]:
    """Median forward latency (ms) of every candidate block at its position, plus the base.

    Block ``(l, c)`` is layer ``l`` of the uniform network built with choice ``c`` everywhere
    (same module as in any genotype that picks ``c`` at ``l``), timed alone on its own input
    shape. The base is the stem and the head, timed the same way. The sum over a choice
    vector predicts the whole model's latency; per-call overheads make the whole model a little
    faster or slower, which is why :func:`specialize_run` re-measures it. ``threads`` sets
    torch's CPU threads for the measurement (default: as configured); it is stored with the LUT.
    """
    import torch

    if threads is not None:
        if threads < 1:
            raise NaswError("threads", threads, "a positive integer")
        previous = torch.get_num_threads()
        torch.set_num_threads(int(threads))
        try:
            return build_latency_lut(space, device, batch_size, warmup=warmup, repeats=repeats,
                                     progress=progress)
        finally:
            torch.set_num_threads(previous)

    from searchers.costs import measure_latency

    if batch_size < 1:
        raise NaswError("batch_size", batch_size, "a positive integer")
    check_device(device)
    L, C = int(space.num_positions), int(space.num_options)
    input_shape = space.input_shape
    started = time.perf_counter()
    blocks = np.zeros((L, C))
    shapes: list[tuple[int, ...]] = []
    head_shape: tuple[int, ...] = ()
    base_ms = 0.0
    for choice in range(C):
        model = space.build({"space": space.name, "preset": space.preset,
                             "choices": [choice] * L}, input_shape, space.num_classes)
        if choice == 0:
            shapes, head_shape = _layer_input_shapes(model, input_shape)
            base_ms = (measure_latency(model.stem, input_shape, device, batch_size, warmup,
                                       repeats)
                       + measure_latency(model.head, head_shape, device, batch_size, warmup,
                                         repeats))
        for layer, name in enumerate(model.layers):
            blocks[layer, choice] = measure_latency(model.layers[name], shapes[layer], device,
                                                    batch_size, warmup, repeats)
            if progress is not None:
                progress(layer, choice)
    return {
        "version": LUT_VERSION, "space": space.name, "preset": space.preset, "device": device,
        "batch_size": int(batch_size), "warmup": int(warmup), "repeats": int(repeats),
        "base": base_ms, "blocks": blocks.tolist(), "input_shape": list(input_shape),
        "layer_shapes": [list(s) for s in shapes], "torch": torch.__version__,
        "threads": torch.get_num_threads(), "build_s": time.perf_counter() - started,
        "created": time.time(),
    }


def save_latency_luts(store: Any, space: Any, device: str = "cpu", batch_size: int = 1, *,
                      warmup: int = 5, repeats: int = 20,
                      threads: int | None = None) -> list[dict[str, Any]]:
    """Measure and store the LUT at batch 1 and, when different, at ``batch_size``."""
    sizes = sorted({1, int(batch_size)})
    luts = []
    for size in sizes:
        lut = build_latency_lut(space, device, size, warmup=warmup, repeats=repeats,
                                threads=threads)
        store.save_latency_lut(space.name, space.preset, device, size, lut)
        luts.append(lut)
    return luts


__all__ = ["build_latency_lut", "check_device", "estimate_accuracy", "latency_lut", "load_ponas_run",
           "measure_whole_model", "save_latency_luts", "specialize_run"]
