"""EPNAS: soft-constraint reward, policy network, morphs, REINFORCE, search, resume, sharing."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from searchers import Result, get_searcher
from searchers.constraints import feasible, parse_constraints, soft_reward
from searchers.epnas import EPNASSearcher
from searchers.epnas.actions import (
    KIND_INSERT,
    KIND_KEEP,
    KIND_REMOVE,
    insert_position,
    remove_index,
)
from searchers.epnas.cell_morph import CellMorpher
from searchers.epnas.morphs import LayerwiseMorpher
from searchers.epnas.policy import (
    EPNASPolicy,
    reinforce_update,
    returns_to_go,
    update_baseline,
)
from searchers.errors import NaswError
from searchers.objectives import synthetic_result
from searchers.spaces import get_space
from workbench.store import decode_state, encode_state


@pytest.fixture(scope="module")
def layerwise():
    return get_space("layerwise", preset="epnas-digits")


@pytest.fixture(scope="module")
def cell():
    return get_space("cell", preset="pnas-digits")


# -- Eq. (2)-(3) ------------------------------------------------------------------------------
def test_soft_reward_keeps_accuracy_when_feasible_and_at_the_bounds() -> None:
    cons = parse_constraints(["params<=1M", "intensity>=80"])
    assert soft_reward(0.8, {"params": 5e5, "intensity": 100}, cons) == 0.8
    assert soft_reward(0.8, {"params": 1e6, "intensity": 80}, cons) == 0.8  # bounds included


def test_soft_reward_upper_bound_exact_values() -> None:
    cons = parse_constraints(["params<=1M"])
    # U / C_u - 1 = 1 -> one factor p; = 0.5 -> sqrt(p)
    assert soft_reward(0.8, {"params": 2e6}, cons) == pytest.approx(0.8 * 0.9)
    assert soft_reward(0.8, {"params": 1.5e6}, cons) == pytest.approx(0.8 * 0.9 ** 0.5)
    assert soft_reward(0.8, {"params": 4e6}, cons, p=0.5) == pytest.approx(0.8 * 0.5 ** 3)


def test_soft_reward_lower_bound_exact_values() -> None:
    cons = parse_constraints(["intensity>=80"])
    # C_l / U - 1 = 1 at half the bound, 3 at a quarter
    assert soft_reward(0.6, {"intensity": 40}, cons) == pytest.approx(0.6 * 0.9)
    assert soft_reward(0.6, {"intensity": 20}, cons) == pytest.approx(0.6 * 0.9 ** 3)
    assert soft_reward(0.6, {"intensity": 0}, cons) == 0.0  # no data reuse at all


def test_soft_reward_several_constraints_multiply() -> None:
    cons = parse_constraints(["params<=1M", "madds<=100M", "intensity>=80", "flops<=1G"])
    costs = {"params": 3e6, "madds": 50e6, "intensity": 20, "flops": 1.5e9}
    expected = 0.7 * 0.9 ** 2 * 1.0 * 0.9 ** 3 * 0.9 ** 0.5
    assert soft_reward(0.7, costs, cons) == pytest.approx(expected)
    per_metric = {"params": 0.5, "madds": 0.9, "intensity": 0.8, "flops": 0.99}
    expected = 0.7 * 0.5 ** 2 * 0.8 ** 3 * 0.99 ** 0.5
    assert soft_reward(0.7, costs, cons, p=per_metric) == pytest.approx(expected)


def test_soft_reward_interval_on_one_metric_uses_the_violated_side() -> None:
    cons = parse_constraints(["params>=1M", "params<=2M"])  # [C_l, C_u] of Eq. (1)
    assert soft_reward(1.0, {"params": 1.5e6}, cons) == 1.0
    assert soft_reward(1.0, {"params": 0.5e6}, cons) == pytest.approx(0.9)
    assert soft_reward(1.0, {"params": 4e6}, cons) == pytest.approx(0.9)


def test_soft_reward_latency_and_missing_metric() -> None:
    cons = parse_constraints(["latency_ms<=10"])
    assert soft_reward(0.9, {"latency_ms": 20.0}, cons) == pytest.approx(0.81)
    assert soft_reward(0.9, {}, cons) == 0.0  # unmeasured: infinitely violated


def test_epnas_reward_is_soft_and_zero_for_failures(layerwise) -> None:
    s = EPNASSearcher(layerwise, constraints=["params<=1k"], budget=10)
    assert s.reward(Result(accuracy=0.9, costs={"params": 2000})) == pytest.approx(0.81)
    assert s.reward(Result(status="failed")) == 0.0
    hard = EPNASSearcher(layerwise, constraints=["params<=1k"], budget=10,
                         hard_constraints=True)
    assert hard.reward(Result(accuracy=0.9, costs={"params": 2000})) == 0.0
    assert hard.reward(Result(accuracy=0.9, costs={"params": 900})) == 0.9


# -- the policy network ---------------------------------------------------------------------
def _policy(morpher, seed: int = 0) -> tuple[EPNASPolicy, torch.Generator]:
    gen = torch.Generator().manual_seed(seed)
    return EPNASPolicy(morpher.shape, generator=gen), gen


def test_policy_matches_the_paper_architecture(layerwise) -> None:
    morpher = LayerwiseMorpher(layerwise)
    policy, _ = _policy(morpher)
    assert policy.network_lstm.hidden_size == 32
    assert policy.scale_lstm.hidden_size == 128 and policy.insert_cell.hidden_size == 128
    assert policy.scale_head.out_features == 6  # up/keep/down x (channels, kernel)
    assert policy.insert_heads[0].out_features == 3  # insert / keep / remove
    assert policy.insert_heads[1].out_features == layerwise.max_layers + 5
    assert all(p.abs().max() <= 0.1 for p in policy.parameters())  # uniform [-0.1, 0.1]


def test_sampled_decisions_respect_the_masks_and_score_reproduces_logp(layerwise) -> None:
    morpher = LayerwiseMorpher(layerwise)
    policy, gen = _policy(morpher)
    rng = np.random.default_rng(0)
    nets = [layerwise.sample(rng) for _ in range(64)]
    tokens = [morpher.tokens(g) for g in nets]
    masks = [morpher.group_mask(g) for g in nets]
    decisions = policy.sample(tokens, masks, gen)
    for g, d in zip(nets, decisions, strict=True):
        n_layers = len(g["layers"])
        kind, place, src2 = d["insert"][:3]
        assert 0 <= kind < 3 and 0 <= place < n_layers + 5
        assert 0 <= src2 <= insert_position(place, n_layers)
        assert all(0 <= c < 3 and 0 <= k < 3 for c, k in d["scale"])
    logp, entropy = policy.score(tokens, masks, decisions)
    np.testing.assert_allclose(logp.detach().numpy(), [d["logp"] for d in decisions],
                               rtol=1e-5, atol=1e-5)
    assert torch.all(entropy > 0)


def _logp(policy: EPNASPolicy, tokens, masks, decision) -> float:
    with torch.no_grad():
        return float(policy.score(tokens, masks, [decision])[0][0])


def test_only_decisions_that_take_effect_enter_log_pi(layerwise) -> None:
    morpher = LayerwiseMorpher(layerwise)
    policy, _ = _policy(morpher)
    g = layerwise.sample(np.random.default_rng(3))
    tokens, mask = [morpher.tokens(g)], [[False] * morpher.shape.n_groups]
    keep_a = {"scale": [[0, 0]] * 4, "insert": [KIND_KEEP, 0, 0, 0, 0, 0, 0, 0]}
    keep_b = {"scale": [[2, 2]] * 4, "insert": [KIND_KEEP, 3, 1, 2, 3, 1, 1, 1]}
    # with no scale group holding layers and a "keep", only the kind counts
    assert _logp(policy, tokens, mask, keep_a) == pytest.approx(
        _logp(policy, tokens, mask, keep_b))
    remove_a = {"scale": [[1, 1]] * 4, "insert": [KIND_REMOVE, 1, 0, 0, 0, 0, 0, 0]}
    remove_b = {"scale": [[1, 1]] * 4, "insert": [KIND_REMOVE, 1, 1, 3, 5, 3, 1, 1]}
    assert _logp(policy, tokens, mask, remove_a) == pytest.approx(
        _logp(policy, tokens, mask, remove_b))
    insert_a = {"scale": [[1, 1]] * 4, "insert": [KIND_INSERT, 1, 0, 0, 0, 0, 0, 0]}
    insert_b = {"scale": [[1, 1]] * 4, "insert": [KIND_INSERT, 1, 0, 3, 5, 3, 1, 1]}
    assert _logp(policy, tokens, mask, insert_a) != pytest.approx(
        _logp(policy, tokens, mask, insert_b))


def test_place_folding_encourages_inner_positions() -> None:
    # L = 3: the 8 place values fold onto positions 0..3 (not onto "append" only)
    assert [insert_position(v, 3) for v in range(8)] == [0, 1, 2, 3, 0, 1, 2, 3]
    assert [remove_index(v, 3) for v in range(8)] == [0, 1, 2, 0, 1, 2, 0, 1]
    assert remove_index(4, 0) == 0


# -- morphs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("space_name", ["layerwise", "cell"])
def test_policy_morphs_always_give_valid_genotypes(space_name, layerwise, cell) -> None:
    space = layerwise if space_name == "layerwise" else cell
    morpher = (LayerwiseMorpher(space) if space_name == "layerwise"
               else CellMorpher(space, scale_filters=True))
    policy, gen = _policy(morpher, seed=1)
    rng = np.random.default_rng(1)
    nets = [space.sample(rng) for _ in range(16)]
    key = "layers" if space_name == "layerwise" else "blocks"
    for _ in range(12):  # 12 chained morph steps from 16 random networks
        decisions = policy.sample([morpher.tokens(g) for g in nets],
                                  [morpher.group_mask(g) for g in nets], gen)
        morphed = [morpher.morph(g, d) for g, d in zip(nets, decisions, strict=True)]
        for before, after, d in zip(nets, morphed, decisions, strict=True):
            assert space.validate(after) == after
            space.costs(after)  # the cost model accepts it
            n_before, n_after = len(before[key]), len(after[key])
            kind = d["insert"][0]
            if kind == KIND_INSERT:
                assert n_after == min(n_before + 1, morpher.shape.max_layers)
            elif kind == KIND_REMOVE:
                assert n_after == max(n_before - 1, 1)
            else:
                assert n_after == n_before
        nets = morphed


def test_layerwise_morph_applies_scale_and_insert_as_decided(layerwise) -> None:
    morpher = LayerwiseMorpher(layerwise)
    g = layerwise.validate({"space": "layerwise", "preset": "epnas-digits", "layers": [
        {"op": "conv", "kernel": 3, "filters": 8, "stride": 1, "src2": -1, "merge": "add"},
        {"op": "conv", "kernel": 3, "filters": 8, "stride": 1, "src2": -1, "merge": "add"},
        {"op": "conv", "kernel": 3, "filters": 8, "stride": 1, "src2": -1, "merge": "add"},
        {"op": "conv", "kernel": 3, "filters": 8, "stride": 1, "src2": -1, "merge": "add"}]})
    keep = [KIND_KEEP, 0, 0, 0, 0, 0, 0, 0]
    up_down = morpher.morph(g, {"scale": [[0, 2], [1, 1], [2, 0], [1, 1]], "insert": keep})
    assert [(la["filters"], la["kernel"]) for la in up_down["layers"]] == [
        (12, 1), (8, 3), (4, 5), (8, 3)]
    assert morpher.morph(g, {"scale": [[1, 1]] * 4, "insert": keep}) == g
    # insert at place 6 of L + 5 = 9 values -> position 6 mod 5 = 1, skip from layer 0
    ins = morpher.morph(g, {"scale": [[1, 1]] * 4,
                            "insert": [KIND_INSERT, 6, 0, 1, 5, 2, 0, 1]})
    assert len(ins["layers"]) == 5
    assert ins["layers"][1] == {"op": "sepconv", "kernel": 5, "filters": 32, "stride": 1,
                                "src2": 0, "merge": "concat"}
    # Src2 equal to the position means no skip (the paper's -1)
    no_skip = morpher.morph(g, {"scale": [[1, 1]] * 4,
                                "insert": [KIND_INSERT, 1, 1, 0, 0, 0, 0, 0]})
    assert no_skip["layers"][1]["src2"] == -1


def test_cell_morph_keeps_the_filter_count_unless_asked(cell) -> None:
    g = cell.validate({"space": "cell", "preset": "pnas-digits", "N": 1, "F": 8,
                       "blocks": [[0, 1, "sep3x3", "max3x3"]]})
    up = {"scale": [[0, 1]], "insert": [KIND_KEEP, 0, 0, 0, 0, 0]}
    fixed = CellMorpher(cell)
    assert fixed.shape.scale_axes == (False, True) and fixed.morph(g, up)["F"] == 8
    assert CellMorpher(cell, scale_filters=True).morph(g, up)["F"] == 11
    # the channel decision is left out of log pi when it does not act
    policy, _ = _policy(fixed)
    down = {"scale": [[2, 1]], "insert": [KIND_KEEP, 0, 0, 0, 0, 0]}
    tokens = [fixed.tokens(g)]
    assert _logp(policy, tokens, [[True]], up) == pytest.approx(
        _logp(policy, tokens, [[True]], down))
    searcher = get_searcher("epnas", space=cell, budget=10, cell_scale_filters=True)
    assert searcher.morpher.scale_filters


def test_cell_morph_inserts_a_branch_and_rewires(cell) -> None:
    morpher = CellMorpher(cell, scale_filters=True)
    g = cell.validate({"space": "cell", "preset": "pnas-digits", "N": 1, "F": 8,
                       "blocks": [[0, 1, "sep3x3", "max3x3"], [2, 1, "identity", "sep5x5"]]})
    # insert at position 1, in1 = block 0 (input 2), Src2 "none" -> H^{c-1}
    out = morpher.morph(g, {"scale": [[0, 0]], "insert": [KIND_INSERT, 1, 1, 2, 0, 6]})
    assert out["F"] == 11  # channels one rung up the ladder F * [1/3, 1/2, 2/3, 1, 4/3]
    assert out["blocks"] == [[0, 1, "sep5x5", "max3x3"], [2, 1, "sep3x3", "max3x3"],
                             [2, 1, "identity", "sep7x7"]]
    # insert at position 0: in1 = 3 folds onto the 2 cell inputs (-> 1); later readers shift
    front = morpher.morph(g, {"scale": [[1, 1]], "insert": [KIND_INSERT, 0, 0, 3, 4, 5]})
    assert front["F"] == 8
    assert front["blocks"] == [[1, 1, "identity", "avg3x3"], [0, 1, "sep3x3", "max3x3"],
                               [3, 1, "identity", "sep5x5"]]  # block 0 is now input 3
    removed = morpher.morph(out, {"scale": [[1, 1]], "insert": [KIND_REMOVE, 0, 0, 0, 0, 0]})
    # the readers of removed block 0 now read its first input (H^{c-2})
    assert removed["blocks"] == [[0, 1, "sep3x3", "max3x3"], [0, 1, "identity", "sep7x7"]]
    assert morpher.channels == [3, 4, 5, 8, 11]


# -- REINFORCE --------------------------------------------------------------------------------
def test_returns_to_go_and_baseline() -> None:
    rewards = np.array([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]])
    np.testing.assert_allclose(returns_to_go(rewards), [[6, 5, 3], [1, 1, 0]])
    told = np.ones_like(rewards, dtype=bool)
    first = update_baseline(None, returns_to_go(rewards), told, 0.9)
    np.testing.assert_allclose(first, [3.5, 3.0, 1.5])
    second = update_baseline(first, np.zeros_like(rewards), told, 0.9)
    np.testing.assert_allclose(second, 0.9 * first)
    partial = told.copy()
    partial[:, 2] = False  # a step nobody was told about keeps its value
    np.testing.assert_allclose(update_baseline(first, np.zeros_like(rewards), partial, 0.9),
                               [0.9 * 3.5, 0.9 * 3.0, 1.5])


def test_reinforce_on_a_toy_bandit_raises_the_better_action(layerwise) -> None:
    """Three arms (insert / keep / remove); only "keep" pays. P(keep) must grow."""
    morpher = LayerwiseMorpher(layerwise)
    policy, gen = _policy(morpher, seed=2)
    optimizer = torch.optim.Adam(policy.parameters(), lr=0.01)
    tokens = [morpher.tokens(layerwise.initial())] * 16
    masks = [[False] * morpher.shape.n_groups] * 16  # only the insert LSTM decides
    probe = {"scale": [[1, 1]] * 4, "insert": [KIND_KEEP, 0, 0, 0, 0, 0, 0, 0]}

    def p_keep() -> float:
        with torch.no_grad():
            return math.exp(float(policy.score(tokens[:1], masks[:1], [probe])[0][0]))

    before = p_keep()
    baseline = None
    for _ in range(15):
        decisions = policy.sample(tokens, masks, gen)
        rewards = np.array([[1.0 if d["insert"][0] == KIND_KEEP else 0.0] for d in decisions])
        baseline = update_baseline(baseline, rewards, np.ones_like(rewards, dtype=bool), 0.9)
        reinforce_update(policy, optimizer, tokens, masks, decisions,
                         (rewards[:, 0] - baseline[0]).tolist(), n_branches=16)
    assert before < 0.45
    assert p_keep() > 0.9


# -- the searcher -----------------------------------------------------------------------------
def _drive(searcher, space, stop_after: int | None = None) -> None:
    """Ask a whole episode, tell its results in order, until done (or ``stop_after`` tells)."""
    while not searcher.done():
        jobs = searcher.ask(1000)
        assert jobs, "an idle EPNAS with nothing pending must hand out jobs"
        for job in jobs:
            if stop_after is not None and searcher.n_told >= stop_after:
                return
            searcher.tell(job, synthetic_result(job, space))


def test_presets_carry_the_paper_numbers(layerwise, cell) -> None:
    paper = get_searcher("epnas", space=layerwise, preset="epnas-paper", budget=10)
    p = paper.params
    assert (p["branches"], p["steps"], p["embed_hidden"], p["controller_hidden"]) == (
        8, 10, 32, 128)
    assert (p["lr"], p["init_range"]) == (0.0006, 0.1)
    assert (paper.job_train.lr, paper.job_train.batch_size, paper.job_train.epochs) == (
        0.5, 1024, 10)
    assert get_searcher("epnas", space=cell, preset="epnas-paper", budget=10).params[
        "steps"] == 5  # module search: 5 steps per episode
    digits = get_searcher("epnas", space=layerwise, preset="epnas-digits", budget=10,
                          steps=3)
    assert digits.params["steps"] == 3 and digits.params["lr"] == 0.005
    with pytest.raises(NaswError, match="searcher.params.initial"):
        EPNASSearcher(layerwise, budget=10, initial="huge")
    with pytest.raises(NaswError, match="searcher.params.prediction_train.epoch"):
        EPNASSearcher(layerwise, budget=10, prediction_train={"epoch": 3})
    with pytest.raises(NaswError, match="searcher.params.branches"):
        EPNASSearcher(layerwise, budget=10, branches=0)
    with pytest.raises(NaswError, match="space"):
        EPNASSearcher(get_space("mbconv", preset="ponas-digits"), budget=10)


def test_an_episode_is_asked_as_one_batch_of_n_times_t_progressive_morphs(layerwise) -> None:
    s = get_searcher("epnas", space=layerwise, preset="epnas-digits", budget=100, seed=0,
                     branches=4, steps=3)
    jobs = s.ask(1000)
    assert len(jobs) == 12 and s.ask(5) == []  # the episode waits for its results
    by_branch = {}
    for job in jobs:
        by_branch.setdefault(job.meta["branch"], []).append(job)
    morpher = s.morpher
    for branch, chain in by_branch.items():
        assert [j.meta["step"] for j in chain] == [0, 1, 2]
        start = s.branches[branch]
        entries = [s.episode["entries"][j.meta["entry"]] for j in chain]
        # each step morphs the previous step's network with the recorded decision
        assert morpher.morph(start, entries[0]["decision"]) == chain[0].genotype
        assert morpher.morph(chain[0].genotype, entries[1]["decision"]) == chain[1].genotype
        assert morpher.morph(chain[1].genotype, entries[2]["decision"]) == chain[2].genotype
    for job in jobs:
        s.tell(job, synthetic_result(job, layerwise))
    (event,) = s.pop_events()
    assert event.kind == "episode" and event.step == 0
    assert set(event.metrics) >= {"mean_reward", "max_reward", "feasible_fraction", "entropy"}
    rewards = [h["reward"] for h in s.history]
    assert event.metrics["max_reward"] == pytest.approx(max(rewards))
    # the next branches are the top-4 distinct candidates of the episode
    top = sorted(s.history, key=lambda h: (-h["reward"], h["id"]))
    distinct = []
    for h in top:
        if layerwise.hash(h["genotype"]) not in {layerwise.hash(d) for d in distinct}:
            distinct.append(h["genotype"])
    assert s.branches == distinct[:4]
    assert len(s.ask(2)) == 2  # the next episode, handed out in pieces


def test_initial_networks_random_or_small(layerwise) -> None:
    small = get_searcher("epnas", space=layerwise, preset="epnas-digits", budget=20,
                         branches=3, steps=1, initial="small")
    small.ask(10)
    assert small.branches == [layerwise.initial()] * 3
    rand = get_searcher("epnas", space=layerwise, preset="epnas-digits", budget=20,
                        branches=3, steps=1, seed=5)
    rand.ask(10)
    rng = np.random.default_rng(5)  # the searcher's own generator, from the seed
    assert rand.branches == [layerwise.sample(rng) for _ in range(3)]


def test_budget_truncates_the_last_episode(layerwise) -> None:
    s = get_searcher("epnas", space=layerwise, preset="epnas-digits", budget=30, seed=1,
                     branches=4, steps=4)
    _drive(s, layerwise)
    assert s.n_told == 30 and s.done() and s.ask(10) == []
    assert [e.step for e in s.pop_events()] == [0, 1]  # 16 + 14 candidates


def _first_feasible_and_best(history, constraints) -> tuple[int, float]:
    first, best = len(history) + 1, 0.0
    for k, h in enumerate(history, start=1):
        if h["status"] == "ok" and feasible(h["costs"], constraints):
            first = min(first, k)
            best = max(best, h["accuracy"])
    return first, best


def test_epnas_beats_random_search_on_a_tight_two_constraint_problem(layerwise) -> None:
    """params <= 5k and intensity >= 10 on layerwise/epnas-digits: about 0.5% of random
    genotypes are feasible. Over 5 seeds of 400 synthetic evaluations, EPNAS is feasible
    sooner and ends with a better feasible model than random search."""
    constraints = ["params<=5000", "intensity>=10"]
    parsed = parse_constraints(constraints)
    rng = np.random.default_rng(99)
    sample = [layerwise.costs(layerwise.sample(rng)) for _ in range(1000)]
    assert np.mean([feasible(c, parsed) for c in sample]) < 0.05
    epnas, random = [], []
    for seed in range(5):
        s = get_searcher("epnas", space=layerwise, preset="epnas-digits",
                         constraints=constraints, budget=400, seed=seed)
        _drive(s, layerwise)
        epnas.append(_first_feasible_and_best(s.history, parsed))
        r = get_searcher("random", space=layerwise, constraints=constraints, budget=400,
                         seed=seed)
        while not r.done():
            for job in r.ask(50):
                r.tell(job, synthetic_result(job, layerwise))
        random.append(_first_feasible_and_best(r.history, parsed))
    assert np.mean([e[0] for e in epnas]) < np.mean([r[0] for r in random])
    assert np.mean([e[1] for e in epnas]) > np.mean([r[1] for r in random])


@pytest.mark.parametrize("space_name", ["layerwise", "cell"])
def test_resume_mid_episode_continues_the_same_trajectory(space_name, layerwise, cell) -> None:
    space = layerwise if space_name == "layerwise" else cell
    kwargs = dict(space=space, preset="epnas-digits", constraints=["params<=5k"], budget=70,
                  seed=3, branches=4, steps=5)
    straight = get_searcher("epnas", **kwargs)
    _drive(straight, space)

    first = get_searcher("epnas", **kwargs)
    _drive(first, space, stop_after=33)  # episode 1 is running: 13 told, 7 pending
    assert first.pending and first.episode_index == 1
    data, blobs, _ = encode_state(first.state_dict())  # as the store keeps it
    assert blobs  # the policy's weights went to content-addressed blobs
    state = decode_state(data, blobs.__getitem__)
    resumed = get_searcher("epnas", **kwargs)
    resumed.load_state_dict(state, history=first.history)
    for job in resumed.pending:  # the coordinator re-tells the jobs that were out
        resumed.tell(job, synthetic_result(job, space))
    _drive(resumed, space)
    assert [h["genotype"] for h in resumed.history] == [h["genotype"] for h in straight.history]
    assert [h["id"] for h in resumed.history] == [h["id"] for h in straight.history]
    assert resumed.best() == straight.best()
    for name, value in straight.policy.state_dict().items():
        torch.testing.assert_close(resumed.policy.state_dict()[name], value)
    assert (resumed.baseline is None) == (straight.baseline is None)  # adaptive p resets it
    if straight.baseline is not None:
        np.testing.assert_allclose(resumed.baseline, straight.baseline)
    assert resumed.reward_p == straight.reward_p


def test_state_dict_holds_policy_optimizer_baseline_rng_branches_sharing(layerwise) -> None:
    s = get_searcher("epnas", space=layerwise, preset="epnas-digits", budget=20, seed=0,
                     branches=2, steps=2)
    _drive(s, layerwise, stop_after=6)
    state = s.state_dict()
    for key in ("policy", "optimizer", "baseline", "generator", "rng", "branches", "episode",
                "sharing", "sharing_active", "episode_index"):
        assert key in state
    assert state["optimizer"]["state"]  # Adam moments after an update
    assert len(state["branches"]) == 2 and state["baseline"] is not None


# -- parameter sharing ----------------------------------------------------------------------
def _trained_weights(space, genotype, fill: float) -> dict[str, torch.Tensor]:
    model = space.build(genotype)
    return {k: torch.full_like(v, fill, dtype=v.dtype) if v.is_floating_point() else v.clone()
            for k, v in model.state_dict().items()}


def test_synthetic_evaluator_turns_sharing_off(layerwise) -> None:
    s = get_searcher("epnas", space=layerwise, preset="epnas-digits", budget=20, seed=0,
                     branches=2, steps=2)
    jobs = s.ask(100)
    assert all(j.return_weights for j in jobs)
    s.tell(jobs[0], synthetic_result(jobs[0], layerwise))
    assert not s.sharing_active
    assert not any(j.return_weights for j in s.ask(100))


def test_sharing_dictionary_keeps_the_most_accurate_and_inherits_closest_shapes(
        layerwise) -> None:
    s = get_searcher("epnas", space=layerwise, preset="epnas-digits", budget=100, seed=0,
                     branches=2, steps=2)
    jobs = s.ask(100)
    conv = {"op": "conv", "kernel": 3, "filters": 8, "stride": 1, "src2": -1, "merge": "add"}
    small = layerwise.validate({"space": "layerwise", "preset": "epnas-digits",
                                "layers": [conv, conv]})
    wide = layerwise.validate({"space": "layerwise", "preset": "epnas-digits",
                               "layers": [conv, {**conv, "filters": 32}]})
    s._share(small, _trained_weights(layerwise, small, 1.0), accuracy=0.5)
    s._share(small, _trained_weights(layerwise, small, 2.0), accuracy=0.7)  # clash: more accurate
    s._share(small, _trained_weights(layerwise, small, 3.0), accuracy=0.6)  # clash: less accurate
    s._share(wide, _trained_weights(layerwise, wide, 4.0), accuracy=0.4)
    assert {v["accuracy"] for v in s.sharing["0:conv"]} == {0.7}  # same shapes in both
    assert sorted(v["accuracy"] for v in s.sharing["1:conv"]) == [0.4, 0.7]
    # a candidate with 24 filters in layer 1 takes the 32-filter variant (closer than 8)
    target = layerwise.validate({"space": "layerwise", "preset": "epnas-digits",
                                 "layers": [conv, {**conv, "filters": 24}, conv]})
    inherit = s._inherit_for(target)
    assert float(inherit["layers.0.op.1.weight"].flatten()[0]) == 2.0
    assert float(inherit["layers.1.op.1.weight"].flatten()[0]) == 4.0
    assert not any(name.startswith("layers.2.") for name in inherit)  # no key (2, conv) yet
    assert float(inherit["classifier.weight"].flatten()[0]) == 2.0  # stem/head: "other"
    from searchers.training import inherit_weights

    model = layerwise.build(target)
    report = inherit_weights(model, inherit)
    assert "layers.1.op.1.weight" in report.cropped  # 32 -> 24 filters
    assert float(model.state_dict()["layers.1.op.1.weight"][0, 0, 0, 0]) == 4.0
    for _ in range(4):  # at most `shared_variants` shape signatures per key, best kept
        s._share(target, _trained_weights(layerwise, target, 0.0), accuracy=0.1)
    assert len(s.sharing["1:conv"]) <= s.params["shared_variants"]
    assert jobs  # the episode's jobs were asked before any weights existed
    next_jobs = []
    for job in jobs:
        weights = _trained_weights(layerwise, job.genotype, 5.0)
        s.tell(job, Result(accuracy=0.99, costs=layerwise.costs(job.genotype), weights=weights))
        next_jobs = s.ask(100)
    assert next_jobs and all(j.inherit for j in next_jobs)  # the dictionary feeds the next


@pytest.mark.slow
def test_real_training_with_parameter_sharing_on_digits(layerwise) -> None:
    from searchers.evaluators import evaluate

    s = get_searcher("epnas", space=layerwise, preset="epnas-digits", budget=4, seed=0,
                     branches=2, steps=1, constraints=["params<=20k"],
                     prediction_train={"epochs": 1, "batch_size": 256, "lr": 0.2,
                                       "max_batches": 2})
    first = s.ask(10)
    for job in first:
        result = evaluate(job, "train")
        assert result.ok and result.weights is not None
        s.tell(job, result)
    assert s.sharing_active and s.sharing
    second = s.ask(10)
    assert all(j.inherit for j in second)
    for job in second:
        assert evaluate(job, "train").ok


# -- sample configs ---------------------------------------------------------------------------
SAMPLES = Path(__file__).resolve().parents[1] / "sample_configs"


@pytest.mark.parametrize("name", ["epnas-digits", "epnas-paper",
                                  "epnas-paper-layerwise"])
def test_sample_configs_build_an_epnas_searcher(name: str) -> None:
    from workbench.config import load_config, make_searcher

    config = load_config(SAMPLES / f"{name}.yaml")
    space, searcher = make_searcher(config)
    assert searcher.name == "epnas"
    if name == "epnas-paper":  # module search, Table 3: 15 episodes x 8 branches x 5 steps
        assert space.name == "module" and searcher.budget == 600
        assert (searcher.params["branches"], searcher.params["steps"]) == (8, 5)
        assert searcher.budget == 15 * 8 * 5
    else:
        assert space.name == "layerwise" and len(searcher.constraints) == 2
    if name.startswith("epnas-paper"):
        assert (searcher.job_train.lr, searcher.job_train.batch_size) == (0.5, 1024)
        assert searcher.job_train.dataset == "cifar10"
    if name == "epnas-paper-layerwise":
        assert (searcher.params["branches"], searcher.params["steps"]) == (8, 10)
        assert searcher.budget == 15 * 8 * 10


@pytest.mark.slow
def test_digits_config_runs_through_the_engine_and_stores_episode_curves(tmp_path) -> None:
    """The sample config, shrunk (2 x 1 candidates per episode, 2 batches per epoch), run by
    the real coordinator in this process with real training: episodes reach the metrics."""
    import yaml

    from workbench.config import parse_config
    from workbench.runner import Coordinator, start_run
    from workbench.store import Store

    data = yaml.safe_load((SAMPLES / "epnas-digits.yaml").read_text())
    data["searcher"]["params"].update(branches=2, steps=1)
    data["searcher"]["params"]["prediction_train"].update(epochs=1, max_batches=2)
    data["budget"] = {"candidates": 4}
    data["backend"] = {"kind": "local", "workers": 0}
    db = tmp_path / "nasw.db"
    run_id = start_run(db, parse_config(data))
    Coordinator(db, run_id).run()
    with Store(db) as store:
        assert store.run(run_id)["status"] == "finished"
        assert len(store.candidates(run_id)) == 4
        keys = store.metric_keys(run_id)
        assert {"episode/mean_reward", "episode/feasible_fraction", "episode/entropy"} <= set(keys)
        steps = [m["step"] for m in store.metrics(run_id) if m["key"] == "episode/mean_reward"]
        assert steps == [0, 1]


def test_engine_run_stopped_mid_episode_and_resumed_matches_an_uninterrupted_one(
        tmp_path) -> None:
    """Through the real coordinator (synthetic evaluator, in-process backend that runs 32 jobs
    at a time): stop after the first 32 of the first 40-candidate episode, resume from the
    stored checkpoint, and get exactly the candidates of a run that was never stopped."""
    from workbench.config import parse_config
    from workbench.runner import Coordinator, start_run
    from workbench.store import Store

    config = parse_config({
        "name": "epnas-resume", "space": {"name": "layerwise", "preset": "epnas-digits"},
        "evaluator": "synthetic", "constraints": ["params<=5000", "intensity>=10"],
        "searcher": {"name": "epnas", "preset": "epnas-digits",
                     "params": {"branches": 8, "steps": 5}},
        "budget": {"candidates": 100}, "backend": {"kind": "local", "workers": 0}, "seed": 2})

    def candidates(db, run_id) -> list[tuple[int, str, float]]:
        with Store(db) as store:
            return sorted((c["id"], str(c["genotype"]), c["accuracy"])
                          for c in store.candidates(run_id))

    straight = tmp_path / "straight.db"
    straight_id = start_run(straight, config)
    assert Coordinator(straight, straight_id).run() == "finished"

    stopped = tmp_path / "stopped.db"
    stopped_id = start_run(stopped, config)
    first = Coordinator(stopped, stopped_id)
    first.on_progress = lambda run: first.request_stop()  # stop at the first write
    assert first.run() == "interrupted"
    with Store(stopped) as store:
        run = store.run(stopped_id)
        assert run["n_done"] == 32  # mid-episode: 8 candidates of episode 0 still queued
    assert Coordinator(stopped, stopped_id).run() == "finished"
    assert len(candidates(straight, straight_id)) == 100
    assert candidates(stopped, stopped_id) == candidates(straight, straight_id)
