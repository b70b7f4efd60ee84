"""``rcas``: the Resource Constrained Architecture Search space (RCAS §4.1, Table 1).

Genotype::

    {"space": "rcas", "preset": "rcas-cifar100", "blocks": [b_0, ..., b_{N-1}]}

``b_n = 0`` leaves position ``n`` empty (an identity: "unfilled blocks are replaced with identity
operations", RCAS Fig. 1); ``b_n`` in ``1..6`` fills it with one of the six depthwise block types
of RCAS Table 1, a MobileNetV2 block with expansion factor ``t``, a group-wise 1x1 expansion
(``g_e`` groups, ReLU6), a 3x3 depthwise conv (ReLU6) and a linear group-wise 1x1 projection
(``g_p`` groups), each followed by BN:

    type  t  g_e  g_p
      1   1   -    1   MobileNetV2's t=1 block (no expansion layer)
      2   3   2    2
      3   3   1    1
      4   6   2    2
      5   6   1    1   the MobileNetV2 block (the paper's "block type 5" ablation)
      6   6   4    4

The paper names the knobs (t, g_e, g_p) but its Figure 2, which fixes the six settings, is not
in the text; the table above is our choice: two expansions of the MobileNetV2 block with and
without group convolutions, the thin t=1 block, and one strongly grouped wide block. A group
expansion is followed by a (free) channel shuffle, as in ShuffleNet, so the group projection
mixes information across groups.

Skeleton (our reading of "N positions filled under budgets", chosen so that costs are
additive): the MobileNetV2 macro-architecture, conv3x3 32 s2 -> 7 stages -> conv1x1 1280 ->
global average pool -> FC. Each stage opens with a *fixed* transition block (the MobileNetV2
block that changes width and stride: t=1 for the first stage, t=6 after) followed by searchable
positions that keep the stage's width at stride 1 with a residual add. So every position has the
same input and output shape whatever else is chosen, an empty position is an exact identity,
the cost of a genotype is ``base + sum_n table[n, b_n]``, and filling the first
``(0, 1, 2, 3, 2, 2, 0)`` positions of the seven stages with type 5 rebuilds MobileNetV2
exactly. ``rcas-imagenet`` and ``rcas-cifar100`` have N = 36 positions (2, 4, 6, 8, 6, 6, 4 per
stage; the paper's N). ``rcas-cifar100`` uses a stride-1 stem and a stride-1 second stage, the
usual CIFAR MobileNetV2 (4x4 before the pool). ``rcas-digits`` (1x8x8) has three narrow stages
and N = 8 positions.

Canonical form: since every position of a stage has the same shape, only the order of the filled
blocks within a stage matters ("the input for the k-th picked block is the output of the
(k-1)-th picked block"), so :meth:`RCASSpace.canonical` moves a stage's filled blocks to its
first positions, in order. Genotypes that differ only in where the gaps are share a hash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from searchers.costs import LayerCost
from searchers.errors import GenotypeError
from searchers.spaces import _block_costs as B
from searchers.spaces._chain import ChainSpace, CostPlan

EMPTY = 0
BLOCK_TYPES: dict[int, dict[str, int]] = {
    1: {"expansion": 1, "groups_expand": 1, "groups_project": 1},
    2: {"expansion": 3, "groups_expand": 2, "groups_project": 2},
    3: {"expansion": 3, "groups_expand": 1, "groups_project": 1},
    4: {"expansion": 6, "groups_expand": 2, "groups_project": 2},
    5: {"expansion": 6, "groups_expand": 1, "groups_project": 1},
    6: {"expansion": 6, "groups_expand": 4, "groups_project": 4},
}
NUM_OPTIONS = 1 + len(BLOCK_TYPES)
MOBILENET_V2_TYPE = 5
KERNEL = 3


def block_info(block_type: int) -> dict[str, int]:
    """``{"expansion", "groups_expand", "groups_project"}`` of a block type (1..6)."""
    if isinstance(block_type, bool) or block_type not in BLOCK_TYPES:
        raise GenotypeError("block_type", block_type, f"integers 1..{len(BLOCK_TYPES)}")
    return dict(BLOCK_TYPES[block_type])


_MOBILENET_V2_STAGES = [  # channels, transition expansion, stride, searchable positions
    [16, 1, 1, 2], [24, 6, 2, 4], [32, 6, 2, 6], [64, 6, 2, 8], [96, 6, 1, 6],
    [160, 6, 2, 6], [320, 6, 1, 4],
]
#: extra MobileNetV2 blocks per stage after the transition (its repeats minus one)
MOBILENET_V2_REPEATS: tuple[int, ...] = (0, 1, 2, 3, 2, 2, 0)


class RCASSpace(ChainSpace):
    """RCAS: N positions, each empty or one of 6 depthwise block types."""

    name: ClassVar[str] = "rcas"
    field: ClassVar[str] = "blocks"
    _token_prefix: ClassVar[str] = "P"
    default_preset: ClassVar[str] = "rcas-digits"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "rcas-cifar100": {
            "input_shape": [3, 32, 32], "num_classes": 100,
            "stem_channels": 32, "stem_stride": 1, "head_channels": 1280,
            "stages": [[16, 1, 1, 2], [24, 6, 1, 4]] + _MOBILENET_V2_STAGES[2:],
        },
        "rcas-imagenet": {
            "input_shape": [3, 224, 224], "num_classes": 1000,
            "stem_channels": 32, "stem_stride": 2, "head_channels": 1280,
            "stages": _MOBILENET_V2_STAGES,
        },
        "rcas-digits": {
            "input_shape": [1, 8, 8], "num_classes": 10,
            "stem_channels": 8, "stem_stride": 1, "head_channels": 64,
            "stages": [[8, 1, 1, 2], [16, 6, 2, 3], [24, 6, 2, 3]],
        },
    }

    @staticmethod
    def block_info(block_type: int) -> dict[str, int]:
        return block_info(block_type)

    @property
    def num_positions(self) -> int:
        return sum(int(stage[3]) for stage in self.settings["stages"])

    @property
    def num_options(self) -> int:
        return NUM_OPTIONS

    def option_label(self, option: int) -> str:
        return "empty" if option == EMPTY else f"b{option}"

    def option_description(self, option: int) -> str:
        if option == EMPTY:
            return "empty"
        info = block_info(option)
        groups = (f" ge{info['groups_expand']}" if info["expansion"] != 1 else "") + \
            f" gp{info['groups_project']}"
        return f"b{option}(t{info['expansion']}{groups})"

    def _allowed_text(self) -> str:
        return f"integers 0..{NUM_OPTIONS - 1} (0 = empty, 1..{NUM_OPTIONS - 1} = block type)"

    def _is_empty(self, option: int) -> bool:
        return option == EMPTY

    def stage_of_positions(self) -> list[int]:
        """The stage index of every position."""
        return [index for index, stage in enumerate(self.settings["stages"])
                for _ in range(int(stage[3]))]

    def _position_info(self, position: int) -> dict[str, Any]:
        channels = int(self.settings["stages"][self.stage_of_positions()[position]][0])
        return {"c_in": channels, "c_out": channels, "stride": 1}

    def _has_residual(self, position: int, option: int) -> bool:
        return option != EMPTY

    def canonical(self, genotype: Mapping[str, Any]) -> dict[str, Any]:
        """Filled blocks moved to the front of their stage, in order (same network)."""
        picks = self.picks(genotype)
        stages = self.stage_of_positions()
        out: list[int] = []
        for stage in range(len(self.settings["stages"])):
            in_stage = [b for b, s in zip(picks, stages) if s == stage]
            filled = [b for b in in_stage if b != EMPTY]
            out += filled + [EMPTY] * (len(in_stage) - len(filled))
        return self._genotype(out)

    def mobilenet_v2(self) -> dict[str, Any]:
        """The genotype that rebuilds MobileNetV2 on this skeleton (type-5 blocks)."""
        picks: list[int] = []
        for stage, extra in zip(self.settings["stages"], MOBILENET_V2_REPEATS):
            count = min(extra, int(stage[3]))
            picks += [MOBILENET_V2_TYPE] * count + [EMPTY] * (int(stage[3]) - count)
        return self._genotype(picks)

    def _stem_label(self) -> str:
        s = self.settings
        return f"conv3x3 {s['stem_channels']} s{s['stem_stride']}"

    def _cost_plan(self, input_shape: tuple[int, int, int], num_classes: int) -> CostPlan:
        s = self.settings
        c0, h, w = input_shape
        stem, h, w = B.conv_bn_act(c0, s["stem_channels"], 3, h, w, stride=s["stem_stride"])
        c_in = int(s["stem_channels"])
        table: list[tuple[LayerCost, ...]] = []
        fixed = []
        for index, (channels, expansion, stride, positions) in enumerate(s["stages"]):
            transition, h, w = B.inverted_residual(c_in, channels, h, w, expansion=expansion,
                                                   kernel=KERNEL, stride=stride)
            fixed.append((len(table), f"S{index}",
                          f"S{index} MBConv t{expansion} {c_in}->{channels}"
                          + (f" s{stride}" if stride != 1 else ""), transition))
            c_in = int(channels)
            for _ in range(int(positions)):
                row = [LayerCost()]
                for block_type in range(1, NUM_OPTIONS):
                    row.append(B.inverted_residual(channels, channels, h, w, kernel=KERNEL,
                                                   stride=1, **block_info(block_type))[0])
                table.append(tuple(row))
        head = B.classifier_head(c_in, s["head_channels"], h, w, num_classes)
        return CostPlan(stem=stem, head=head, table=tuple(table), fixed=tuple(fixed))

    def build(self, genotype: Mapping[str, Any], input_shape: Sequence[int] | None = None,
              num_classes: int | None = None) -> Any:
        """Layers are keyed ``s{stage}`` (transitions) and ``{position}`` (filled positions),
        so a block keeps its state-dict names whatever is filled around it."""
        from searchers.spaces import _blocks as M

        picks = self.picks(genotype)
        shape, classes = self._shape_and_classes(input_shape, num_classes)
        s = self.settings
        stem = M.ConvBNAct(shape[0], s["stem_channels"], 3, stride=s["stem_stride"])
        c_in = int(s["stem_channels"])
        layers = {}
        position = 0
        for index, (channels, expansion, stride, positions) in enumerate(s["stages"]):
            layers[f"s{index}"] = M.InvertedResidual(c_in, channels, expansion=expansion,
                                                     kernel=KERNEL, stride=stride)
            c_in = int(channels)
            for _ in range(int(positions)):
                if picks[position] != EMPTY:
                    layers[str(position)] = M.InvertedResidual(
                        channels, channels, kernel=KERNEL, stride=1,
                        **block_info(picks[position]))
                position += 1
        head = M.ClassifierHead(c_in, s["head_channels"], classes)
        return M.ChainNet(stem, layers, head)


__all__ = ["BLOCK_TYPES", "EMPTY", "NUM_OPTIONS", "RCASSpace", "block_info"]
