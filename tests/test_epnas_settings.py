"""EPNAS on documented settings that used to crash: per-metric ``reward_p`` and
``initial: small`` with module search over PNAS cells."""

from __future__ import annotations

import pytest

from searchers import Result, get_searcher
from searchers.constraints import parse_reward_p
from searchers.errors import NaswError
from searchers.objectives import synthetic_result
from searchers.spaces import get_space


@pytest.fixture(scope="module")
def layerwise():
    return get_space("layerwise", preset="epnas-digits")


@pytest.fixture(scope="module")
def cell():
    return get_space("cell", preset="pnas-digits")


def test_reward_p_per_metric_mapping_weights_each_constraint(layerwise) -> None:
    s = get_searcher("epnas", space=layerwise, constraints=["params<=1k", "intensity>=10"],
                     budget=10, reward_p={"params": 0.5, "intensity": 0.8})
    costs = {"params": 2000, "intensity": 5.0}  # one unit of violation on each
    assert s.reward(Result(accuracy=0.9, costs=costs)) == pytest.approx(0.9 * 0.5 * 0.8)
    left_out = get_searcher("epnas", space=layerwise,
                            constraints=["params<=1k", "intensity>=10"], budget=10,
                            reward_p={"params": 0.5})  # intensity keeps the paper's 0.9
    assert left_out.reward(Result(accuracy=0.9, costs=costs)) == pytest.approx(0.9 * 0.5 * 0.9)
    for job in s.ask(4):  # and a search runs with it
        s.tell(job, synthetic_result(job, layerwise))


@pytest.mark.parametrize("bad, field", [
    ("0.9", "reward_p"), (1.5, "reward_p"), (0.0, "reward_p"), (float("nan"), "reward_p"),
    (True, "reward_p"), ({"parms": 0.5}, "reward_p.parms"), ({"params": 2}, "reward_p.params"),
])
def test_reward_p_rejects_values_outside_0_1_and_unknown_metrics(bad, field, layerwise) -> None:
    with pytest.raises(NaswError) as err:
        parse_reward_p(bad)
    assert err.value.field == field
    with pytest.raises(NaswError):
        get_searcher("random", space=layerwise, budget=5, reward_p=bad)


@pytest.mark.parametrize("mode", ["cell", "layerwise"])
def test_initial_small_starts_every_branch_from_the_small_network(mode, layerwise, cell) -> None:
    space = cell if mode == "cell" else layerwise
    s = get_searcher("epnas", space=space, preset="epnas-digits", budget=12, branches=3,
                     steps=2, initial="small", share_weights=False)
    jobs = s.ask(100)
    start = s.morpher.initial()
    assert s.branches == [start] * 3
    assert space.validate(start) == start and len(jobs) == 6
    for job in jobs:
        s.tell(job, synthetic_result(job, space))
    assert len(s.ask(100)) == 6


def _drive(s, space) -> list:
    events = []
    while not s.done():
        jobs = s.ask(1000)
        assert jobs, "an idle EPNAS with nothing pending must hand out jobs"
        for job in jobs:
            s.tell(job, synthetic_result(job, space))
        events += s.pop_events()
    return events


def _repeats(s, space) -> int:
    hashes = [space.hash(h["genotype"]) for h in s.history]
    return len(hashes) - len(set(hashes))


def test_no_network_is_trained_twice_morphs_are_resampled(cell) -> None:
    kwargs = dict(space=cell, preset="epnas-digits", budget=200, seed=0,
                  constraints=["params<=42k"])
    old = get_searcher("epnas", duplicates="evaluate", **kwargs)
    _drive(old, cell)
    assert _repeats(old, cell) > 20  # module search repeats itself a lot without the check
    new = get_searcher("epnas", **kwargs)
    events = _drive(new, cell)
    assert _repeats(new, cell) == 0 and new.n_told == 200
    assert sum(e.metrics["resampled"] for e in events) > 0


def test_unavoidable_repeats_reuse_the_earlier_result_and_say_so(cell) -> None:
    s = get_searcher("epnas", space=cell, preset="epnas-digits", budget=120, seed=0,
                     constraints=["params<=42k"], resample_tries=0)
    events = _drive(s, cell)
    assert _repeats(s, cell) == 0  # nothing trained twice
    reused = [r for e in events for r in e.data["reused"]]
    assert reused and sum(e.metrics["reused"] for e in events) == len(reused)
    by_id = {h["id"]: h for h in s.history}
    for r in reused:  # each names the evaluation whose result it took
        assert r["job"] in by_id


def test_sgdr_restarts_at_t0_then_every_period_times_tmult() -> None:
    from searchers.training import lr_factor

    def at(epoch: float) -> float:  # 100 steps per epoch, lr_min = lr / 50 (0.05 -> 0.001)
        return lr_factor(int(epoch * 100), 2000, 0, "cosine_restarts", 0.02,
                         steps_per_epoch=100, restart_t0=10, restart_mult=2)

    assert at(0) == pytest.approx(1.0)
    assert at(5) == pytest.approx(0.02 + 0.98 * 0.5)  # half way down the first period
    assert at(9.99) < 0.03 and at(10) == pytest.approx(1.0)  # restart after T0 = 10 epochs
    assert at(20) == pytest.approx(0.02 + 0.98 * 0.5)  # the second period lasts 20
    assert at(29.99) < 0.03 and at(30) == pytest.approx(1.0)


def test_without_prediction_candidates_train_with_the_papers_sgdr(layerwise) -> None:
    s = get_searcher("epnas", space=layerwise, preset="epnas-paper", budget=10,
                     performance_prediction=False)
    t = s.job_train
    assert (t.epochs, t.batch_size, t.lr, t.lr_min) == (20, 128, 0.05, 0.001)
    assert (t.schedule, t.restart_t0, t.restart_mult, t.nesterov) == (
        "cosine_restarts", 10, 2, True)
    assert get_searcher("epnas", space=layerwise, preset="epnas-paper",
                        budget=10).job_train.schedule == "cosine"  # with prediction


def test_adaptive_p_steepens_while_too_few_are_feasible_never_softer_than_configured(
        layerwise) -> None:
    s = get_searcher("epnas", space=layerwise, preset="epnas-digits", budget=80, seed=0,
                     constraints=["params<=3000", "intensity>=10"], adaptive_p=True,
                     reward_p={"params": 0.8})
    events = _drive(s, layerwise)
    ps = [(e.metrics["p_params"], e.metrics["p_intensity"], e.metrics["feasible_fraction"])
          for e in events]
    assert ps[0][2] < 0.5 and ps[0][0] < 0.8 and ps[0][1] < 0.9  # steeper after episode 0
    assert all(0.1 <= p <= 0.8 and 0.1 <= q <= 0.9 for p, q, _ in ps)  # p_min .. configured
    assert all(b[0] <= a[0] for a, b in zip(ps, ps[1:]) if a[2] < 0.5)  # ascent while short
    # the current p is part of the state: a resumed searcher rewards as the original does
    fresh = get_searcher("epnas", space=layerwise, preset="epnas-digits", budget=80, seed=0,
                         constraints=["params<=3000", "intensity>=10"], adaptive_p=True,
                         reward_p={"params": 0.8})
    fresh.load_state_dict(s.state_dict(), history=s.history)
    assert fresh.reward_p == s.reward_p and fresh.reward_p["params"] == ps[-1][0]


def test_hard_constraints_never_train_a_morph_the_cost_lut_shows_infeasible(layerwise) -> None:
    """With hard constraints the Eq. (1) reward of an infeasible network is 0 whatever its
    accuracy, so EPNAS tells the policy 0 without spending an evaluation on it."""
    from searchers.constraints import feasible, parse_constraints

    constraints = ["params<=6k", "intensity>=1.5"]
    hard = get_searcher("epnas", space=layerwise, constraints=constraints, budget=60, seed=0,
                        hard_constraints=True)
    asked = []
    while not hard.done():
        jobs = hard.ask(8)
        if not jobs:
            break
        for job in jobs:
            asked.append(job.genotype)
            hard.tell(job, synthetic_result(job, layerwise))
    checks = parse_constraints(constraints)
    assert asked and all(feasible(layerwise.costs(g), checks) for g in asked)
    soft = get_searcher("epnas", space=layerwise, constraints=constraints, budget=60, seed=0)
    soft_asked = []
    while not soft.done():
        jobs = soft.ask(8)
        if not jobs:
            break
        for job in jobs:
            soft_asked.append(job.genotype)
            soft.tell(job, synthetic_result(job, layerwise))
    assert not all(feasible(layerwise.costs(g), checks) for g in soft_asked)  # a real screen


def _episode_branches(searcher, space, budget_episodes: int = 12):
    """Drive whole episodes; after each, the branch start networks and their rewards."""
    seen = []
    while not searcher.done() and len(seen) < budget_episodes:
        jobs = searcher.ask(1000)
        if not jobs:
            break
        for job in jobs:
            searcher.tell(job, synthetic_result(job, space))
        if searcher.episode is None:
            seen.append((list(searcher.branches), list(searcher.branch_rewards),
                         list(searcher.branch_jobs)))
    return seen


def test_screened_morphs_never_start_a_branch(layerwise) -> None:
    """With hard constraints most early morphs are screened (reward 0, never trained); the
    next episode starts only from evaluated networks, so every start is feasible."""
    from searchers.constraints import feasible, parse_constraints

    constraints = ["params<=6k", "intensity>=1.5"]
    checks = parse_constraints(constraints)
    searcher = get_searcher("epnas", space=layerwise, constraints=constraints, budget=400,
                            seed=0, preset="epnas-digits", hard_constraints=True)
    episodes = _episode_branches(searcher, layerwise)
    assert len(episodes) >= 4
    for branches, _, jobs in episodes:
        if jobs:  # set once an episode has evaluated something
            assert min(jobs) >= 0
            assert all(feasible(layerwise.costs(g), checks) for g in branches)



@pytest.mark.parametrize("mode", ["zero", "original"])
def test_free_repeats_earn_nothing_so_the_policy_does_not_collapse_onto_them(cell,
                                                                            mode: str) -> None:
    """A tight cell problem with hard constraints and no re-sampling: paid the earlier
    result for a repeat (``"original"``), the policy learns to propose known networks, whole
    episodes ask nothing new and the search stops after a few evaluations; ``"zero"`` uses the
    whole budget."""
    searcher = get_searcher("epnas", space=cell, constraints=["params<=42k", "intensity>=2.25"],
                            budget=60, seed=2, preset="epnas-digits", hard_constraints=True,
                            resample_tries=0, repeat_reward=mode)
    while not searcher.done():
        jobs = searcher.ask(1000)
        if not jobs:
            break
        for job in jobs:
            searcher.tell(job, synthetic_result(job, cell))
    if mode == "zero":
        assert searcher.n_told == 60 and not searcher.exhausted
    else:
        assert searcher.exhausted and searcher.n_told < 30


def test_repeat_reward_names_the_field(layerwise) -> None:
    with pytest.raises(NaswError, match="searcher.params.repeat_reward"):
        get_searcher("epnas", space=layerwise, repeat_reward="half")
