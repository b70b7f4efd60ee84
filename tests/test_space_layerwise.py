"""The ``layerwise`` space (EPNAS layer-by-layer): grammar, build, exact costs, morph actions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from searchers.costs import cross_check, measure
from searchers.errors import GenotypeError
from searchers.spaces import get_space, space_of
from searchers.spaces.layerwise import (
    INSERT_KINDS,
    SCALE_STEPS,
    Action,
    LayerwiseSpace,
    apply_action,
)

PRESETS = ("epnas-digits", "epnas-cifar")


def layer(op: str = "conv", kernel: int = 3, filters: int | None = 8, stride: int = 1,
          src2: int = -1, merge: str = "add", activation: str | None = None) -> dict:
    out = {"op": op, "kernel": kernel, "filters": filters, "stride": stride, "src2": src2,
           "merge": merge}
    if activation is not None:
        out["activation"] = activation
    return out


def genotype(*layers: dict, preset: str = "epnas-digits") -> dict:
    return {"space": "layerwise", "preset": preset, "layers": list(layers)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits() -> LayerwiseSpace:
    return get_space("layerwise", "epnas-digits")


def test_registry_and_presets() -> None:
    cifar = get_space("layerwise", "epnas-cifar")
    assert cifar.input_shape == (3, 32, 32)
    assert cifar.settings["filters"] == [16, 32, 64, 96, 128, 256]  # EPNAS Table 2
    assert cifar.settings["kernels"] == [1, 3, 5, 7]
    assert get_space("layerwise").preset == "epnas-digits"
    assert get_space("layerwise", "epnas-digits").input_shape == (1, 8, 8)


def test_hundred_sampled_digits_genotypes_build_and_run(digits: LayerwiseSpace) -> None:
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    for _ in range(100):
        g = digits.sample(rng)
        assert digits.validate(g) == g
        model = digits.build(g)
        out = model(torch.randn(2, *digits.input_shape))
        assert out.shape == (2, 10)
        assert torch.isfinite(out).all()


def test_cifar_preset_builds_and_runs() -> None:
    space = get_space("layerwise", "epnas-cifar")
    rng = np.random.default_rng(1)
    for _ in range(5):
        g = space.sample(rng)
        assert space.build(g)(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("preset", PRESETS)
def test_analytic_costs_equal_traced_costs(preset: str) -> None:
    space = get_space("layerwise", preset)
    rng = np.random.default_rng(2)
    for _ in range(25 if preset == "epnas-digits" else 6):
        g = space.sample(rng)
        assert space.costs(g) == measure(space.build(g), space.input_shape)


def test_costs_follow_input_shape_and_classes(digits: LayerwiseSpace) -> None:
    g = digits.sample(np.random.default_rng(3))
    costs = digits.costs(g, (3, 12, 12), 7)
    assert costs == measure(digits.build(g, (3, 12, 12), 7), (3, 12, 12))
    assert costs != digits.costs(g)


def test_canonical_and_hash_round_trip_through_json(digits: LayerwiseSpace) -> None:
    rng = np.random.default_rng(4)
    hashes = set()
    for _ in range(50):
        g = digits.sample(rng)
        loaded = json.loads(json.dumps(g))
        assert digits.canonical(loaded) == digits.canonical(g) == g
        assert digits.hash(loaded) == digits.hash(g)
        assert space_of(loaded).hash(loaded) == digits.hash(g)
        hashes.add(digits.hash(g))
    assert len(hashes) > 45


def test_canonical_drops_meaningless_fields(digits: LayerwiseSpace) -> None:
    """Pool layers have no filters and a layer without skip has no merge mode."""
    raw = genotype(layer("maxpool", 3, 16), layer(merge="concat"))
    canon = digits.canonical(raw)
    assert canon["layers"][0]["filters"] is None
    assert canon["layers"][1]["merge"] == "add"
    assert digits.hash(raw) == digits.hash(genotype(layer("maxpool", 3, None), layer()))


def test_skip_with_matching_shapes_adds_without_projection(digits: LayerwiseSpace) -> None:
    g = genotype(layer(filters=8), layer(filters=8, src2=0))
    shapes = digits.shapes(g)
    assert shapes[1]["proj"] is None and shapes[1]["out"] == (8, 8, 8)
    model = digits.build(g)
    assert model.layers[1].proj is None
    assert model(torch.randn(1, 1, 8, 8)).shape == (1, 10)


def test_skip_across_downsampling_and_channels_is_projected(digits: LayerwiseSpace) -> None:
    """Source 8x8x4 added to a 2x2x16 layer: Conv1x1 stride 4 (product of strides) + BN."""
    g = genotype(layer(filters=4), layer(filters=12, stride=2), layer("maxpool", 3, None, 1),
                 layer(filters=16, stride=2, src2=0))
    shapes = digits.shapes(g)
    assert shapes[3]["proj"] == (4, 16, 4, (8, 8))
    assert shapes[3]["out"] == (16, 2, 2)
    proj = digits.build(g).layers[3].proj
    assert proj[0].stride == (4, 4) and proj[0].out_channels == 16


def test_concat_skip_keeps_source_channels_and_grows_the_layer(digits: LayerwiseSpace) -> None:
    g = genotype(layer(filters=4), layer(filters=8, stride=2, src2=0, merge="concat"),
                 layer("avgpool", 3, None), layer(filters=12))
    shapes = digits.shapes(g)
    assert shapes[1]["out"] == (12, 4, 4)  # 8 own + 4 from layer 0, reduced 8x8 -> 4x4
    assert shapes[2]["out"] == (12, 4, 4)  # pooling keeps channels
    model = digits.build(g)
    assert model.layers[3].op[1].in_channels == 12
    assert model(torch.randn(1, 1, 8, 8)).shape == (1, 10)
    assert digits.costs(g) == measure(model, (1, 8, 8))


def test_every_layer_maps_h_to_ceil_h_over_stride() -> None:
    space = get_space("layerwise", "epnas-digits")
    g = genotype(*[layer(op, k, 8 if op in ("conv", "sepconv") else None, 2)
                   for op, k in (("conv", 1), ("sepconv", 7), ("maxpool", 5), ("avgpool", 3))])
    sizes = [s["out"][1] for s in space.shapes(g, (1, 7, 7))]
    assert sizes == [4, 2, 1, 1]
    assert space.build(g, (1, 7, 7))(torch.randn(1, 1, 7, 7)).shape == (1, 10)


@pytest.mark.parametrize(("mutate", "field", "allowed"), [
    (lambda g: g["layers"][1].update(kernel=4), "genotype.layers[1].kernel", "1, 3, 5, 7"),
    (lambda g: g["layers"][1].update(op="lstm"), "genotype.layers[1].op", "conv, sepconv"),
    (lambda g: g["layers"][0].update(filters=10), "genotype.layers[0].filters", "4, 8, 12"),
    (lambda g: g["layers"][1].update(src2=1), "genotype.layers[1].src2", "-1 (no skip) or 0..0"),
    (lambda g: g["layers"][1].update(stride=3), "genotype.layers[1].stride", "1, 2"),
    (lambda g: g["layers"][1].update(merge="mul"), "genotype.layers[1].merge", "add, concat"),
    (lambda g: g["layers"][0].update(act="relu"), "genotype.layers[0].act", "op, kernel"),
    (lambda g: g["layers"][0].pop("op"), "genotype.layers[0].op", "conv"),
    (lambda g: g.update(layers=[]), "genotype.layers", "1..8 layers"),
    (lambda g: g.update(layers=[layer()] * 9), "genotype.layers", "1..8 layers"),
    (lambda g: g.update(space="cell"), "genotype.space", "layerwise"),
    (lambda g: g.update(preset="epnas-cifar"), "genotype.preset", "epnas-digits"),
    (lambda g: g.update(extra=1), "genotype.extra", "layers"),
])
def test_bad_genotypes_name_the_field_and_allowed_values(digits: LayerwiseSpace, mutate, field,
                                                         allowed) -> None:
    g = genotype(layer(), layer(src2=0))
    mutate(g)
    with pytest.raises(GenotypeError) as info:
        digits.validate(g)
    assert info.value.field == field
    assert allowed in str(info.value)


def test_graph_is_a_chain_with_skip_arcs_and_node_costs(digits: LayerwiseSpace) -> None:
    g = genotype(layer(), layer("maxpool", 3, None, 2), layer(filters=16, src2=0))
    graph = digits.graph(g)
    assert list(graph.successors("input")) == ["stem"]
    assert graph.edges["L1", "L2"]["kind"] == "seq"
    assert graph.edges["L0", "L2"]["kind"] == "skip"
    assert graph.nodes["L1"]["label"] == "maxpool 3x3 /2"
    total = digits.costs(g)
    for metric in ("params", "madds", "flops", "bytes"):
        assert sum(graph.nodes[n]["costs"][metric] for n in graph) == total[metric]


def test_features_name_layers_and_skips(digits: LayerwiseSpace) -> None:
    g = genotype(layer(), layer("sepconv", 5, 16, 2, src2=0, merge="concat"))
    assert digits.features(g) == ["depth=2", "L0:conv:k3:f8:s1", "L1:sepconv:k5:f16:s2",
                                  "L1:skip-1:concat"]


# -- morph actions ------------------------------------------------------------------------
def test_scale_groups_partition_layers_contiguously(digits: LayerwiseSpace) -> None:
    assert digits.groups(genotype(*[layer()] * 6)) == [[0, 1], [2], [3, 4], [5]]
    assert digits.groups(genotype(*[layer()] * 2)) == [[0], [], [1], []]


def test_scale_moves_filters_and_kernels_one_step_within_a_group(digits: LayerwiseSpace) -> None:
    g = genotype(layer(kernel=3, filters=8), layer("maxpool", 7, None), layer(kernel=1, filters=32),
                 layer(kernel=5, filters=4))
    up = digits.apply_action(g, Action.scale(0, filter_step=1, kernel_step=1))
    assert (up["layers"][0]["filters"], up["layers"][0]["kernel"]) == (12, 5)
    assert up["layers"][1:] == digits.validate(g)["layers"][1:]
    pool = digits.apply_action(g, Action.scale(1, filter_step=-1, kernel_step=1))
    assert pool["layers"][1] == digits.validate(g)["layers"][1]  # 7 is the top: clamped
    down = digits.apply_action(g, Action.scale(1, filter_step=-1, kernel_step=-1))
    assert down["layers"][1]["kernel"] == 5 and down["layers"][1]["filters"] is None
    top = digits.apply_action(g, Action.scale(2, filter_step=1, kernel_step=-1))
    assert (top["layers"][2]["filters"], top["layers"][2]["kernel"]) == (32, 1)
    assert digits.apply_action(genotype(layer()), Action.scale(1, 1, 1)) == digits.validate(
        genotype(layer()))  # group 1 is empty for a 1-layer network: no-op


def test_insert_shifts_later_skips_and_keeps_earlier_ones(digits: LayerwiseSpace) -> None:
    g = genotype(layer(), layer(), layer(src2=1), layer(src2=0))
    new = digits.apply_action(g, Action.insert(1, "sepconv", 5, 16, 2, src2=0, merge="concat"))
    assert len(new["layers"]) == 5
    assert new["layers"][1] == layer("sepconv", 5, 16, 2, 0, "concat")
    assert [x["src2"] for x in new["layers"]] == [-1, 0, -1, 2, 0]


def test_insert_place_past_the_end_appends_and_bad_src2_means_no_skip(digits) -> None:
    g = genotype(layer(), layer())
    new = digits.apply_action(g, Action.insert(2 + 4, "conv", 3, 8, src2=5))
    assert len(new["layers"]) == 3 and new["layers"][2]["src2"] == -1
    pool = digits.apply_action(g, Action.insert(0, "avgpool", 3, 32, src2=0))
    assert pool["layers"][0] == layer("avgpool", 3, None, 1, -1)


def test_remove_redirects_skips_to_the_removed_layers_input(digits: LayerwiseSpace) -> None:
    g = genotype(layer(), layer(), layer(src2=1), layer(src2=1), layer(src2=2))
    new = digits.apply_action(g, Action.remove(1))
    assert [x["src2"] for x in new["layers"]] == [-1, 0, 0, 1]
    first = digits.apply_action(genotype(layer(), layer(src2=0), layer(src2=0)), Action.remove(0))
    assert [x["src2"] for x in first["layers"]] == [-1, -1]  # layer 1 now reads its input


def test_invalid_actions_are_no_ops(digits: LayerwiseSpace) -> None:
    one = digits.validate(genotype(layer()))
    assert digits.apply_action(one, Action.remove(0)) == one  # the last layer stays
    full = digits.validate(genotype(*[layer()] * 8))
    assert digits.apply_action(full, Action.insert(3)) == full  # max depth
    assert digits.apply_action(full, Action.remove(8)) == full  # no layer 8
    assert digits.apply_action(full, Action.scale(9, 1, 1)) == full  # no group 9
    assert digits.apply_action(full, Action.keep()) == full
    assert digits.apply_action(one, Action.insert(0, op="gru")) == one  # unknown op


def test_decoders_map_policy_indices_to_actions(digits: LayerwiseSpace) -> None:
    g = genotype(layer(), layer(), layer())
    space = digits.action_space(g)
    assert space.num_places == 3 + 5 and space.num_groups == 4 and space.max_layers == 8
    assert space.scale_steps == SCALE_STEPS == ("up", "keep", "down")
    assert space.insert_kinds == INSERT_KINDS == ("insert", "keep", "remove")
    assert space.src2_choices(2) == 3 and space.src2_choices(7) == 4
    assert digits.decode_scale(2, 0, 2) == Action.scale(2, 1, -1)
    assert digits.decode_insert(g, 1, 0, 0, 0, 0, 0) == Action.keep()
    assert digits.decode_insert(g, 2, 1, 0, 0, 0, 0) == Action.remove(1)
    ins = digits.decode_insert(g, 0, 2, 2, 1, 3, 2, 1, 1)  # src2 == place: no skip
    assert ins == Action.insert(2, "sepconv", 5, 16, 2, -1, "concat")
    assert digits.decode_insert(g, 0, 2, 1, 0, 0, 0).layer["src2"] == 1


def test_action_dict_round_trip() -> None:
    for action in (Action.keep(), Action.remove(3), Action.scale(1, -1, 1),
                   Action.insert(2, "maxpool", 5, None, 2, 1, "concat")):
        assert Action.from_dict(json.loads(json.dumps(action.to_dict()))) == action


def test_thousand_random_actions_always_give_valid_genotypes(digits: LayerwiseSpace) -> None:
    rng = np.random.default_rng(5)
    g = digits.initial()
    kinds_seen = set()
    for step in range(1000):
        if step % 100 == 0:
            g = digits.sample(rng)
        n = len(g["layers"])
        kind = ("scale", "insert", "remove", "keep")[int(rng.integers(4))]
        if kind == "scale":
            action = Action.scale(int(rng.integers(-1, 6)), int(rng.integers(-1, 2)),
                                  int(rng.integers(-1, 2)))
        elif kind == "insert":
            action = Action.insert(int(rng.integers(n + 5)), str(rng.choice(digits.settings["ops"])),
                                   int(rng.choice([1, 3, 4, 5, 7])), int(rng.choice([4, 7, 32])),
                                   int(rng.choice([1, 2])), int(rng.integers(-3, n + 3)),
                                   str(rng.choice(["add", "concat"])))
        elif kind == "remove":
            action = Action.remove(int(rng.integers(-1, n + 5)))
        else:
            action = Action.keep()
        new = apply_action(g, action)
        assert digits.validate(new) == new
        assert 1 <= len(new["layers"]) <= digits.max_layers
        if kind == "keep":
            assert new == g
        kinds_seen.add((kind, len(new["layers"]) - n))
        g = new
    assert {("insert", 1), ("remove", -1), ("insert", 0), ("remove", 0)} <= kinds_seen
    model = digits.build(g)
    assert model(torch.randn(1, 1, 8, 8)).shape == (1, 10)


def test_scale_keeps_parameter_names_for_weight_inheritance(digits: LayerwiseSpace) -> None:
    g = genotype(layer(), layer(src2=0), layer("sepconv", 3, 12))
    scaled = digits.apply_actions(g, [Action.scale(f, 1, 1) for f in range(4)])
    before, after = digits.build(g).state_dict(), digits.build(scaled).state_dict()
    assert list(before) == list(after)
    assert any(before[k].shape != after[k].shape for k in before)


def test_initial_network_is_one_small_conv(digits: LayerwiseSpace) -> None:
    assert digits.initial()["layers"] == [layer("conv", 3, 8)]


def test_costs_agree_with_fvcore_an_independent_counter() -> None:
    """params and conv+linear MAdds also match fvcore (the tracer's rules for the rest)."""
    space = get_space("layerwise", "epnas-digits")
    rng = np.random.default_rng(6)
    for _ in range(3):
        report = cross_check(space, space.sample(rng))
        assert report["mismatches"] == []
        assert report["fvcore"]["madds"] == report["space"]["madds"] > 0


def test_insert_snaps_values_off_the_preset_lists(digits: LayerwiseSpace) -> None:
    g = genotype(layer())
    new = digits.apply_action(g, Action.insert(1, "conv", kernel=4, filters=7, stride=3))
    assert new["layers"][1] == layer("conv", 3, 8, 2)
    assert digits.apply_action(g, Action.insert(0, "sepconv"))["layers"][0]["filters"] == 4


def test_numpy_integers_are_accepted_and_normalised(digits: LayerwiseSpace) -> None:
    g = genotype(layer(kernel=np.int64(5), filters=np.int64(8)), layer(src2=np.int64(0)))
    out = digits.validate(g)
    assert out == digits.validate(genotype(layer(kernel=5), layer(src2=0)))
    assert json.loads(json.dumps(out)) == out


# -- the activation choice (EPNAS Table 2) ---------------------------------------------------
def test_table_2_activations_are_searched_in_the_cifar_preset() -> None:
    cifar = get_space("layerwise", "epnas-cifar")
    assert cifar.settings["activations"] == ["relu", "crelu", "elu", "selu", "swish"]
    for act in cifar.settings["activations"]:
        g = genotype(layer(filters=32, activation=act), layer("sepconv", filters=16,
                                                                activation=act),
                     preset="epnas-cifar")
        model = cifar.build(g)
        expected = measure(model, cifar.input_shape)
        assert {k: cifar.costs(g)[k] for k in ("params", "madds", "flops", "bytes")} == {
            k: expected[k] for k in ("params", "madds", "flops", "bytes")}
        assert model(torch.zeros(1, *cifar.input_shape)).shape == (1, 10)


def test_crelu_doubles_the_channels_the_convolution_reads() -> None:
    cifar = get_space("layerwise", "epnas-cifar")
    model = cifar.build(genotype(layer(filters=32), layer(filters=16, activation="crelu"),
                                 preset="epnas-cifar"))
    assert model.layers[1].op[1].in_channels == 64


def test_relu_is_left_out_so_older_genotypes_keep_their_hash(digits: LayerwiseSpace) -> None:
    cifar = get_space("layerwise", "epnas-cifar")
    plain = genotype(layer(filters=32), preset="epnas-cifar")
    assert cifar.validate(plain) == cifar.validate(
        genotype(layer(filters=32, activation="relu"), preset="epnas-cifar"))
    assert "activation" not in cifar.validate(plain)["layers"][0]
    pooled = cifar.validate(genotype(layer("maxpool", filters=None, activation="elu"),
                                     preset="epnas-cifar"))
    assert "activation" not in pooled["layers"][0]  # pooling has no activation
    with pytest.raises(GenotypeError, match=r"layers\[0\].activation"):
        cifar.validate(genotype(layer(filters=32, activation="tanh"), preset="epnas-cifar"))
    with pytest.raises(GenotypeError, match=r"layers\[0\].activation"):
        digits.validate(genotype(layer(activation="elu")))  # digits: relu only


def test_the_insert_head_chooses_the_activation() -> None:
    cifar = get_space("layerwise", "epnas-cifar")
    g = genotype(layer(filters=32), preset="epnas-cifar")
    action = cifar.decode_insert(g, 0, 1, 1, 0, 0, 1, 0, 0, activation=4)
    assert cifar.apply_action(g, action)["layers"][1]["activation"] == "swish"
