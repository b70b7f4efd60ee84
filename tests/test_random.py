"""The random searcher: seeded, never repeats an architecture, hard/soft constraints, resumable."""

from __future__ import annotations

from typing import Any

import pytest

from searchers import get_searcher
from searchers.base import Result
from searchers.errors import NaswError
from searchers.evaluators import evaluate
from searchers.spaces import Space, get_space, space_names
from workbench.state_codec import decode_state, encode_state


class TinySpace(Space):
    """Five architectures; ``params`` = 10 * choice (for exhaustion and rejection tests)."""

    name = "tiny"
    presets = {"default": {"input_shape": (1, 8, 8), "num_classes": 10}}
    default_preset = "default"

    def sample(self, rng: Any) -> dict[str, Any]:
        return {"space": "tiny", "choice": int(rng.integers(5))}

    def validate(self, genotype):
        self._check_space(genotype)
        return {"space": "tiny", "choice": int(genotype["choice"])}

    def costs(self, genotype, input_shape=None, num_classes=None):
        return {"params": 10.0 * (genotype["choice"] + 1), "madds": 1.0}

    def graph(self, genotype):
        raise NotImplementedError

    def build(self, genotype, input_shape=None, num_classes=None):
        raise NotImplementedError


def drive(searcher, n_ask: int = 3) -> list[dict]:
    asked = []
    while not searcher.done():
        jobs = searcher.ask(n_ask)
        if not jobs:
            break
        for job in jobs:
            asked.append(job.genotype)
            searcher.tell(job, Result(status="ok", accuracy=0.5,
                                      costs=searcher.space.costs(job.genotype)))
    return asked


def test_same_seed_same_candidates_other_seed_others() -> None:
    space = get_space("mbconv", "ponas-digits")
    a = drive(get_searcher("random", space=space, budget=20, seed=4))
    b = drive(get_searcher("random", space=space, budget=20, seed=4), n_ask=7)
    c = drive(get_searcher("random", space=space, budget=20, seed=5))
    assert a == b and a != c and len(a) == 20


def test_never_the_same_architecture_twice_and_stops_when_the_space_is_exhausted() -> None:
    searcher = get_searcher("random", space=TinySpace(), budget=10, seed=0,
                            max_tries=200)
    asked = drive(searcher)
    assert sorted(g["choice"] for g in asked) == [0, 1, 2, 3, 4]
    assert searcher.done()
    assert "exhausted" in [e.kind for e in searcher.pop_events()]


def test_hard_constraints_reject_before_evaluation_soft_ones_do_not() -> None:
    space = get_space("mbconv", "ponas-digits")
    hard = get_searcher("random", space=space, budget=30, seed=1, hard_constraints=True,
                        constraints=["params<=45k"])
    soft = get_searcher("random", space=space, budget=30, seed=1, constraints=["params<=45k"])
    assert all(space.costs(g)["params"] <= 45_000 for g in drive(hard))
    assert any(space.costs(g)["params"] > 45_000 for g in drive(soft))
    events = [e for e in hard.pop_events() if e.kind == "rejections"]
    assert events and sum(e.metrics["infeasible"] for e in events) > 0


def test_an_unsatisfiable_hard_constraint_is_an_error_naming_the_constraints() -> None:
    searcher = get_searcher("random", space=TinySpace(), budget=3, seed=0,
                            hard_constraints=True, constraints=["params<=5"], max_tries=50)
    with pytest.raises(NaswError, match="constraints"):
        searcher.ask(1)


def test_latency_constraints_stay_soft_even_when_hard_is_asked() -> None:
    searcher = get_searcher("random", space=TinySpace(), budget=3, seed=0,
                            hard_constraints=True, constraints=["latency_ms<=1"])
    assert len(searcher.ask(3)) == 3


def test_state_dict_resumes_the_same_future_including_the_rng() -> None:
    space = get_space("mbconv", "ponas-digits")
    first = get_searcher("random", space=space, budget=30, seed=2)
    for job in first.ask(5):
        first.tell(job, evaluate(job, "synthetic"))
    pending = first.ask(2)
    data, blobs, _ = encode_state(first.state_dict())  # as the store keeps it
    state = decode_state(data, blobs.__getitem__)
    assert "state" in state["rng"] and "seen" not in state and "history" not in state
    second = get_searcher("random", space=space, budget=30, seed=2)
    second.load_state_dict(state, history=first.history)
    assert second._seen == first._seen  # rebuilt from the history and the pending jobs
    assert [j.id for j in second.pending] == [j.id for j in pending]
    assert [j.genotype for j in second.ask(4)] == [j.genotype for j in first.ask(4)]


@pytest.mark.parametrize("space_name", space_names())
def test_works_over_every_registered_space(space_name: str) -> None:
    space = get_space(space_name)
    searcher = get_searcher("random", space=space, budget=4, seed=0)
    jobs = searcher.ask(4)
    assert len({space.hash(j.genotype) for j in jobs}) == 4
    for job in jobs:
        space.validate(job.genotype)
        searcher.tell(job, evaluate(job, "synthetic"))
    assert searcher.done() and searcher.best() is not None
