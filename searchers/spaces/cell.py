"""``cell``: the PNAS cell search space (also EPNAS module search).

Grammar::

    genotype := {"space": "cell", "preset": P, "blocks": [block, ...], "N": n, "F": f}
    block    := [in1, in2, op1, op2]        1..max_blocks blocks (PNAS: B = 5)
    in       := 0 (H^{c-2}: the previous-previous cell's output)
              | 1 (H^{c-1}: the previous cell's output)
              | 2 + j (the output of block j of this cell, j < the block's own index)
    op       := "sep3x3" | "sep5x5" | "sep7x7" | "conv1x7_7x1" | "identity"
              | "avg3x3" | "max3x3" | "dil3x3"                  (PNAS §3.1, in that order)

A block outputs ``op1(in1) + op2(in2)`` (PNAS always combines by addition). The cell output is
set by the preset's ``cell_output``:

* ``"all"`` (every preset; PNAS's released PNASNet-5, whose ``used_hiddenstates`` marks only
  the two cell inputs as used): the channel concatenation of *all* blocks, so a cell of ``b``
  blocks outputs ``b * width`` channels;
* ``"unused"`` (NASNet's rule, kept as an option: ``get_space("cell", preset,
  cell_output="unused")``): the concatenation of the blocks no other block reads (the last block
  is always one of them).

Cell inputs that no block reads are dropped (the released code computes them and throws them
away; dropping them changes no output).

Network, as PNAS's released code (TF-slim ``nets/nasnet/pnasnet.py``) builds it: a stem, then
``3N`` cells, the ones at positions ``N`` and ``2N`` reduction cells (``calc_reduction_layers``:
the same searched cell at stride 2, filters doubled), so ``N`` cells at ``F`` filters, then a
reduction and ``N - 1`` cells at ``2F``, a reduction and ``N - 1`` cells at ``4F``; then ReLU,
global average pooling and a Linear classifier. The stem is set by the preset's ``stem``:

* ``"cifar"``: ``Conv3x3(stem_multiplier * F) + BN`` at stride 1 (NASNet's CIFAR stem);
* ``"imagenet"``: ``Conv3x3(32 * stem_multiplier)`` at stride 2 without padding + BN, then two
  stem cells -- the searched cell at stride 2 with ``F / 4`` and ``F / 2`` filters (rounded down)
  -- as ``nasnet._imagenet_stem`` with PNAS's cell.

Cell inputs (``_cell_base`` of the released code): ``H^{c-1}`` gets ``ReLU - Conv1x1 - BN`` to the
cell's width. ``H^{c-2}`` gets a factorized reduction (ReLU, two stride-2 1x1 convs, the second on
the input shifted by one pixel, concatenated, BN) when it is twice the size of ``H^{c-1}``,
``ReLU - Conv1x1 - BN`` when only its channel count differs, nothing when it already matches.
The first cell after the stem conv has no ``H^{c-2}``: it reads the stem output there, as is.

Operators map their input's channels to the cell's width (``c_in`` differs from the width only
for the raw stem output above); stride 2 only for ops that read a cell input in a reduction
cell. ``sepKxK`` is two repetitions of ReLU - depthwise KxK - pointwise 1x1 - BN (PNAS
footnote 5; the stride and any channel change are in the first repetition); ``conv1x7_7x1`` is
ReLU - 1x7 - 7x1 - BN; ``dil3x3`` is ReLU - 3x3 conv with dilation 2 - BN (a full conv: the
paper says "3x3 dilated convolution"); ``identity`` is a no-op, or ReLU - 1x1 conv - BN when it
must reduce or change channels (footnote 5); pools are 3x3, padding 1, followed by 1x1 conv - BN
only when channels change.

Training extras, off unless asked (they cost nothing in :meth:`CellSpace.costs`, which counts
the network the paper's parameter counts describe): an auxiliary classifier after the last cell
before the second reduction (2/3 of the depth, PNAS §5.4/§5.5; ``build(..., aux_head=True)``)
and drop-path on every non-identity op (``model.drop_path_prob``; see
:mod:`searchers.spaces._cell_modules`).

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

from searchers.errors import GenotypeError, UnknownName
from searchers.spaces import Space
from searchers.spaces import _layerwise_cell_costs as C

OPS: tuple[str, ...] = ("sep3x3", "sep5x5", "sep7x7", "conv1x7_7x1", "identity", "avg3x3",
                        "max3x3", "dil3x3")
OP_INDEX = {name: i for i, name in enumerate(OPS)}
NUM_CELL_INPUTS = 2  # H^{c-2} and H^{c-1}
STEMS = ("cifar", "imagenet")
CELL_OUTPUTS = ("all", "unused")
IMAGENET_STEM_FILTERS = 32  # nasnet._imagenet_stem: int(32 * stem_multiplier)
IMAGENET_STEM_CELLS = 2

Block = tuple[int, int, int, int]  # (in1, in2, op1 index, op2 index)


class CellSpace(Space):
    """PNAS cells of up to ``max_blocks`` blocks, stacked ``3N`` times after a stem."""

    name: ClassVar[str] = "cell"
    default_preset: ClassVar[str] = "pnas-digits"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # PNAS §5.1 search setting on CIFAR-10: B = 5, N = 2, F = 24, 32x32x3 (the final
        # PNASNet-5 is N = 3, F = 48: Table 3).
        "pnas-cifar": {"input_shape": (3, 32, 32), "num_classes": 10, "N": 2, "F": 24,
                       "max_blocks": 5, "stem": "cifar", "stem_multiplier": 3,
                       "cell_output": "all", "max_N": 8, "max_F": 512},
        # Scaled down for 1x8x8 digits on CPU.
        "pnas-digits": {"input_shape": (1, 8, 8), "num_classes": 10, "N": 1, "F": 8,
                        "max_blocks": 5, "stem": "cifar", "stem_multiplier": 3,
                        "cell_output": "all", "max_N": 8, "max_F": 512},
        # PNAS §5.5 Mobile (Table 4): 224x224, N = 3, F = 54; released mobile_imagenet_config:
        # stem_multiplier 1.
        "pnas-imagenet-mobile": {"input_shape": (3, 224, 224), "num_classes": 1000, "N": 3,
                                 "F": 54, "max_blocks": 5, "stem": "imagenet",
                                 "stem_multiplier": 1, "cell_output": "all", "max_N": 8,
                                 "max_F": 1024},
        # PNAS §5.5 Large (Table 5): 331x331, N = 4, F = 216; released large_imagenet_config:
        # stem_multiplier 3.
        "pnas-imagenet-large": {"input_shape": (3, 331, 331), "num_classes": 1000, "N": 4,
                                "F": 216, "max_blocks": 5, "stem": "imagenet",
                                "stem_multiplier": 3, "cell_output": "all", "max_N": 8,
                                "max_F": 1024},
    }

    def __init__(self, preset: str | None = None, **overrides: Any) -> None:
        super().__init__(preset, **overrides)
        for key, allowed in (("stem", STEMS), ("cell_output", CELL_OUTPUTS)):
            if self.settings[key] not in allowed:
                raise UnknownName(f"space.{key}", self.settings[key], allowed)
        # costs(): per-term sums learned from plans (see costs); bounded by _COST_TERMS_MAX
        self._cost_terms: dict[tuple[Any, ...], tuple[int, int, int, int]] = {}

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
    def output_blocks(self, blocks: Sequence[Block]) -> list[int]:
        """The blocks concatenated into the cell output (``cell_output``: all, or unused)."""
        if self.settings["cell_output"] == "all":
            return list(range(len(blocks)))
        return _unused_blocks(blocks)

    def network(self, genotype: Mapping[str, Any],
                input_shape: tuple[int, ...] | None = None) -> dict[str, Any]:
        """Shapes of the stem and of every cell (stem cells included, in order).

        Each cell: ``kind`` (``stem`` / ``normal`` / ``reduce``), ``stride``, ``width``,
        ``in_hw``, ``out_hw``, ``out`` (channels, h, w) and per input ``k`` (0 = H^{c-2},
        1 = H^{c-1}) its ``shape``, whether a block reads it (``used``), its preprocessing
        ``pre`` (``"conv1x1"``, ``"factorized"`` or None) and its ``channels`` after that.
        ``aux_cell`` is the index of the cell the auxiliary head reads (the last one before
        the second reduction).
        """
        blocks, n, f = self._parse(genotype)
        s = self.settings
        c_in, h, w = tuple(input_shape or self.input_shape)
        used = _used_inputs(blocks)
        n_out = len(self.output_blocks(blocks))
        if s["stem"] == "imagenet":
            stem_c = int(IMAGENET_STEM_FILTERS * s["stem_multiplier"])
            stem = {"c_in": c_in, "c_out": stem_c, "stride": 2, "padding": 0, "in_hw": (h, w),
                    "out_hw": (C.conv_out(h, 3, 2, 0), C.conv_out(w, 3, 2, 0))}
            plan = [("stem", 2, int(f * 2.0 ** (k - IMAGENET_STEM_CELLS)))
                    for k in range(IMAGENET_STEM_CELLS)]
        else:
            stem_c = int(s["stem_multiplier"]) * f
            stem = {"c_in": c_in, "c_out": stem_c, "stride": 1, "padding": 1, "in_hw": (h, w),
                    "out_hw": (h, w)}
            plan = []
        reductions = (n, 2 * n)  # nasnet_utils.calc_reduction_layers(3N, 2)
        width = f
        for index in range(3 * n):
            if index in reductions:
                width *= 2
                plan.append(("reduce", 2, width))
            else:
                plan.append(("normal", 1, width))
        if min(width for _, _, width in plan) < 1:
            raise GenotypeError("genotype.F", f, f"at least {2 ** IMAGENET_STEM_CELLS} with the "
                                "ImageNet stem (its stem cells have F/4 and F/2 filters)")
        prev_prev: tuple[int, int, int] | None = None
        prev = (stem_c, *stem["out_hw"])
        cells = []
        for kind, stride, width in plan:
            inputs = []
            for k, state in enumerate((prev_prev, prev)):
                shape = prev if state is None else state
                if k == 1:
                    pre = "conv1x1"
                elif state is None:
                    pre = None  # the first cell reads the stem output as is
                elif shape[1:] != prev[1:]:
                    pre = "factorized"
                elif shape[0] != width:
                    pre = "conv1x1"
                else:
                    pre = None
                inputs.append({"shape": shape, "used": k in used, "pre": pre,
                               "channels": width if pre else shape[0]})
            h_in, w_in = prev[1], prev[2]
            out_hw = (C.conv_out(h_in, 3, stride, 1), C.conv_out(w_in, 3, stride, 1))
            out = (width * n_out, *out_hw)
            cells.append({"kind": kind, "stride": stride, "width": width, "in_hw": (h_in, w_in),
                          "out_hw": out_hw, "inputs": inputs, "out": out})
            prev_prev, prev = prev, out
        reduce_at = [i for i, cell in enumerate(cells) if cell["kind"] == "reduce"]
        return {"stem": stem, "cells": cells, "blocks": blocks,
                "out_blocks": self.output_blocks(blocks), "aux_cell": reduce_at[1] - 1,
                "out": prev}

    def plan(self, genotype: Mapping[str, Any], input_shape: tuple[int, ...] | None = None,
             num_classes: int | None = None) -> list[tuple[str, list[C.OpRecord]]]:
        """Leaf ops grouped by node: ``stem``, ``cellK/pre0``, ``cellK/b2.op1``, ...,
        ``cellK/b2.add``, ``cellK/out``, ``head`` (stem cells are cells 0 and 1 with the
        ImageNet stem)."""
        net = self.network(genotype, input_shape)
        blocks = net["blocks"]
        stem = net["stem"]
        nodes: list[tuple[str, list[C.OpRecord]]] = [
            ("stem", [C.conv(stem["c_in"], stem["c_out"], (3, 3), (stem["stride"],) * 2, 1,
                             stem["in_hw"], stem["out_hw"]),
                      C.batchnorm(stem["c_out"], stem["out_hw"])])]
        n_out = len(net["out_blocks"])
        for c, cell in enumerate(net["cells"]):
            width, hw_in, hw_out = cell["width"], cell["in_hw"], cell["out_hw"]
            for k, inp in enumerate(cell["inputs"]):
                if inp["used"] and inp["pre"]:
                    nodes.append((f"cell{c}/pre{k}", pre_records(inp["pre"], inp["shape"], width,
                                                                 hw_in)))
            for b, (i1, i2, o1, o2) in enumerate(blocks):
                for slot, (i, o) in enumerate(((i1, o1), (i2, o2)), start=1):
                    original = i < NUM_CELL_INPUTS
                    nodes.append((f"cell{c}/b{b}.op{slot}", op_records(
                        OPS[o], width, cell["stride"] if original else 1,
                        hw_in if original else hw_out, hw_out,
                        c_in=cell["inputs"][i]["channels"] if original else width)))
                nodes.append((f"cell{c}/b{b}.add", [C.add(width, hw_out)]))
            nodes.append((f"cell{c}/out", [C.concat(width * n_out, hw_out)] if n_out > 1 else []))
        c_last, h_last, w_last = net["out"]
        nodes.append(("head", [C.relu(c_last, (h_last, w_last)),
                               C.global_avgpool(c_last, (h_last, w_last)),
                               C.linear(c_last, int(num_classes or self.num_classes))]))
        return nodes

    def costs(self, genotype: Mapping[str, Any], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None) -> dict[str, float]:
        """The plan's summed costs (:meth:`plan`, :func:`C.total_costs`), assembled from terms.

        A network's costs are a sum over its plan's nodes, and, for one input shape, class
        count, ``N``, ``F`` and number of output blocks (which set every cell's input
        channels), each ``cellK/bJ.opS`` node depends only on its op and on where it reads
        (``H^{c-2}``, ``H^{c-1}`` or a block), and all other nodes together (stem, input
        preprocessing, adds, concat, head) only on the block count and on which cell inputs
        are read. Those terms are learned from the plans of the genotypes that first need
        them, so costing the ~300,000 children of a PNAS beam (its hard-constraint screening)
        builds a few dozen plans instead of one each; the sums are integers, so the result
        equals summing the genotype's own plan exactly (tested against it).
        """
        blocks, n, f = self._parse(genotype)
        context = (tuple(input_shape or self.input_shape),
                   int(num_classes or self.num_classes), n, f, len(self.output_blocks(blocks)))
        reads = sorted({i for block in blocks for i in block[:2] if i < NUM_CELL_INPUTS})
        base_key = ("rest", *context, len(blocks), tuple(reads))
        slot_keys = [("op", *context, min(i, NUM_CELL_INPUTS), o)
                     for i1, i2, o1, o2 in blocks for i, o in ((i1, o1), (i2, o2))]
        terms = self._cost_terms
        if base_key not in terms or any(key not in terms for key in slot_keys):
            if len(terms) > _COST_TERMS_MAX:
                terms.clear()
            terms.update(self._cost_terms_of(genotype, base_key, slot_keys, input_shape,
                                             num_classes))
        sums = list(terms[base_key])
        for key in slot_keys:
            for m, value in enumerate(terms[key]):
                sums[m] += value
        return C.with_intensity(sums)

    def _cost_terms_of(self, genotype: Mapping[str, Any], base_key: tuple[Any, ...],
                       slot_keys: list[tuple[Any, ...]], input_shape: tuple[int, ...] | None,
                       num_classes: int | None) -> dict[tuple[Any, ...], tuple[int, ...]]:
        """Split ``genotype``'s plan into its terms: each op slot's sum over the cells, and
        the rest (see :meth:`costs`)."""
        per_slot = [[0, 0, 0, 0] for _ in slot_keys]
        rest = [0, 0, 0, 0]
        for name, records in self.plan(genotype, input_shape, num_classes):
            node = name.rsplit("/", 1)[-1]
            target = rest
            if ".op" in node:  # bJ.opS: slot 2J + S - 1
                block, slot = node[1:].split(".op")
                target = per_slot[2 * int(block) + int(slot) - 1]
            for m, value in enumerate(C.record_sums(records)):
                target[m] += value
        return {base_key: tuple(rest), **{key: tuple(s) for key, s in zip(slot_keys, per_slot)}}

    def graph(self, genotype: Mapping[str, Any]) -> Any:
        """The cell DAG: ``in0`` (H^c-2), ``in1`` (H^c-1), per block two op nodes and an add
        node, and the ``out`` concat node; edges ``seq``. Node ``costs`` are summed over every
        copy of the cell in the network (stem cells included; the stem conv and the head are
        left out)."""
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
        for b in self.output_blocks(blocks):
            graph.add_edge(f"b{b}", "out", kind="seq")
        return graph

    def build(self, genotype: Mapping[str, Any], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None, aux_head: bool = False) -> Any:
        """The network as a ``torch.nn.Module``; ``aux_head=True`` adds the auxiliary
        classifier (training only: in train mode the model then returns ``(logits,
        aux_logits)``; it is not counted by :meth:`costs`)."""
        from searchers.spaces._cell_modules import CellNet

        shape = tuple(input_shape or self.input_shape)
        net = self.network(genotype, shape)
        return CellNet(net, [OPS[b[2]] for b in net["blocks"]],
                       [OPS[b[3]] for b in net["blocks"]],
                       int(num_classes or self.num_classes), aux_head=aux_head)


#: Cost terms a cell space keeps (a few per (input shape, N, F, output blocks) in use).
_COST_TERMS_MAX = 65536


def pre_records(kind: str, shape: tuple[int, int, int], width: int,
                out_hw: tuple[int, int]) -> list[C.OpRecord]:
    """Leaf ops preparing a cell input of ``shape`` (c, h, w): ``conv1x1`` or ``factorized``
    (two stride-2 1x1 convs to ``width // 2`` and the rest, one BN over their concat)."""
    c, h, w = shape
    if kind == "conv1x1":
        return [C.relu(c, (h, w)), C.conv(c, width, (1, 1), (1, 1), 1, (h, w), out_hw),
                C.batchnorm(width, out_hw)]
    if kind == "factorized":
        half = width // 2
        return [C.relu(c, (h, w)), C.conv(c, half, (1, 1), (2, 2), 1, (h, w), out_hw),
                C.conv(c, width - half, (1, 1), (2, 2), 1, (h, w), out_hw),
                C.batchnorm(width, out_hw)]
    raise ValueError(f"unknown input preprocessing {kind!r}")


def op_records(op: str, width: int, stride: int, in_hw: tuple[int, int],
               out_hw: tuple[int, int], c_in: int | None = None) -> list[C.OpRecord]:
    """Leaf ops of one PNAS operator (see the module docstring): ``c_in`` channels in
    (default ``width``), ``width`` out."""
    c = width
    ci = c if c_in is None else int(c_in)
    if op.startswith("sep"):
        k = int(op[3])
        return [C.relu(ci, in_hw), C.conv(ci, ci, (k, k), (stride, stride), ci, in_hw, out_hw),
                C.conv(ci, c, (1, 1), (1, 1), 1, out_hw, out_hw), C.batchnorm(c, out_hw),
                C.relu(c, out_hw), C.conv(c, c, (k, k), (1, 1), c, out_hw, out_hw),
                C.conv(c, c, (1, 1), (1, 1), 1, out_hw, out_hw), C.batchnorm(c, out_hw)]
    if op == "conv1x7_7x1":
        mid = (in_hw[0], out_hw[1])
        return [C.relu(ci, in_hw), C.conv(ci, c, (1, 7), (1, stride), 1, in_hw, mid),
                C.conv(c, c, (7, 1), (stride, 1), 1, mid, out_hw), C.batchnorm(c, out_hw)]
    if op == "identity":
        if stride == 1 and ci == c:
            return []
        return [C.relu(ci, in_hw), C.conv(ci, c, (1, 1), (stride, stride), 1, in_hw, out_hw),
                C.batchnorm(c, out_hw)]
    if op in ("avg3x3", "max3x3"):
        records = [C.pool("avgpool" if op == "avg3x3" else "maxpool", ci, 3, stride, in_hw,
                          out_hw)]
        if ci != c:
            records += [C.conv(ci, c, (1, 1), (1, 1), 1, out_hw, out_hw), C.batchnorm(c, out_hw)]
        return records
    if op == "dil3x3":
        return [C.relu(ci, in_hw), C.conv(ci, c, (3, 3), (stride, stride), 1, in_hw, out_hw),
                C.batchnorm(c, out_hw)]
    raise ValueError(f"unknown cell op {op!r}")


def _is_int(value: Any) -> bool:
    """An integer, numpy integers included (genotypes built from ``rng`` draws), not a bool."""
    return type(value) is int or (isinstance(value, numbers.Integral)
                                   and not isinstance(value, bool))


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


__all__ = ["CELL_OUTPUTS", "OPS", "STEMS", "CellSpace", "canonical_blocks", "op_records",
           "pre_records"]
