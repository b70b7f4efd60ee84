"""EPNAS under the searcher state contract: plain data, no history, a bounded sharing
dictionary that a checkpoint writes incrementally (only the entries that changed)."""

from __future__ import annotations

import torch

from searchers import Result, get_searcher
from searchers.objectives import synthetic_result
from searchers.spaces import get_space
from workbench.state_codec import decode_state, encode_state


def _weights(space, genotype, fill: float) -> dict[str, torch.Tensor]:
    return {k: torch.full_like(v, fill) if v.is_floating_point() else v.clone()
            for k, v in space.build(genotype).state_dict().items()}


def _searcher(**params):
    space = get_space("layerwise", preset="epnas-digits")
    return space, get_searcher("epnas", space=space, preset="epnas-digits", budget=200,
                               seed=0, branches=4, steps=3, **params)


def test_state_holds_no_history_and_round_trips_through_the_codec() -> None:
    space, s = _searcher(share_weights=False)
    for job in s.ask(100)[:7]:
        s.tell(job, synthetic_result(job, space))
    state = s.state_dict()
    assert "history" not in state
    data, blobs, _ = encode_state(state)  # raises on anything outside the contract
    fresh = _searcher(share_weights=False)[1]
    fresh.load_state_dict(decode_state(data, blobs.__getitem__), history=s.history)
    assert fresh.n_told == 7 and [j.id for j in fresh.pending] == [j.id for j in s.pending]


def _tell_with_weights(s, space, jobs, accuracy) -> None:
    for k, job in enumerate(jobs):
        s.tell(job, Result(accuracy=accuracy(k), costs=space.costs(job.genotype),
                           weights=_weights(space, job.genotype, float(k))))


def test_the_sharing_dictionary_stays_under_its_size_bound_keeping_the_best() -> None:
    space, unbounded = _searcher(sharing_mb=1024)
    _tell_with_weights(unbounded, space, unbounded.ask(100), lambda k: 0.5 + k / 100)
    bound = unbounded._sharing_bytes / 3 / 2**20  # a third of what the episode brings
    space, s = _searcher(sharing_mb=bound)
    jobs = s.ask(100)
    for k, job in enumerate(jobs):
        _tell_with_weights(s, space, [job], lambda _, k=k: 0.5 + k / 100)
        held = sum(t.numel() * t.element_size() for vs in s.sharing.values() for v in vs
                   for t in v["tensors"].values())
        assert held == s._sharing_bytes <= bound * 2**20
    kept = [v["accuracy"] for vs in s.sharing.values() for v in vs]
    assert kept and min(kept) > 0.5  # the least accurate went first


def test_a_checkpoint_after_one_result_writes_only_the_entries_it_changed() -> None:
    space, s = _searcher(sharing_mb=64)
    jobs = s.ask(100)
    biggest = max(jobs[:-1], key=lambda j: space.costs(j.genotype)["params"])
    _tell_with_weights(s, space, [j for j in jobs[:-1] if j is not biggest], lambda k: 0.5)
    _, _, known = encode_state(s.state_dict())
    before = {id(t) for vs in s.sharing.values() for v in vs for t in v["tensors"].values()}
    # not the episode's last result: the policy does not change
    s.tell(biggest, Result(accuracy=0.9, costs=space.costs(biggest.genotype),
                           weights=_weights(space, biggest.genotype, 99.0)))
    _, new_blobs, _ = encode_state(s.state_dict(), known)
    changed = [t for vs in s.sharing.values() for v in vs for t in v["tensors"].values()
               if id(t) not in before]
    assert changed  # the most accurate model replaced or added entries
    changed_bytes = sum(t.numel() * t.element_size() for t in changed)
    written = sum(len(b) for b in new_blobs.values())
    assert 0 < written <= changed_bytes < s._sharing_bytes


def test_resume_rebuilds_the_sharing_size_and_makes_the_same_decisions() -> None:
    space, s = _searcher(sharing_mb=64)
    jobs = s.ask(100)
    for k, job in enumerate(jobs):
        s.tell(job, Result(accuracy=0.5 + k / 100, costs=space.costs(job.genotype),
                           weights=_weights(space, job.genotype, float(k))))
    data, blobs, _ = encode_state(s.state_dict())
    fresh = _searcher(sharing_mb=64)[1]
    fresh.load_state_dict(decode_state(data, blobs.__getitem__), history=s.history)
    assert fresh._sharing_bytes == s._sharing_bytes
    a, b = s.ask(100), fresh.ask(100)
    assert [j.genotype for j in a] == [j.genotype for j in b]
    for ja, jb in zip(a, b):
        assert sorted(ja.inherit or {}) == sorted(jb.inherit or {})
