"""Torch modules of the ``module`` space (imported lazily by ``ModuleSpace.build``).

Built from ``ModuleSpace.plan`` op for op, which is what makes the analytic costs exact.
Parameter names (``cells.2.branches.1.op1.conv.weight``) depend only on positions, so EPNAS
weight sharing finds the same keys with cropped or padded shapes after a scale action.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


class BranchOp(nn.Module):
    """One operation of a branch, as planned (conv, 1x7-7x1, or pooling + projection)."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        super().__init__()
        c_in = spec["in"][0]
        width = spec["out"][0]
        s = spec["stride"]
        self.pad = False
        if spec["op"] == "conv":
            k = spec["kernel"]
            self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, width, k, s, k // 2, bias=False),
                                      nn.BatchNorm2d(width))
        elif spec["op"] == "conv1x7_7x1":
            self.body = nn.Sequential(
                nn.ReLU(), nn.Conv2d(c_in, width, (1, 7), (1, s), (0, 3), bias=False),
                nn.Conv2d(width, width, (7, 1), (s, 1), (3, 0), bias=False),
                nn.BatchNorm2d(width))
        else:
            k = spec["kernel"]
            self.pad = k == 2
            pad = 0 if self.pad else k // 2
            pool = (nn.MaxPool2d(k, s, pad) if spec["op"] == "maxpool"
                    else nn.AvgPool2d(k, s, pad, count_include_pad=False))
            layers: list[nn.Module] = [pool]
            if spec["proj"]:
                layers += [nn.Conv2d(c_in, width, 1, bias=False), nn.BatchNorm2d(width)]
            self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad:  # 2-wide pooling keeps the size: one replicated row and column
            x = F.pad(x, (0, 1, 0, 1), mode="replicate")
        return self.body(x)


class Branch(nn.Module):
    def __init__(self, specs: Sequence[Mapping[str, Any]]) -> None:
        super().__init__()
        self.op1 = BranchOp(specs[0])
        self.op2 = BranchOp(specs[1]) if len(specs) > 1 else None

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.op2 is None:
            return self.op1(a)
        return torch.cat([self.op1(a), self.op2(b)], dim=1)


class Cell(nn.Module):
    def __init__(self, branches: Sequence[Mapping[str, Any]], plan: Mapping[str, Any],
                 outputs: Sequence[int]) -> None:
        super().__init__()
        self.refs = [(int(br["src1"]), int(br["src2"])) for br in branches]
        self.outputs = list(outputs)
        self.pre2: nn.Module | None = None
        if plan["pre2"] is not None:
            c = plan["pre2"][0]
            self.pre2 = nn.Sequential(nn.Conv2d(c, c, 1, 2, bias=False), nn.BatchNorm2d(c))
        self.branches = nn.ModuleList(Branch(b["ops"]) for b in plan["branches"])

    def forward(self, prev2: torch.Tensor, prev1: torch.Tensor) -> torch.Tensor:
        if self.pre2 is not None:
            prev2 = self.pre2(prev2)
        values = [prev1]
        for (src1, src2), branch in zip(self.refs, self.branches, strict=True):
            second = prev2 if src2 == -1 else values[src2]
            values.append(branch(values[src1], second))
        chosen = [values[b + 1] for b in self.outputs]
        return chosen[0] if len(chosen) == 1 else torch.cat(chosen, dim=1)


class ModuleNet(nn.Module):
    """``stem -> cells -> ReLU -> global avg pool -> Linear``."""

    def __init__(self, genotype: Mapping[str, Any], plan: Mapping[str, Any],
                 outputs: Sequence[int]) -> None:
        super().__init__()
        stem = plan["stem"]
        self.stem = nn.Sequential(nn.Conv2d(plan["c_in"], stem, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(stem))
        self.cells = nn.ModuleList(Cell(genotype["branches"], cell, outputs)
                                   for cell in plan["cells"])
        self.head_act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(plan["out_channels"], plan["num_classes"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prev2 = prev1 = self.stem(x)
        for cell in self.cells:
            prev2, prev1 = prev1, cell(prev2, prev1)
        return self.classifier(self.pool(self.head_act(prev1)).flatten(1))
