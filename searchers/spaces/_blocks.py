"""Torch modules shared by the ``mbconv`` and ``rcas`` spaces (imported only by ``build``).

Every point-wise op is its own leaf module (``ResidualAdd``, ``ChannelScale``) so that
:func:`searchers.costs.measure` sees it, and submodule names are the same for every choice of
a layer (``expand``, ``dw``, ``se``, ``project``, each ``conv``/``bn``/``act``), so the largest
block's state dict crops by name onto any smaller block (PONAS weight inheritance).
``_block_costs.py`` holds the matching analytic costs.
"""

from __future__ import annotations

import torch
from torch import nn

from searchers.spaces._block_costs import se_channels


class ConvBNAct(nn.Sequential):
    """Conv (no bias, "same" padding) + BatchNorm + optional ReLU6."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: bool = True) -> None:
        layers: dict[str, nn.Module] = {
            "conv": nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups,
                              bias=False),
            "bn": nn.BatchNorm2d(c_out),
        }
        if act:
            layers["act"] = nn.ReLU6(inplace=True)
        super().__init__()
        for name, layer in layers.items():
            self.add_module(name, layer)


class ResidualAdd(nn.Module):
    """``a + b`` as a module so the cost tracer counts it."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class ChannelScale(nn.Module):
    """``x * s`` for a per-channel scale ``s`` (the squeeze-excite multiply)."""

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return x * scale


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle: lets information cross the groups of a group conv."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excite on ``channels`` with a ``reduced``-wide bottleneck."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(reduced, channels, 1, bias=True)
        self.gate = nn.Sigmoid()
        self.scale = ChannelScale()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.gate(self.expand(self.act(self.reduce(self.pool(x)))))
        return self.scale(x, s)


class InvertedResidual(nn.Module):
    """MobileNetV2 block with the knobs both spaces need: expansion, kernel, stride,
    squeeze-excite, group expansion / projection (RCAS Table 1)."""

    def __init__(self, c_in: int, c_out: int, *, expansion: int, kernel: int, stride: int,
                 se: bool = False, groups_expand: int = 1, groups_project: int = 1) -> None:
        super().__init__()
        expanded = c_in * expansion
        if expansion != 1:
            self.expand = ConvBNAct(c_in, expanded, 1, groups=groups_expand)
            if groups_expand > 1:
                self.shuffle = ChannelShuffle(groups_expand)
        self.dw = ConvBNAct(expanded, expanded, kernel, stride=stride, groups=expanded)
        if se:
            self.se = SqueezeExcite(expanded, se_channels(c_in))
        self.project = ConvBNAct(expanded, c_out, 1, groups=groups_project, act=False)
        if stride == 1 and c_in == c_out:
            self.add = ResidualAdd()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if hasattr(self, "expand"):
            out = self.expand(out)
        if hasattr(self, "shuffle"):
            out = self.shuffle(out)
        out = self.dw(out)
        if hasattr(self, "se"):
            out = self.se(out)
        out = self.project(out)
        if hasattr(self, "add"):
            out = self.add(out, x)
        return out


class ClassifierHead(nn.Module):
    """Optional 1x1 conv to ``c_head`` channels, global average pool, linear classifier."""

    def __init__(self, c_in: int, c_head: int, num_classes: int) -> None:
        super().__init__()
        if c_head:
            self.conv = ConvBNAct(c_in, c_head, 1)
            c_in = c_head
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "conv"):
            x = self.conv(x)
        return self.classifier(self.flatten(self.pool(x)))


class ChainNet(nn.Module):
    """``stem`` -> ``layers`` (a ModuleDict run in insertion order) -> ``head``.

    Layer keys are stable names (the searchable position index, or a fixed stage transition's
    name), so state-dict keys do not shift when an RCAS position is left empty (absent).
    """

    def __init__(self, stem: nn.Module, layers: dict[str, nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.stem = stem
        self.layers = nn.ModuleDict(layers)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers.values():
            x = layer(x)
        return self.head(x)
