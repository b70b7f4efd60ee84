"""Torch modules for the ``cell`` space (imported lazily by ``CellSpace.build``).

Mirrors ``CellSpace.plan`` op for op (which keeps the analytic costs exact). Parameter names
(``cells.3.ops.5.1.weight``) depend only on the cell position, block and slot, so models that
share a prefix of blocks share parameter names for weight inheritance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

NUM_CELL_INPUTS = 2


def make_op(op: str, c: int, stride: int) -> nn.Module:
    """One PNAS operator on ``c`` channels (layouts in ``searchers.spaces.cell``)."""
    if op.startswith("sep"):
        k = int(op[3])
        return nn.Sequential(
            nn.ReLU(), nn.Conv2d(c, c, k, stride, k // 2, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c),
            nn.ReLU(), nn.Conv2d(c, c, k, 1, k // 2, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))
    if op == "conv1x7_7x1":
        return nn.Sequential(
            nn.ReLU(), nn.Conv2d(c, c, (1, 7), (1, stride), (0, 3), bias=False),
            nn.Conv2d(c, c, (7, 1), (stride, 1), (3, 0), bias=False), nn.BatchNorm2d(c))
    if op == "identity":
        if stride == 1:
            return nn.Identity()
        return nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 1, stride, bias=False),
                             nn.BatchNorm2d(c))
    if op == "avg3x3":
        return nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    if op == "max3x3":
        return nn.MaxPool2d(3, stride, 1)
    if op == "dil3x3":
        return nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 3, stride, 2, dilation=2, bias=False),
                             nn.BatchNorm2d(c))
    raise ValueError(f"unknown cell op {op!r}")


class Cell(nn.Module):
    """One cell: preprocess the used inputs, run the blocks, concat the unused blocks."""

    def __init__(self, cell: Mapping[str, Any], blocks: Sequence[Sequence[int]],
                 ops1: Sequence[str], ops2: Sequence[str]) -> None:
        super().__init__()
        width, stride = cell["width"], cell["stride"]
        self.pre = nn.ModuleDict()
        for k, inp in enumerate(cell["inputs"]):
            if inp["used"]:
                self.pre[str(k)] = nn.Sequential(
                    nn.ReLU(), nn.Conv2d(inp["shape"][0], width, 1, inp["stride"], bias=False),
                    nn.BatchNorm2d(width))
        self.inputs = [(int(b[0]), int(b[1])) for b in blocks]
        self.ops = nn.ModuleList()
        for (i1, i2), o1, o2 in zip(self.inputs, ops1, ops2):
            self.ops.append(nn.ModuleList([
                make_op(o1, width, stride if i1 < NUM_CELL_INPUTS else 1),
                make_op(o2, width, stride if i2 < NUM_CELL_INPUTS else 1)]))
        used = {i for pair in self.inputs for i in pair}
        self.unused = [b for b in range(len(blocks)) if b + NUM_CELL_INPUTS not in used]

    def forward(self, prev_prev: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        states: list[torch.Tensor | None] = [
            self.pre[str(k)](x) if str(k) in self.pre else None
            for k, x in enumerate((prev_prev, prev))]
        for (i1, i2), (op1, op2) in zip(self.inputs, self.ops):
            states.append(op1(states[i1]) + op2(states[i2]))
        outs = [states[b + NUM_CELL_INPUTS] for b in self.unused]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)


class CellNet(nn.Module):
    """``stem -> 3N + 2 cells -> ReLU -> global avg pool -> Linear`` (PNAS Fig. 1)."""

    def __init__(self, net: Mapping[str, Any], ops1: Sequence[str], ops2: Sequence[str],
                 num_classes: int) -> None:
        super().__init__()
        c_in, stem, _, _ = net["stem"]
        self.stem = nn.Sequential(nn.Conv2d(c_in, stem, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(stem))
        self.cells = nn.ModuleList(Cell(cell, net["blocks"], ops1, ops2)
                                   for cell in net["cells"])
        self.head_act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(net["out"][0], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prev_prev = prev = self.stem(x)
        for cell in self.cells:
            prev_prev, prev = prev, cell(prev_prev, prev)
        return self.classifier(self.pool(self.head_act(prev)).flatten(1))
