"""``module``: EPNAS module search over the paper's Table 3 space, and its morpher (torch-free).

Grammar::

    genotype := {"space": "module", "preset": P, "branches": [branch, ...]}   1..max_branches
    branch   := {"type": T, "src1": i, "src2": j, "channels": C, "kernel": K | null,
                 "pool": W | null, "propagate": bool}
    T        := conv-conv | conv-maxpool | conv-avgpool | conv-none | maxpool-none
                | avgpool-none | 1x7-7x1-none                           (Table 3 branch types)
    C        := preset ``channels`` ([8, 12, 16, 24, 32])             (Table 3 channel size)
    K        := preset ``kernels`` ([1, 3, 5, 7]) when T has a conv    (Table 3 filter width)
    W        := preset ``pools`` ([2, 3]) when T has a pooling op     (Table 3 pooling width)
    i        := 0 (the previous cell's output H^{c-1}) or k (branch k - 1), i <= b for branch b
    j        := -1 (the cell before, H^{c-2}), 0 or k as for i; 0 when T has no second op

A branch applies its first operation to Src1 and its second to Src2 and concatenates the two
(paper §3.3: "each branch consists of two operations to be concatenated"); ``-none`` types have
one operation. Each operation outputs ``C`` channels times the stage's width multiplier:

* ``conv``: ReLU, ``K x K`` conv, BN (supplement §4: activation, convolution, batch-norm);
* ``1x7-7x1``: ReLU, ``1 x 7`` conv, ``7 x 1`` conv, BN;
* ``maxpool`` / ``avgpool``: ``W x W`` pooling (``W = 3`` pads 1; ``W = 2`` pads one row and
  column at the bottom right by replication, so the size is kept), then a 1x1 conv and BN to
  ``C`` when the input has another channel count.

The cell's output concatenates the branches whose ``propagate`` is set (the last branch when
none is, which the canonical form writes as the last branch propagating). Cells are stacked as PNAS's released code does: a 3x3 stem conv and BN, then three
stages of ``N`` cells, the first cell of stages 2 and 3 a reduction cell (operations reading a
cell input use stride 2), widths doubling per stage; ReLU, global average pooling and a linear
classifier close the network. ``H^{c-2}`` is brought to ``H^{c-1}``'s size by a stride-2 1x1
conv and BN when a reduction lies between them.

Morphs (:class:`ModuleMorpher`, the paper's scale and insert LSTM actions for module search):

* scale: the branches are split into ``F = scale_groups`` (4) contiguous groups; per group,
  channels move one step up / keep / down along ``channels`` and the filter width one step
  along ``kernels`` (conv branches) or ``pools`` (pooling branches);
* insert a branch at ``p = place mod (L + 1)`` with Src1 ``src1 mod (p + 1)``, Src2 from the
  policy's Src2 head (value ``p``: ``H^{c-2}``; value ``v < p``: input ``v``), and its type,
  channels, filter width, pooling width and propagate from their heads. As in the paper's
  Fig. 3, a branch the new one reads stops propagating to the cell output;
* remove branch ``r = place mod L``: later readers of it read its Src1 instead.

Choices where the paper is silent, all documented here and in ``docs/epnas.md``: the stacking
(PNAS's), concatenation of a branch's two operations, the stride rule of reduction cells
(NASNet's), padding of 2-wide pooling, Fig. 3's cut-off applied to every branch the new one
reads, and irrelevant fields normalised (``kernel`` null without a conv, ``pool`` null without
pooling, ``src2`` 0 without a second operation) so equal networks hash equal.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Mapping
from typing import Any, ClassVar

from searchers.epnas.actions import (
    KIND_INSERT,
    KIND_REMOVE,
    STEP,
    PolicyShape,
    insert_position,
    mixed_radix,
    remove_index,
    step_in,
)
from searchers.errors import GenotypeError
from searchers.spaces import Space
from searchers.spaces import _layerwise_cell_costs as C

BRANCH_TYPES = ("conv-conv", "conv-maxpool", "conv-avgpool", "conv-none", "maxpool-none",
                "avgpool-none", "1x7-7x1-none")
BRANCH_KEYS = ("type", "src1", "src2", "channels", "kernel", "pool", "propagate")
H_PREV2 = -1  # Src2 value for the cell before the previous one


def branch_ops(branch_type: str) -> tuple[str, str | None]:
    """``(first op, second op or None)`` of a branch type."""
    if branch_type == "1x7-7x1-none":
        return "conv1x7_7x1", None
    first, second = branch_type.split("-")
    return first, None if second == "none" else second


def _has(branch_type: str, kind: str) -> bool:
    ops = [op for op in branch_ops(branch_type) if op is not None]
    if kind == "conv":
        return "conv" in ops
    return any(op in ("maxpool", "avgpool") for op in ops)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


class ModuleSpace(Space):
    """EPNAS module search: a cell of up to ``max_branches`` two-operation branches."""

    name: ClassVar[str] = "module"
    default_preset: ClassVar[str] = "epnas-digits"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # EPNAS Table 3 (CIFAR-10 module search), stacked as PNAS's search network (N = 2).
        "epnas-cifar": {
            "input_shape": (3, 32, 32), "num_classes": 10, "channels": [8, 12, 16, 24, 32],
            "kernels": [1, 3, 5, 7], "pools": [2, 3], "max_branches": 5, "N": 2,
            "stem_filters": 32, "scale_groups": 4,
        },
        # The same grammar on 1x8x8 digits: channels halved, one cell per stage.
        "epnas-digits": {
            "input_shape": (1, 8, 8), "num_classes": 10, "channels": [4, 6, 8, 12, 16],
            "kernels": [1, 3, 5, 7], "pools": [2, 3], "max_branches": 5, "N": 1,
            "stem_filters": 8, "scale_groups": 4,
        },
    }

    @property
    def max_branches(self) -> int:
        return int(self.settings["max_branches"])

    # -- grammar -------------------------------------------------------------------------
    def initial(self) -> dict[str, Any]:
        """The small start: one 3x3 conv branch of the second-smallest width."""
        s = self.settings
        return self.validate({"space": self.name, "preset": self.preset, "branches": [
            {"type": "conv-none", "src1": 0, "src2": 0, "channels": s["channels"][1],
             "kernel": 3, "pool": None, "propagate": True}]})

    def sample(self, rng: Any) -> dict[str, Any]:
        """Uniform branch count, then every field uniform over its valid values."""
        s = self.settings
        n = int(rng.integers(1, self.max_branches + 1))
        branches = []
        for b in range(n):
            branches.append({
                "type": BRANCH_TYPES[int(rng.integers(len(BRANCH_TYPES)))],
                "src1": int(rng.integers(b + 1)),
                "src2": int(rng.integers(-1, b + 1)),
                "channels": int(s["channels"][int(rng.integers(len(s["channels"])))]),
                "kernel": int(s["kernels"][int(rng.integers(len(s["kernels"])))]),
                "pool": int(s["pools"][int(rng.integers(len(s["pools"])))]),
                "propagate": bool(rng.integers(2)),
            })
        return self.validate({"space": self.name, "preset": self.preset, "branches": branches})

    def validate(self, genotype: Mapping[str, Any]) -> dict[str, Any]:
        s = self.settings
        branches = self._items(genotype, "branches", self.max_branches, "branch dicts")
        out = []
        for b, branch in enumerate(branches):
            where = f"genotype.branches[{b}]"
            if not isinstance(branch, Mapping):
                raise GenotypeError(where, branch, "a dict with keys " + ", ".join(BRANCH_KEYS))
            unknown = set(branch) - set(BRANCH_KEYS)
            if unknown:
                key = sorted(unknown)[0]
                raise GenotypeError(f"{where}.{key}", branch[key], BRANCH_KEYS)
            kind = branch.get("type")
            if kind not in BRANCH_TYPES:
                raise GenotypeError(f"{where}.type", kind, BRANCH_TYPES)
            src1 = branch.get("src1", 0)
            if not _is_int(src1) or not 0 <= src1 <= b:
                raise GenotypeError(f"{where}.src1", src1, f"0..{b} (0: the previous cell)")
            has_second = branch_ops(kind)[1] is not None
            src2 = branch.get("src2", 0)
            if not _is_int(src2) or not H_PREV2 <= src2 <= b:
                raise GenotypeError(f"{where}.src2", src2,
                                    f"-1..{b} (-1: two cells back, 0: the previous cell)")
            channels = branch.get("channels")
            if isinstance(channels, bool) or channels not in s["channels"]:
                raise GenotypeError(f"{where}.channels", channels, s["channels"])
            kernel = branch.get("kernel")
            if _has(kind, "conv") and (isinstance(kernel, bool) or kernel not in s["kernels"]):
                raise GenotypeError(f"{where}.kernel", kernel, s["kernels"])
            pool = branch.get("pool")
            if _has(kind, "pool") and (isinstance(pool, bool) or pool not in s["pools"]):
                raise GenotypeError(f"{where}.pool", pool, s["pools"])
            propagate = branch.get("propagate", True)
            if not isinstance(propagate, bool | int) or propagate not in (0, 1):
                raise GenotypeError(f"{where}.propagate", propagate, [True, False])
            out.append({"type": kind, "src1": int(src1), "src2": int(src2) if has_second else 0,
                        "channels": int(channels),
                        "kernel": int(kernel) if _has(kind, "conv") else None,
                        "pool": int(pool) if _has(kind, "pool") else None,
                        "propagate": bool(propagate)})
        if not any(br["propagate"] for br in out):  # the last branch feeds the output anyway
            out[-1]["propagate"] = True
        return {"space": self.name, "preset": self.preset, "branches": out}

    def features(self, genotype: Mapping[str, Any]) -> list[str]:
        """One token per branch (type, widths, inputs, propagate) and the branch count."""
        g = self.validate(genotype)
        tokens = [f"branches={len(g['branches'])}"]
        for b, br in enumerate(g["branches"]):
            tokens.append(f"B{b}:{br['type']}:c{br['channels']}:k{br['kernel']}:p{br['pool']}")
            tokens.append(f"B{b}:in={br['src1']},{br['src2']}:out={int(br['propagate'])}")
        return tokens

    # -- network ---------------------------------------------------------------------------
    def cells(self) -> list[tuple[bool, int]]:
        """``(reduction, width multiplier)`` per cell: 3 stages of N, reductions first in
        stages 2 and 3 (PNAS's released stacking)."""
        n = int(self.settings["N"])
        return [(stage > 0 and i == 0, 2 ** stage) for stage in range(3) for i in range(n)]

    @staticmethod
    def outputs(g: Mapping[str, Any]) -> list[int]:
        """Indices of the branches concatenated into the cell output."""
        chosen = [b for b, br in enumerate(g["branches"]) if br["propagate"]]
        return chosen or [len(g["branches"]) - 1]

    def plan(self, genotype: Mapping[str, Any], input_shape: tuple[int, ...] | None = None,
             num_classes: int | None = None) -> dict[str, Any]:
        """Every leaf op of the built network with its shapes: the single source of the
        analytic costs and of :mod:`searchers.epnas._module_nets`' modules."""
        g = self.validate(genotype)
        c_in, h, w = tuple(input_shape or self.input_shape)
        stem = int(self.settings["stem_filters"])
        records: list[C.OpRecord] = [C.conv(c_in, stem, (3, 3), (1, 1), 1, (h, w), (h, w)),
                                     C.batchnorm(stem, (h, w))]
        prev2 = prev1 = (stem, h, w)
        cells = []
        for reduction, mult in self.cells():
            cell = self._plan_cell(g, prev2, prev1, reduction, mult, records)
            cells.append(cell)
            prev2, prev1 = prev1, cell["out"]
        c, h, w = prev1
        classes = int(num_classes or self.num_classes)
        records += [C.relu(c, (h, w)), C.global_avgpool(c, (h, w)), C.linear(c, classes)]
        return {"records": records, "cells": cells, "stem": stem, "c_in": c_in,
                "out_channels": c, "num_classes": classes}

    def _plan_cell(self, g: Mapping[str, Any], prev2: tuple[int, int, int],
                   prev1: tuple[int, int, int], reduction: bool, mult: int,
                   records: list[C.OpRecord]) -> dict[str, Any]:
        c1, h1, w1 = prev1
        c2, h2, w2 = prev2
        cell: dict[str, Any] = {"reduction": reduction, "pre2": None, "branches": []}
        uses_prev2 = any(br["src2"] == H_PREV2 and branch_ops(br["type"])[1] is not None
                         for br in g["branches"])
        if uses_prev2 and (h2, w2) != (h1, w1):
            hs, ws = C.conv_out(h2, 1, 2, 0), C.conv_out(w2, 1, 2, 0)
            records += [C.conv(c2, c2, (1, 1), (2, 2), 1, (h2, w2), (hs, ws)),
                        C.batchnorm(c2, (hs, ws))]
            cell["pre2"] = (c2, (h2, w2), (hs, ws))
            prev2 = (c2, hs, ws)
        stride = 2 if reduction else 1
        ho, wo = C.conv_out(h1, 1, stride, 0), C.conv_out(w1, 1, stride, 0)
        shapes: list[tuple[int, int, int]] = []  # each branch's output

        def source(ref: int) -> tuple[tuple[int, int, int], int]:
            if ref == H_PREV2:
                return prev2, stride
            if ref == 0:
                return prev1, stride
            return shapes[ref - 1], 1

        for br in g["branches"]:
            width = br["channels"] * mult
            ops = []
            for op, ref in zip(branch_ops(br["type"]), (br["src1"], br["src2"]), strict=True):
                if op is None:
                    continue
                (c, h, w), s = source(ref)
                ops.append(self._plan_op(op, br, c, (h, w), s, width, records))
            c_out = sum(o["out"][0] for o in ops)
            shapes.append((c_out, ho, wo))
            cell["branches"].append({"ops": ops, "out": (c_out, ho, wo)})
        c_cell = sum(shapes[b][0] for b in self.outputs(g))
        cell["out"] = (c_cell, ho, wo)
        return cell

    @staticmethod
    def _plan_op(op: str, br: Mapping[str, Any], c: int, hw: tuple[int, int], stride: int,
                 width: int, records: list[C.OpRecord]) -> dict[str, Any]:
        h, w = hw
        ho, wo = C.conv_out(h, 1, stride, 0), C.conv_out(w, 1, stride, 0)
        spec: dict[str, Any] = {"op": op, "in": (c, h, w), "stride": stride, "proj": False}
        if op == "conv":
            k = br["kernel"]
            records += [C.relu(c, (h, w)),
                        C.conv(c, width, (k, k), (stride, stride), 1, (h, w), (ho, wo)),
                        C.batchnorm(width, (ho, wo))]
            spec.update(kernel=k, out=(width, ho, wo))
        elif op == "conv1x7_7x1":
            records += [C.relu(c, (h, w)),
                        C.conv(c, width, (1, 7), (1, stride), 1, (h, w), (h, wo)),
                        C.conv(width, width, (7, 1), (stride, 1), 1, (h, wo), (ho, wo)),
                        C.batchnorm(width, (ho, wo))]
            spec.update(out=(width, ho, wo))
        else:
            k = br["pool"]
            if k == 2:
                records.append(C.pool_unpadded(op, c, 2, stride, (h + 1, w + 1), (ho, wo)))
            else:
                records.append(C.pool(op, c, k, stride, (h, w), (ho, wo)))
            spec.update(kernel=k)
            if c != width:
                records += [C.conv(c, width, (1, 1), (1, 1), 1, (ho, wo), (ho, wo)),
                            C.batchnorm(width, (ho, wo))]
                spec["proj"] = True
            spec["out"] = (width, ho, wo)
        return spec

    def costs(self, genotype: Mapping[str, Any], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None) -> dict[str, float]:
        return C.total_costs(self.plan(genotype, input_shape, num_classes)["records"])

    def graph(self, genotype: Mapping[str, Any]) -> Any:
        """The cell: inputs, branches (labelled with their type and widths) and the output."""
        import networkx as nx

        g = self.validate(genotype)
        graph = nx.DiGraph()
        graph.add_node("H[c-2]", label="cell c-2", costs={})
        graph.add_node("H[c-1]", label="cell c-1", costs={})
        names = {H_PREV2: "H[c-2]", 0: "H[c-1]"}
        for b, br in enumerate(g["branches"]):
            node = f"B{b}"
            names[b + 1] = node
            label = f"{br['type']} c{br['channels']}"
            if br["kernel"] is not None:
                label += f" k{br['kernel']}"
            if br["pool"] is not None:
                label += f" p{br['pool']}"
            graph.add_node(node, label=label, costs={})
            graph.add_edge(names[br["src1"]], node, kind="seq")
            if branch_ops(br["type"])[1] is not None:
                graph.add_edge(names[br["src2"]], node, kind="skip")
        graph.add_node("out", label="concat", costs={})
        for b in self.outputs(g):
            graph.add_edge(f"B{b}", "out", kind="seq")
        return graph

    def build(self, genotype: Mapping[str, Any], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None) -> Any:
        from searchers.epnas._module_nets import ModuleNet

        g = self.validate(genotype)
        return ModuleNet(g, self.plan(g, input_shape, num_classes), self.outputs(g))

    # -- morph helpers ---------------------------------------------------------------------
    def groups(self, genotype: Mapping[str, Any]) -> list[list[int]]:
        """Branch indices of each of the ``scale_groups`` contiguous groups."""
        n = len(genotype["branches"])
        f = int(self.settings["scale_groups"])
        groups: list[list[int]] = [[] for _ in range(f)]
        for i in range(n):
            groups[i * f // n].append(i)
        return groups


class ModuleMorpher:
    """The policy's view of the ``module`` space (paper Table 3 actions)."""

    def __init__(self, space: ModuleSpace) -> None:
        s = space.settings
        self.space = space
        self.channels = list(s["channels"])
        self.kernels = list(s["kernels"])
        self.pools = list(s["pools"])
        self.max_branches = space.max_branches
        self._radix = (len(BRANCH_TYPES), len(self.channels), len(self.kernels) + 1,
                       len(self.pools) + 1, 2, 3)
        n_tokens = 1
        for size in self._radix:
            n_tokens *= size
        self.shape = PolicyShape(
            n_tokens=n_tokens, n_groups=int(s["scale_groups"]), max_layers=self.max_branches,
            attr_sizes=(self.max_branches + 1, len(BRANCH_TYPES), len(self.channels),
                        len(self.kernels), len(self.pools), 2))

    def initial(self) -> dict[str, Any]:
        return self.space.initial()

    def tokens(self, genotype: Mapping[str, Any]) -> list[int]:
        out = []
        for br in genotype["branches"]:
            kernel = 0 if br["kernel"] is None else 1 + self.kernels.index(br["kernel"])
            pool = 0 if br["pool"] is None else 1 + self.pools.index(br["pool"])
            second = 0 if br["src2"] == H_PREV2 else 1 if br["src2"] == 0 else 2
            out.append(mixed_radix((BRANCH_TYPES.index(br["type"]),
                                    self.channels.index(br["channels"]), kernel, pool,
                                    int(br["propagate"]), second), self._radix))
        return out

    def group_mask(self, genotype: Mapping[str, Any]) -> list[bool]:
        return [bool(group) for group in self.space.groups(genotype)]

    def morph(self, genotype: Mapping[str, Any], decision: Mapping[str, Any]) -> dict[str, Any]:
        g = self.space.validate(genotype)
        branches = copy.deepcopy(g["branches"])
        for group, (channel_choice, width_choice) in zip(self.space.groups(g),
                                                         decision["scale"], strict=False):
            for b in group:
                br = branches[b]
                br["channels"] = step_in(self.channels, br["channels"], STEP[int(channel_choice)])
                if br["kernel"] is not None:
                    br["kernel"] = step_in(self.kernels, br["kernel"], STEP[int(width_choice)])
                if br["pool"] is not None:
                    br["pool"] = step_in(self.pools, br["pool"], STEP[int(width_choice)])
        kind, place, src2, src1, type_i, channels_i, kernel_i, pool_i, propagate = (
            int(v) for v in decision["insert"])
        if kind == KIND_INSERT and len(branches) < self.max_branches:
            p = insert_position(place, len(branches))
            for br in branches[p:]:
                for key in ("src1", "src2"):
                    if br[key] >= p + 1:
                        br[key] += 1
            new = {"type": BRANCH_TYPES[type_i], "src1": src1 % (p + 1),
                   "src2": H_PREV2 if src2 >= p else src2,
                   "channels": self.channels[channels_i], "kernel": self.kernels[kernel_i],
                   "pool": self.pools[pool_i], "propagate": bool(propagate)}
            reads = {new["src1"]} | ({new["src2"]} if branch_ops(new["type"])[1] else set())
            for ref in reads:  # Fig. 3: a branch the new one reads stops feeding the output
                if ref >= 1:
                    branches[ref - 1]["propagate"] = False
            branches.insert(p, new)
        elif kind == KIND_REMOVE and len(branches) > 1:
            r = remove_index(place, len(branches))
            replacement = branches[r]["src1"]
            del branches[r]
            for br in branches[r:]:
                for key in ("src1", "src2"):
                    if br[key] == r + 1:
                        br[key] = replacement
                    elif br[key] > r + 1:
                        br[key] -= 1
        return self.space.validate({"space": g["space"], "preset": g["preset"],
                                    "branches": branches})

    def sharing_keys(self, genotype: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Per cell and branch: the branch's operations, keyed by position and type."""
        g = self.space.validate(genotype)
        keys = []
        for c in range(len(self.space.cells())):
            keys.append((f"cells.{c}.pre2.", f"cell{c}:pre2"))
            for b, br in enumerate(g["branches"]):
                keys.append((f"cells.{c}.branches.{b}.", f"cell{c}:branch{b}:{br['type']}"))
        return keys


__all__ = ["BRANCH_TYPES", "ModuleMorpher", "ModuleSpace", "branch_ops"]
