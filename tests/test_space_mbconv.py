"""The PONAS ``mbconv`` space: grammar, modules, cost tables, weight-cropping names."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from searchers.costs import fvcore_counts, measure
from searchers.errors import GenotypeError, UnknownName
from searchers.spaces import get_space, space_of
from searchers.spaces.mbconv import (
    NUM_CHOICES,
    MBConvSpace,
    choice_index,
    choice_info,
    largest_choice,
)

SMALL_PRESETS = ("ponas-digits", "ponas-cifar")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def forward(space: MBConvSpace, genotype: dict, batch: int = 2) -> torch.Tensor:
    model = space.build(genotype).eval()
    with torch.no_grad():
        return model(torch.randn(batch, *space.input_shape))


def test_choice_index_order_is_kernel_then_expansion_then_se() -> None:
    assert NUM_CHOICES == 12
    assert choice_info(0) == {"kernel": 3, "expansion": 3, "se": False}
    assert choice_info(1) == {"kernel": 3, "expansion": 3, "se": True}
    assert choice_info(2) == {"kernel": 3, "expansion": 6, "se": False}
    assert choice_info(4) == {"kernel": 5, "expansion": 3, "se": False}
    assert choice_info(11) == {"kernel": 7, "expansion": 6, "se": True}
    assert largest_choice() == 11 == MBConvSpace.largest_choice()
    for index in range(NUM_CHOICES):
        info = choice_info(index)
        assert choice_index(info["kernel"], info["expansion"], info["se"]) == index
    with pytest.raises(ValueError):
        choice_info(12)


def test_default_preset_is_the_small_digits_one() -> None:
    space = get_space("mbconv")
    assert space.preset == "ponas-digits" and space.input_shape == (1, 8, 8)
    assert space.num_positions == 6


def test_imagenet_preset_is_table_1_with_19_layers() -> None:
    space = get_space("mbconv", preset="ponas-imagenet")
    assert space.num_positions == 19
    assert space.input_shape == (3, 224, 224) and space.num_classes == 1000
    assert NUM_CHOICES ** space.num_positions == 12 ** 19
    widths = [(info["c_out"], info["stride"])
              for info in (space._position_info(i) for i in range(19))]
    assert widths == ([(32, 2), (32, 1), (40, 2)] + [(40, 1)] * 3 + [(80, 2)] + [(96, 1)] * 7
                      + [(192, 2)] + [(320, 1)] * 4)


@pytest.mark.parametrize("preset", SMALL_PRESETS)
def test_100_sampled_genotypes_build_and_run(preset: str) -> None:
    space = get_space("mbconv", preset=preset)
    rng = np.random.default_rng(1)
    for _ in range(100):
        out = forward(space, space.sample(rng), batch=1)
        assert out.shape == (1, space.num_classes)
        assert torch.isfinite(out).all()


def test_imagenet_preset_forward_at_batch_1() -> None:
    space = get_space("mbconv", preset="ponas-imagenet")
    genotype = space.sample(np.random.default_rng(0))
    model = space.build(genotype).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000)
    assert space.costs(genotype) == measure(model, (3, 224, 224))


@pytest.mark.parametrize("preset", SMALL_PRESETS)
def test_lut_costs_equal_traced_costs(preset: str) -> None:
    space = get_space("mbconv", preset=preset)
    rng = np.random.default_rng(2)
    genotypes = [space.sample(rng) for _ in range(40 if preset.endswith("digits") else 10)] + [space.largest()]
    genotypes.append(space.validate({"space": "mbconv", "preset": preset,
                                     "choices": [0] * space.num_positions}))
    for genotype in genotypes:
        assert space.costs(genotype) == measure(space.build(genotype), space.input_shape)


def test_lut_costs_follow_input_shape_and_classes_overrides() -> None:
    space = get_space("mbconv", preset="ponas-digits")
    genotype = space.sample(np.random.default_rng(3))
    model = space.build(genotype, input_shape=(3, 16, 12), num_classes=7)
    assert model(torch.zeros(1, 3, 16, 12)).shape == (1, 7)
    assert space.costs(genotype, (3, 16, 12), 7) == measure(model, (3, 16, 12))
    assert space.costs(genotype, (3, 16, 12), 7) != space.costs(genotype)


def test_cost_tables_sum_to_costs() -> None:
    space = get_space("mbconv", preset="ponas-cifar")
    base, tables = space.cost_tables()
    assert set(tables) == {"params", "madds", "flops", "bytes"} == set(base)
    for table in tables.values():
        assert table.shape == (space.num_positions, NUM_CHOICES)
    rng = np.random.default_rng(4)
    for _ in range(20):
        genotype = space.sample(rng)
        picks = genotype["choices"]
        costs = space.costs(genotype)
        for metric, table in tables.items():
            assert base[metric] + sum(table[i, c] for i, c in enumerate(picks)) == costs[metric]
        assert costs["intensity"] == costs["flops"] / costs["bytes"]
    # the largest block costs the most in every layer, k3 e3 without SE the least
    assert (tables["params"].argmax(axis=1) == largest_choice()).all()
    assert (tables["madds"].argmin(axis=1) == 0).all()


@pytest.mark.parametrize("preset", SMALL_PRESETS)
def test_params_and_madds_agree_with_fvcore(preset: str) -> None:
    space = get_space("mbconv", preset=preset)
    rng = np.random.default_rng(5)
    for _ in range(3):
        genotype = space.sample(rng)
        theirs = fvcore_counts(space.build(genotype), space.input_shape)
        ours = space.costs(genotype)
        assert ours["params"] == theirs["params"]
        assert ours["madds"] == theirs["madds"]


def test_canonical_and_hash_survive_a_json_round_trip() -> None:
    space = get_space("mbconv", preset="ponas-digits")
    rng = np.random.default_rng(6)
    hashes = set()
    for _ in range(30):
        genotype = space.sample(rng)
        loaded = json.loads(json.dumps(genotype))
        assert space.canonical(loaded) == space.canonical(genotype) == genotype
        assert space.hash(loaded) == space.hash(genotype)
        assert space_of(loaded).hash(loaded) == space.hash(genotype)
        hashes.add(space.hash(genotype))
    assert len(hashes) == 30
    numpy_ints = {**genotype, "choices": [np.int64(c) for c in genotype["choices"]]}
    assert space.hash(numpy_ints) == space.hash(genotype)


@pytest.mark.parametrize("mutate, field, allowed", [
    (lambda g: g["choices"].__setitem__(3, 12), "genotype.choices[3]", "integers 0..11"),
    (lambda g: g["choices"].__setitem__(0, -1), "genotype.choices[0]", "integers 0..11"),
    (lambda g: g["choices"].__setitem__(2, True), "genotype.choices[2]", "integers 0..11"),
    (lambda g: g["choices"].__setitem__(1, "5"), "genotype.choices[1]", "integers 0..11"),
    (lambda g: g["choices"].pop(), "genotype.choices", "exactly 6 entries"),
    (lambda g: g.__setitem__("choices", "0,1"), "genotype.choices", "a list of 6"),
    (lambda g: g.__setitem__("space", "rcas"), "genotype.space", "mbconv"),
    (lambda g: g.__setitem__("preset", "ponas-cifar"), "genotype.preset", "ponas-digits"),
    (lambda g: g.__setitem__("blocks", [1]), "genotype.blocks", "choices"),
])
def test_validate_names_the_bad_field(mutate, field: str, allowed: str) -> None:
    space = get_space("mbconv", preset="ponas-digits")
    genotype = space.sample(np.random.default_rng(7))
    mutate(genotype)
    with pytest.raises(GenotypeError) as info:
        space.validate(genotype)
    assert info.value.field == field
    assert allowed in str(info.value)


def test_unknown_preset_names_the_allowed_presets() -> None:
    with pytest.raises(UnknownName) as info:
        get_space("mbconv", preset="ponas-mnist")
    message = str(info.value)
    assert "space.preset" in message
    for preset in ("ponas-cifar", "ponas-digits", "ponas-imagenet"):
        assert preset in message


def test_features_are_one_token_per_layer() -> None:
    space = get_space("mbconv", preset="ponas-digits")
    genotype = {"space": "mbconv", "preset": "ponas-digits", "choices": [0, 1, 6, 11, 4, 9]}
    assert space.features(genotype) == ["L0:k3e3", "L1:k3e3se", "L2:k5e6", "L3:k7e6se",
                                        "L4:k5e3", "L5:k7e3se"]


def test_graph_has_labelled_nodes_skip_edges_and_costs_that_add_up() -> None:
    space = get_space("mbconv", preset="ponas-digits")
    genotype = space.sample(np.random.default_rng(8))
    graph = space.graph(genotype)
    kinds = {data["kind"] for _, _, data in graph.edges(data=True)}
    assert kinds == {"seq", "skip"}
    # residual layers of ponas-digits: 16->16, 24->24, 32->32 at stride 1 (layers 1, 3, 5)
    skips = sorted(v for _, v, data in graph.edges(data=True) if data["kind"] == "skip")
    assert skips == ["L1.add", "L3.add", "L5.add"]
    for _, data in graph.nodes(data=True):
        assert data["label"] and "params" in data["costs"]
    costs = space.costs(genotype)
    for metric in ("params", "madds", "flops", "bytes"):
        assert sum(d["costs"][metric] for _, d in graph.nodes(data=True)) == costs[metric]


def test_largest_block_state_dict_crops_onto_every_choice_by_name() -> None:
    """PONAS weight cropping: same names, smaller shapes = leading channel slice + centre crop."""
    space = get_space("mbconv", preset="ponas-digits")
    meta = space.build(space.largest()).state_dict()
    for choice in range(NUM_CHOICES):
        small = space.build(space.validate({"space": "mbconv", "preset": "ponas-digits",
                                            "choices": [choice] * space.num_positions}))
        for name, tensor in small.state_dict().items():
            assert name in meta, name
            big = meta[name]
            assert tensor.dim() == big.dim(), name
            assert all(s <= b for s, b in zip(tensor.shape, big.shape)), name
            if tensor.dim() == 4:  # kernels differ by an even amount: a centred crop exists
                assert all((b - s) % 2 == 0 for s, b in zip(tensor.shape[2:], big.shape[2:]))
        names = [n for n in small.state_dict() if n.startswith("layers.0.")]
        info = choice_info(choice)
        assert "layers.0.expand.conv.weight" in names and "layers.0.dw.conv.weight" in names
        assert "layers.0.project.bn.weight" in names
        assert ("layers.0.se.reduce.weight" in names) == info["se"]


def test_inherit_weights_crops_the_meta_network_onto_a_candidate() -> None:
    """End to end with the trainer's ``inherit_weights``: nothing missing, exact crops."""
    from searchers.training import inherit_weights

    space = get_space("mbconv", preset="ponas-digits")
    meta = space.build(space.largest()).state_dict()
    candidate = space.build(space.validate({"space": "mbconv", "preset": "ponas-digits",
                                            "choices": [choice_index(3, 3, True)] * 6}))
    report = inherit_weights(candidate, meta)
    assert report.missing == []
    own = candidate.state_dict()
    expanded = 16 * 3  # layer 1: 16 -> 16, expansion 3
    assert torch.equal(own["layers.1.dw.conv.weight"],
                       meta["layers.1.dw.conv.weight"][:expanded, :, 2:5, 2:5])
    assert torch.equal(own["layers.1.expand.conv.weight"],
                       meta["layers.1.expand.conv.weight"][:expanded])
    assert torch.equal(own["layers.1.se.reduce.weight"],
                       meta["layers.1.se.reduce.weight"][:, :expanded])
    assert torch.equal(own["layers.1.project.conv.weight"],
                       meta["layers.1.project.conv.weight"][:, :expanded])
    assert torch.equal(own["head.classifier.weight"], meta["head.classifier.weight"])


def test_bad_input_shape_or_class_count_is_named() -> None:
    from searchers.errors import NaswError

    space = get_space("mbconv", preset="ponas-digits")
    genotype = space.sample(np.random.default_rng(9))
    with pytest.raises(NaswError, match="input_shape"):
        space.costs(genotype, input_shape=(8, 8))
    with pytest.raises(NaswError, match="num_classes"):
        space.costs(genotype, num_classes=-3)
    with pytest.raises(GenotypeError, match="choice"):
        choice_info(12)
