"""RCAS: the greedy core on known submodular functions, and the searcher's ask/tell."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from searchers.base import Result
from searchers.errors import NaswError
from searchers.rcas import (
    GreedyProblem,
    MissingValues,
    RCASSearcher,
    best_trace,
    budgets_between,
    cost_effective_greedy,
    greedy_run,
    rcas,
)

BOUND = 0.5 * (1 - 1 / math.e)


def coverage_problem(rng: np.random.Generator, n_elements: int = 10, n_items: int = 25):
    """A random weighted-coverage function (monotone submodular, F(empty) = 0)."""
    weights = rng.uniform(0.1, 1.0, n_items)
    covers = [set(np.flatnonzero(rng.random(n_items) < 0.25)) for _ in range(n_elements)]
    params = rng.uniform(1, 10, n_elements)
    madds = rng.uniform(1, 10, n_elements)
    problem = GreedyProblem(
        n_elements=n_elements,
        increments={"params": params, "madds": madds},
        base={"params": 0.0, "madds": 0.0},
        budgets={"params": float(params.sum() * rng.uniform(0.2, 0.5)),
                 "madds": float(madds.sum() * rng.uniform(0.2, 0.5))},
        groups=tuple(range(n_elements)),
    )
    calls: list[frozenset[int]] = []

    def value(subset: frozenset[int]) -> float:
        calls.append(subset)
        covered = set().union(*(covers[e] for e in subset)) if subset else set()
        return float(sum(weights[i] for i in covered))

    return problem, value, calls


def brute_force(problem: GreedyProblem, value) -> float:
    best = 0.0
    for r in range(1, problem.n_elements + 1):
        for combo in itertools.combinations(range(problem.n_elements), r):
            if all(sum(problem.increments[m][e] for e in combo) <= b
                   for m, b in problem.budgets.items()):
                best = max(best, value(frozenset(combo)))
    return best


def test_lazy_and_plain_greedy_pick_the_same_set_with_fewer_evaluations() -> None:
    rng = np.random.default_rng(0)
    lazy_total = plain_total = 0
    for _ in range(30):
        problem, value, calls = coverage_problem(rng, n_elements=14)
        for rule in ("uc", "apr", "amr"):
            calls.clear()
            lazy = cost_effective_greedy(problem, value, rule, lazy=True)
            lazy_calls = len(set(calls))
            calls.clear()
            plain = cost_effective_greedy(problem, value, rule, lazy=False)
            plain_calls = len(set(calls))
            assert lazy.chosen == plain.chosen
            assert lazy.value == pytest.approx(plain.value)
            assert lazy_calls <= plain_calls
            lazy_total += lazy_calls
            plain_total += plain_calls
    assert lazy_total < plain_total
    print(f"lazy/plain evaluations: {lazy_total}/{plain_total} = {lazy_total / plain_total:.2f}")


def test_rcas_reaches_the_approximation_bound_on_100_instances() -> None:
    rng = np.random.default_rng(1)
    for _ in range(100):
        problem, value, _ = coverage_problem(rng, n_elements=10)
        traces, needed = rcas(problem, value)
        assert not needed
        best = best_trace(traces)
        optimum = brute_force(problem, value)
        assert best.value >= BOUND * optimum - 1e-12
        for trace in traces:  # every run respects both budgets
            for m, limit in problem.budgets.items():
                assert sum(problem.increments[m][e] for e in trace.chosen) <= limit + 1e-9


def test_one_block_per_position() -> None:
    problem = GreedyProblem(4, {"params": np.ones(4), "madds": np.ones(4)},
                            {"params": 0, "madds": 0}, {"params": 10}, groups=(0, 0, 1, 1))
    trace = cost_effective_greedy(problem, lambda s: float(len(s)) + 0.1 * sum(s), "uc")
    assert sorted(problem.groups[e] for e in trace.chosen) == [0, 1]


def test_missing_values_are_reported_as_one_batch() -> None:
    rng = np.random.default_rng(2)
    problem, _, _ = coverage_problem(rng, n_elements=6)

    def unknown(subset):
        raise MissingValues([subset])

    with pytest.raises(MissingValues) as err:
        cost_effective_greedy(problem, unknown, "apr")
    fits = [e for e in range(6) if problem.fits(dict(problem.base), e)]
    assert sorted(min(s) for s in err.value.sets) == fits


# -- the searcher, on a small fake rcas space -------------------------------------------------

class FakeRCASSpace:
    """Five positions x (empty + 6 types) with additive costs (what the real space provides)."""

    name = "rcas"
    preset = "fake"
    input_shape = (1, 8, 8)
    num_classes = 10

    def __init__(self) -> None:
        rng = np.random.default_rng(7)
        self.params = np.concatenate([np.zeros((5, 1)), rng.integers(50, 500, (5, 6))], axis=1)
        self.madds = np.concatenate([np.zeros((5, 1)), rng.integers(500, 5000, (5, 6))], axis=1)
        self.quality = rng.uniform(0.05, 0.3, (5, 7))

    def hash(self, genotype) -> str:
        return ",".join(map(str, genotype["blocks"]))

    def cost_tables(self, input_shape=None, num_classes=None):
        return ({"params": 100.0, "madds": 1000.0},
                {"params": self.params, "madds": self.madds, "flops": 2 * self.madds})

    def accuracy(self, genotype) -> float:
        """Monotone with diminishing returns in the filled blocks."""
        filled = sum(self.quality[n, t] for n, t in enumerate(genotype["blocks"]) if t)
        return 1 - math.exp(-filled)

    def evaluate(self, job) -> Result:
        blocks = job.genotype["blocks"]
        costs = {"params": 100.0 + sum(self.params[n, t] for n, t in enumerate(blocks)),
                 "madds": 1000.0 + sum(self.madds[n, t] for n, t in enumerate(blocks))}
        return Result(accuracy=self.accuracy(job.genotype), costs=costs)


CONSTRAINTS = ["params<=900", "madds<=9000"]


def drive(searcher: RCASSearcher, space: FakeRCASSpace, batch: int = 4, stop_after: int | None = None):
    told = 0
    while not searcher.done():
        jobs = searcher.ask(batch)
        assert jobs, "a searcher that is not done must ask for something"
        for job in jobs:
            searcher.tell(job, space.evaluate(job))
            told += 1
            if stop_after is not None and told == stop_after:
                return searcher
    return searcher


def test_searcher_finds_the_same_sets_as_the_direct_algorithm() -> None:
    space = FakeRCASSpace()
    searcher = drive(RCASSearcher(space, constraints=CONSTRAINTS, budget=10_000), space)
    summary = searcher.result_summary()
    problem = searcher.problem

    def value(subset):
        return space.accuracy(searcher.genotype_of(subset)) if subset else 0.0

    traces, needed = rcas(problem, value)
    assert not needed
    assert summary["best"] == searcher.genotype_of(best_trace(traces).chosen)
    best = searcher.best()
    assert best["feasible"]
    # the winner respects both budgets
    job_costs = space.evaluate(type("J", (), {"genotype": summary["best"]})()).costs
    assert job_costs["params"] <= 900 and job_costs["madds"] <= 9000
    # no set was evaluated twice
    hashes = [tuple(h["genotype"]["blocks"]) for h in searcher.history]
    assert len(hashes) == len(set(hashes))


def test_first_batch_is_every_singleton_that_fits() -> None:
    space = FakeRCASSpace()
    searcher = RCASSearcher(space, constraints=CONSTRAINTS, budget=10_000)
    jobs = searcher.ask(1000)
    fitting = [e for e in range(searcher.problem.n_elements)
               if searcher.problem.fits(dict(searcher.problem.base), e)]
    assert len(jobs) == len(fitting)
    assert all(sum(1 for b in j.genotype["blocks"] if b) == 1 for j in jobs)


def test_kill_and_resume_continues_the_same_trajectory() -> None:
    space = FakeRCASSpace()
    full = drive(RCASSearcher(space, constraints=CONSTRAINTS, budget=10_000, speculate=2), space)

    partial = drive(RCASSearcher(space, constraints=CONSTRAINTS, budget=10_000, speculate=2),
                    space, stop_after=40)
    state = partial.state_dict()
    resumed = RCASSearcher(space, constraints=CONSTRAINTS, budget=10_000, speculate=2)
    resumed.load_state_dict(state, history=partial.history)
    for job in resumed.pending:  # in flight at the kill: re-issued once
        resumed.tell(job, space.evaluate(job))
    drive(resumed, space)
    assert resumed.result_summary() == full.result_summary()
    assert [h["genotype"] for h in resumed.history] == [h["genotype"] for h in full.history]


def test_speculation_changes_evaluations_not_choices() -> None:
    space = FakeRCASSpace()
    plain = drive(RCASSearcher(space, constraints=CONSTRAINTS, budget=10_000), space, batch=1)
    eager = drive(RCASSearcher(space, constraints=CONSTRAINTS, budget=10_000, speculate=3), space,
                  batch=8)
    assert plain.result_summary()["runs"] == eager.result_summary()["runs"]
    assert eager.result_summary()["evaluations"] >= plain.result_summary()["evaluations"]


def test_events_report_steps_and_lazy_savings() -> None:
    space = FakeRCASSpace()
    searcher = drive(RCASSearcher(space, constraints=CONSTRAINTS, budget=10_000), space)
    events = searcher.pop_events()
    steps = [e for e in events if e.kind == "greedy_step"]
    assert {e.data["rule"] for e in steps} == {"uc", "apr", "amr"}
    last = [e for e in events if e.kind == "evaluations"][-1]
    assert last.metrics["lazy"] < last.metrics["ceg"]


def test_budget_caps_the_number_of_evaluations() -> None:
    space = FakeRCASSpace()
    searcher = drive(RCASSearcher(space, constraints=CONSTRAINTS, budget=12), space)
    assert searcher.n_told == 12 and searcher.done()


def test_bad_parameters_name_the_field() -> None:
    space = FakeRCASSpace()
    with pytest.raises(NaswError, match="searcher.params.rules"):
        RCASSearcher(space, rules=["uc", "fast"])
    with pytest.raises(NaswError, match="searcher.params.speculate"):
        RCASSearcher(space, speculate=-1)
    with pytest.raises(NaswError, match="searcher.params.unknown"):
        RCASSearcher(space, unknown=1)


# -- the real rcas space on the synthetic evaluator --------------------------------------------

def test_rcas_beats_random_search_at_the_same_number_of_evaluations() -> None:
    from searchers import get_searcher
    from searchers.objectives import synthetic_result
    from searchers.spaces import get_space

    space = get_space("rcas", "rcas-digits")
    constraints = budgets_between(space, 0.4)
    ours_best, theirs_best = [], []
    for seed in range(5):
        searcher = get_searcher("rcas", space=space, constraints=constraints, budget=10_000,
                                seed=seed, train={"seed": seed})
        while not searcher.done():
            for job in searcher.ask(512):
                searcher.tell(job, synthetic_result(job))
        evaluations = searcher.n_told
        baseline = get_searcher("random", space=space, constraints=constraints,
                                budget=evaluations, seed=seed, train={"seed": seed})
        while not baseline.done():
            jobs = baseline.ask(512)
            if not jobs:
                break
            for job in jobs:
                baseline.tell(job, synthetic_result(job))
        ours, theirs = searcher.best(), baseline.best()
        assert ours["feasible"]
        ours_best.append(ours["accuracy"])
        theirs_best.append(theirs["accuracy"] if theirs["feasible"] else 0.0)
        winner = searcher.result_summary()["best"]
        assert space.costs(winner)["params"] <= float(constraints[0].split("<=")[1])
    print(f"best feasible over 5 seeds: RCAS {np.mean(ours_best):.4f}, "
          f"random {np.mean(theirs_best):.4f}")
    assert np.mean(ours_best) > np.mean(theirs_best)
    assert sum(o > t for o, t in zip(ours_best, theirs_best)) >= 4


def test_preset_training_defaults_yield_to_explicit_config_fields() -> None:
    from workbench.config import make_searcher, parse_config

    config = {"name": "t", "space": {"name": "rcas", "preset": "rcas-digits"},
              "dataset": {"name": "digits"}, "evaluator": "synthetic",
              "searcher": {"name": "rcas", "preset": "rcas-digits"},
              "budget": {"candidates": 5}, "train": {"epochs": 7}}
    _, searcher = make_searcher(parse_config(config))
    spec = searcher.train_spec
    assert spec.epochs == 7  # the config's own field
    assert (spec.lr, spec.schedule, spec.weight_decay) == (0.1, "rcas-step", 4e-5)  # the preset's
    assert spec.dataset == "digits"


# -- the paper's proxy schedule, incremental runs, a budget that ends mid-way ------------------

def test_paper_proxy_schedule_decays_at_epochs_4_7_and_9() -> None:
    from searchers.training import lr_factor

    steps_per_epoch = 10
    total = 10 * steps_per_epoch

    def factor(epoch: int) -> float:
        return lr_factor(epoch * steps_per_epoch, total, 0, "rcas-step", 0.0)

    assert [factor(e) for e in range(10)] == pytest.approx(
        [1, 1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001])
    for preset in ("rcas-paper", "rcas-digits"):
        assert RCASSearcher.presets[preset]["train"]["schedule"] == "rcas-step"
    assert RCASSearcher.presets["rcas-paper"]["train"]["epochs"] == 10


class CountingRCAS(RCASSearcher):
    """Counts set-function look-ups: what each result costs the searcher."""

    lookups = 0

    def _value(self, subset):
        type(self).lookups += 1
        return super()._value(subset)


def _lookups_per_result(lazy: bool) -> float:
    space = FakeRCASSpace()
    CountingRCAS.lookups = 0
    searcher = drive(CountingRCAS(space, constraints=CONSTRAINTS, budget=10_000, lazy=lazy),
                     space, batch=1)
    return CountingRCAS.lookups / searcher.n_told


@pytest.mark.parametrize("lazy", [False, True])
def test_a_result_resumes_one_step_never_a_replay_of_the_whole_greedy(lazy: bool) -> None:
    """A replay after every result makes look-ups per result grow with the run (the old
    design: 40-90 here); resuming the waiting step keeps them a small constant."""
    assert _lookups_per_result(lazy) < 8


def test_plain_greedy_resumes_only_when_its_whole_batch_is_in() -> None:
    space = FakeRCASSpace()
    searcher = RCASSearcher(space, constraints=CONSTRAINTS, budget=10_000, lazy=False,
                            rules=["uc"])
    jobs = searcher.ask(1000)
    for job in jobs[:-1]:
        searcher.tell(job, space.evaluate(job))
        assert not [e for e in searcher.pop_events() if e.kind == "greedy_step"]
    searcher.tell(jobs[-1], space.evaluate(jobs[-1]))
    assert len([e for e in searcher.pop_events() if e.kind == "greedy_step"]) == 1


def test_a_budget_that_ends_mid_way_returns_the_best_set_chosen_so_far() -> None:
    space = FakeRCASSpace()
    full = drive(RCASSearcher(space, constraints=CONSTRAINTS, budget=10_000, rules=["uc"]),
                 space)
    cut = drive(RCASSearcher(space, constraints=CONSTRAINTS, budget=full.n_told - 1,
                             rules=["uc"]), space)
    summary = cut.result_summary()
    assert cut.done() and not summary["complete"]
    chosen = [run for run in summary["runs"].values() if run["steps"]]
    assert summary["best"] is not None and summary["best"]["blocks"] in [
        run["blocks"] for run in chosen]
    best_value = max(run["value"] for run in chosen)
    assert cut.best()["feasible"] and cut.best()["accuracy"] >= best_value
    assert full.result_summary()["complete"]


def test_checkpoint_holds_no_values_and_stays_small() -> None:
    space = FakeRCASSpace()
    searcher = drive(RCASSearcher(space, constraints=CONSTRAINTS, budget=10_000), space,
                     stop_after=30)
    state = searcher.state_dict()
    assert "cache" not in state and "history" not in state
    resumed = RCASSearcher(space, constraints=CONSTRAINTS, budget=10_000)
    resumed.load_state_dict(state, history=searcher.history)
    assert resumed.cache == searcher.cache


# -- noisy values: confirming the decisive set; constraints the budgets cannot express ---------

def test_confirmation_stops_one_lucky_draw_from_deciding_a_step() -> None:
    """Room for one element; element 1's first draw is lucky (0.9, its mean 0.5). The paper's
    step takes it; with ``confirmed`` (a mean of repeated draws) the step takes element 0."""
    problem = GreedyProblem(3, {"params": np.ones(3)}, {"params": 0.0}, {"params": 1.0},
                            groups=(0, 1, 2))
    first = {0: 0.6, 1: 0.9, 2: 0.55}
    mean = {0: 0.6, 1: 0.5, 2: 0.55}

    def value(subset):
        return first[min(subset)] if subset else 0.0

    def confirmed(subset):
        return mean[min(subset)] if subset else 0.0

    for lazy in (True, False):
        paper = cost_effective_greedy(problem, value, "uc", lazy=lazy)
        assert paper.chosen == [1]
        run = greedy_run(problem, value, "uc", lazy=lazy, confirmed=confirmed)
        with pytest.raises(StopIteration) as finished:
            next(run)
        assert finished.value.value.chosen == [0]
        assert finished.value.value.value == pytest.approx(0.6)


class NoisyFakeSpace(FakeRCASSpace):
    """The fake space with evaluation noise (sd 0.08), drawn per job id."""

    def evaluate(self, job) -> Result:
        result = super().evaluate(job)
        noise = np.random.default_rng(1000 + job.id).normal(0.0, 0.08)
        return Result(accuracy=result.accuracy + noise, costs=result.costs)


def test_confirmed_steps_repeat_their_set_and_resume_on_the_same_trajectory() -> None:
    space = NoisyFakeSpace()
    kwargs = {"constraints": CONSTRAINTS, "budget": 10_000, "confirm_evaluations": 3}
    full = drive(RCASSearcher(space, **kwargs), space, batch=3)
    tags = [h["tag"] for h in full.history]
    assert any("repeat 3" in t for t in tags)
    runs = full.result_summary()["runs"]
    for run in runs.values():  # every chosen set was evaluated at least 3 times
        key = space.hash({"blocks": run["blocks"]})
        assert len(full.cache[key]) >= 3
        assert run["value"] == pytest.approx(np.mean(full.cache[key][:3]))
    partial = drive(RCASSearcher(space, **kwargs), space, batch=3, stop_after=57)
    resumed = RCASSearcher(space, **kwargs)
    resumed.load_state_dict(partial.state_dict(), history=partial.history)
    for job in resumed.pending:
        resumed.tell(job, space.evaluate(job))
    drive(resumed, space, batch=3)
    assert resumed.result_summary() == full.result_summary()
    assert [h["genotype"] for h in resumed.history] == [h["genotype"] for h in full.history]


def test_confirmation_finds_truer_sets_under_noise() -> None:
    """Over 12 noise draws, the chosen set's noise-free accuracy is higher with 3 confirming
    evaluations than with the paper's single one."""
    def true_best(confirm: int, seed: int) -> float:
        space = NoisyFakeSpace()
        space.evaluate = lambda job, s=space: Result(  # type: ignore[method-assign]
            accuracy=s.accuracy(job.genotype)
            + np.random.default_rng([seed, job.id]).normal(0.0, 0.08),
            costs=FakeRCASSpace.evaluate(s, job).costs)
        searcher = drive(RCASSearcher(space, constraints=CONSTRAINTS, budget=10_000,
                                      confirm_evaluations=confirm), space)
        return space.accuracy(searcher.result_summary()["best"])

    paper = [true_best(1, seed) for seed in range(12)]
    confirmed = [true_best(3, seed) for seed in range(12)]
    assert np.mean(confirmed) > np.mean(paper) + 0.01


class IntensityFakeSpace(FakeRCASSpace):
    """The fake space with memory traffic per block, so ``intensity`` = flops / bytes is a
    ratio the knapsack budgets cannot express."""

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(11)
        self.bytes = np.concatenate([np.zeros((5, 1)), rng.integers(200, 8000, (5, 6))], axis=1)

    def costs(self, genotype) -> dict[str, float]:
        blocks = genotype["blocks"]
        madds = 1000.0 + sum(self.madds[n, t] for n, t in enumerate(blocks))
        data = 1500.0 + sum(self.bytes[n, t] for n, t in enumerate(blocks))
        return {"params": 100.0 + sum(self.params[n, t] for n, t in enumerate(blocks)),
                "madds": madds, "flops": 2 * madds, "bytes": data, "intensity": 2 * madds / data}

    def evaluate(self, job) -> Result:
        return Result(accuracy=self.accuracy(job.genotype), costs=self.costs(job.genotype))


def test_a_lower_bound_on_intensity_steers_the_greedy() -> None:
    """``intensity>=1.2`` (the empty network has 1.33; many blocks lower it): steered, every
    evaluated set and the answer keep it; ignored (the old behaviour), many do not."""
    from searchers.constraints import feasible, parse_constraints

    space = IntensityFakeSpace()
    constraints = [*CONSTRAINTS, "intensity>=1.2"]
    parsed = parse_constraints(constraints)
    steered = drive(RCASSearcher(space, constraints=constraints, budget=10_000), space)
    ignored = drive(RCASSearcher(space, constraints=constraints, budget=10_000,
                                 side_constraints="ignore"), space)
    assert all(feasible(h["costs"], parsed) for h in steered.history)
    assert feasible(space.costs(steered.result_summary()["best"]), parsed)
    assert steered.best()["feasible"]
    broken = sum(not feasible(h["costs"], parsed) for h in ignored.history)
    assert broken >= len(ignored.history) // 5


def test_noise_and_side_constraint_parameters_name_the_field() -> None:
    space = FakeRCASSpace()
    with pytest.raises(NaswError, match="searcher.params.confirm_evaluations"):
        RCASSearcher(space, confirm_evaluations=0)
    with pytest.raises(NaswError, match="searcher.params.side_constraints"):
        RCASSearcher(space, side_constraints="maybe")
