"""The search suite's driver serves every searcher the way the runner does (bench/).

PONAS's stage 2 asks one-shot supernet jobs whose result must carry every path's score; the
suite's plain family evaluators once returned none, and PONAS's ``digits-real`` runs failed
inside the suite without anything else noticing. These tests run PONAS through ``drive`` and
``run_task`` on the families, and check how its evaluations are counted and what its latency
table is.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import search_families as fam  # noqa: E402


def _mbconv(family: str = "synthetic") -> Any:
    return fam.spaces_for(fam.get_family(family), ["mbconv"])[0]


def test_drive_serves_ponas_supernet_jobs_one_evaluation_per_path() -> None:
    space = _mbconv()
    family = fam.get_family("synthetic")
    trace = fam.drive("ponas", family, space, budget=150, seed=3)
    ponas = trace.instance
    layers, options = space.num_positions, space.num_options
    assert ponas.done() and ponas.stage2 == "supernet"
    # the meta network + every path of every layer's supernet, each one evaluation
    assert trace.evaluations == 1 + layers * options
    assert not np.isnan(ponas.accuracy_matrix()).any()
    # each layer's B_G path is the previous layer's best network (the meta network for
    # layer 0): scored again, as the supernet measures it again, and counted as a duplicate
    assert trace.duplicates == layers
    # a table entry is the family's score of that path, at the job's evaluation seed
    supernet_jobs = [h for h in ponas.history if h["meta"].get("stage") == "supernet"]
    assert len(supernet_jobs) == layers
    job = supernet_jobs[2]
    for choice in (0, 5, options - 1):
        genotype = ponas.genotype(ponas.candidate_choices(2, choice))
        expected = family.evaluate(space, genotype, fam.eval_seed(3, job["id"])).observed
        assert ponas.accuracy_matrix()[2, choice] == pytest.approx(expected)


def test_a_supernet_job_that_does_not_fit_the_budget_ends_the_search() -> None:
    space = _mbconv()
    trace = fam.drive("ponas", "synthetic", space, budget=20, seed=0)
    # meta (1) + layer 0 (12) = 13; layer 1's 12 paths would make 25 > 20
    assert trace.evaluations == 13 and len(trace.curve) == 20
    assert not trace.instance.done()
    assert np.array_equal(trace.curve[13:], np.full(7, trace.curve[12]), equal_nan=True)


@pytest.mark.parametrize("family_name", ["digits-real", "latency", "two-sided"])
def test_ponas_runs_in_the_suite_and_answers_with_its_specialised_network(
        family_name: str) -> None:
    from bench.bench_search import run_task

    if family_name == "digits-real" and not fam.DIGITS_TABLE.exists():
        pytest.skip("bench/data/digits_trainings.csv.gz not generated yet")
    for seed in range(2):
        run = run_task(("ponas", None, family_name, "mbconv", seed, 150))
        assert "error" not in run, run.get("error")
        # 73 table evaluations + the specialised network
        assert run["evaluations"] == 74 and len(run["curve"]) == 74
        assert math.isfinite(run["curve"][-1]) and run["curve"][-1] > 0.0


def test_latency_specialisation_uses_the_latency_table() -> None:
    """The table's paths (B_G in the later layers) all break the latency cap, so a feasible
    incumbent can only come from specialising on ``latency_ms`` -- which needs the table."""
    from bench.bench_search import _ponas_pick

    space = _mbconv("latency")
    family = fam.get_family("latency")
    trace = fam.drive("ponas", family, space, budget=150, seed=1)
    assert trace.feasible_fraction == 0.0 and trace.incumbent.key is None
    value = _ponas_pick(trace, family, space, 1)
    assert trace.incumbent.key is not None and value == trace.incumbent.true > 0.0


@pytest.mark.parametrize("space_name", ["mbconv", "rcas"])
def test_latency_table_sums_to_the_latency_family_exactly(space_name: str) -> None:
    family = fam.get_family("latency")
    space = fam.spaces_for(family, [space_name])[0]
    lut = fam.latency_lut(space)
    blocks = np.asarray(lut["blocks"])
    assert blocks.shape == (space.num_positions, space.num_options) and (blocks >= 0).all()
    rng = np.random.default_rng(5)
    for _ in range(100):
        genotype = space.sample(rng)
        measured = family.evaluate(space, genotype, 0).costs["latency_ms"]
        picks = space.picks(genotype)
        predicted = lut["base"] + blocks[np.arange(len(picks)), picks].sum()
        assert predicted == pytest.approx(measured, rel=1e-12)


def test_incumbent_is_the_best_observed_and_a_repeat_is_ranked_by_its_mean() -> None:
    incumbent = fam.Incumbent()
    assert incumbent.key is None and math.isnan(incumbent.true)
    incumbent.observe("a", fam.Evaluation(0.70, 0.60, {}))
    incumbent.observe("b", fam.Evaluation(0.65, 0.66, {}))
    assert incumbent.key == "a" and incumbent.true == 0.60
    incumbent.observe("a", fam.Evaluation(0.50, 0.60, {}))  # a's mean drops to 0.60
    assert incumbent.key == "b" and incumbent.true == 0.66
