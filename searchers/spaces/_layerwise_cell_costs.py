"""Analytic cost records shared by the ``layerwise`` and ``cell`` spaces (no torch).

A space decodes a genotype into a *plan*: the list of leaf operations the built model runs,
each described by a small hashable tuple (an :data:`OpRecord`) that carries every shape the
cost needs. :func:`record_costs` turns one record into params / madds / flops / bytes and is
cached, so costing thousands of genotypes that share layers is cheap. :func:`total_costs`
sums a plan and adds ``intensity``.

The conventions follow ``searchers.costs.measure`` (DESIGN "Costs"), for a batch of one:

- ``params``: trainable parameters (BatchNorm running statistics are buffers, not params).
- ``madds``: conv ``k_h*k_w*(c_in/groups)*c_out*h_out*w_out``; linear ``in*out``; nothing
  else (bias additions are not multiply-adds).
- ``flops``: ``2*madds`` for conv/linear plus one FLOP per point-wise output element of every
  other op (bias, ReLU, BatchNorm, element-wise add); pooling costs one per element of every
  window (``c*h_out*w_out*k*k``), global pooling one per input element; concatenation is data
  movement and costs nothing.
- ``bytes``: 4 bytes per element read or written by each op that computes something
  (flops > 0): its inputs, its outputs and its parameters (EPNAS supplement: weights +
  inputs + outputs, fp32).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

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


def pool(kind: str, c: int, kernel: int, in_hw: tuple[int, int],
         out_hw: tuple[int, int]) -> OpRecord:
    return (kind, c, kernel, in_hw[0], in_hw[1], out_hw[0], out_hw[1])


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
    """``(params, madds, flops, bytes)`` of one leaf op (cached: plans share records)."""
    kind = record[0]
    if kind == "conv":
        _, c_in, c_out, kh, kw, groups, hi, wi, ho, wo, bias, _, _ = record
        weights = kh * kw * (c_in // groups) * c_out
        params = weights + (c_out if bias else 0)
        out = c_out * ho * wo
        madds = weights * ho * wo
        flops = 2 * madds + (out if bias else 0)
        return params, madds, flops, 4 * (c_in * hi * wi + out + params)
    if kind in ("bn", "relu"):
        _, c, h, w = record
        n = c * h * w
        params = 2 * c if kind == "bn" else 0
        return params, 0, n, 4 * (2 * n + params)
    if kind in ("maxpool", "avgpool"):
        _, c, k, hi, wi, ho, wo = record
        out = c * ho * wo
        return 0, 0, out * k * k, 4 * (c * hi * wi + out)
    if kind == "add":
        _, c, h, w, n_inputs = record
        n = c * h * w
        return 0, 0, n * (n_inputs - 1), 4 * (n * n_inputs + n)
    if kind == "concat":
        return 0, 0, 0, 0
    if kind == "gap":
        _, c, h, w = record
        return 0, 0, c * h * w, 4 * (c * h * w + c)
    if kind == "linear":
        _, n_in, n_out, bias = record
        params = n_in * n_out + (n_out if bias else 0)
        madds = n_in * n_out
        return params, madds, 2 * madds + (n_out if bias else 0), 4 * (n_in + n_out + params)
    raise ValueError(f"unknown op record kind {kind!r}")


def total_costs(records: Iterable[OpRecord]) -> dict[str, float]:
    """Sum a plan's records; ``intensity`` = flops / bytes (FLOPs per byte accessed)."""
    sums = [0, 0, 0, 0]
    for record in records:
        for i, value in enumerate(record_costs(record)):
            sums[i] += value
    out: dict[str, float] = dict(zip(METRICS, (float(s) for s in sums)))
    out["intensity"] = out["flops"] / out["bytes"] if out["bytes"] else 0.0
    return out


def conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """PyTorch's output length of a conv/pool along one axis."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
