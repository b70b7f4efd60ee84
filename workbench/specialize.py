"""Specialize a finished PONAS run for a device budget.

Glue between the store and :func:`searchers.specialize.solve`:

* :func:`specialize_run` loads a run's accuracy table and its space's cost LUTs (plus a latency
  LUT from the store when a ``latency_ms`` constraint is given), solves, builds the specialized
  genotype, optionally estimates its accuracy at once (the subnet inherits cropped supernet
  weights from the searcher's checkpoint and is evaluated on the validation split, no
  training) and stores the specialization with its solve time. Bad input -- an unknown run, a
  run that is not PONAS, an incomplete table, a bad constraint, a missing latency LUT -- raises
  :class:`NaswError` *before* anything is written.
* Latency tables (built, fingerprinted, imported, calibrated) live in :mod:`workbench.latency`;
  a ``latency_ms`` constraint is solved on the table's *calibrated* prediction (still a table
  sum) and the chosen model can be measured (``verify``) and compared with its budget.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from searchers.constraints import parse_constraints
from searchers.errors import NaswError
from searchers.specialize import SOLVERS, layer_importance, loss_table_from_accuracy, solve


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


def latency_lut(store: Any, space: Any, name: str | None, batch_size: int,
                *, force: bool = False) -> dict[str, Any]:
    """The stored latency table ``name`` of ``space`` at ``batch_size`` (or NaswError); see
    :func:`workbench.latency.select_table`."""
    from workbench.latency import select_table

    return select_table(store, space, name=name, batch_size=batch_size, force=force)


# -- specialization -----------------------------------------------------------------------------
def specialize_run(store: Any, run_id: int, constraints: Iterable[Any], solver: str = "exact", *,
                   device: str | None = None, batch_size: int = 1, estimate: bool = False,
                   calibration_batches: int = 50, measure: bool | None = None, seed: int = 0,
                   save: bool = True, runtime: str | None = None, lut: str | None = None,
                   force: bool = False, verify: bool = False) -> dict[str, Any]:
    """Solve a specialization of PONAS run ``run_id`` and store it (unless ``save=False``).

    Returns the solver's result plus ``run_id``, ``genotype`` (None when infeasible),
    ``importance`` (per layer), ``estimate`` (``{"accuracy", "val_loss"}`` with
    ``estimate=True``), ``latency`` (:func:`workbench.latency.latency_report`: table,
    predicted (calibrated) and raw ms, measured ms, budget, ``exceeds_budget`` and
    ``warning``, when a latency table is used: ``lut`` by name, or ``runtime``/``device``;
    the whole model is measured with ``verify``, or unless ``measure`` is False when the
    table is this machine's) and ``id`` (the stored row).
    """
    if solver not in SOLVERS:
        raise NaswError("solver", solver, SOLVERS)
    parsed = parse_constraints(constraints, field="constraint")
    loaded = load_ponas_run(store, run_id)
    space, accuracy = loaded["space"], loaded["accuracy"]
    input_shape, num_classes = space.input_shape, space.num_classes
    base, tables = space.cost_tables(input_shape, num_classes)
    lut_table = None
    wants_latency = any(c.metric == "latency_ms" for c in parsed)
    if wants_latency or verify or any(v is not None for v in (device, runtime, lut)):
        from workbench.latency import calibrated_tables, select_table

        lut_table = select_table(store, space, name=lut, runtime=runtime, device=device,
                                 batch_size=batch_size, force=force)
        latency_base, latency_blocks, _ = calibrated_tables(lut_table)
        tables = {**tables, "latency_ms": latency_blocks}
        base = {**base, "latency_ms": latency_base}
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
    if genotype is not None and lut_table is not None:
        from workbench.latency import latency_report

        result["latency"] = latency_report(space, genotype, lut_table, parsed, measure=measure,
                                           verify=verify, force=force)
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


__all__ = ["estimate_accuracy", "latency_lut", "load_ponas_run", "specialize_run"]
