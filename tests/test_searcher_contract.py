"""The searcher state contract, checked for every registered searcher (one suite, many
implementations, as optuna's ``testing/pytest_storages.py`` does for its storages).

Each searcher is driven on the synthetic evaluator from its digits sample config, then:

* its ``state_dict()`` encodes with the store's safe codec (JSON + typed arrays, no pickle)
  and holds no per-candidate history;
* a fresh instance given ``load_state_dict(decoded, history=<history as the store rebuilds
  it>)`` makes exactly the same future decisions (ids, genotypes, tags);
* the checkpoint stays bounded as the run grows (no list, dict or array in it grows with the
  number of told candidates);
* the best candidate respects the constraints whenever a feasible one was told.

A searcher that stores its history (or a set, a Generator, an object) in its state fails here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from searchers.base import Job, searcher_names
from searchers.evaluators import evaluate
from workbench.config import load_config, make_searcher, parse_config
from workbench.state_codec import decode_state, encode_state

SAMPLES = Path(__file__).resolve().parent.parent / "sample_configs"
#: the digits sample config each searcher is driven from (its own, or random's)
CONFIGS = {"random": "random-digits", "epnas": "epnas-digits", "pnas": "pnas-digits",
           "ponas": "ponas-digits", "rcas": "rcas-digits"}


def _config(name: str) -> Any:
    base = load_config(SAMPLES / f"{CONFIGS.get(name, 'random-digits')}.yaml").to_dict()
    base["evaluator"] = "synthetic"
    if name not in CONFIGS:
        base["searcher"] = {"name": name, "params": {}}
    if name == "final":
        from searchers.spaces import get_space

        space = get_space(base["space"]["name"], base["space"].get("preset"))
        import numpy as np

        genotype = space.sample(np.random.default_rng(0))
        base["searcher"] = {"name": "final", "params": {"genotype": genotype}}
        base["budget"] = {"candidates": 1}
    return parse_config(base)


def _make(name: str) -> Any:
    return make_searcher(_config(name))[1]


def _drive(searcher: Any, tells: int, batch: int = 3) -> None:
    """Ask in batches, tell in ask order (deterministic), until ``tells`` more results or done."""
    target = searcher.n_told + tells
    while searcher.n_told < target and not searcher.done():
        jobs = searcher.pending or searcher.ask(batch)
        if not jobs:
            break
        for job in jobs[: target - searcher.n_told]:
            searcher.tell(job, evaluate(job, "synthetic"))


def _as_stored(searcher: Any) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """(decoded state, history as the store rebuilds it, checkpoint bytes)."""
    data, blobs, _ = encode_state(searcher.state_dict())
    state = decode_state(data, blobs.__getitem__)
    history = json.loads(json.dumps(searcher.history))  # what the candidates table gives back
    return state, history, len(data) + sum(len(b) for b in blobs.values())


def _decisions(jobs: list[Job]) -> list[tuple[int, str, str]]:
    return [(job.id, json.dumps(job.genotype, sort_keys=True), job.tag) for job in jobs]


@pytest.fixture(params=searcher_names())
def name(request) -> str:
    return request.param


def test_state_is_plain_data_without_history(name) -> None:
    searcher = _make(name)
    _drive(searcher, 6)
    state = searcher.state_dict()
    assert "history" not in state
    encode_state(state)  # raises TypeError naming any value outside the contract


def test_resume_makes_the_same_decisions(name) -> None:
    straight, first = _make(name), _make(name)
    _drive(straight, 8)
    _drive(first, 8)
    first.ask(2)  # jobs in flight at the checkpoint are part of it
    straight.ask(2)
    assert _decisions(first.pending) == _decisions(straight.pending)
    state, history, _ = _as_stored(first)
    resumed = _make(name)
    resumed.load_state_dict(state, history=history)
    assert _decisions(resumed.pending) == _decisions(first.pending)
    for searcher in (straight, resumed):
        for job in list(searcher.pending):
            searcher.tell(job, evaluate(job, "synthetic"))
    for _ in range(4):
        a, b = straight.ask(3), resumed.ask(3)
        assert _decisions(a) == _decisions(b)
        for searcher, jobs in ((straight, a), (resumed, b)):
            for job in jobs:
                searcher.tell(job, evaluate(job, "synthetic"))
    assert straight.done() == resumed.done() and straight.n_told == resumed.n_told


def _lengths(value: Any, path: str = "state") -> dict[str, int]:
    """Length of every container (and element count of every array) in a state, by path."""
    out: dict[str, int] = {}
    if isinstance(value, dict):
        out[path] = len(value)
        for key, item in value.items():
            out.update(_lengths(item, f"{path}[{key!r}]"))
    elif isinstance(value, (list, tuple)):
        out[path] = len(value)
        for index, item in enumerate(value):
            out.update(_lengths(item, f"{path}[{index}]"))
    elif hasattr(value, "shape") and hasattr(value, "dtype"):
        out[path] = int(getattr(value, "size", 0) if not callable(getattr(value, "numel", None))
                        else value.numel())
    return out


def test_checkpoint_does_not_grow_with_the_history(name) -> None:
    """Nothing in the state grows with the number of told candidates: after a warm-up, 150
    more told candidates grow no list, dict or array that existed before by more than half
    as many entries (a stored history grows by one per candidate). Things that appear once
    (an optimizer's buffers at its first step, PNAS's predictor after level 1) are bounded
    and not compared; jobs in flight are bounded by the workers."""
    searcher = _make(name)
    _drive(searcher, 30)
    early_told = searcher.n_told
    early = _lengths({k: v for k, v in searcher.state_dict().items() if k != "pending"})
    _drive(searcher, 150)
    late_told = searcher.n_told
    late = _lengths({k: v for k, v in searcher.state_dict().items() if k != "pending"})
    if late_told == early_told:
        pytest.skip(f"{name} finished within {early_told} candidates")
    grown = {path: (early[path], size) for path, size in late.items()
             if path in early and size - early[path] > (late_told - early_told) / 2}
    assert not grown, (f"{name}: state grows with the history from {early_told} to "
                       f"{late_told} told: {dict(list(grown.items())[:5])}")
    _, _, size = _as_stored(searcher)
    assert size < 64 * 2**20  # and a sane total


def test_best_respects_the_constraints(name) -> None:
    searcher = _make(name)
    _drive(searcher, 12)
    best = searcher.best()
    if any(entry["feasible"] for entry in searcher.history):
        assert best is not None and best["feasible"]
        assert searcher.is_feasible(best["costs"])
    for entry in searcher.history:
        assert entry["feasible"] == (entry["status"] == "ok" and entry["accuracy"] is not None
                                     and searcher.is_feasible(entry["costs"]))
