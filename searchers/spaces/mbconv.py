"""``mbconv``: the PONAS layer-wise search space (PONAS §3.1, Table 1).

Genotype::

    {"space": "mbconv", "preset": "ponas-imagenet", "choices": [c_0, ..., c_{L-1}]}

Each ``c_l`` in ``0..11`` picks one of the 12 candidate blocks of layer ``l``: an MBConv
(1x1 expand + BN + ReLU6, kxk depthwise + BN + ReLU6, optional squeeze-excite, 1x1 project +
BN, residual add when stride 1 and widths match) with

    index = kernel_index * 4 + expansion_index * 2 + se
    kernel in (3, 5, 7), expansion in (3, 6), se in (0 = off, 1 = on)

so ``0`` = k3 e3, ``1`` = k3 e3 SE, ``2`` = k3 e6, ... ``11`` = k7 e6 SE, the largest block
``B_G`` of the PONAS meta network (:func:`largest_choice`).

Macro-architecture (``ponas-imagenet``, Table 1): conv3x3 32 s2 -> MBConv E1 3x3 16 (fixed)
-> 19 candidate layers with widths/strides 32 s2, 32, 40 s2, 40 x3, 80 s2, 96 x4, 96 x3,
192 s2, 320 x4 -> conv1x1 1280 -> global average pool -> FC. Table 1 also lists a "Candidate
Block" 320->1280, which would make 20 searchable layers while the paper states L = 19 and a
search space of 12^19; we read that row as the fixed 1x1 feature-mixing conv of MobileNetV2 /
ProxylessNAS / FairNAS (the same macro-architecture family) and keep L = 19.

Smaller presets keep the structure: ``ponas-cifar`` (32x32x3, 10 classes) has the same widths
with a stride-1 stem and a stride-1 first candidate layer (total stride 8: 4x4 before the
pool), ``ponas-digits`` (1x8x8, 10 classes) has 6 narrow layers so a model trains in seconds
on a CPU.

Weight cropping (PONAS §3.2): module names inside a layer are the same for all 12 blocks
(``layers.{l}.expand.conv``, ``.dw.conv``, ``.se.reduce``, ``.se.expand``, ``.project.conv``,
each with its ``bn``), and every tensor of a smaller block is the leading channel slice /
centre spatial crop of the largest block's tensor, so ``inherit_weights`` turns the meta
network into any candidate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from searchers.costs import LayerCost
from searchers.errors import GenotypeError
from searchers.spaces import _block_costs as B
from searchers.spaces._chain import ChainSpace, CostPlan

KERNELS: tuple[int, ...] = (3, 5, 7)
EXPANSIONS: tuple[int, ...] = (3, 6)
NUM_CHOICES = len(KERNELS) * len(EXPANSIONS) * 2


def choice_index(kernel: int, expansion: int, se: bool) -> int:
    """The choice index of a (kernel, expansion, squeeze-excite) block."""
    return KERNELS.index(kernel) * 4 + EXPANSIONS.index(expansion) * 2 + int(bool(se))


def choice_info(index: int) -> dict[str, Any]:
    """``{"kernel", "expansion", "se"}`` of a choice index (0..11)."""
    if isinstance(index, bool) or not 0 <= int(index) < NUM_CHOICES:
        raise GenotypeError("choice", index, f"integers 0..{NUM_CHOICES - 1}")
    index = int(index)
    return {"kernel": KERNELS[index // 4], "expansion": EXPANSIONS[(index // 2) % 2],
            "se": bool(index % 2)}


def largest_choice() -> int:
    """The PONAS meta-network block B_G: kernel 7, expansion 6, squeeze-excite on (11)."""
    return choice_index(KERNELS[-1], EXPANSIONS[-1], True)


def choice_label(index: int) -> str:
    info = choice_info(index)
    return f"k{info['kernel']}e{info['expansion']}" + ("se" if info["se"] else "")


_IMAGENET_LAYERS = ([[32, 2], [32, 1], [40, 2]] + [[40, 1]] * 3 + [[80, 2]] + [[96, 1]] * 7
                    + [[192, 2]] + [[320, 1]] * 4)


class MBConvSpace(ChainSpace):
    """PONAS: L layers, each one of 12 MBConv candidate blocks."""

    name: ClassVar[str] = "mbconv"
    field: ClassVar[str] = "choices"
    default_preset: ClassVar[str] = "ponas-digits"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "ponas-imagenet": {
            "input_shape": [3, 224, 224], "num_classes": 1000,
            "stem_channels": 32, "stem_stride": 2, "first_channels": 16,
            "layers": _IMAGENET_LAYERS, "head_channels": 1280,
        },
        "ponas-cifar": {
            "input_shape": [3, 32, 32], "num_classes": 10,
            "stem_channels": 32, "stem_stride": 1, "first_channels": 16,
            "layers": [[32, 1]] + _IMAGENET_LAYERS[1:], "head_channels": 1280,
        },
        "ponas-digits": {
            "input_shape": [1, 8, 8], "num_classes": 10,
            "stem_channels": 8, "stem_stride": 1, "first_channels": 8,
            "layers": [[16, 1], [16, 1], [24, 2], [24, 1], [32, 2], [32, 1]],
            "head_channels": 64,
        },
    }

    @staticmethod
    def choice_info(index: int) -> dict[str, Any]:
        return choice_info(index)

    @staticmethod
    def largest_choice() -> int:
        return largest_choice()

    @property
    def num_positions(self) -> int:
        return len(self.settings["layers"])

    @property
    def num_options(self) -> int:
        return NUM_CHOICES

    def option_label(self, option: int) -> str:
        return choice_label(option)

    def largest(self) -> dict[str, Any]:
        """The meta network of PONAS: every layer the largest block."""
        return self._genotype([largest_choice()] * self.num_positions)

    def _widths(self) -> list[tuple[int, int, int]]:
        """(c_in, c_out, stride) of every searchable layer."""
        c_in = int(self.settings["first_channels"])
        out = []
        for c_out, stride in self.settings["layers"]:
            out.append((c_in, int(c_out), int(stride)))
            c_in = int(c_out)
        return out

    def _position_info(self, position: int) -> dict[str, Any]:
        c_in, c_out, stride = self._widths()[position]
        return {"c_in": c_in, "c_out": c_out, "stride": stride}

    def _has_residual(self, position: int, option: int) -> bool:
        c_in, c_out, stride = self._widths()[position]
        return stride == 1 and c_in == c_out

    def _stem_label(self) -> str:
        s = self.settings
        return (f"conv3x3 {s['stem_channels']} s{s['stem_stride']} + "
                f"MBConv E1 k3 {s['first_channels']}")

    def _cost_plan(self, input_shape: tuple[int, int, int], num_classes: int) -> CostPlan:
        s = self.settings
        c0, h, w = input_shape
        stem, h, w = B.conv_bn_act(c0, s["stem_channels"], 3, h, w, stride=s["stem_stride"])
        first, h, w = B.inverted_residual(s["stem_channels"], s["first_channels"], h, w,
                                          expansion=1, kernel=3, stride=1)
        table: list[tuple[LayerCost, ...]] = []
        for c_in, c_out, stride in self._widths():
            row = []
            for option in range(NUM_CHOICES):
                info = choice_info(option)
                cost, h_out, w_out = B.inverted_residual(
                    c_in, c_out, h, w, expansion=info["expansion"], kernel=info["kernel"],
                    stride=stride, se=info["se"])
                row.append(cost)
            table.append(tuple(row))
            h, w = h_out, w_out
        c_last = self._widths()[-1][1] if self.num_positions else s["first_channels"]
        head = B.classifier_head(c_last, s["head_channels"], h, w, num_classes)
        return CostPlan(stem=stem + first, head=head, table=tuple(table))

    def build(self, genotype: Mapping[str, Any], input_shape: Sequence[int] | None = None,
              num_classes: int | None = None) -> Any:
        from torch import nn

        from searchers.spaces import _blocks as M

        picks = self.picks(genotype)
        shape, classes = self._shape_and_classes(input_shape, num_classes)
        s = self.settings
        stem = nn.Sequential(
            M.ConvBNAct(shape[0], s["stem_channels"], 3, stride=s["stem_stride"]),
            M.InvertedResidual(s["stem_channels"], s["first_channels"], expansion=1, kernel=3,
                               stride=1),
        )
        layers = {}
        for position, ((c_in, c_out, stride), option) in enumerate(zip(self._widths(), picks)):
            info = choice_info(option)
            layers[str(position)] = M.InvertedResidual(
                c_in, c_out, expansion=info["expansion"], kernel=info["kernel"], stride=stride,
                se=info["se"])
        c_last = self._widths()[-1][1] if self.num_positions else s["first_channels"]
        head = M.ClassifierHead(c_last, s["head_channels"], classes)
        return M.ChainNet(stem, layers, head)


__all__ = ["EXPANSIONS", "KERNELS", "NUM_CHOICES", "MBConvSpace", "choice_index", "choice_info",
           "largest_choice"]
