"""EPNAS module search over the ``cell`` space (paper §3.3 (ii), Fig. 3 right; torch-free).

The "layers" the policy sees are the cell's blocks (branches): one token per block, the
mixed-radix index of ``(in1, in2, op1, op2)``. A decision morphs the cell:

* **scale** (one group): the kernel choice moves every separable op of the cell one step along
  ``sep3x3 -> sep5x5 -> sep7x7`` (other ops have no filter width to scale). A PNAS cell has a
  single filter count ``F``, so the paper's per-group partition collapses to one group. By
  default the channel choice does not act (and is left out of ``log pi``): the cell is searched
  at the preset's ``F`` and stacked at a chosen ``F`` afterwards, as in PNAS, because ``F`` is a
  property of the stack, not of the cell. Measured on the synthetic evaluator, letting the
  search move ``F`` makes module search *worse* than random under a tight params + intensity
  pair (feasible cells exist only near the preset's ``F``, and the un-trained policy random-walks
  ``F`` away from it at every step): first feasible cell after 269 vs random's 145 evaluations
  (means over seeds 0-4, ``bench/bench_search.py``), against 104 with ``F`` fixed. With ``scale_filters=True`` (EPNAS param ``cell_scale_filters``) the
  channel choice moves ``F`` one step along the paper's Table 3 channel list
  ``[8, 12, 16, 24, 32]`` taken relative to the preset (``F * [1/3, 1/2, 2/3, 1, 4/3]``:
  exactly Table 3 at ``F = 24``).
* **insert** a branch at position ``p = place mod (L + 1)``: block ``[in1, in2, op1, op2]``
  with ``in1`` from its own head (folded onto the ``p + 2`` valid inputs), ``in2`` from the
  Src2 head: an earlier block ``s < p``, or, for the "no skip" value ``s = p``, the previous
  cell's output ``H^{c-1}``. Later blocks' references shift. As in the paper's Fig. 3, a block
  whose output the new branch reads stops being concatenated into the cell output ("propagate"
  follows from the PNAS rule that only unused blocks are concatenated).
* **remove** block ``r = place mod L``: later readers of block ``r`` read its first input instead.
  Removing the only block, or inserting past ``max_blocks``, is a no-op.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from searchers.epnas.actions import (
    KIND_INSERT,
    KIND_REMOVE,
    STEP,
    PolicyShape,
    insert_position,
    remove_index,
    step_in,
)

NUM_CELL_INPUTS = 2
KERNEL_LADDER = ("sep3x3", "sep5x5", "sep7x7")
CHANNEL_RATIOS = (1 / 3, 1 / 2, 2 / 3, 1.0, 4 / 3)


class CellMorpher:
    """Module search: the policy inserts, removes and scales branches of one cell."""

    def __init__(self, space: Any, scale_filters: bool = False) -> None:
        from searchers.spaces.cell import OPS

        self.space = space
        self.scale_filters = bool(scale_filters)
        self.ops = list(OPS)
        self.max_blocks = int(space.max_blocks)
        self.n_inputs = NUM_CELL_INPUTS + self.max_blocks - 1
        f = int(space.settings["F"])
        self.channels = sorted({max(1, round(f * r)) for r in CHANNEL_RATIOS})
        self._radix = (self.n_inputs, self.n_inputs, len(self.ops), len(self.ops))
        self.shape = PolicyShape(
            n_tokens=self.n_inputs ** 2 * len(self.ops) ** 2, n_groups=1,
            max_layers=self.max_blocks, attr_sizes=(self.n_inputs, len(self.ops), len(self.ops)),
            scale_axes=(self.scale_filters, True))

    def initial(self) -> dict[str, Any]:
        """The small start of ``initial: small``: a one-branch cell, a 3x3 separable conv of
        the previous cell's output added to that output (the cell space has no initial
        network of its own)."""
        return self.space.validate({"space": self.space.name, "preset": self.space.preset,
                                    "blocks": [[1, 1, "sep3x3", "identity"]],
                                    "N": self.space.settings["N"], "F": self.space.settings["F"]})

    def tokens(self, genotype: Mapping[str, Any]) -> list[int]:
        out = []
        for in1, in2, op1, op2 in genotype["blocks"]:
            value = 0
            for digit, size in zip((in1, in2, self.ops.index(op1), self.ops.index(op2)),
                                   self._radix, strict=True):
                value = value * size + digit
            out.append(value)
        return out

    def group_mask(self, genotype: Mapping[str, Any]) -> list[bool]:
        return [True]

    def morph(self, genotype: Mapping[str, Any], decision: Mapping[str, Any]) -> dict[str, Any]:
        g = self.space.validate(genotype)
        blocks = [list(b) for b in g["blocks"]]
        channel_choice, kernel_choice = decision["scale"][0]
        f = (step_in(self.channels, g["F"], STEP[int(channel_choice)]) if self.scale_filters
             else g["F"])
        kernel_step = STEP[int(kernel_choice)]
        for block in blocks:
            for k in (2, 3):
                if block[k] in KERNEL_LADDER:
                    block[k] = step_in(KERNEL_LADDER, block[k], kernel_step)
        kind, place, src2, in1, op1, op2 = (int(v) for v in decision["insert"])
        if kind == KIND_INSERT and len(blocks) < self.max_blocks:
            p = insert_position(place, len(blocks))
            first = in1 % (NUM_CELL_INPUTS + p)
            second = NUM_CELL_INPUTS + src2 if src2 < p else 1
            for block in blocks[p:]:
                for k in (0, 1):
                    if block[k] >= NUM_CELL_INPUTS + p:
                        block[k] += 1
            blocks.insert(p, [first, second, self.ops[op1], self.ops[op2]])
        elif kind == KIND_REMOVE and len(blocks) > 1:
            r = remove_index(place, len(blocks))
            replacement = blocks[r][0]
            del blocks[r]
            for block in blocks[r:]:
                for k in (0, 1):
                    if block[k] == NUM_CELL_INPUTS + r:
                        block[k] = replacement
                    elif block[k] > NUM_CELL_INPUTS + r:
                        block[k] -= 1
        return self.space.validate({"space": g["space"], "preset": g["preset"],
                                    "blocks": blocks, "N": g["N"], "F": f})

    def sharing_keys(self, genotype: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Per cell ``c`` and block ``b``: each op (key: position and op type) and the cell's
        input preprocessing."""
        g = self.space.validate(genotype)
        n_cells = len(self.space.network(g)["cells"])
        keys = []
        for c in range(n_cells):
            keys.append((f"cells.{c}.pre.", f"cell{c}:pre"))
            for b, block in enumerate(g["blocks"]):
                for slot in (0, 1):
                    keys.append((f"cells.{c}.ops.{b}.{slot}.",
                                 f"cell{c}:block{b}.{slot}:{block[2 + slot]}"))
        return keys
