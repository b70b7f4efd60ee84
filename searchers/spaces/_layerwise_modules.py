"""Torch modules for the ``layerwise`` space (imported lazily by ``LayerwiseSpace.build``).

The module tree mirrors ``LayerwiseSpace.plan`` op for op, which is what makes the analytic
costs exact; parameter names (``layers.3.conv.weight``) are stable under scale actions so
EPNAS weight inheritance finds the same keys with cropped/padded shapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn


class CReLU(nn.Module):
    """``[relu(x), relu(-x)]`` on the channel axis (Shang et al.; EPNAS Table 2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.relu(x), torch.relu(-x)], dim=1)


def activation(name: str) -> nn.Module:
    """The nonlinearity of EPNAS Table 2 by name (``swish`` is SiLU)."""
    modules = {"relu": nn.ReLU, "crelu": CReLU, "elu": nn.ELU, "selu": nn.SELU,
               "swish": nn.SiLU}
    return modules[name]()


class LayerwiseLayer(nn.Module):
    """One searched layer: its op, plus the skip projection and merge when it has a skip."""

    def __init__(self, layer: Mapping[str, Any], shape: Mapping[str, Any]) -> None:
        super().__init__()
        act = str(layer.get("activation", "relu"))
        c_in = shape["in"][0] * (2 if act == "crelu" else 1)  # what the convolution reads
        c_main = shape["main"][0]
        k, s = layer["kernel"], layer["stride"]
        self.op_name = layer["op"]
        self.src2 = int(layer["src2"])
        self.merge = layer["merge"]
        if self.op_name == "conv":
            self.op = nn.Sequential(
                activation(act), nn.Conv2d(c_in, c_main, k, s, k // 2, bias=False),
                nn.BatchNorm2d(c_main))
        elif self.op_name == "sepconv":
            self.op = nn.Sequential(
                activation(act), nn.Conv2d(c_in, c_in, k, s, k // 2, groups=c_in, bias=False),
                nn.Conv2d(c_in, c_main, 1, bias=False), nn.BatchNorm2d(c_main))
        elif self.op_name == "maxpool":
            self.op = nn.MaxPool2d(k, s, k // 2)
        elif self.op_name == "avgpool":
            self.op = nn.AvgPool2d(k, s, k // 2, count_include_pad=False)
        else:
            raise ValueError(f"unknown layerwise op {self.op_name!r}")
        self.proj: nn.Module | None = None
        if self.src2 >= 0 and shape["proj"] is not None:
            c_src, c_skip, stride, _ = shape["proj"]
            self.proj = nn.Sequential(nn.Conv2d(c_src, c_skip, 1, stride, bias=False),
                                      nn.BatchNorm2d(c_skip))

    def forward(self, x: torch.Tensor, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        y = self.op(x)
        if self.src2 < 0:
            return y
        skip = outputs[self.src2]
        if self.proj is not None:
            skip = self.proj(skip)
        return y + skip if self.merge == "add" else torch.cat([y, skip], dim=1)


class LayerwiseNet(nn.Module):
    """``stem -> layers (with skips) -> ReLU -> global avg pool -> Linear``."""

    def __init__(self, layers: Sequence[Mapping[str, Any]], shapes: Sequence[Mapping[str, Any]],
                 in_channels: int, stem_filters: int, num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem_filters, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(stem_filters))
        self.layers = nn.ModuleList(LayerwiseLayer(layer, shape)
                                    for layer, shape in zip(layers, shapes))
        c_last = shapes[-1]["out"][0]
        self.head_act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        outputs: list[torch.Tensor] = []
        for layer in self.layers:
            x = layer(x, outputs)
            outputs.append(x)
        x = self.pool(self.head_act(x)).flatten(1)
        return self.classifier(x)
