"""Morphers per search pattern, and :func:`morpher_for` to pick one (torch-free).

The morpher interface is described in :mod:`searchers.epnas.actions`. Layer-by-layer search
(``layerwise`` space) is here; module search over the paper's Table 3 space is
:mod:`searchers.epnas.module_space`, and module search over PNAS cells (a named option kept
from before the Table 3 space existed) is :mod:`searchers.epnas.cell_morph`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from searchers.epnas.actions import (
    KIND_INSERT,
    KIND_REMOVE,
    Morpher,
    PolicyShape,
    insert_position,
    mixed_radix,
    remove_index,
)


class LayerwiseMorpher:
    """Layer-by-layer search over the ``layerwise`` space (paper §3.3 (i)).

    A layer token is the mixed-radix index of (op, kernel, filters or none, stride, skip kind
    none/add/concat, activation): every distinct layer configuration has its own embedding row.
    The insert heads are, in order, op, filters, kernel, stride, merge and activation (the
    space's ``decode_insert`` arguments), the paper's insert table for images (Table 2).
    """

    def __init__(self, space: Any) -> None:
        s = space.settings
        self.space = space
        self.ops = list(s["ops"])
        self.kernels = list(s["kernels"])
        self.filters = list(s["filters"])
        self.strides = list(s["strides"])
        self.merges = list(s["merges"])
        self.activations = list(s.get("activations", ["relu"]))
        self._radix = (len(self.ops), len(self.kernels), len(self.filters) + 1,
                       len(self.strides), 1 + len(self.merges), len(self.activations))
        n_tokens = 1
        for size in self._radix:
            n_tokens *= size
        self.shape = PolicyShape(
            n_tokens=n_tokens, n_groups=int(s["scale_groups"]), max_layers=space.max_layers,
            attr_sizes=(len(self.ops), len(self.filters), len(self.kernels), len(self.strides),
                        len(self.merges))
            # a head for the activation only where there is a choice (Table 2's preset)
            + ((len(self.activations),) if len(self.activations) > 1 else ()))

    def initial(self) -> dict[str, Any]:
        """The space's own small start: one 3x3 conv."""
        return self.space.initial()

    def tokens(self, genotype: Mapping[str, Any]) -> list[int]:
        out = []
        for layer in genotype["layers"]:
            filters = 0 if layer["filters"] is None else 1 + self.filters.index(layer["filters"])
            skip = 0 if layer["src2"] < 0 else 1 + self.merges.index(layer["merge"])
            act = self.activations.index(layer.get("activation", "relu"))
            out.append(mixed_radix((self.ops.index(layer["op"]),
                                    self.kernels.index(layer["kernel"]), filters,
                                    self.strides.index(layer["stride"]), skip, act),
                                   self._radix))
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
    if space.name == "module":
        from searchers.epnas.module_space import ModuleMorpher

        return ModuleMorpher(space)
    if space.name == "cell":
        from searchers.epnas.cell_morph import CellMorpher

        return CellMorpher(space, scale_filters=cell_scale_filters)
    raise UnknownName("space", space.name, ["layerwise", "module", "cell"],
                      hint="EPNAS searches layer by layer or by module")
