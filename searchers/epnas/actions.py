"""The EPNAS action vocabulary shared by the policy and every morpher (torch-free).

A *morpher* adapts one search space to the policy network:

* ``shape``: the sizes of the policy's inputs and heads (:class:`PolicyShape`);
* ``tokens(g)``: one layer token per layer (the input of the trainable layer look-up);
* ``group_mask(g)``: which of the ``F`` scale groups hold at least one layer;
* ``morph(g, decision)``: the genotype after one policy decision (scale every group, then one
  insert / keep / remove), always valid;
* ``sharing_keys(g)``: ``(state-dict prefix, key)`` pairs for the parameter-sharing dictionary
  (paper §3.4: keys combine the layer number and the operation type);
* ``initial()``: the small starting network of ``initial: small``.

This module imports nothing from the other EPNAS modules, so they all import it without a
circle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

SCALE_CHOICES = ("up", "keep", "down")
INSERT_KINDS = ("insert", "keep", "remove")
KIND_INSERT, KIND_KEEP, KIND_REMOVE = 0, 1, 2
EXTRA_PLACES = 5  # the paper's L + 5 valued place distribution
OTHER_KEY = "other"  # sharing key of every parameter outside a searched layer (stem, head)


@dataclass(frozen=True)
class PolicyShape:
    """Sizes of the policy's inputs and heads, fixed by the search space."""

    n_tokens: int  # layer-token vocabulary
    n_groups: int  # F, filter groups of the scale LSTM
    max_layers: int  # N_l
    attr_sizes: tuple[int, ...]  # the inserted operation's attribute heads (op, channels, ...)
    scale_axes: tuple[bool, bool] = (True, True)  # does (channels, kernel) scaling act?

    @property
    def place_size(self) -> int:
        return self.max_layers + EXTRA_PLACES

    @property
    def src2_size(self) -> int:
        return self.max_layers + 1

    @property
    def insert_sizes(self) -> tuple[int, ...]:
        return (len(INSERT_KINDS), self.place_size, self.src2_size, *self.attr_sizes)


def insert_position(place: int, n_layers: int) -> int:
    """Where a sampled place value inserts: ``place mod (L + 1)``.

    The paper draws the place from ``L + 5`` values but never says what the 4 values past the
    end mean. Folding them back over the network (rather than clamping them to "append") follows
    its stated reason for the distribution: to encourage inserting *inside* the network.
    """
    return int(place) % (int(n_layers) + 1)


def remove_index(place: int, n_layers: int) -> int:
    """Which layer a sampled place value removes: ``place mod L`` (same folding)."""
    return int(place) % max(1, int(n_layers))


class Morpher(Protocol):
    shape: PolicyShape

    def tokens(self, genotype: Mapping[str, Any]) -> list[int]: ...

    def group_mask(self, genotype: Mapping[str, Any]) -> list[bool]: ...

    def morph(self, genotype: Mapping[str, Any], decision: Mapping[str, Any]
              ) -> dict[str, Any]: ...

    def sharing_keys(self, genotype: Mapping[str, Any]) -> list[tuple[str, str]]: ...

    def initial(self) -> dict[str, Any]: ...


def mixed_radix(digits: Sequence[int], sizes: Sequence[int]) -> int:
    """The index of ``digits`` in a mixed-radix system of ``sizes`` (a layer token)."""
    value = 0
    for digit, size in zip(digits, sizes, strict=True):
        value = value * size + digit
    return value


STEP = {0: 1, 1: 0, 2: -1}  # SCALE_CHOICES index -> ladder step (up / keep / down)


def step_in(ladder: Sequence[Any], value: Any, step: int) -> Any:
    """One step along a ladder, clamped; a value off the ladder moves to its nearest rung."""
    ladder = list(ladder)
    if step == 0:
        return value
    if value in ladder:
        i = ladder.index(value)
    else:
        i = min(range(len(ladder)), key=lambda j: abs(ladder[j] - value))
    return ladder[max(0, min(len(ladder) - 1, i + step))]
