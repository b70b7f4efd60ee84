"""How the EPNAS policy sees and changes architectures, per search pattern (torch-free).

A *morpher* adapts one search space to the policy network:

* ``shape``: the sizes of the policy's inputs and heads (:class:`PolicyShape`);
* ``tokens(g)``: one layer token per layer (the input of the trainable layer look-up);
* ``group_mask(g)``: which of the ``F`` scale groups hold at least one layer;
* ``morph(g, decision)``: the genotype after one policy decision (scale every group, then one
  insert / keep / remove), always valid;
* ``sharing_keys(g)``: ``(state-dict prefix, key)`` pairs for the parameter-sharing dictionary
  (paper §3.4: keys combine the layer number and the operation type).

The layer-by-layer pattern uses the ``layerwise`` space's own morph actions; the module pattern
(``cell`` space) lives in :mod:`searchers._epnas_cell`, where an insert adds a branch (block).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

SCALE_CHOICES = ("up", "keep", "down")
INSERT_KINDS = ("insert", "keep", "remove")
KIND_INSERT, KIND_KEEP, KIND_REMOVE = 0, 1, 2
EXTRA_PLACES = 5  # the paper's L + 5 valued place distribution
OTHER_KEY = "other"  # sharing key of every parameter outside a searched layer (stem, head)


@dataclass(frozen=True)
class PolicyShape:
    """Sizes of the policy's inputs and heads, fixed by the search space."""

    n_tokens: int  # layer-token vocabulary
    n_groups: int  # F, filter groups of the scale LSTM
    max_layers: int  # N_l
    attr_sizes: tuple[int, ...]  # the inserted operation's attribute heads (op, channels, ...)
    scale_axes: tuple[bool, bool] = (True, True)  # does (channels, kernel) scaling act?

    @property
    def place_size(self) -> int:
        return self.max_layers + EXTRA_PLACES

    @property
    def src2_size(self) -> int:
        return self.max_layers + 1

    @property
    def insert_sizes(self) -> tuple[int, ...]:
        return (len(INSERT_KINDS), self.place_size, self.src2_size, *self.attr_sizes)


def insert_position(place: int, n_layers: int) -> int:
    """Where a sampled place value inserts: ``place mod (L + 1)``.

    The paper draws the place from ``L + 5`` values but never says what the 4 values past the
    end mean. Folding them back over the network (rather than clamping them to "append") follows
    its stated reason for the distribution: to encourage inserting *inside* the network.
    """
    return int(place) % (int(n_layers) + 1)


def remove_index(place: int, n_layers: int) -> int:
    """Which layer a sampled place value removes: ``place mod L`` (same folding)."""
    return int(place) % max(1, int(n_layers))


class Morpher(Protocol):
    shape: PolicyShape

    def tokens(self, genotype: Mapping[str, Any]) -> list[int]: ...

    def group_mask(self, genotype: Mapping[str, Any]) -> list[bool]: ...

    def morph(self, genotype: Mapping[str, Any], decision: Mapping[str, Any]
              ) -> dict[str, Any]: ...

    def sharing_keys(self, genotype: Mapping[str, Any]) -> list[tuple[str, str]]: ...


def _mixed_radix(digits: Sequence[int], sizes: Sequence[int]) -> int:
    value = 0
    for digit, size in zip(digits, sizes, strict=True):
        value = value * size + digit
    return value


class LayerwiseMorpher:
    """Layer-by-layer search over the ``layerwise`` space (paper §3.3 (i)).

    A layer token is the mixed-radix index of (op, kernel, filters or none, stride, skip kind
    none/add/concat): every distinct layer configuration has its own embedding row. The insert
    heads are, in order, op, filters, kernel, stride and merge (the space's ``decode_insert``
    arguments), the paper's insert table for images.
    """

    def __init__(self, space: Any) -> None:
        s = space.settings
        self.space = space
        self.ops = list(s["ops"])
        self.kernels = list(s["kernels"])
        self.filters = list(s["filters"])
        self.strides = list(s["strides"])
        self.merges = list(s["merges"])
        self._radix = (len(self.ops), len(self.kernels), len(self.filters) + 1,
                       len(self.strides), 1 + len(self.merges))
        n_tokens = 1
        for size in self._radix:
            n_tokens *= size
        self.shape = PolicyShape(
            n_tokens=n_tokens, n_groups=int(s["scale_groups"]), max_layers=space.max_layers,
            attr_sizes=(len(self.ops), len(self.filters), len(self.kernels), len(self.strides),
                        len(self.merges)))

    def tokens(self, genotype: Mapping[str, Any]) -> list[int]:
        out = []
        for layer in genotype["layers"]:
            filters = 0 if layer["filters"] is None else 1 + self.filters.index(layer["filters"])
            skip = 0 if layer["src2"] < 0 else 1 + self.merges.index(layer["merge"])
            out.append(_mixed_radix((self.ops.index(layer["op"]),
                                     self.kernels.index(layer["kernel"]), filters,
                                     self.strides.index(layer["stride"]), skip), self._radix))
        return out

    def group_mask(self, genotype: Mapping[str, Any]) -> list[bool]:
        return [bool(group) for group in self.space.groups(genotype)]

    def morph(self, genotype: Mapping[str, Any], decision: Mapping[str, Any]) -> dict[str, Any]:
        actions = [self.space.decode_scale(f, up_keep_down[0], up_keep_down[1])
                   for f, up_keep_down in enumerate(decision["scale"])]
        kind, place, src2, *attrs = (int(v) for v in decision["insert"])
        n_layers = len(genotype["layers"])
        if kind == KIND_INSERT:
            place = insert_position(place, n_layers)
        elif kind == KIND_REMOVE:
            place = remove_index(place, n_layers)
        actions.append(self.space.decode_insert(genotype, kind, place, src2, *attrs))
        return self.space.apply_actions(genotype, actions)

    def sharing_keys(self, genotype: Mapping[str, Any]) -> list[tuple[str, str]]:
        return [(f"layers.{i}.", f"{i}:{layer['op']}")
                for i, layer in enumerate(genotype["layers"])]


def morpher_for(space: Any, cell_scale_filters: bool = False) -> Morpher:
    """The morpher of a space: ``layerwise`` (layer-by-layer) or ``cell`` (module search;
    ``cell_scale_filters`` lets the scale LSTM move the cell's filter count)."""
    from searchers.errors import UnknownName

    if space.name == "layerwise":
        return LayerwiseMorpher(space)
    if space.name == "cell":
        from searchers._epnas_cell import CellMorpher

        return CellMorpher(space, scale_filters=cell_scale_filters)
    raise UnknownName("space", space.name, ["layerwise", "cell"],
                      hint="EPNAS searches layer by layer or by module")
