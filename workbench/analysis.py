"""Read-side analysis of stored runs: Pareto fronts and run comparison.

Pure functions over store rows; used by ``nasw compare``, the TUI's Pareto and compare views.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from searchers.constraints import feasible, parse_constraints
from searchers.errors import NaswError


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats (lower cost x and higher accuracy y).

    Sorted by cost; ties in cost keep only the most accurate. O(n log n).
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best = -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def summarize_run(run: dict[str, Any], candidates: Sequence[dict[str, Any]],
                  cost: str = "params") -> dict[str, Any]:
    """What ``nasw compare`` shows of one run: best (feasible) accuracy, evaluations to reach
    it and to the first feasible candidate, wall time, and its Pareto front on ``cost``."""
    constraints = parse_constraints(run["config"].get("constraints") or [])
    done = sorted((c for c in candidates if c["status"] not in ("running", "cancelled")),
                  key=lambda c: c.get("seq") or 0)
    best_acc, best_at, first_feasible = None, None, None
    best_feasible_acc = None
    for k, c in enumerate(done, start=1):
        if c["status"] != "ok" or c.get("accuracy") is None:
            continue
        ok_feasible = feasible(c.get("costs") or {}, constraints)
        if ok_feasible and first_feasible is None:
            first_feasible = k
        if ok_feasible and (best_feasible_acc is None or c["accuracy"] > best_feasible_acc):
            best_feasible_acc = c["accuracy"]
            best_at = k
        if best_acc is None or c["accuracy"] > best_acc:
            best_acc = c["accuracy"]
            if best_feasible_acc is None:
                best_at = k
    ok = [c for c in done if c["status"] == "ok" and c.get("accuracy") is not None
          and (c.get("costs") or {}).get(cost) is not None]
    points = [(float(c["costs"][cost]), float(c["accuracy"])) for c in ok]
    front = [{"id": ok[i]["id"], cost: points[i][0], "accuracy": points[i][1]}
             for i in pareto_front(points)]
    return {
        "id": run["id"], "name": run["name"], "searcher": run["searcher"],
        "space": f"{run['space']}/{run['preset']}", "status": run["status"],
        "evaluations": len(done), "best_accuracy": best_acc,
        "best_feasible_accuracy": best_feasible_acc, "feasible_found": first_feasible is not None,
        "evaluations_to_best": best_at, "evaluations_to_first_feasible": first_feasible,
        "wall_time_s": run.get("elapsed") or 0.0, "constraints": [str(c) for c in constraints],
        "pareto_cost": cost, "pareto_front": front,
    }


def compare_runs(store: Any, run_ids: Sequence[int], cost: str = "params") -> list[dict[str, Any]]:
    """One :func:`summarize_run` per run, in the order given."""
    return [summarize_run(store.run(r), store.candidates(r), cost) for r in run_ids]


def resolve_architecture(store: Any, run_id: int, candidate_id: int | None,
                         specialization_id: int | None) -> tuple[dict, str, dict]:
    """(genotype, label, provenance) of a candidate, a specialization, or the run's best."""
    run = store.run(run_id)
    config = run["config"]
    provenance = {"run": run_id, "run_name": run["name"], "searcher": run["searcher"],
                  "seed": config.get("seed"), "config": config}
    if specialization_id is not None:
        found = [s for s in store.specializations(run_id) if s["id"] == specialization_id]
        if not found:
            raise NaswError("specialization", specialization_id,
                            [s["id"] for s in store.specializations(run_id)]
                            or f"none: run {run_id} has no specializations")
        genotype = (found[0]["result"] or {}).get("genotype")
        if not genotype:
            raise NaswError("specialization", specialization_id, "a feasible specialization")
        provenance["specialization"] = specialization_id
        return genotype, f"s{specialization_id}", provenance
    if candidate_id is None:
        best = store.best_candidate(run_id)
        if best is None:
            raise NaswError("run", run_id, "a run with an evaluated candidate")
        candidate_id = int(best["id"])
    candidate = store.candidate(run_id, candidate_id)
    provenance.update(candidate=candidate_id, accuracy=candidate.get("accuracy"))
    return candidate["genotype"], f"c{candidate_id}", provenance
