"""PNAS searcher on the synthetic evaluator: counts, expansion, ranking, resume, constraints."""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from searchers import get_searcher
from searchers.base import Job, Result
from searchers.constraints import parse_constraints, soft_reward
from searchers.errors import NaswError
from searchers.objectives import synthetic_result
from searchers.pnas import PNASSearcher, search_count
from searchers.spaces import get_space

B, K = 3, 8
#: a cheap predictor for tests (the paper's is 100-wide, 5 members, 60 epochs)
FAST = {"predictor": "mlp-ensemble", "predictor_embedding_dim": 16, "predictor_hidden_dim": 16,
        "predictor_ensemble_size": 3, "predictor_epochs": 20, "predictor_batch_size": 32}
FINAL = {"final_models": 1, "final_N": [1, 2], "final_params_target": 1e5}


@pytest.fixture(scope="module")
def space() -> Any:
    """The digits cell space with ``expand`` memoised: every run expands the same 136 one-block
    cells (31,620 children), and ``expand`` is deterministic (tested in the cell space's own
    tests), so the suite pays for that expansion once instead of once per run."""
    space = get_space("cell", "pnas-digits")
    expand = space.expand
    cache: dict[tuple[str, ...], list[dict[str, Any]]] = {}

    def memoised_expand(cells: Any) -> list[dict[str, Any]]:
        cells = list(cells)
        key = tuple(json.dumps(c, sort_keys=True) for c in cells)
        if key not in cache:
            cache[key] = expand(cells)
        return list(cache[key])

    space.expand = memoised_expand
    return space


def make(space: Any, seed: int = 0, **params: Any) -> PNASSearcher:
    return get_searcher("pnas", space=space, seed=seed, **{"B": B, "K": K, **FAST, **FINAL,
                                                           **params})


def drive(searcher: Any, evaluate: Callable[[Job], Result] = synthetic_result, batch: int = 64,
          stop_after: int | None = None) -> list[tuple[Job, Result]]:
    """Ask/tell until done (or ``stop_after`` tells); results are told in reverse ask order
    to show that completion order does not matter."""
    told: list[tuple[Job, Result]] = []
    while not searcher.done():
        jobs = searcher.ask(batch)
        assert jobs, "a searcher that is not done and has nothing pending must give jobs"
        for job in reversed(jobs):
            if stop_after is not None and len(told) >= stop_after:
                return told
            result = evaluate(job)
            searcher.tell(job, result)
            told.append((job, result))
    return told


@pytest.fixture(scope="module")
def finished(space: Any) -> tuple[PNASSearcher, list[tuple[Job, Result]]]:
    searcher = make(space, seed=0)
    return searcher, drive(searcher)


def test_trains_exactly_136_plus_b_minus_1_times_k_then_the_final_models(finished) -> None:
    searcher, told = finished
    tags = Counter(job.tag for job, _ in told)
    assert tags == {"level 1": 136, "level 2": K, "level 3": K, "final": 2,
                    "final (train+val)": 1}
    assert sum(n for tag, n in tags.items() if tag.startswith("level")) == search_count(B, K)
    assert search_count(B, K) == 152
    assert searcher.budget == len(told) == 155 and searcher.done()
    assert [job.id for job, _ in sorted(told, key=lambda t: t[0].id)] == list(range(155))
    assert searcher.ask(10) == []


def test_each_level_is_one_batch_and_ask_waits_for_it(space: Any) -> None:
    searcher = make(space, B=2)
    first = searcher.ask(100)
    assert len(first) == 100 and {j.tag for j in first} == {"level 1"}
    rest = searcher.ask(100)
    assert len(rest) == 36 and searcher.ask(5) == []
    for job in first + rest[:-1]:
        searcher.tell(job, synthetic_result(job))
    assert searcher.ask(5) == []  # one result of level 1 still outstanding
    searcher.tell(rest[-1], synthetic_result(rest[-1]))
    level2 = searcher.ask(100)
    assert len(level2) == K and {j.tag for j in level2} == {"level 2"}
    assert all(j.meta["predicted"] is not None for j in level2)


def test_levels_are_valid_unique_canonical_children_ranked_by_the_predictor(finished,
                                                                           space: Any) -> None:
    searcher, _ = finished
    seen: set[str] = set()
    for level in range(1, B + 1):
        records = searcher.level_records(level)
        for record in records:
            g = record["genotype"]
            assert len(g["blocks"]) == level
            assert space.canonical(g) == g == space.validate(g)
            assert space.hash(g) == record["hash"] and record["hash"] not in seen
            seen.add(record["hash"])
        if level == 1:
            assert len(records) == 136
            continue
        parents = [r["genotype"] for r in searcher.level_records(level - 1)]
        children = {space.hash(c) for c in space.expand(parents)}
        assert {r["hash"] for r in records} <= children
        predicted = [r["predicted"] for r in records]
        assert predicted == sorted(predicted, reverse=True)
    # the last beam is exactly the top K of all children under the last fitted predictor
    children = space.expand([r["genotype"] for r in searcher.level_records(B - 1)])
    scores = searcher.predictor.predict(searcher._encode_many(children))
    top = {space.hash(children[i]) for i in np.argsort(-scores, kind="stable")[:K]}
    assert top == {r["hash"] for r in searcher.level_records(B)}


def test_encoding_matches_the_space_tokens(finished, space: Any) -> None:
    searcher, _ = finished
    for record in searcher.level_records(3)[:3]:
        tokens = np.array(space.tokens(record["genotype"]))
        np.testing.assert_array_equal(searcher._encode(record["genotype"]),
                                      tokens[:, [0, 2, 1, 3]])


def test_events_and_rank_correlation_per_level(finished) -> None:
    searcher, _ = finished
    events = searcher.pop_events()
    kinds = [e.kind for e in events]
    assert kinds == ["beam", "level"] * B + ["final", "final_full", "done"]
    beams = [e for e in events if e.kind == "beam"]
    assert [e.data["level"] for e in beams] == [1, 2, 3]
    assert all(c["predicted"] is not None for c in beams[1].data["cells"])
    assert beams[1].metrics["children"] > K
    for level_event in [e for e in events if e.kind == "level"][1:]:
        cells = level_event.data["cells"]
        assert all(c["accuracy"] is not None and c["predicted"] is not None for c in cells)
        assert -1.0 <= level_event.metrics["spearman"] <= 1.0
        for key in ("kendall", "params_spearman", "params_kendall", "random_spearman",
                    "random_kendall"):
            assert -1.0 <= level_event.metrics[key] <= 1.0
            assert level_event.data[key] == pytest.approx(level_event.metrics[key])
        assert level_event.data["spearman"] == pytest.approx(level_event.metrics["spearman"])
    summaries = searcher.levels
    assert [s["chosen"] for s in summaries] == [136, K, K]
    assert summaries[0]["spearman"] is None and summaries[1]["spearman"] is not None
    assert summaries[0]["train_spearman"] > 0.5  # rho^_1: the fit on its own data


def test_final_models_meet_the_params_target(finished, space: Any) -> None:
    searcher, told = finished
    finals = [(job, result) for job, result in told if job.tag == "final"]
    best_cell = searcher.final_beam()[0]
    target = FINAL["final_params_target"]
    assert sorted(job.genotype["N"] for job, _ in finals) == [1, 2]
    for job, _ in finals:
        g = job.genotype
        assert g["blocks"] == best_cell["blocks"]

        def gap(f: int, g: dict = g) -> float:
            return abs(space.costs({**g, "F": f})["params"] - target)

        assert gap(g["F"]) <= gap(g["F"] + 1) and (g["F"] == 1 or gap(g["F"]) <= gap(g["F"] - 1))
    results = searcher.final_results()
    assert [r["status"] for r in results] == ["ok", "ok", "ok"]
    assert [r["train_on_val"] for r in results] == [False, False, True]
    best = max(results[:2], key=lambda r: (r["reward"], -r["job_id"]))
    assert results[2]["genotype"] == best["genotype"]  # the best on validation, retrained


def test_final_recipe_follows_section_5_4(finished, space: Any) -> None:
    """300 epochs at lr 0.025 cosine per (N, F), then the best 600 epochs on train + val,
    aux head 0.4 and drop-path 0.4 in both: the paper preset's defaults."""
    paper = get_searcher("pnas", space=get_space("cell", "pnas-cifar"), preset="pnas-paper")
    select, full = paper.final_train_spec, paper.final_full_spec
    assert (select.epochs, select.lr, select.schedule, select.train_on_val) == (
        300, 0.025, "cosine", False)
    assert (full.epochs, full.lr, full.schedule, full.train_on_val) == (600, 0.025, "cosine",
                                                                       True)
    assert select.aux_weight == full.aux_weight == 0.4
    assert select.drop_path == full.drop_path == 0.4
    searcher, told = finished
    jobs = {job.tag: job for job, _ in told}
    assert jobs["final (train+val)"].train == searcher.final_full_spec
    assert jobs["final"].train == searcher.final_train_spec
    assert make(space, B=1, final_full_train=None).budget == 136 + 2


def test_final_models_can_train_longer(space: Any) -> None:
    searcher = make(space, B=1, final_train={"epochs": 7, "lr": 0.025})
    told = drive(searcher)
    final_jobs = [job for job, _ in told if job.tag == "final"]
    assert len(told) == 136 + 2 + 1 and len(final_jobs) == 2
    assert all(j.train.epochs == 7 and j.train.lr == 0.025 for j in final_jobs)
    assert all(j.train.epochs == searcher.train_spec.epochs for j, _ in told
               if j.tag.startswith("level"))


def test_beats_random_search_at_the_same_count_over_five_seeds(space: Any, finished) -> None:
    """Paper Fig. 4: mean accuracy of the top 5 after 136 + (B - 1) K evaluations."""
    pnas_top5, random_top5 = [], []
    for seed in range(5):
        if seed == 0:
            told = finished[1]
        else:
            told = drive(make(space, seed=seed, final_models=0))
        accuracies = [r.accuracy for job, r in told if job.tag.startswith("level")]
        assert len(accuracies) == search_count(B, K)
        baseline = get_searcher("random", space=space, seed=seed, budget=len(accuracies))
        random_accuracies = [r.accuracy for _, r in drive(baseline)]
        assert len(random_accuracies) == len(accuracies)
        pnas_top5.append(np.mean(sorted(accuracies)[-5:]))
        random_top5.append(np.mean(sorted(random_accuracies)[-5:]))
    assert np.mean(pnas_top5) > np.mean(random_top5)


def _resume(searcher: PNASSearcher, space: Any) -> PNASSearcher:
    """Kill (keep only the stored checkpoint and history) and restart into a fresh searcher."""
    from workbench.state_codec import decode_state, encode_state

    data, blobs, _ = encode_state(searcher.state_dict())  # as the store keeps it
    state = decode_state(data, blobs.__getitem__)
    fresh = make(space, seed=0)
    fresh.load_state_dict(state, history=searcher.history)
    return fresh


def test_kill_and_resume_gives_the_same_final_beam(finished, space: Any) -> None:
    reference, reference_told = finished
    searcher = make(space, seed=0)
    told: list[tuple[Job, Result]] = []
    # kill mid level 1, right after the level-2 beam is chosen, mid level 3, mid final
    for stop in (50, 136, 147, 153):
        told += drive(searcher, stop_after=stop - len(told))
        searcher = _resume(searcher, space)
        pending = searcher.pending
        assert {j.id for j in pending} == {j.id for j in searcher._pending.values()}
        for job in pending:  # the coordinator re-issues in-flight jobs
            result = synthetic_result(job)
            searcher.tell(job, result)
            told.append((job, result))
    told += drive(searcher)
    assert searcher.done() and len(told) == len(reference_told)
    assert searcher.final_beam() == reference.final_beam()
    assert searcher.final_results() == reference.final_results()
    assert searcher.levels == reference.levels
    assert sorted(j.id for j, _ in told) == list(range(len(told)))


def test_hard_constraints_skip_infeasible_candidates_and_refill_the_beam(space: Any) -> None:
    one_block = space.enumerate_one_block()
    params = sorted(space.costs(g)["params"] for g in one_block)
    limit = params[100]  # cuts some one-block cells; many 2- and 3-block ones
    searcher = make(space, B=2, constraints=[f"params<={limit}"], hard_constraints=True,
                    final_models=0)
    told = drive(searcher)
    assert all(r.costs["params"] <= limit for _, r in told)
    levels = searcher.levels
    assert levels[0]["chosen"] == sum(p <= limit for p in params) < 136
    assert levels[0]["skipped_infeasible"] == 136 - levels[0]["chosen"]
    assert levels[1]["chosen"] == K and levels[1]["skipped_infeasible"] > 0  # refilled


def test_constraints_the_cost_model_cannot_check_stay_soft(space: Any) -> None:
    """latency_ms is measured, not in space.costs: it cannot reject before training."""
    searcher = make(space, B=1, final_models=0, constraints=["latency_ms<=1"],
                    hard_constraints=True)
    assert len(searcher.ask(500)) == 136


def test_soft_constraints_rank_by_the_epnas_reward(space: Any) -> None:
    constraints = ["params<=30k"]
    searcher = make(space, B=1, constraints=constraints, final_models=0)
    told = drive(searcher)
    parsed = parse_constraints(constraints)
    violating = 0
    for job, result in told:
        record = next(r for r in searcher._records if r["job_id"] == job.id)
        assert record["reward"] == pytest.approx(soft_reward(result.accuracy, result.costs,
                                                             parsed))
        violating += record["reward"] < record["accuracy"]
    assert violating > 0  # soft: violators are trained, and ranked below their accuracy


def test_failed_candidates_are_neither_fitted_nor_expanded(space: Any) -> None:
    def flaky(job: Job) -> Result:
        if job.tag == "level 1" and job.id % 10 == 0:
            return Result(status="oom", error="out of memory")
        return synthetic_result(job)

    searcher = make(space, B=2, final_models=0)
    told = drive(searcher, evaluate=flaky)
    assert len(told) == 136 + K and searcher.done()
    failed = {searcher._records[i]["hash"] for i in range(0, 136, 10)}
    ok_parents = [r["genotype"] for r in searcher.level_records(1) if r["status"] == "ok"]
    assert len(ok_parents) == 136 - len(failed)
    assert {r["hash"] for r in searcher.level_records(2)} <= {
        space.hash(c) for c in space.expand(ok_parents)}


def test_the_predictor_is_selectable(space: Any) -> None:
    """Each kind is fitted and ranked end to end in tests/test_predictors.py."""
    for kind, members in (("lstm", 1), ("mlp", 1), ("lstm-ensemble", 3), ("mlp-ensemble", 3)):
        searcher = make(space, predictor=kind)
        assert searcher.predictor.config.kind == kind
        assert searcher.predictor.config.members == members


def test_budget_is_validated_and_derived(space: Any) -> None:
    assert make(space).budget == 136 + (B - 1) * K + 2 + 1
    assert make(space, budget=10**6).budget == 155  # a wall-time-only run passes a huge cap
    with pytest.raises(NaswError, match=r"budget.*at least 155"):
        make(space, budget=154)


@pytest.mark.parametrize("params, field", [
    ({"predictor": "gp"}, "searcher.params.predictor"),
    ({"B": 6}, "searcher.params.B"),
    ({"K": 0}, "searcher.params.K"),
    ({"final_N": []}, "searcher.params.final_N"),
    ({"final_params_target": -1}, "searcher.params.final_params_target"),
    ({"final_train": {"epoch": 3}}, "train.epoch"),
    ({"final_full_train": 3}, "searcher.params.final_full_train"),
    ({"F": 0}, "searcher.params.F"),
    ({"beam": 3}, "searcher.params.beam"),
])
def test_bad_params_name_the_field(space: Any, params: dict, field: str) -> None:
    with pytest.raises(NaswError) as err:
        make(space, **params)
    assert err.value.field == field


def test_other_spaces_are_rejected() -> None:
    with pytest.raises(NaswError, match="space.*cell"):
        get_searcher("pnas", space=get_space("mbconv", "ponas-digits"))


def test_presets_hold_the_papers_numbers() -> None:
    paper = get_searcher("pnas", space=get_space("cell", "pnas-cifar"), preset="pnas-paper")
    assert (paper.num_blocks, paper.beam_size) == (5, 256)
    assert search_count(5, 256) == 1160 and paper.budget == 1160 + 3 + 1
    assert paper.predictor_config.kind == "mlp-ensemble"
    assert (paper.predictor_config.embedding_dim, paper.predictor_config.hidden_dim) == (100, 100)
    assert paper.final_params_target == 3e6 and paper.final_train_spec.epochs == 300
    cifar = get_space("cell", "pnas-cifar")
    assert (cifar.settings["N"], cifar.settings["F"]) == (2, 24)  # the search's N and F
    digits = get_searcher("pnas", space=get_space("cell", "pnas-digits"), preset="pnas-digits")
    assert digits.budget == search_count(digits.num_blocks, digits.beam_size) + 2 + 1
    deep = get_searcher("pnas", space=get_space("cell", "pnas-digits"), preset="pnas-digits-b5")
    assert (deep.num_blocks, deep.beam_size, deep.budget) == (5, 32, 136 + 4 * 32 + 2 + 1)
    assert deep.predictor_config == digits.predictor_config  # only the depth and beam differ
    overridden = get_searcher("pnas", space=get_space("cell", "pnas-digits"),
                              preset="pnas-digits", K=4, budget=None)
    assert overridden.beam_size == 4


def test_n_and_f_params_override_the_space_preset(space: Any) -> None:
    searcher = make(space, N=2, F=12, final_models=0, B=1)
    jobs = searcher.ask(200)
    assert len(jobs) == 136 and {(j.genotype["N"], j.genotype["F"]) for j in jobs} == {(2, 12)}


def test_state_is_plain_bounded_and_holds_no_history(finished, space: Any) -> None:
    """The state contract: plain data, no per-candidate records (they come back from the
    history), so the checkpoint does not grow with the candidates trained."""
    from workbench.state_codec import encode_state

    searcher, _ = finished
    state = searcher.state_dict()
    copy.deepcopy(state)
    assert state["pnas"]["predictor"]["members"]  # the fitted predictor's weights
    assert "history" not in state and "records" not in state["pnas"]
    assert state["pnas"]["queue"] == []  # finished: nothing chosen and not asked
    early = make(space, seed=0)
    drive(early, stop_after=20)
    assert len(early.state_dict()["pnas"]["queue"]) == 136 - 64  # the unasked rest of level 1
    early_size = len(encode_state(early.state_dict())[0])
    final_size = len(encode_state(state)[0])
    assert final_size < 1.5 * early_size  # 155 candidates later: about the same size


SAMPLE = Path(__file__).resolve().parents[1] / "sample_configs"


@pytest.mark.parametrize("name", ["pnas-digits.yaml", "pnas-paper.yaml"])
def test_sample_configs_build_a_pnas_searcher(name: str) -> None:
    config_module = pytest.importorskip("workbench.config")
    config = config_module.load_config(SAMPLE / name)
    _, searcher = config_module.make_searcher(config)
    assert isinstance(searcher, PNASSearcher)
    assert config.budget.candidates == searcher.budget


@pytest.mark.slow
def test_real_training_of_a_level_one_candidate() -> None:
    """The digits config's candidates train for real (the full run is in docs/pnas.md)."""
    config_module = pytest.importorskip("workbench.config")
    from searchers.evaluators import evaluate

    config = config_module.load_config(SAMPLE / "pnas-digits.yaml")
    _, searcher = config_module.make_searcher(config)
    job = searcher.ask(1)[0]
    job = Job.from_dict({**job.to_dict(), "train": {**job.train.to_dict(), "epochs": 1,
                                                    "max_batches": 3}})
    result = evaluate(job, "train")
    assert result.status == "ok", result.error
    assert 0.0 <= result.accuracy <= 1.0 and result.costs["params"] > 0
    searcher.tell(job, result)


def test_nasw_train_uses_the_final_recipe_and_its_options() -> None:
    """``nasw train`` of a PNAS candidate: §5.4's final run by default (600 epochs on train +
    val, aux 0.4, drop-path 0.4); ``--aux-weight/--drop-path/--train-on-val`` override it."""
    from searchers.final_training import final_schedule

    runner = pytest.importorskip("workbench.runner.final_train")
    paper = final_schedule("pnas-cifar")
    assert (paper["epochs"], paper["lr"], paper["schedule"]) == (600, 0.025, "cosine")
    assert (paper["aux_weight"], paper["drop_path"], paper["train_on_val"]) == (0.4, 0.4, True)
    digits = final_schedule("pnas-digits")
    assert digits["aux_weight"] == 0.4 and 0 < digits["drop_path"] < 0.4
    assert not digits["train_on_val"]
    run = {"id": 7, "config": {"space": {"name": "cell", "preset": "pnas-cifar"},
                               "train": {"epochs": 20, "lr": 0.01}}}
    genotype = {"space": "cell", "preset": "pnas-cifar", "blocks": [[0, 1, "sep3x3", "max3x3"]]}
    config = runner.final_run_config(run, genotype, {"run": 7, "candidate": 3}, None,
                                     {"aux_weight": 0.0, "train_on_val": False})
    train = config["train"]
    assert (train["epochs"], train["aux_weight"], train["drop_path"], train["train_on_val"]) == (
        600, 0.0, 0.4, False)
    from workbench.config import parse_config

    spec = parse_config(config).train_spec()  # the run config schema accepts the fields
    assert (spec.epochs, spec.aux_weight, spec.drop_path, spec.train_on_val) == (600, 0.0, 0.4,
                                                                                False)
