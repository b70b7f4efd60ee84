"""Analytic cost records shared by the ``layerwise`` and ``cell`` spaces (no torch).

A space decodes a genotype into a *plan*: the list of leaf operations the built model runs,
each described by a small hashable tuple (an :data:`OpRecord`) that carries every shape the
cost needs. :func:`record_costs` turns one record into params / madds / flops / bytes and is
cached, so costing thousands of genotypes that share layers is cheap. :func:`total_costs`
sums a plan and adds ``intensity``.

Each record is costed by the analytic rules of :mod:`searchers.costs` (one source of truth
for params, madds, flops, bytes and intensity, batch of one), the same rules ``measure``
applies while tracing the built model, so ``space.costs(g) == measure(space.build(g))``.
Concatenation is data movement and costs nothing; ReLU, BatchNorm, element-wise adds and
pooling cost one FLOP per element (pooling: per window element).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from searchers import costs

#: A leaf operation: ``(kind, *shape_ints)``; see the constructors below for each layout.
OpRecord = tuple

METRICS = ("params", "madds", "flops", "bytes")


def conv(c_in: int, c_out: int, kernel: tuple[int, int], stride: tuple[int, int],
         groups: int, in_hw: tuple[int, int], out_hw: tuple[int, int],
         bias: bool = False) -> OpRecord:
    return ("conv", c_in, c_out, kernel[0], kernel[1], groups, in_hw[0], in_hw[1],
            out_hw[0], out_hw[1], int(bias), stride[0], stride[1])


def batchnorm(c: int, hw: tuple[int, int]) -> OpRecord:
    return ("bn", c, hw[0], hw[1])


def relu(c: int, hw: tuple[int, int]) -> OpRecord:
    return ("relu", c, hw[0], hw[1])


def activation(kind: str, c: int, hw: tuple[int, int]) -> OpRecord:
    """The nonlinearity before a layer's convolution (EPNAS Table 2); ``relu`` keeps the
    plain relu record. ``crelu`` outputs ``[relu(x), relu(-x)]``: twice the channels."""
    return relu(c, hw) if kind == "relu" else ("act", kind, c, hw[0], hw[1])


def pool(kind: str, c: int, kernel: int, stride: int, in_hw: tuple[int, int],
         out_hw: tuple[int, int]) -> OpRecord:
    """A ``kernel x kernel`` max/avg pooling with ``kernel // 2`` padding."""
    return (kind, c, kernel, stride, in_hw[0], in_hw[1], out_hw[0], out_hw[1])


def pool_unpadded(kind: str, c: int, kernel: int, stride: int, in_hw: tuple[int, int],
                  out_hw: tuple[int, int]) -> OpRecord:
    """A ``kernel x kernel`` max/avg pooling without padding, ``in_hw`` being the size it
    sees (EPNAS module search pads 2-wide pooling by replication first, which is free)."""
    return (f"{kind}0", c, kernel, stride, in_hw[0], in_hw[1], out_hw[0], out_hw[1])


def add(c: int, hw: tuple[int, int], n_inputs: int = 2) -> OpRecord:
    return ("add", c, hw[0], hw[1], n_inputs)


def concat(c_out: int, hw: tuple[int, int]) -> OpRecord:
    return ("concat", c_out, hw[0], hw[1])


def global_avgpool(c: int, hw: tuple[int, int]) -> OpRecord:
    return ("gap", c, hw[0], hw[1])


def linear(n_in: int, n_out: int, bias: bool = True) -> OpRecord:
    return ("linear", n_in, n_out, int(bias))


@lru_cache(maxsize=65536)
def record_costs(record: OpRecord) -> tuple[int, int, int, int]:
    """``(params, madds, flops, bytes)`` of one leaf op by ``searchers.costs``' rules (cached:
    plans of different genotypes share most records)."""
    kind = record[0]
    if kind == "conv":
        _, c_in, c_out, kh, kw, groups, hi, wi, ho, wo, bias, _, _ = record
        cost = costs.conv2d_from_shapes(c_in, c_out, (kh, kw), groups, bool(bias), hi * wi,
                                        ho, wo)
    elif kind == "bn":
        _, c, h, w = record
        cost = costs.batchnorm(c, h, w)
    elif kind == "relu":
        _, c, h, w = record
        cost = costs.activation(c * h * w)
    elif kind in ("maxpool", "avgpool"):
        _, c, k, stride, hi, wi, ho, wo = record
        cost, h_out, w_out = costs.pool2d(c, hi, wi, k, stride, k // 2)
        if (h_out, w_out) != (ho, wo):
            raise ValueError(f"pool record {record}: output is {h_out}x{w_out}")
    elif kind == "act":
        _, name, c, h, w = record
        cost = (costs.pointwise(2 * c * h * w, 0, c * h * w) if name == "crelu"
                else costs.activation(c * h * w))
    elif kind in ("maxpool0", "avgpool0"):
        _, c, k, stride, hi, wi, ho, wo = record
        cost, h_out, w_out = costs.pool2d(c, hi, wi, k, stride, 0)
        if (h_out, w_out) != (ho, wo):
            raise ValueError(f"pool record {record}: output is {h_out}x{w_out}")
    elif kind == "add":
        _, c, h, w, n_inputs = record
        if n_inputs != 2:
            raise ValueError("only two-input adds are recorded")
        cost = costs.residual_add(c * h * w)
    elif kind == "concat":
        cost = costs.ZERO  # data movement
    elif kind == "gap":
        _, c, h, w = record
        cost = costs.global_pool(c, h, w)
    elif kind == "linear":
        _, n_in, n_out, bias = record
        cost = costs.linear(n_in, n_out, bool(bias))
    else:
        raise ValueError(f"unknown op record kind {kind!r}")
    return cost.params, cost.madds, cost.flops, cost.bytes


def record_sums(records: Iterable[OpRecord]) -> list[int]:
    """``[params, madds, flops, bytes]`` summed over records (integers: exact in any order)."""
    sums = [0, 0, 0, 0]
    for record in records:
        for i, value in enumerate(record_costs(record)):
            sums[i] += value
    return sums


def with_intensity(sums: Iterable[int]) -> dict[str, float]:
    """The metric dict of summed ``(params, madds, flops, bytes)``, with ``intensity``."""
    return costs.with_intensity(dict(zip(METRICS, sums)))


def total_costs(records: Iterable[OpRecord]) -> dict[str, float]:
    """Sum a plan's records; ``intensity`` = flops / bytes (FLOPs per byte accessed)."""
    return with_intensity(record_sums(records))


conv_out = costs.conv_out_size
