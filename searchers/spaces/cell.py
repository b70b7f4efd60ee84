"""``cell``: the PNAS cell search space (also EPNAS module search).

Grammar::

    genotype := {"space": "cell", "preset": P, "blocks": [block, ...], "N": n, "F": f}
    block    := [in1, in2, op1, op2]        1..max_blocks blocks (PNAS: B = 5)
    in       := 0 (H^{c-2}: the previous-previous cell's output)
              | 1 (H^{c-1}: the previous cell's output)
              | 2 + j (the output of block j of this cell, j < the block's own index)
    op       := "sep3x3" | "sep5x5" | "sep7x7" | "conv1x7_7x1" | "identity"
              | "avg3x3" | "max3x3" | "dil3x3"                  (PNAS §3.1, in that order)

A block outputs ``op1(in1) + op2(in2)`` (PNAS always combines by addition). The cell outputs the
channel concatenation of the blocks no other block uses (its "unused" blocks, as in
NASNet/PNAS; the last block is always one of them). Cell inputs that no block reads are
dropped.

Operators (all map C_cell -> C_cell channels; stride 2 only for ops that read a cell input in
a reduction cell): ``sepKxK`` is two repetitions of ReLU - depthwise KxK - pointwise 1x1 - BN
(PNAS footnote 5; the stride is on the first depthwise conv); ``conv1x7_7x1`` is ReLU - 1x7 -
7x1 - BN; ``dil3x3`` is ReLU - 3x3 conv with dilation 2 - BN (a full conv: the paper says
"3x3 dilated convolution"); ``identity`` is a no-op, or ReLU - 1x1 conv stride 2 - BN when it
must reduce (footnote 5's 1x1 conv where sizes mismatch); pools are 3x3, padding 1.

Each cell first maps each used input to C_cell channels with ReLU - 1x1 conv - BN (stride 2
when that input is twice the size, i.e. right after a reduction cell).

Network (PNAS Fig. 1 right, CIFAR): ``stem Conv3x3(stem_multiplier * F) + BN``, then
``N`` cells with ``F`` filters, a reduction cell (stride 2, filters doubled), ``N`` cells,
a reduction cell, ``N`` cells (``3N + 2`` cells, one cell type as in PNAS), then ReLU - global
average pool - Linear.

Canonical form (symmetries applied; the function class is unchanged by each):

1. the two ``(input, op)`` pairs of a block are unordered since addition commutes: the pair
   with the smaller ``(input, op index)`` comes first;
2. blocks are relabelled in a canonical topological order: any order of the blocks in which
   each block follows the blocks it reads computes the same cell, up to the order of the
   output concatenation, which is a channel permutation that the next cell's 1x1 conv
   absorbs. The canonical order is the one whose encoding (the list of ``(in1, in2, op1,
   op2)`` rows with op indices) is lexicographically smallest (:func:`canonical_blocks`
   finds it without trying every order).

Under (1) the 256 one-block structures collapse to exactly 136 (PNAS §3.1).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from searchers.errors import GenotypeError
from searchers.spaces import Space
from searchers.spaces import _layerwise_cell_costs as C

OPS: tuple[str, ...] = ("sep3x3", "sep5x5", "sep7x7", "conv1x7_7x1", "identity", "avg3x3",
                        "max3x3", "dil3x3")
OP_INDEX = {name: i for i, name in enumerate(OPS)}
NUM_CELL_INPUTS = 2  # H^{c-2} and H^{c-1}

Block = tuple[int, int, int, int]  # (in1, in2, op1 index, op2 index)


class CellSpace(Space):
    """PNAS cells of up to ``max_blocks`` blocks, stacked ``3N + 2`` times."""

    name: ClassVar[str] = "cell"
    default_preset: ClassVar[str] = "pnas-digits"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # PNAS §5.1 search setting on CIFAR-10: B = 5, N = 2, F = 24, 32x32x3.
        "pnas-cifar": {"input_shape": (3, 32, 32), "num_classes": 10, "N": 2, "F": 24,
                       "max_blocks": 5, "stem_multiplier": 3, "max_N": 8, "max_F": 512},
        # Scaled down for 1x8x8 digits on CPU.
        "pnas-digits": {"input_shape": (1, 8, 8), "num_classes": 10, "N": 1, "F": 8,
                        "max_blocks": 5, "stem_multiplier": 3, "max_N": 8, "max_F": 512},
    }

    @property
    def max_blocks(self) -> int:
        return int(self.settings["max_blocks"])

    # -- grammar -------------------------------------------------------------------------
    def _genotype(self, blocks: Iterable[Block], n: int | None = None,
                  f: int | None = None) -> dict[str, Any]:
        return {"space": self.name, "preset": self.preset,
                "blocks": [[b[0], b[1], OPS[b[2]], OPS[b[3]]] for b in blocks],
                "N": int(self.settings["N"] if n is None else n),
                "F": int(self.settings["F"] if f is None else f)}

    def sample(self, rng: Any) -> dict[str, Any]:
        """Uniform number of blocks in ``1..max_blocks``, then uniform inputs and ops."""
        n_blocks = int(rng.integers(1, self.max_blocks + 1))
        blocks = []
        for b in range(n_blocks):
            n_inputs = NUM_CELL_INPUTS + b
            blocks.append((int(rng.integers(n_inputs)), int(rng.integers(n_inputs)),
                           int(rng.integers(len(OPS))), int(rng.integers(len(OPS)))))
        return self._genotype(canonical_blocks(blocks))

    def _parse(self, genotype: Mapping[str, Any]) -> tuple[list[Block], int, int]:
        blocks = self._items(genotype, "blocks", self.max_blocks, "[in1, in2, op1, op2]",
                             other_keys=("N", "F"))
        parsed: list[Block] = []
        for b, block in enumerate(blocks):
            where = f"genotype.blocks[{b}]"
            if (not isinstance(block, Sequence) or isinstance(block, str | bytes)
                    or len(block) != 4):
                raise GenotypeError(where, block, "[in1, in2, op1, op2]")
            inputs = []
            for k in (0, 1):
                value = block[k]
                if not _is_int(value) or not 0 <= value < NUM_CELL_INPUTS + b:
                    raise GenotypeError(
                        f"{where}[{k}]", value,
                        "0 (H^c-2), 1 (H^c-1)" + (f", 2..{b + 1} (blocks 0..{b - 1})"
                                                   if b else ""))
                inputs.append(int(value))
            ops = []
            for k in (2, 3):
                if block[k] not in OP_INDEX:
                    raise GenotypeError(f"{where}[{k}]", block[k], OPS)
                ops.append(OP_INDEX[block[k]])
            parsed.append((inputs[0], inputs[1], ops[0], ops[1]))
        s = self.settings
        n = genotype.get("N", s["N"])
        if not _is_int(n) or not 1 <= n <= s["max_N"]:
            raise GenotypeError("genotype.N", n, f"integers 1..{s['max_N']}")
        f = genotype.get("F", s["F"])
        if not _is_int(f) or not 1 <= f <= s["max_F"]:
            raise GenotypeError("genotype.F", f, f"integers 1..{s['max_F']}")
        return parsed, int(n), int(f)

    def validate(self, genotype: Mapping[str, Any]) -> dict[str, Any]:
        """The genotype in normal form (``N``/``F`` filled in), blocks left in their order."""
        blocks, n, f = self._parse(genotype)
        return self._genotype(blocks, n, f)

    def canonical(self, genotype: Mapping[str, Any]) -> dict[str, Any]:
        blocks, n, f = self._parse(genotype)
        return self._genotype(canonical_blocks(blocks), n, f)

    def enumerate_one_block(self) -> list[dict[str, Any]]:
        """The 136 unique one-block cells (PNAS's first beam), in canonical order."""
        pairs = [(i, o) for i in range(NUM_CELL_INPUTS) for o in range(len(OPS))]
        return [self._genotype([(a[0], b[0], a[1], b[1])])
                for k, a in enumerate(pairs) for b in pairs[k:]]

    def expand(self, cells: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """All unique canonical children with one more block (PNAS ``expand-cell``), in a
        deterministic order: parents in the given order, new blocks in enumeration order."""
        seen: set[tuple[Block, ...]] = set()
        children: list[dict[str, Any]] = []
        for index, cell in enumerate(cells):
            blocks, n, f = self._parse(cell)
            if len(blocks) >= self.max_blocks:
                raise GenotypeError(f"cells[{index}].blocks", f"{len(blocks)} blocks",
                                    f"at most {self.max_blocks - 1} blocks to expand")
            parent = canonical_blocks(blocks)
            repeats = len(set(parent)) < len(parent)
            pairs = [(i, o) for i in range(NUM_CELL_INPUTS + len(parent))
                     for o in range(len(OPS))]
            for k, a in enumerate(pairs):
                for b in pairs[k:]:
                    new = (a[0], b[0], a[1], b[1])
                    child = None if repeats else _append_to_canonical(parent, new)
                    if child is None:
                        child = canonical_blocks([*parent, new])
                    key = (child, n, f)
                    if key in seen:
                        continue
                    seen.add(key)
                    children.append(self._genotype(child, n, f))
        return children

    def tokens(self, genotype: Mapping[str, Any]) -> list[list[int]]:
        """Per canonical block ``[in1, op1, in2, op2]`` as ints (inputs ``0..max_blocks``,
        ops ``0..7`` in ``OPS`` order): the PNAS predictor's input sequence."""
        blocks, _, _ = self._parse(genotype)
        return [[b[0], b[2], b[1], b[3]] for b in canonical_blocks(blocks)]

    def token_vocab(self) -> tuple[int, int]:
        """(number of input values, number of ops) for embedding tables."""
        return NUM_CELL_INPUTS + self.max_blocks - 1, len(OPS)

    def features(self, genotype: Mapping[str, Any]) -> list[str]:
        """Tokens per (input, op) pair (``B1:in=blk0:op=sep5x5``), per block structure, the
        number of blocks, N and F."""
        blocks, n, f = self._parse(genotype)
        blocks = canonical_blocks(blocks)
        tokens = [f"blocks={len(blocks)}", f"N={n}", f"F={f}"]
        for b, (i1, i2, o1, o2) in enumerate(blocks):
            for i, o in ((i1, o1), (i2, o2)):
                tokens.append(f"B{b}:in={_input_name(i)}:op={OPS[o]}")
            tokens.append(f"B{b}:{_input_name(i1)}.{OPS[o1]}+{_input_name(i2)}.{OPS[o2]}")
        return tokens

    # -- plan and costs ------------------------------------------------------------------
    def network(self, genotype: Mapping[str, Any],
                input_shape: tuple[int, ...] | None = None) -> dict[str, Any]:
        """Shapes of every cell: inputs (channels, h, w, downsampling), its width, stride."""
        blocks, n, f = self._parse(genotype)
        c_in, h, w = tuple(input_shape or self.input_shape)
        stem = int(self.settings["stem_multiplier"]) * f
        used = _used_inputs(blocks)
        n_out = len(_unused_blocks(blocks))
        prev_prev = prev = (stem, h, w, 1)
        cells = []
        width = f
        for stage in range(3):
            for kind in (["reduce"] if stage else []) + ["normal"] * n:
                stride = 2 if kind == "reduce" else 1
                if kind == "reduce":
                    width *= 2
                inputs = []
                for k, state in enumerate((prev_prev, prev)):
                    ratio = prev[3] // state[3]
                    inputs.append({"shape": state[:3], "stride": ratio, "used": k in used})
                h_in, w_in = prev[1], prev[2]
                h_out = C.conv_out(h_in, 3, stride, 1)
                w_out = C.conv_out(w_in, 3, stride, 1)
                out = (width * n_out, h_out, w_out, prev[3] * stride)
                cells.append({"kind": kind, "stride": stride, "width": width,
                              "in_hw": (h_in, w_in), "out_hw": (h_out, w_out),
                              "inputs": inputs, "out": out[:3]})
                prev_prev, prev = prev, out
        return {"stem": (c_in, stem, h, w), "cells": cells, "blocks": blocks,
                "out": prev[:3]}

    def plan(self, genotype: Mapping[str, Any], input_shape: tuple[int, ...] | None = None,
             num_classes: int | None = None) -> list[tuple[str, list[C.OpRecord]]]:
        """Leaf ops grouped by node: ``stem``, ``cellK/pre0``, ``cellK/b2.op1``, ...,
        ``cellK/b2.add``, ``cellK/out``, ``head``."""
        net = self.network(genotype, input_shape)
        blocks = net["blocks"]
        c_in, stem, h, w = net["stem"]
        nodes: list[tuple[str, list[C.OpRecord]]] = [
            ("stem", [C.conv(c_in, stem, (3, 3), (1, 1), 1, (h, w), (h, w)),
                      C.batchnorm(stem, (h, w))])]
        unused = _unused_blocks(blocks)
        for c, cell in enumerate(net["cells"]):
            width, hw_in, hw_out = cell["width"], cell["in_hw"], cell["out_hw"]
            for k, inp in enumerate(cell["inputs"]):
                if inp["used"]:
                    ch, hi, wi = inp["shape"]
                    nodes.append((f"cell{c}/pre{k}", [
                        C.relu(ch, (hi, wi)),
                        C.conv(ch, width, (1, 1), (inp["stride"],) * 2, 1, (hi, wi), hw_in),
                        C.batchnorm(width, hw_in)]))
            for b, (i1, i2, o1, o2) in enumerate(blocks):
                for slot, (i, o) in enumerate(((i1, o1), (i2, o2)), start=1):
                    stride = cell["stride"] if i < NUM_CELL_INPUTS else 1
                    src_hw = hw_in if i < NUM_CELL_INPUTS else hw_out
                    nodes.append((f"cell{c}/b{b}.op{slot}",
                                  op_records(OPS[o], width, stride, src_hw, hw_out)))
                nodes.append((f"cell{c}/b{b}.add", [C.add(width, hw_out)]))
            out_records = ([C.concat(width * len(unused), hw_out)] if len(unused) > 1 else [])
            nodes.append((f"cell{c}/out", out_records))
        c_last, h_last, w_last = net["out"]
        nodes.append(("head", [C.relu(c_last, (h_last, w_last)),
                               C.global_avgpool(c_last, (h_last, w_last)),
                               C.linear(c_last, int(num_classes or self.num_classes))]))
        return nodes

    def costs(self, genotype: Mapping[str, Any], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None) -> dict[str, float]:
        nodes = self.plan(genotype, input_shape, num_classes)
        return C.total_costs(r for _, records in nodes for r in records)

    def graph(self, genotype: Mapping[str, Any]) -> Any:
        """The cell DAG: ``in0`` (H^c-2), ``in1`` (H^c-1), per block two op nodes and an add
        node, and the ``out`` concat node; edges ``seq``. Node ``costs`` are summed over all
        ``3N + 2`` copies of the cell in the network (stem and head are left out)."""
        import networkx as nx

        g = self.canonical(genotype)
        blocks, _, _ = self._parse(g)
        per_node: dict[str, list[C.OpRecord]] = {}
        for name, records in self.plan(g):
            if name.startswith("cell"):
                per_node.setdefault(name.split("/", 1)[1], []).extend(records)
        graph = nx.DiGraph()
        graph.add_node("in0", label="H[c-2]", costs=C.total_costs(per_node.get("pre0", [])))
        graph.add_node("in1", label="H[c-1]", costs=C.total_costs(per_node.get("pre1", [])))

        def source(i: int) -> str:
            return f"in{i}" if i < NUM_CELL_INPUTS else f"b{i - NUM_CELL_INPUTS}"

        for b, (i1, i2, o1, o2) in enumerate(blocks):
            graph.add_node(f"b{b}", label=f"block {b} (+)", costs=C.total_costs(
                per_node[f"b{b}.add"]))
            for slot, (i, o) in enumerate(((i1, o1), (i2, o2)), start=1):
                node = f"b{b}.op{slot}"
                graph.add_node(node, label=OPS[o], op=OPS[o],
                               costs=C.total_costs(per_node[node]))
                graph.add_edge(source(i), node, kind="seq")
                graph.add_edge(node, f"b{b}", kind="seq")
        graph.add_node("out", label="concat", costs=C.total_costs(per_node["out"]))
        for b in _unused_blocks(blocks):
            graph.add_edge(f"b{b}", "out", kind="seq")
        return graph

    def build(self, genotype: Mapping[str, Any], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None) -> Any:
        from searchers.spaces._cell_modules import CellNet

        shape = tuple(input_shape or self.input_shape)
        net = self.network(genotype, shape)
        return CellNet(net, [OPS[b[2]] for b in net["blocks"]],
                       [OPS[b[3]] for b in net["blocks"]],
                       int(num_classes or self.num_classes))


def op_records(op: str, width: int, stride: int, in_hw: tuple[int, int],
               out_hw: tuple[int, int]) -> list[C.OpRecord]:
    """Leaf ops of one PNAS operator (see the module docstring), ``width`` channels."""
    c = width
    if op.startswith("sep"):
        k = int(op[3])
        return [C.relu(c, in_hw), C.conv(c, c, (k, k), (stride, stride), c, in_hw, out_hw),
                C.conv(c, c, (1, 1), (1, 1), 1, out_hw, out_hw), C.batchnorm(c, out_hw),
                C.relu(c, out_hw), C.conv(c, c, (k, k), (1, 1), c, out_hw, out_hw),
                C.conv(c, c, (1, 1), (1, 1), 1, out_hw, out_hw), C.batchnorm(c, out_hw)]
    if op == "conv1x7_7x1":
        mid = (in_hw[0], out_hw[1])
        return [C.relu(c, in_hw), C.conv(c, c, (1, 7), (1, stride), 1, in_hw, mid),
                C.conv(c, c, (7, 1), (stride, 1), 1, mid, out_hw), C.batchnorm(c, out_hw)]
    if op == "identity":
        if stride == 1:
            return []
        return [C.relu(c, in_hw), C.conv(c, c, (1, 1), (stride, stride), 1, in_hw, out_hw),
                C.batchnorm(c, out_hw)]
    if op in ("avg3x3", "max3x3"):
        return [C.pool("avgpool" if op == "avg3x3" else "maxpool", c, 3, stride, in_hw, out_hw)]
    if op == "dil3x3":
        return [C.relu(c, in_hw), C.conv(c, c, (3, 3), (stride, stride), 1, in_hw, out_hw),
                C.batchnorm(c, out_hw)]
    raise ValueError(f"unknown cell op {op!r}")


def _is_int(value: Any) -> bool:
    """An integer, numpy integers included (genotypes built from ``rng`` draws), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _input_name(i: int) -> str:
    return ("prev2", "prev1")[i] if i < NUM_CELL_INPUTS else f"blk{i - NUM_CELL_INPUTS}"


def _used_inputs(blocks: Sequence[Block]) -> set[int]:
    return {i for b in blocks for i in b[:2]}


def _unused_blocks(blocks: Sequence[Block]) -> list[int]:
    """Blocks no other block reads: the ones concatenated into the cell output."""
    used = _used_inputs(blocks)
    return [b for b in range(len(blocks)) if b + NUM_CELL_INPUTS not in used]


def _append_to_canonical(parent: tuple[Block, ...], new: Block) -> tuple[Block, ...] | None:
    """``canonical_blocks(parent + [new])`` in O(B) for a canonical ``parent`` without repeated
    blocks and a pair-sorted ``new`` block, or None when the fast path does not apply.

    The greedy search of :func:`canonical_blocks` on the child places the parent's blocks in
    the parent's order (relabelling by a monotone shift keeps their comparisons) and the new
    block at the first position where it is ready and smaller than the parent's block there.
    An equal row there is a tie the full search must resolve.
    """
    top = max(new[0], new[1])
    ready = top - NUM_CELL_INPUTS + 1 if top >= NUM_CELL_INPUTS else 0
    place = len(parent)
    for position in range(ready, len(parent)):
        if new == parent[position]:
            return None
        if new < parent[position]:
            place = position
            break
    cut = NUM_CELL_INPUTS + place
    shifted = tuple((i1 + (i1 >= cut), i2 + (i2 >= cut), o1, o2)
                    for i1, i2, o1, o2 in parent[place:])
    return (*parent[:place], new, *shifted)


def canonical_blocks(blocks: Sequence[Block]) -> tuple[Block, ...]:
    """Canonical representative of a block list (op indices) under both symmetries: the
    lexicographically smallest encoding over every topological relabelling of the blocks,
    each block's pair sorted.

    Search: position by position, place the ready block (all its inputs placed) whose
    relabelled, pair-sorted row is smallest; a row depends only on blocks already placed, so
    any other choice is lexicographically larger. Ready blocks with equal rows are identical
    blocks; the search branches over them unless no block reads any of them (then swapping
    them is an automorphism and the choice cannot matter). Without repeated blocks this is
    O(B^2).
    """
    read = {i - NUM_CELL_INPUTS for block in blocks for i in block[:2] if i >= NUM_CELL_INPUTS}

    def search(position: dict[int, int], remaining: list[int],
               out: list[Block]) -> tuple[Block, ...]:
        while remaining:
            best: Block | None = None
            tied: list[int] = []
            for old in remaining:
                i1, i2, o1, o2 = blocks[old]
                if i1 >= NUM_CELL_INPUTS:
                    if i1 - NUM_CELL_INPUTS not in position:
                        continue
                    i1 = position[i1 - NUM_CELL_INPUTS] + NUM_CELL_INPUTS
                if i2 >= NUM_CELL_INPUTS:
                    if i2 - NUM_CELL_INPUTS not in position:
                        continue
                    i2 = position[i2 - NUM_CELL_INPUTS] + NUM_CELL_INPUTS
                row = (i1, i2, o1, o2) if (i1, o1) <= (i2, o2) else (i2, i1, o2, o1)
                if best is None or row < best:
                    best, tied = row, [old]
                elif row == best:
                    tied.append(old)
            if best is None:
                raise ValueError(f"blocks {blocks!r} read a later block")
            if len(tied) > 1 and read.intersection(tied):
                return min(search({**position, choice: len(out)},
                                  [r for r in remaining if r != choice], [*out, best])
                           for choice in tied)
            position[tied[0]] = len(out)
            remaining.remove(tied[0])
            out.append(best)
        return tuple(out)

    return search({}, list(range(len(blocks))), [])


__all__ = ["OPS", "CellSpace", "canonical_blocks", "op_records"]
