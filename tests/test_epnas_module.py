"""EPNAS module search over the paper's Table 3 space (``module``) and its morphs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from searchers import get_searcher
from searchers.costs import measure
from searchers.epnas.actions import KIND_INSERT, KIND_KEEP, KIND_REMOVE
from searchers.epnas.module_space import BRANCH_TYPES, ModuleMorpher
from searchers.epnas.policy import EPNASPolicy
from searchers.errors import GenotypeError
from searchers.objectives import synthetic_result
from searchers.spaces import get_space


@pytest.fixture(scope="module")
def space():
    return get_space("module", preset="epnas-digits")


def _branch(**kw):
    return {"type": "conv-none", "src1": 0, "src2": 0, "channels": 8, "kernel": 3,
            "pool": None, "propagate": True, **kw}


def _g(space, *branches):
    return space.validate({"space": "module", "preset": space.preset, "branches": list(branches)})


def test_table_3_choices_are_the_paper_preset() -> None:
    s = get_space("module", preset="epnas-cifar").settings
    assert len(BRANCH_TYPES) == 7 and s["kernels"] == [1, 3, 5, 7] and s["pools"] == [2, 3]
    assert s["channels"] == [8, 12, 16, 24, 32] and s["scale_groups"] == 4


@pytest.mark.parametrize("preset, n", [("epnas-digits", 12), ("epnas-cifar", 3)])
def test_analytic_costs_equal_the_traced_network(preset, n) -> None:
    space = get_space("module", preset=preset)
    rng = np.random.default_rng(1)
    for _ in range(n):
        g = space.sample(rng)
        model = space.build(g)
        expected = measure(model, space.input_shape)
        got = space.costs(g)
        assert {k: got[k] for k in ("params", "madds", "flops", "bytes")} == {
            k: expected[k] for k in ("params", "madds", "flops", "bytes")}
        assert model(torch.zeros(1, *space.input_shape)).shape == (1, 10)


def test_validate_normalises_unused_fields_and_names_bad_ones(space) -> None:
    g = _g(space, _branch(type="maxpool-none", kernel=7, pool=2, src2=-1))
    assert g["branches"][0]["kernel"] is None and g["branches"][0]["src2"] == 0
    for bad, field in [({"channels": 9}, "channels"), ({"src1": 1}, "src1"),
                       ({"type": "conv-conv", "src2": -2}, "src2"), ({"kernel": 4}, "kernel"),
                       ({"type": "none"}, "type")]:
        with pytest.raises(GenotypeError, match=f"branches\\[0\\].{field}"):
            _g(space, _branch(**bad))


def test_the_second_input_may_be_two_cells_back(space) -> None:
    g = _g(space, _branch(type="conv-conv", src2=-1))
    model = space.build(g)  # the reduction cells bring H[c-2] to H[c-1]'s size
    assert any(cell.pre2 is not None for cell in model.cells)
    assert model(torch.zeros(2, *space.input_shape)).shape == (2, 10)


def _decision(kind=KIND_KEEP, place=0, src2=0, src1=0, kind_type=0, channels=0, kernel=0,
              pool=0, propagate=1, scale=None):
    return {"scale": scale or [[1, 1]] * 4,
            "insert": [kind, place, src2, src1, kind_type, channels, kernel, pool, propagate]}


def test_insert_reads_earlier_branches_and_cuts_their_output_as_in_fig_3(space) -> None:
    m = ModuleMorpher(space)
    g = _g(space, _branch(), _branch(src1=1))
    # insert conv-conv at the end: Src1 = branch 1 (value 2), Src2 = branch 0 (value 1)
    out = m.morph(g, _decision(KIND_INSERT, place=2, src1=2, src2=1, kind_type=0))
    new = out["branches"][2]
    assert (new["type"], new["src1"], new["src2"]) == ("conv-conv", 2, 1)
    assert [b["propagate"] for b in out["branches"]] == [False, False, True]
    # Src2 head value p means H[c-2]
    out = m.morph(g, _decision(KIND_INSERT, place=0, src2=0, kind_type=0))
    assert out["branches"][0]["src2"] == -1 and out["branches"][2]["src1"] == 2  # shifted


def test_remove_rewires_readers_and_scale_moves_each_group(space) -> None:
    m = ModuleMorpher(space)
    g = _g(space, _branch(src1=0), _branch(src1=1), _branch(type="avgpool-none", src1=2,
                                                           pool=2))
    out = m.morph(g, _decision(KIND_REMOVE, place=1))
    assert [b["src1"] for b in out["branches"]] == [0, 1]  # read branch 1's input, branch 0
    up = m.morph(g, _decision(scale=[[0, 0]] * 4))  # channels up, widths up everywhere
    assert [b["channels"] for b in up["branches"]] == [12] * 3
    assert up["branches"][0]["kernel"] == 5 and up["branches"][2]["pool"] == 3


def test_policy_morphs_are_always_valid(space) -> None:
    m = ModuleMorpher(space)
    gen = torch.Generator().manual_seed(0)
    policy = EPNASPolicy(m.shape, controller_hidden=16, generator=gen)
    rng = np.random.default_rng(0)
    nets = [space.sample(rng) for _ in range(16)]
    for _ in range(10):
        decisions = policy.sample([m.tokens(g) for g in nets], [m.group_mask(g) for g in nets],
                                  gen)
        nets = [m.morph(g, d) for g, d in zip(nets, decisions)]
        assert all(space.validate(g) == g for g in nets)


def test_module_search_runs_and_resumes(space) -> None:
    kwargs = dict(space=space, preset="epnas-digits", constraints=["params<=5k"], budget=60,
                  seed=2, branches=4)
    straight = get_searcher("epnas", **kwargs)
    assert straight.params["steps"] == 5
    while not straight.done():
        for job in straight.ask(100):
            straight.tell(job, synthetic_result(job, space))
    first = get_searcher("epnas", **kwargs)
    while first.n_told < 27:
        jobs = first.ask(100)
        for job in jobs[: 27 - first.n_told]:
            first.tell(job, synthetic_result(job, space))
    resumed = get_searcher("epnas", **kwargs)
    resumed.load_state_dict(first.state_dict(), history=first.history)
    for job in resumed.pending:
        resumed.tell(job, synthetic_result(job, space))
    while not resumed.done():
        for job in resumed.ask(100):
            resumed.tell(job, synthetic_result(job, space))
    assert [h["genotype"] for h in resumed.history] == [h["genotype"] for h in straight.history]
