"""Does a PONAS accuracy table rank networks the way training them does? (paper §4.3, Fig. 6)

The paper trains six specialized networks from scratch and reports Kendall's tau = 0.733
between their accuracy loss in the table ``T_d`` and their real validation accuracy. A user
needs the same check before trusting a table for deployment.

:func:`validation_networks` picks ``K`` architectures spread along the table's loss range: for
``q`` evenly spaced in ``[0, 1]`` every layer takes the candidate at rank ``round(q (C - 1))``
of its row's losses (``q = 0``: each layer's best block, loss 0; ``q = 1``: each layer's
worst), so the summed losses run from 0 to the table's maximum with distinct architectures in
between (the paper says only that it "purposely" sampled six). :func:`validate_run` trains each
from scratch with the run's final-training schedule (its preset's, ``epochs`` to shorten it),
computes Kendall's tau (``scipy.stats.kendalltau``, tau-b) between the *predicted accuracy*
``-loss`` and the measured accuracy -- positive when the table ranks right, as the paper's
0.733 -- draws table loss against accuracy as text (plotext), and stores everything with the
run as a ``table_validation`` event (the TUI's Accuracy table tab and ``nasw show`` read it back
with :func:`validations`).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from searchers.errors import NaswError
from searchers.specialize import loss_table_from_accuracy

EVENT_KIND = "table_validation"
PAPER_TAU = 0.733
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def validation_networks(loss_table: Any, networks: int) -> list[list[int]]:
    """``networks`` distinct choice vectors spread from the table's lowest loss to its highest."""
    loss = np.asarray(loss_table, dtype=np.float64)
    L, C = loss.shape
    if not isinstance(networks, int) or networks < 2:
        raise NaswError("networks", networks, "an integer >= 2 (a rank correlation needs two)")
    ranks = np.argsort(loss, axis=1, kind="stable")  # per layer: best .. worst
    picked: list[list[int]] = []
    for q in np.linspace(0.0, 1.0, networks):
        choices = [int(c) for c in ranks[:, int(round(q * (C - 1)))]]
        step = 0
        while choices in picked and step < L:  # nudge a duplicate one layer towards worse
            layer = L - 1 - step
            position = int(np.flatnonzero(ranks[layer] == choices[layer])[0])
            choices[layer] = int(ranks[layer, min(position + 1, C - 1)])
            step += 1
        if choices not in picked:
            picked.append(choices)
    if len(picked) < networks:
        raise NaswError("networks", networks, f"at most {len(picked)} for this table",
                        hint="the table has too few distinct losses to spread that many")
    return picked


def kendall_tau(predicted: Any, measured: Any) -> tuple[float, float]:
    """(tau-b, two-sided p-value) between two rankings; NaN for constant input."""
    from scipy.stats import kendalltau

    out = kendalltau(np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float))
    return float(out.statistic), float(out.pvalue)


def loss_accuracy_plot(losses: Any, accuracies: Any, width: int = 60, height: int = 14) -> str:
    """Table loss (x) against trained accuracy (y) as plain text (no colour codes)."""
    import plotext as plt

    plt.clear_figure()
    plt.theme("clear")
    plt.plotsize(width, height)
    plt.scatter(list(map(float, losses)), list(map(float, accuracies)), marker="o")
    plt.xlabel("table accuracy loss")
    plt.ylabel("accuracy")
    text = plt.build()
    plt.clear_figure()
    return _ANSI.sub("", text)


def validate_run(store: Any, run_id: int, networks: int = 6, *, epochs: int | None = None,
                 seed: int = 0, train: Callable[[Any], Any] | None = None,
                 progress: Callable[[int, dict[str, Any]], None] | None = None,
                 save: bool = True) -> dict[str, Any]:
    """Train ``networks`` table-spread architectures of PONAS run ``run_id`` from scratch and
    report Kendall's tau between the table and the trained accuracies.

    ``train`` (default :func:`searchers.training.train`) turns a :class:`~searchers.base.Job`
    into a :class:`~searchers.base.Result`; ``progress(i, row)`` is called after each network.
    Returns ``run_id``, ``networks`` (genotype, choices, table loss, accuracy, status, wall
    time each), ``tau``, ``p_value``, ``paper_tau``, ``plot`` and ``spec``; stored as a
    ``table_validation`` event unless ``save=False``. Bad input raises NaswError before any
    training.
    """
    from searchers.base import Job
    from searchers.final_training import final_train_spec
    from workbench.config import make_searcher
    from workbench.specialize import load_ponas_run

    if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
        raise NaswError("epochs", epochs, "a positive integer (default: the preset's final "
                                          "schedule)")
    loaded = load_ponas_run(store, run_id)
    space, accuracy = loaded["space"], loaded["accuracy"]
    loss = loss_table_from_accuracy(accuracy)
    picked = validation_networks(loss, networks)
    _, searcher = make_searcher(loaded["config"])
    spec = final_train_spec(searcher.train_spec, space.preset, epochs).with_(seed=int(seed))
    if train is None:
        from searchers.training import train as train_job

        train = train_job
    rows: list[dict[str, Any]] = []
    for index, choices in enumerate(picked):
        genotype = space.validate({"space": space.name, "preset": space.preset,
                                   "choices": choices})
        job = Job(id=index, genotype=genotype, train=spec, input_shape=space.input_shape,
                  num_classes=space.num_classes, tag=f"table validation {index}")
        started = time.perf_counter()
        result = train(job)
        row = {"genotype": genotype, "choices": choices,
               "table_loss": float(loss[np.arange(len(choices)), choices].sum()),
               "accuracy": float(result.accuracy) if result.ok else None,
               "status": result.status, "error": result.error or None,
               "wall_s": time.perf_counter() - started}
        rows.append(row)
        if progress is not None:
            progress(index, row)
    trained = [r for r in rows if r["accuracy"] is not None]
    tau, p_value = (kendall_tau([-r["table_loss"] for r in trained],
                                [r["accuracy"] for r in trained])
                    if len(trained) >= 2 else (math.nan, math.nan))
    out = {
        "run_id": int(run_id), "networks": rows, "tau": tau, "p_value": p_value,
        "paper_tau": PAPER_TAU, "trained": len(trained),
        "spec": {k: v for k, v in spec.to_dict().items()
                 if k in ("dataset", "epochs", "batch_size", "lr", "schedule", "momentum",
                          "nesterov", "weight_decay", "seed")},
        "plot": loss_accuracy_plot([r["table_loss"] for r in trained],
                                   [r["accuracy"] for r in trained]) if trained else "",
    }
    if save:
        store.add_event(run_id, EVENT_KIND, _json_safe(out))
    return out


def validations(store: Any, run_id: int) -> list[dict[str, Any]]:
    """Every stored table validation of the run, oldest first (each with its ``time``)."""
    return [{**row["data"], "time": row["time"]}
            for row in store.events(run_id, kind=EVENT_KIND)]


def latest_validation(db_path: Any, run_id: int) -> dict[str, Any] | None:
    """The newest stored validation of a run, read-only (for the TUI's Accuracy table tab:
    stdlib sqlite3, no store writer, no torch), or None."""
    import json
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error:
        return None
    try:
        row = conn.execute("SELECT data, time FROM events WHERE run_id = ? AND kind = ?"
                           " ORDER BY rowid DESC LIMIT 1", (int(run_id), EVENT_KIND)).fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    if row is None:
        return None
    try:
        data = json.loads(row[0])
    except (TypeError, ValueError):
        return None
    return {**data, "time": row[1]} if isinstance(data, dict) else None


def summary(validation: Mapping[str, Any] | None) -> str:
    """One line for a validation: tau, how many networks, how trained, against the paper."""
    if not validation:
        return ""
    tau = validation.get("tau")
    spec = validation.get("spec") or {}
    trained = validation.get("trained", len(validation.get("networks") or []))
    tau_text = f"{float(tau):.3f}" if isinstance(tau, (int, float)) else "n/a"
    return (f"Table validation: Kendall tau {tau_text} over {trained} networks trained from "
            f"scratch ({spec.get('epochs', '?')} epochs); the paper: {PAPER_TAU}")


def _json_safe(value: Any) -> Any:
    """NaN (no tau yet) as None: the events table holds strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


__all__ = ["EVENT_KIND", "PAPER_TAU", "kendall_tau", "latest_validation", "loss_accuracy_plot",
           "summary", "validate_run", "validation_networks", "validations"]
