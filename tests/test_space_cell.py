"""The ``cell`` space (PNAS): grammar, symmetries, expand, build, exact costs."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from searchers.costs import cross_check, measure
from searchers.errors import GenotypeError, NaswError
from searchers.spaces import get_space, space_of
from searchers.spaces._layerwise_cell_costs import total_costs
from searchers.spaces.cell import OPS, CellSpace, canonical_blocks

N_INPUTS = 2


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits() -> CellSpace:
    return get_space("cell", "pnas-digits")


def cell(*blocks: list, n: int = 1, f: int = 8, preset: str = "pnas-digits") -> dict:
    return {"space": "cell", "preset": preset, "blocks": [list(b) for b in blocks], "N": n,
            "F": f}


def brute_canonical(blocks: list[tuple[int, int, int, int]]) -> tuple:
    """Independent reference: the smallest encoding over every topological relabelling of the
    blocks and both orders of every block's pair (exhaustive, small cells only)."""
    best = None
    for perm in itertools.permutations(range(len(blocks))):
        position = {old: new for new, old in enumerate(perm)}
        if any(i >= N_INPUTS and position[i - N_INPUTS] > position[b]
               for b, block in enumerate(blocks) for i in block[:2]):
            continue

        def relabel(i: int, pos=position) -> int:
            return i if i < N_INPUTS else pos[i - N_INPUTS] + N_INPUTS

        encoded = []
        for old in perm:
            i1, i2, o1, o2 = blocks[old]
            a, b = sorted([(relabel(i1), o1), (relabel(i2), o2)])
            encoded.append((a[0], b[0], a[1], b[1]))
        if best is None or tuple(encoded) < best:
            best = tuple(encoded)
    return best


def random_blocks(rng: np.random.Generator, n: int,
                  n_ops: int = 8) -> list[tuple[int, int, int, int]]:
    return [(int(rng.integers(N_INPUTS + b)), int(rng.integers(N_INPUTS + b)),
             int(rng.integers(n_ops)), int(rng.integers(n_ops))) for b in range(n)]


def as_ints(g: dict) -> list[tuple[int, int, int, int]]:
    return [(b[0], b[1], OPS.index(b[2]), OPS.index(b[3])) for b in g["blocks"]]


def test_presets_follow_the_paper() -> None:
    cifar = get_space("cell", "pnas-cifar")
    assert cifar.input_shape == (3, 32, 32)
    assert (cifar.settings["N"], cifar.settings["F"], cifar.max_blocks) == (2, 24, 5)
    assert OPS == ("sep3x3", "sep5x5", "sep7x7", "conv1x7_7x1", "identity", "avg3x3", "max3x3",
                   "dil3x3")
    assert get_space("cell").preset == "pnas-digits"


def test_exactly_136_unique_one_block_cells(digits: CellSpace) -> None:
    one = digits.enumerate_one_block()
    assert len(one) == 136
    assert len({digits.hash(g) for g in one}) == 136
    assert all(digits.canonical(g) == g for g in one)
    raw = [cell([i1, i2, o1, o2]) for i1 in range(2) for i2 in range(2) for o1 in OPS
           for o2 in OPS]
    assert len(raw) == 256  # PNAS: 256 block structures ...
    assert {digits.hash(g) for g in raw} == {digits.hash(g) for g in one}  # ... 136 unique


def test_block_pairs_are_unordered(digits: CellSpace) -> None:
    a = cell([1, 0, "max3x3", "sep5x5"])
    b = cell([0, 1, "sep5x5", "max3x3"])
    assert digits.canonical(a) == digits.canonical(b) == b
    assert digits.hash(a) == digits.hash(b)
    assert digits.hash(a) != digits.hash(cell([0, 1, "max3x3", "sep5x5"]))


def test_independent_blocks_may_be_reordered(digits: CellSpace) -> None:
    """[A, B, C(reads A)] and [B, A, C(reads A)] are the same cell, relabelled."""
    a, b = [0, 0, "sep3x3", "identity"], [1, 1, "avg3x3", "dil3x3"]
    first = cell(a, b, [2, 1, "sep5x5", "max3x3"])
    second = cell(b, a, [3, 1, "sep5x5", "max3x3"])
    assert digits.canonical(first) == digits.canonical(second)
    assert digits.hash(first) != digits.hash(cell(a, b, [3, 1, "sep5x5", "max3x3"]))


def test_canonical_is_the_exhaustive_lexicographic_minimum(digits: CellSpace) -> None:
    """The greedy canonical form equals the exhaustive reference on random cells of 2..5
    blocks, including cells with repeated blocks (where greedy meets ties)."""
    rng = np.random.default_rng(0)
    cells = [random_blocks(rng, int(rng.integers(2, 6))) for _ in range(200)]
    cells += [random_blocks(rng, int(rng.integers(3, 6)), n_ops=1) for _ in range(200)]
    cells += [[(0, 1, 0, 0), (0, 1, 0, 0), (2, 3, 4, 4)], [(0, 0, 1, 1)] * 3 + [(2, 4, 2, 2)]]
    for blocks in cells:
        canon = canonical_blocks(blocks)
        assert canon == brute_canonical(blocks)
        assert canonical_blocks(list(canon)) == canon
        for perm_blocks in _relabellings(blocks, rng, 3):
            assert canonical_blocks(perm_blocks) == canon


def _relabellings(blocks, rng, count):
    """A few random topological relabellings with random pair swaps."""
    n = len(blocks)
    out = []
    for _ in range(count):
        remaining, order = list(range(n)), []
        while remaining:
            ready = [b for b in remaining if all(i < N_INPUTS or i - N_INPUTS in order
                                                  for i in blocks[b][:2])]
            pick = ready[int(rng.integers(len(ready)))]
            order.append(pick)
            remaining.remove(pick)
        position = {old: new for new, old in enumerate(order)}
        new = []
        for old in order:
            i1, i2, o1, o2 = blocks[old]
            i1, i2 = (i if i < N_INPUTS else position[i - N_INPUTS] + N_INPUTS for i in (i1, i2))
            new.append((i2, i1, o2, o1) if rng.random() < 0.5 else (i1, i2, o1, o2))
        out.append(new)
    return out


def test_expand_one_block_cells_gives_every_two_block_cell_once(digits: CellSpace) -> None:
    """Closed form: a second block that does not read block 0 makes an unordered pair of
    one-block structures (136 * 137 / 2); one that reads it (164 of the 300 unordered
    (input, op) pairs over 3 inputs) makes a distinct cell per parent (136 * 164)."""
    one = digits.enumerate_one_block()
    two = digits.expand(one)
    assert len(two) == 136 * 137 // 2 + 136 * (300 - 136) == 31620
    assert len({json.dumps(g["blocks"]) for g in two}) == len(two)
    assert all(len(g["blocks"]) == 2 for g in two)
    assert all(digits.canonical(g) == g for g in two[::7])
    pairs = [(i, o) for i in range(3) for o in range(8)]  # inputs H^c-2, H^c-1, block 0
    some = one[::9]
    reference = {brute_canonical(as_ints(parent) + [(a[0], b[0], a[1], b[1])])
                 for parent in some for k, a in enumerate(pairs) for b in pairs[k:]}
    assert {tuple(map(tuple, as_ints(g))) for g in digits.expand(some)} == reference


def test_expand_deeper_cells_unique_canonical_and_complete(digits: CellSpace) -> None:
    rng = np.random.default_rng(1)
    parents = [digits.canonical(cell(*[[b[0], b[1], OPS[b[2]], OPS[b[3]]]
                                       for b in random_blocks(rng, 3)])) for _ in range(6)]
    # repeated blocks, read and unread: the slow path of expand
    parents += [cell([0, 1, "sep3x3", "sep3x3"], [0, 1, "sep3x3", "sep3x3"], [2, 2, "identity",
                                                                          "identity"]),
                cell([1, 1, "max3x3", "max3x3"], [1, 1, "max3x3", "max3x3"], [0, 1, "dil3x3",
                                                                          "avg3x3"])]
    children = digits.expand(parents)
    reference = set()
    for parent in parents:
        pairs = [(i, o) for i in range(N_INPUTS + 3) for o in range(8)]
        for k, a in enumerate(pairs):
            for b in pairs[k:]:
                reference.add(brute_canonical(as_ints(parent) + [(a[0], b[0], a[1], b[1])]))
    assert len(children) == len(reference)
    assert {tuple(map(tuple, as_ints(g))) for g in children} == reference
    assert all(digits.canonical(g) == g for g in children)


def test_expand_keeps_n_and_f_and_refuses_full_cells(digits: CellSpace) -> None:
    children = digits.expand([cell([0, 1, "sep3x3", "identity"], n=2, f=12)])
    assert len(children) == 24 * 25 // 2
    assert {(g["N"], g["F"]) for g in children} == {(2, 12)}
    full = digits.sample(np.random.default_rng(0))
    while len(full["blocks"]) < 5:
        full = digits.expand([full])[0]
    with pytest.raises(GenotypeError) as info:
        digits.expand([full])
    assert info.value.field == "cells[0].blocks"


def test_hundred_sampled_digits_cells_build_and_run(digits: CellSpace) -> None:
    rng = np.random.default_rng(2)
    torch.manual_seed(0)
    for _ in range(100):
        g = digits.sample(rng)
        assert digits.canonical(g) == g
        out = digits.build(g)(torch.randn(2, *digits.input_shape))
        assert out.shape == (2, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("preset", ["pnas-digits", "pnas-cifar"])
def test_analytic_costs_equal_traced_costs(preset: str) -> None:
    space = get_space("cell", preset)
    rng = np.random.default_rng(3)
    for _ in range(20 if preset == "pnas-digits" else 4):
        g = space.sample(rng)
        assert space.costs(g) == measure(space.build(g), space.input_shape)


def test_every_operator_in_normal_and_reduction_position(digits: CellSpace) -> None:
    """Each op reads a cell input (stride 2 in reduction cells) and a block (stride 1)."""
    for op in OPS:
        g = cell([0, 1, op, op], [2, 1, op, "identity"], [2, 3, "identity", op], n=1, f=4)
        model = digits.build(g, (3, 9, 9), 5)
        assert model(torch.randn(1, 3, 9, 9)).shape == (1, 5)
        assert digits.costs(g, (3, 9, 9), 5) == measure(model, (3, 9, 9))


def test_network_stacks_3n_cells_with_reductions_at_n_and_2n() -> None:
    """The released code: 3N cells, reductions at calc_reduction_layers(3N, 2) = [N, 2N]."""
    space = get_space("cell", "pnas-cifar")
    g = cell([0, 1, "sep3x3", "max3x3"], [2, 0, "identity", "sep5x5"], n=2, f=24,
             preset="pnas-cifar")
    net = space.network(g)
    kinds = [c["kind"] for c in net["cells"]]
    assert kinds == ["normal"] * 2 + ["reduce", "normal", "reduce", "normal"]
    assert [c["width"] for c in net["cells"]] == [24] * 2 + [48] * 2 + [96] * 2
    assert [c["out_hw"] for c in net["cells"]] == [(32, 32)] * 2 + [(16, 16)] * 2 + [(8, 8)] * 2
    assert net["out"] == (2 * 96, 8, 8)  # both blocks are concatenated
    assert net["aux_cell"] == 3  # the last cell before the second reduction
    inputs = [[inp["pre"] for inp in c["inputs"]] for c in net["cells"]]
    assert inputs[0] == [None, "conv1x1"]  # the first cell reads the stem output as is
    assert inputs[1] == ["conv1x1", "conv1x1"]
    assert inputs[3] == ["factorized", "conv1x1"]  # H^c-2 is twice the size after reducing
    assert net["cells"][0]["inputs"][0]["channels"] == 72  # 3F from the stem
    model = space.build(g)
    assert len(model.cells) == 6 and model.stem[0].out_channels == 72
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert len(space.network({**g, "N": 3})["cells"]) == 9
    assert [c["kind"] for c in space.network({**g, "N": 1})["cells"]] == ["normal", "reduce",
                                                                           "reduce"]


def test_imagenet_stem_is_a_stride_2_conv_and_two_stride_2_stem_cells() -> None:
    space = get_space("cell", "pnas-imagenet-mobile")
    assert (space.input_shape, space.num_classes) == ((3, 224, 224), 1000)
    assert (space.settings["N"], space.settings["F"]) == (3, 54)
    g = cell([0, 1, "sep3x3", "max3x3"], [2, 0, "identity", "sep5x5"], n=3, f=54,
             preset="pnas-imagenet-mobile")
    net = space.network(g)
    assert net["stem"]["c_out"] == 32 and net["stem"]["out_hw"] == (111, 111)  # VALID, stride 2
    cells = net["cells"]
    assert [c["kind"] for c in cells] == (["stem"] * 2 + ["normal"] * 3
                                          + ["reduce", "normal", "normal"] * 2)
    assert [c["width"] for c in cells] == [13, 27] + [54] * 3 + [108] * 3 + [216] * 3
    assert [c["out_hw"][0] for c in cells] == [56, 28] + [28] * 3 + [14] * 3 + [7] * 3
    assert net["aux_cell"] == 7
    assert [inp["pre"] for inp in cells[1]["inputs"]] == ["factorized", "conv1x1"]
    large = get_space("cell", "pnas-imagenet-large")
    assert (large.input_shape, large.settings["N"], large.settings["F"]) == ((3, 331, 331), 4,
                                                                            216)
    assert large.network({**g, "preset": "pnas-imagenet-large", "N": 4, "F": 216})["stem"][
        "c_out"] == 96
    small = space.build(g, (3, 40, 40), 7)
    assert small(torch.randn(2, 3, 40, 40)).shape == (2, 7)
    assert space.costs(g, (3, 40, 40), 7) == measure(small, (3, 40, 40))
    with pytest.raises(GenotypeError) as info:
        space.network({**g, "F": 3})
    assert info.value.field == "genotype.F"


def test_cell_output_concatenates_all_blocks_or_only_unused_ones(digits: CellSpace) -> None:
    g = cell([0, 1, "sep3x3", "max3x3"], [1, 1, "identity", "avg3x3"], [2, 0, "dil3x3", "sep7x7"])
    assert digits.network(g)["cells"][0]["out"][0] == 3 * 8
    assert sorted(digits.graph(g).predecessors("out")) == ["b0", "b1", "b2"]
    unused = get_space("cell", "pnas-digits", cell_output="unused")
    assert unused.network(g)["cells"][0]["out"][0] == 2 * 8  # blocks 1 and 2 are unused
    assert sorted(unused.graph(g).predecessors("out")) == ["b1", "b2"]
    assert unused.costs(g) == measure(unused.build(g), unused.input_shape)
    with pytest.raises(NaswError) as info:
        get_space("cell", "pnas-digits", cell_output="some")
    assert info.value.field == "space.cell_output"


def test_unread_cell_inputs_get_no_preprocessing(digits: CellSpace) -> None:
    model = digits.build(cell([1, 1, "sep3x3", "max3x3"]))
    assert set(model.cells[1].pre) == {"1"}


def test_json_round_trip_and_hash(digits: CellSpace) -> None:
    rng = np.random.default_rng(4)
    for _ in range(50):
        g = digits.sample(rng)
        loaded = json.loads(json.dumps(g))
        assert digits.canonical(loaded) == g
        assert space_of(loaded).hash(loaded) == digits.hash(g)
    g = digits.sample(rng)
    assert digits.hash(g) != digits.hash({**g, "F": g["F"] + 1})


def test_tokens_features_and_vocab(digits: CellSpace) -> None:
    g = cell([1, 0, "max3x3", "sep5x5"], [2, 2, "identity", "dil3x3"])
    assert digits.tokens(g) == [[0, 1, 1, 6], [2, 4, 2, 7]]
    assert digits.token_vocab() == (6, 8)
    features = digits.features(g)
    assert features[:3] == ["blocks=2", "N=1", "F=8"]
    assert "B0:in=prev2:op=sep5x5" in features and "B1:blk0.identity+blk0.dil3x3" in features


@pytest.mark.parametrize(("mutate", "field", "allowed"), [
    (lambda g: g["blocks"][2].__setitem__(1, 5), "genotype.blocks[2][1]", "2..3 (blocks 0..1)"),
    (lambda g: g["blocks"][0].__setitem__(0, 2), "genotype.blocks[0][0]", "0 (H^c-2), 1 (H^c-1)"),
    (lambda g: g["blocks"][1].__setitem__(2, "conv3x3"), "genotype.blocks[1][2]", "sep3x3"),
    (lambda g: g["blocks"][1].__setitem__(0, True), "genotype.blocks[1][0]", "H^c-1"),
    (lambda g: g["blocks"].__setitem__(1, [0, 1]), "genotype.blocks[1]", "[in1, in2, op1, op2]"),
    (lambda g: g.update(blocks=[]), "genotype.blocks", "1..5 blocks"),
    (lambda g: g.update(N=0), "genotype.N", "integers 1..8"),
    (lambda g: g.update(F=2.5), "genotype.F", "integers 1..512"),
    (lambda g: g.update(space="layerwise"), "genotype.space", "cell"),
    (lambda g: g.update(reduce=[]), "genotype.reduce", "blocks"),
])
def test_bad_genotypes_name_the_field_and_allowed_values(digits: CellSpace, mutate, field,
                                                         allowed) -> None:
    g = cell([0, 1, "sep3x3", "max3x3"], [2, 0, "identity", "sep5x5"],
             [2, 3, "avg3x3", "dil3x3"])
    mutate(g)
    with pytest.raises(GenotypeError) as info:
        digits.validate(g)
    assert info.value.field == field
    assert allowed in str(info.value)


def test_graph_nodes_carry_labels_and_network_costs(digits: CellSpace) -> None:
    g = cell([0, 1, "sep3x3", "max3x3"], [2, 0, "identity", "sep5x5"])
    graph = digits.graph(g)
    assert {"in0", "in1", "b0", "b1", "b0.op1", "b1.op2", "out"} <= set(graph)
    assert graph.nodes["b0.op1"]["label"] == "sep3x3"
    assert graph.has_edge("in0", "b1.op1") and graph.has_edge("b0", "b1.op2")  # pair sorted
    total = digits.costs(g)
    plan = dict(digits.plan(g))
    outside = total_costs(plan["stem"] + plan["head"])
    for metric in ("params", "madds", "flops", "bytes"):
        inside = sum(graph.nodes[n]["costs"][metric] for n in graph)
        assert inside + outside[metric] == total[metric]


@pytest.mark.parametrize("preset, overrides", [("pnas-digits", {}), ("pnas-cifar", {}),
                                               ("pnas-imagenet-mobile", {}),
                                               ("pnas-digits", {"cell_output": "unused"})])
def test_costs_assembled_from_terms_equal_each_plans_own_sum(preset: str,
                                                            overrides: dict) -> None:
    """costs() reuses per-op-slot terms learned from other genotypes' plans; it must equal
    summing the genotype's own plan, for sampled cells, other N / F, a beam's children and
    another input shape (the sum is reset once in between, as its bound would do)."""
    space = CellSpace(preset, **overrides)
    rng = np.random.default_rng(11)
    genotypes = [space.sample(rng) for _ in range(150)]
    genotypes += [{**g, "N": int(rng.integers(1, 4)), "F": int(rng.integers(8, 33))}
                  for g in genotypes[:40]]
    genotypes += space.expand([g for g in genotypes if len(g["blocks"]) == 3][:4])[::7]

    def own_sum(g: dict, *args: object) -> dict:
        return total_costs(r for _, records in space.plan(g, *args) for r in records)

    for g in genotypes:
        assert space.costs(g) == own_sum(g)
    space._cost_terms.clear()
    for g in genotypes[:20]:
        assert space.costs(g, (3, 16, 16), 7) == own_sum(g, (3, 16, 16), 7)
        assert space.costs(g) == own_sum(g)


def test_costs_agree_with_fvcore_an_independent_counter() -> None:
    """params and conv+linear MAdds also match fvcore (the tracer's rules for the rest)."""
    space = get_space("cell", "pnas-digits")
    rng = np.random.default_rng(6)
    for _ in range(3):
        report = cross_check(space, space.sample(rng))
        assert report["mismatches"] == []
        assert report["fvcore"]["madds"] == report["space"]["madds"] > 0


def test_numpy_integers_are_accepted_and_normalised(digits: CellSpace) -> None:
    g = cell([np.int64(1), np.int64(0), "sep3x3", "identity"], n=np.int64(2), f=np.int64(8))
    out = digits.canonical(g)
    assert out == cell([0, 1, "identity", "sep3x3"], n=2, f=8)
    assert json.loads(json.dumps(out)) == out
