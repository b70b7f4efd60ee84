"""The RCAS ``rcas`` space: block types, empty positions, skeleton, cost tables, grammar."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from searchers.costs import fvcore_counts, measure
from searchers.errors import GenotypeError, UnknownName
from searchers.spaces import get_space, space_of
from searchers.spaces.rcas import BLOCK_TYPES, EMPTY, NUM_OPTIONS, RCASSpace, block_info

SMALL_PRESETS = ("rcas-digits", "rcas-cifar100")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def with_blocks(space: RCASSpace, blocks: list[int]) -> dict:
    return space.validate({"space": "rcas", "preset": space.preset, "blocks": blocks})


def test_six_block_types_vary_expansion_and_groups() -> None:
    assert NUM_OPTIONS == 7 and sorted(BLOCK_TYPES) == [1, 2, 3, 4, 5, 6]
    assert block_info(5) == {"expansion": 6, "groups_expand": 1, "groups_project": 1}
    settings = {tuple(info.values()) for info in BLOCK_TYPES.values()}
    assert len(settings) == 6
    with pytest.raises(ValueError):
        block_info(0)


def test_presets_have_the_papers_36_positions() -> None:
    assert get_space("rcas", preset="rcas-cifar100").num_positions == 36
    imagenet = get_space("rcas", preset="rcas-imagenet")
    assert imagenet.num_positions == 36
    assert imagenet.input_shape == (3, 224, 224) and imagenet.num_classes == 1000
    assert get_space("rcas").preset == "rcas-digits"
    assert get_space("rcas", preset="rcas-cifar100").num_classes == 100


def test_mobilenet_v2_filling_reproduces_mobilenet_v2_exactly() -> None:
    """The skeleton is MobileNetV2's: type-5 blocks in its repeat pattern give its counts."""
    space = get_space("rcas", preset="rcas-imagenet")
    costs = space.costs(space.mobilenet_v2())
    assert costs["params"] == 3_504_872  # torchvision mobilenet_v2
    assert costs["madds"] == 300_774_272
    assert sum(b == 5 for b in space.mobilenet_v2()["blocks"]) == 10  # 17 blocks - 7 fixed


@pytest.mark.parametrize("preset", SMALL_PRESETS)
def test_100_sampled_genotypes_build_and_run(preset: str) -> None:
    space = get_space("rcas", preset=preset)
    rng = np.random.default_rng(1)
    for _ in range(100):
        model = space.build(space.sample(rng)).eval()
        with torch.no_grad():
            out = model(torch.randn(1, *space.input_shape))
        assert out.shape == (1, space.num_classes) and torch.isfinite(out).all()


def test_imagenet_preset_forward_at_batch_1_and_exact_costs() -> None:
    space = get_space("rcas", preset="rcas-imagenet")
    genotype = space.sample(np.random.default_rng(0))
    model = space.build(genotype).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
    assert space.costs(genotype) == measure(model, (3, 224, 224))


@pytest.mark.parametrize("preset", SMALL_PRESETS)
def test_lut_costs_equal_traced_costs(preset: str) -> None:
    space = get_space("rcas", preset=preset)
    rng = np.random.default_rng(2)
    n = space.num_positions
    genotypes = [space.sample(rng) for _ in range(40 if preset.endswith("digits") else 10)]
    genotypes += [with_blocks(space, [EMPTY] * n), with_blocks(space, [6] * n),
                  with_blocks(space, [int(b) if rng.random() < 0.3 else EMPTY
                                      for b in rng.integers(1, 7, size=n)])]
    for genotype in genotypes:
        assert space.costs(genotype) == measure(space.build(genotype), space.input_shape)


def test_cost_tables_have_an_empty_column_and_sum_to_costs() -> None:
    space = get_space("rcas", preset="rcas-cifar100")
    base, tables = space.cost_tables()
    assert set(tables) == {"params", "madds", "flops", "bytes"} == set(base)
    for table in tables.values():
        assert table.shape == (36, NUM_OPTIONS)
        assert (table[:, EMPTY] == 0).all() and (table[:, 1:] > 0).all()
    assert base["params"] == space.costs(with_blocks(space, [EMPTY] * 36))["params"]
    rng = np.random.default_rng(4)
    for _ in range(20):
        genotype = space.sample(rng)
        costs = space.costs(genotype)
        for metric, table in tables.items():
            assert base[metric] + sum(table[i, b] for i, b in
                                      enumerate(genotype["blocks"])) == costs[metric]
    # group convolutions make a block cheaper in parameters at the same expansion
    assert (tables["params"][:, 4] < tables["params"][:, 5]).all()
    assert (tables["params"][:, 6] < tables["params"][:, 4]).all()


def test_costs_follow_shape_and_class_overrides() -> None:
    space = get_space("rcas", preset="rcas-digits")
    genotype = space.sample(np.random.default_rng(3))
    model = space.build(genotype, input_shape=(3, 12, 12), num_classes=4)
    assert space.costs(genotype, (3, 12, 12), 4) == measure(model, (3, 12, 12))


@pytest.mark.parametrize("preset", SMALL_PRESETS)
def test_params_and_madds_agree_with_fvcore(preset: str) -> None:
    space = get_space("rcas", preset=preset)
    rng = np.random.default_rng(5)
    for _ in range(3):
        genotype = space.sample(rng)
        theirs = fvcore_counts(space.build(genotype), space.input_shape)
        ours = space.costs(genotype)
        assert (ours["params"], ours["madds"]) == (theirs["params"], theirs["madds"])


def test_empty_positions_are_identities_so_gaps_do_not_change_the_network() -> None:
    space = get_space("rcas", preset="rcas-digits")  # stages of 2, 3, 3 positions
    gappy = with_blocks(space, [0, 4, 2, 0, 6, 0, 0, 1])
    packed = space.canonical(gappy)
    assert packed["blocks"] == [4, 0, 2, 6, 0, 1, 0, 0]
    assert space.hash(gappy) == space.hash(packed)
    assert space.costs(gappy) == space.costs(packed)
    a, b = space.build(gappy).eval(), space.build(packed).eval()
    for pa, pb in zip(a.parameters(), b.parameters()):
        pb.data.copy_(pa.data)
    x = torch.randn(3, *space.input_shape)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    # a different order within a stage is a different network
    assert space.hash(with_blocks(space, [4, 0, 6, 2, 0, 1, 0, 0])) != space.hash(packed)


def test_all_empty_genotype_is_the_base_network() -> None:
    space = get_space("rcas", preset="rcas-digits")
    base, _ = space.cost_tables()
    empty = with_blocks(space, [EMPTY] * space.num_positions)
    model = space.build(empty)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    traced = measure(model, (1, 8, 8))
    assert {m: traced[m] for m in base} == base


def test_canonical_and_hash_survive_a_json_round_trip() -> None:
    space = get_space("rcas", preset="rcas-cifar100")
    rng = np.random.default_rng(6)
    for _ in range(30):
        genotype = space.sample(rng)
        loaded = json.loads(json.dumps(genotype))
        assert space.canonical(loaded) == space.canonical(genotype)
        assert space.canonical(space.canonical(genotype)) == space.canonical(genotype)
        assert space.hash(loaded) == space.hash(genotype) == space_of(loaded).hash(genotype)


@pytest.mark.parametrize("mutate, field, allowed", [
    (lambda g: g["blocks"].__setitem__(3, 7), "genotype.blocks[3]", "0 = empty"),
    (lambda g: g["blocks"].__setitem__(5, 2.0), "genotype.blocks[5]", "integers 0..6"),
    (lambda g: g["blocks"].append(1), "genotype.blocks", "exactly 8 entries"),
    (lambda g: g.pop("blocks"), "genotype.blocks", "a list of 8"),
    (lambda g: g.__setitem__("space", "mbconv"), "genotype.space", "rcas"),
    (lambda g: g.__setitem__("preset", "rcas-imagenet"), "genotype.preset", "rcas-digits"),
])
def test_validate_names_the_bad_field(mutate, field: str, allowed: str) -> None:
    space = get_space("rcas", preset="rcas-digits")
    genotype = space.sample(np.random.default_rng(7))
    mutate(genotype)
    with pytest.raises(GenotypeError) as info:
        space.validate(genotype)
    assert info.value.field == field
    assert allowed in str(info.value)


def test_unknown_preset_names_the_allowed_presets() -> None:
    with pytest.raises(UnknownName) as info:
        get_space("rcas", preset="rcas-cifar10")
    for preset in ("rcas-cifar100", "rcas-digits", "rcas-imagenet"):
        assert preset in str(info.value)


def test_features_and_graph() -> None:
    space = get_space("rcas", preset="rcas-digits")
    genotype = with_blocks(space, [5, 0, 1, 2, 0, 3, 4, 6])
    assert space.features(genotype) == ["P0:b5", "P1:empty", "P2:b1", "P3:b2", "P4:empty",
                                        "P5:b3", "P6:b4", "P7:b6"]
    graph = space.graph(genotype)
    assert "P1" not in graph and "P4" not in graph  # identities have no node
    order = [n for n in graph.nodes if not n.endswith(".add")]
    assert order == ["stem", "S0", "P0", "S1", "P2", "P3", "S2", "P5", "P6", "P7", "head"]
    skips = sorted(v for _, v, d in graph.edges(data=True) if d["kind"] == "skip")
    assert skips == ["P0.add", "P2.add", "P3.add", "P5.add", "P6.add", "P7.add"]
    costs = space.costs(genotype)
    for metric in ("params", "madds", "flops", "bytes"):
        assert sum(d["costs"][metric] for _, d in graph.nodes(data=True)) == costs[metric]
    assert graph.nodes["P7"]["label"].startswith("P7 b6(t6 ge4 gp4)")
