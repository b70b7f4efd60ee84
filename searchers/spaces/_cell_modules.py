"""Torch modules for the ``cell`` space (imported lazily by ``CellSpace.build``).

Mirrors ``CellSpace.plan`` op for op (which keeps the analytic costs exact). Parameter names
(``cells.3.ops.5.1.weight``) depend only on the cell position, block and slot, so models that
share a prefix of blocks share parameter names for weight inheritance.

Two training-only regularisers of PNAS (§5.4, §5.5), both as the released TF-slim code does
them (``nasnet_utils.NasNetABaseCell``, ``nasnet._build_aux_head``):

* **drop-path**: each non-identity op output of a block is zeroed per sample with probability
  ``p_c = drop_path_prob * (c + 1) / n_cells`` for the ``c``-th cell (deeper cells drop more)
  and scaled by ``1 / (1 - p_c)`` otherwise. ``drop_path_prob`` is a non-persistent buffer the
  trainer raises linearly from 0 to the target over training (the released code's default
  ``v3`` schedule), so changing it never recompiles a ``torch.compile``\\ d model.
* **auxiliary head** (``aux_head=True``) on the ReLU of the last cell before the second
  reduction: avg-pool 5x5 stride 3 (window capped at the feature map) - 1x1 conv 128 - BN - ReLU
  - conv over the whole remaining map to 768 - BN - ReLU - Linear. In train mode the network
  returns ``(logits, aux_logits)``; in eval mode only ``logits``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

NUM_CELL_INPUTS = 2
AUX_CHANNELS = (128, 768)


def make_op(op: str, c: int, stride: int, c_in: int | None = None) -> nn.Module:
    """One PNAS operator, ``c_in`` (default ``c``) channels to ``c`` (layouts in
    ``searchers.spaces.cell``)."""
    ci = c if c_in is None else int(c_in)
    if op.startswith("sep"):
        k = int(op[3])
        return nn.Sequential(
            nn.ReLU(), nn.Conv2d(ci, ci, k, stride, k // 2, groups=ci, bias=False),
            nn.Conv2d(ci, c, 1, bias=False), nn.BatchNorm2d(c),
            nn.ReLU(), nn.Conv2d(c, c, k, 1, k // 2, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))
    if op == "conv1x7_7x1":
        return nn.Sequential(
            nn.ReLU(), nn.Conv2d(ci, c, (1, 7), (1, stride), (0, 3), bias=False),
            nn.Conv2d(c, c, (7, 1), (stride, 1), (3, 0), bias=False), nn.BatchNorm2d(c))
    if op == "identity":
        if stride == 1 and ci == c:
            return nn.Identity()
        return nn.Sequential(nn.ReLU(), nn.Conv2d(ci, c, 1, stride, bias=False),
                             nn.BatchNorm2d(c))
    if op in ("avg3x3", "max3x3"):
        pool: nn.Module = (nn.AvgPool2d(3, stride, 1, count_include_pad=False)
                           if op == "avg3x3" else nn.MaxPool2d(3, stride, 1))
        if ci == c:
            return pool
        return nn.Sequential(pool, nn.Conv2d(ci, c, 1, bias=False), nn.BatchNorm2d(c))
    if op == "dil3x3":
        return nn.Sequential(nn.ReLU(), nn.Conv2d(ci, c, 3, stride, 2, dilation=2, bias=False),
                             nn.BatchNorm2d(c))
    raise ValueError(f"unknown cell op {op!r}")


class FactorizedReduction(nn.Module):
    """Halve a cell input without dropping pixels (NASNet's ``factorized_reduction``): ReLU,
    then two stride-2 1x1 convs, the second on the input shifted by one pixel, concat, BN."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.act = nn.ReLU()
        self.path1 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.path2 = nn.Conv2d(c_in, c_out - c_out // 2, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.path1(x), self.path2(shifted)], dim=1))


def make_pre(kind: str, c_in: int, width: int) -> nn.Module:
    """A cell input's preprocessing (``conv1x1`` or ``factorized``)."""
    if kind == "conv1x1":
        return nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, width, 1, bias=False),
                             nn.BatchNorm2d(width))
    if kind == "factorized":
        return FactorizedReduction(c_in, width)
    raise ValueError(f"unknown input preprocessing {kind!r}")


def drop_path(x: torch.Tensor, drop_prob: torch.Tensor) -> torch.Tensor:
    """Zero whole samples of ``x`` with probability ``drop_prob`` (a 0-d tensor), scale the
    rest by ``1 / keep``."""
    keep = 1.0 - drop_prob
    mask = torch.rand((x.shape[0], 1, 1, 1), device=x.device, dtype=x.dtype) < keep
    return x * mask.to(x.dtype) / keep.to(x.dtype)


class Cell(nn.Module):
    """One cell: prepare the used inputs, run the blocks, concat the output blocks."""

    def __init__(self, cell: Mapping[str, Any], blocks: Sequence[Sequence[int]],
                 ops1: Sequence[str], ops2: Sequence[str], out_blocks: Sequence[int],
                 drop_scale: float = 1.0) -> None:
        super().__init__()
        width, stride = cell["width"], cell["stride"]
        self.pre = nn.ModuleDict()
        for k, inp in enumerate(cell["inputs"]):
            if inp["used"] and inp["pre"]:
                self.pre[str(k)] = make_pre(inp["pre"], inp["shape"][0], width)
        self.inputs = [(int(b[0]), int(b[1])) for b in blocks]
        self.ops = nn.ModuleList()
        self.droppable: list[tuple[bool, bool]] = []
        for (i1, i2), o1, o2 in zip(self.inputs, ops1, ops2):
            pair = []
            for i, op in ((i1, o1), (i2, o2)):
                original = i < NUM_CELL_INPUTS
                pair.append(make_op(op, width, stride if original else 1,
                                    cell["inputs"][i]["channels"] if original else width))
            self.ops.append(nn.ModuleList(pair))
            self.droppable.append((o1 != "identity", o2 != "identity"))
        self.out_blocks = [int(b) for b in out_blocks]
        self.drop_scale = float(drop_scale)

    def forward(self, prev_prev: torch.Tensor, prev: torch.Tensor,
                drop_prob: torch.Tensor | None = None) -> torch.Tensor:
        states: list[torch.Tensor] = [
            self.pre[str(k)](x) if str(k) in self.pre else x
            for k, x in enumerate((prev_prev, prev))]
        p = None if drop_prob is None else drop_prob * self.drop_scale
        for (i1, i2), (op1, op2), (d1, d2) in zip(self.inputs, self.ops, self.droppable):
            h1, h2 = op1(states[i1]), op2(states[i2])
            if p is not None:
                h1 = drop_path(h1, p) if d1 else h1
                h2 = drop_path(h2, p) if d2 else h2
            states.append(h1 + h2)
        outs = [states[b + NUM_CELL_INPUTS] for b in self.out_blocks]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)


class AuxHead(nn.Module):
    """NASNet/PNAS auxiliary classifier (see the module docstring)."""

    def __init__(self, c_in: int, hw: tuple[int, int], num_classes: int) -> None:
        super().__init__()
        k = max(1, min(5, hw[0], hw[1]))
        pooled = ((hw[0] - k) // 3 + 1, (hw[1] - k) // 3 + 1)
        mid, wide = AUX_CHANNELS
        self.features = nn.Sequential(
            nn.ReLU(), nn.AvgPool2d(k, 3), nn.Conv2d(c_in, mid, 1, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(), nn.Conv2d(mid, wide, pooled, bias=False),
            nn.BatchNorm2d(wide), nn.ReLU())
        self.classifier = nn.Linear(wide, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class CellNet(nn.Module):
    """``stem -> cells (stem cells, then 3N) -> ReLU -> global avg pool -> Linear``."""

    def __init__(self, net: Mapping[str, Any], ops1: Sequence[str], ops2: Sequence[str],
                 num_classes: int, aux_head: bool = False) -> None:
        super().__init__()
        stem = net["stem"]
        self.stem = nn.Sequential(
            nn.Conv2d(stem["c_in"], stem["c_out"], 3, stem["stride"], stem["padding"],
                      bias=False),
            nn.BatchNorm2d(stem["c_out"]))
        n_cells = len(net["cells"])
        self.cells = nn.ModuleList(
            Cell(cell, net["blocks"], ops1, ops2, net["out_blocks"], (c + 1) / n_cells)
            for c, cell in enumerate(net["cells"]))
        self.head_act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(net["out"][0], num_classes)
        self.aux_cell = int(net["aux_cell"])
        self.aux_head: AuxHead | None = None
        if aux_head:
            c, h, w = net["cells"][self.aux_cell]["out"]
            self.aux_head = AuxHead(c, (h, w), num_classes)
        self.register_buffer("drop_path_prob", torch.zeros(()), persistent=False)
        self.drop_path_enabled = False

    def set_drop_path(self, prob: float) -> None:
        """Set the drop-path probability of the deepest cell (0 switches drop-path off)."""
        self.drop_path_prob.fill_(float(prob))
        self.drop_path_enabled = prob > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        prev_prev = prev = self.stem(x)
        drop = self.drop_path_prob if self.training and self.drop_path_enabled else None
        aux = None
        for c, cell in enumerate(self.cells):
            prev_prev, prev = prev, cell(prev_prev, prev, drop)
            if c == self.aux_cell and self.aux_head is not None and self.training:
                aux = self.aux_head(prev)
        logits = self.classifier(self.pool(self.head_act(prev)).flatten(1))
        return logits if aux is None else (logits, aux)
