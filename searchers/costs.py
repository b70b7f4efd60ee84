"""The cost model: params, MAdds, FLOPs, bytes and compute intensity of a network.

One set of counting rules, used two ways:

* :func:`measure` traces a built ``torch.nn.Module`` (forward hooks on every leaf module, one
  batch-1 input, eval mode, no grad) and applies the rules per layer call;
* the analytic helpers (:func:`conv2d`, :func:`batchnorm`, :func:`pointwise`, ...) apply the
  same rules to shapes alone, so search spaces build per-block look-up tables without torch and
  ``space.costs(g) == measure(space.build(g), input_shape)`` holds exactly.

Rules (per sample, batch 1; docs/spaces-and-costs.md has the worked definitions):

``params``  every parameter of the model, counted once (buffers such as BN running statistics
            are not parameters).
``madds``   multiply-adds of convolutions and linear layers only:
            conv ``k_h*k_w*(c_in/groups)*c_out*h_out*w_out``; linear ``in*out``.
``flops``   EPNAS supplement: ``2*madds`` for conv/linear, plus 1 per element for every
            point-wise operation: the bias add of a conv/linear (1 per output element), batch
            norm (inference: one fused scale-and-shift per element), activations, residual
            adds, squeeze-excite multiplies; pooling costs 1 per element in each window
            (``h_out*w_out*c*k_h*k_w``; adaptive pooling: 1 per input element).
            Data movement (identity, flatten, dropout at eval, channel shuffle) is free.
``bytes``   4 bytes x (weights + inputs + outputs) summed over layer calls that compute
            something (flops > 0): what each layer reads and writes if nothing stays in cache.
``intensity`` ``flops / bytes`` (EPNAS "compute intensity", FLOPs per byte accessed).

Functional point-wise ops that foreign models call outside any leaf module (torchvision's
``x + self.conv(x)``, ``F.relu``, ``F.adaptive_avg_pool2d``, ``x.mean([2, 3])``) are caught by a
``TorchFunctionMode`` and counted with the same rules; their ``madds`` and ``params`` need no
such help because convolutions and linear layers are always modules.

Importing this module does not import torch; :func:`measure`, :func:`measure_latency` and
:func:`fvcore_counts` import it when called.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

METRICS: tuple[str, ...] = ("params", "madds", "flops", "bytes")
BYTES_PER_VALUE = 4


@dataclass(frozen=True)
class LayerCost:
    """The cost of one layer call, in integers (exact sums, no float rounding)."""

    params: int = 0
    madds: int = 0
    flops: int = 0
    bytes: int = 0

    def __add__(self, other: LayerCost) -> LayerCost:
        return LayerCost(self.params + other.params, self.madds + other.madds,
                         self.flops + other.flops, self.bytes + other.bytes)

    def as_dict(self) -> dict[str, float]:
        """params, madds, flops, bytes as floats plus the derived intensity."""
        return with_intensity({"params": self.params, "madds": self.madds,
                               "flops": self.flops, "bytes": self.bytes})


ZERO = LayerCost()


def with_intensity(costs: Mapping[str, float]) -> dict[str, float]:
    """Add ``intensity = flops / bytes`` (0 when nothing is accessed) to a metric dict."""
    out = {metric: float(costs[metric]) for metric in METRICS}
    out["intensity"] = out["flops"] / out["bytes"] if out["bytes"] else 0.0
    return out


def total(costs: Iterable[LayerCost]) -> LayerCost:
    result = ZERO
    for cost in costs:
        result = result + cost
    return result


def _layer(params: int, madds: int, flops: int, values_in: int, values_out: int) -> LayerCost:
    accessed = BYTES_PER_VALUE * (params + values_in + values_out) if flops > 0 else 0
    return LayerCost(params=params, madds=madds, flops=flops, bytes=accessed)


# -- analytic rules (shapes in, LayerCost out; no torch) ------------------------------------
def conv_out_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """Output length of a convolution or pooling window along one axis (PyTorch formula)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv2d(c_in: int, c_out: int, kernel: int | Sequence[int], h_in: int, w_in: int,
           stride: int | Sequence[int] = 1, padding: int | Sequence[int] | None = None,
           groups: int = 1, bias: bool = False) -> tuple[LayerCost, int, int]:
    """A ``Conv2d`` call: returns its cost and the output height and width.

    ``padding=None`` means "same" padding for odd kernels (``k // 2``), the convention of
    every block in the spaces.
    """
    kh, kw = _pair(kernel)
    sh, sw = _pair(stride)
    ph, pw = _pair(padding) if padding is not None else (kh // 2, kw // 2)
    h_out, w_out = conv_out_size(h_in, kh, sh, ph), conv_out_size(w_in, kw, sw, pw)
    return conv2d_from_shapes(c_in, c_out, (kh, kw), groups, bias, h_in * w_in, h_out, w_out), \
        h_out, w_out


def conv2d_from_shapes(c_in: int, c_out: int, kernel: Sequence[int], groups: int, bias: bool,
                       hw_in: int, h_out: int, w_out: int) -> LayerCost:
    kh, kw = kernel
    weights = kh * kw * (c_in // groups) * c_out
    params = weights + (c_out if bias else 0)
    out_numel = c_out * h_out * w_out
    madds = weights * h_out * w_out
    flops = 2 * madds + (out_numel if bias else 0)
    return _layer(params, madds, flops, c_in * hw_in, out_numel)


def linear(in_features: int, out_features: int, bias: bool = True) -> LayerCost:
    """A ``Linear`` call on one sample."""
    params = in_features * out_features + (out_features if bias else 0)
    madds = in_features * out_features
    flops = 2 * madds + (out_features if bias else 0)
    return _layer(params, madds, flops, in_features, out_features)


def batchnorm(channels: int, h: int, w: int, affine: bool = True) -> LayerCost:
    """An inference ``BatchNorm2d``: one fused scale-and-shift per element."""
    numel = channels * h * w
    return _layer(2 * channels if affine else 0, 0, numel, numel, numel)


def pointwise(numel: int, n_inputs: int = 1, extra_input: int = 0, params: int = 0) -> LayerCost:
    """An element-wise op over ``numel`` outputs reading ``n_inputs`` same-sized tensors plus
    ``extra_input`` more values (the per-channel scale of a squeeze-excite multiply)."""
    return _layer(params, 0, numel, n_inputs * numel + extra_input, numel)


def activation(numel: int) -> LayerCost:
    return pointwise(numel)


def residual_add(numel: int) -> LayerCost:
    return pointwise(numel, n_inputs=2)


def channel_scale(channels: int, h: int, w: int) -> LayerCost:
    """``x * s`` with ``s`` of shape (C, 1, 1): the squeeze-excite multiply."""
    return pointwise(channels * h * w, n_inputs=1, extra_input=channels)


def pool2d(channels: int, h_in: int, w_in: int, kernel: int | Sequence[int],
           stride: int | Sequence[int] | None = None, padding: int | Sequence[int] = 0
           ) -> tuple[LayerCost, int, int]:
    """Average or max pooling: 1 per element of every window."""
    kh, kw = _pair(kernel)
    sh, sw = _pair(stride if stride is not None else kernel)
    ph, pw = _pair(padding)
    h_out, w_out = conv_out_size(h_in, kh, sh, ph), conv_out_size(w_in, kw, sw, pw)
    out_numel = channels * h_out * w_out
    return _layer(0, 0, out_numel * kh * kw, channels * h_in * w_in, out_numel), h_out, w_out


def global_pool(channels: int, h_in: int, w_in: int) -> LayerCost:
    """Adaptive / global average pooling to 1x1: 1 per input element."""
    return _layer(0, 0, channels * h_in * w_in, channels * h_in * w_in, channels)


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    first, second = tuple(value)
    return int(first), int(second)


# -- tracing a built module ---------------------------------------------------------------
_ACTIVATIONS = ("ReLU", "ReLU6", "Sigmoid", "Hardsigmoid", "Hardswish", "SiLU", "GELU", "Tanh",
                "LeakyReLU", "ELU", "Hardtanh", "Mish", "Softplus", "PReLU")
_FREE = ("Identity", "Dropout", "Dropout2d", "Flatten", "Unflatten", "ChannelShuffle")


def _numel(value: Any) -> int:
    import torch

    if isinstance(value, torch.Tensor):
        return int(value.numel())
    if isinstance(value, (list, tuple)):
        return sum(_numel(v) for v in value)
    return 0


def _module_cost(module: Any, inputs: tuple[Any, ...], output: Any) -> LayerCost:
    """The cost of one leaf-module call, by the rules above (batch 1 assumed)."""
    import torch.nn as nn

    kind = type(module).__name__
    params = sum(p.numel() for p in module.parameters(recurse=False))
    values_in, values_out = _numel(inputs), _numel(output)
    if isinstance(module, nn.Conv2d):
        x = inputs[0]
        h_out, w_out = output.shape[-2:]
        return conv2d_from_shapes(module.in_channels, module.out_channels,
                                  module.kernel_size, module.groups, module.bias is not None,
                                  int(x.shape[-2] * x.shape[-1]), int(h_out), int(w_out))
    if isinstance(module, nn.Linear):
        rows = values_out // module.out_features  # 1 for (1, out); more for token inputs
        madds = rows * module.in_features * module.out_features
        flops = 2 * madds + (values_out if module.bias is not None else 0)
        return _layer(params, madds, flops, values_in, values_out)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return _layer(params, 0, values_out, values_in, values_out)
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return _layer(params, 0, values_in, values_in, values_out)
    if isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)):
        kh, kw = _pair(module.kernel_size)
        return _layer(params, 0, values_out * kh * kw, values_in, values_out)
    if kind in _FREE:
        return LayerCost(params=params)
    if kind in _ACTIVATIONS:
        return _layer(params, 0, values_out, values_in, values_out)
    # ResidualAdd, ChannelScale and any other element-wise leaf: 1 per output element.
    return _layer(params, 0, values_out, values_in, values_out)


_FUNCTIONAL_BINARY = ("add", "add_", "__add__", "__iadd__", "__radd__", "sub", "sub_", "__sub__",
                      "__isub__", "__rsub__", "mul", "mul_", "__mul__", "__imul__", "__rmul__")
_FUNCTIONAL_UNARY = ("relu", "relu_", "relu6", "hardtanh", "hardtanh_", "sigmoid", "sigmoid_",
                     "hardsigmoid", "hardswish", "silu", "gelu", "tanh")
_FUNCTIONAL_REDUCE = ("adaptive_avg_pool2d", "mean", "adaptive_max_pool2d")


def _function_cost(name: str, args: tuple[Any, ...], output: Any) -> LayerCost | None:
    """The cost of a functional op called outside any leaf module, or None if not counted."""
    import torch

    if not isinstance(output, torch.Tensor) or not output.is_floating_point():
        return None
    values_in = sum(_numel(a) for a in args if isinstance(a, torch.Tensor))
    values_out = int(output.numel())
    if name in _FUNCTIONAL_BINARY:
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if len(tensors) < 2 or min(t.numel() for t in tensors) <= 1:
            return None  # scalar arithmetic (x * 0.5, x + 1): not a layer
        return _layer(0, 0, values_out, values_in, values_out)
    if name in _FUNCTIONAL_UNARY:
        return _layer(0, 0, values_out, values_in, values_out)
    if name in _FUNCTIONAL_REDUCE:
        first = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if first is None or first.dim() < 3:
            return None
        return _layer(0, 0, int(first.numel()), int(first.numel()), values_out)
    return None


def measure(model: Any, input_shape: Sequence[int]) -> dict[str, float]:
    """Trace ``model`` on one zero input of shape ``(1, *input_shape)`` and count its costs.

    Returns ``{"params", "madds", "flops", "bytes", "intensity"}`` as floats (exact integers
    except intensity). The model is put in eval mode for the trace and its mode restored.
    """
    import torch
    from torch.overrides import TorchFunctionMode, resolve_name

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    counted: list[LayerCost] = []
    depth = [0]

    def enter(module: Any, inputs: Any) -> None:
        depth[0] += 1

    def leave(module: Any, inputs: Any, output: Any) -> None:
        depth[0] -= 1
        counted.append(_module_cost(module, inputs, output))

    class FunctionalOps(TorchFunctionMode):
        """Counts element-wise functional ops that run outside every leaf module."""

        def __torch_function__(self, func: Any, types: Any, args: Any = (),
                               kwargs: Any = None) -> Any:
            output = func(*args, **(kwargs or {}))
            if depth[0] == 0:
                name = (resolve_name(func) or getattr(func, "__name__", "")).rsplit(".", 1)[-1]
                cost = _function_cost(name, tuple(args), output)
                if cost is not None:
                    counted.append(cost)
            return output

    first_param = next(model.parameters(), None)
    device = first_param.device if first_param is not None else torch.device("cpu")
    dtype = first_param.dtype if first_param is not None else torch.float32
    handles = [m.register_forward_pre_hook(enter) for m in leaves]
    handles += [m.register_forward_hook(leave) for m in leaves]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), FunctionalOps():
            model(torch.zeros((1, *input_shape), device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    layers = total(counted)
    params = sum(p.numel() for p in model.parameters())
    return LayerCost(params, layers.madds, layers.flops, layers.bytes).as_dict()


def measure_latency(model: Any, input_shape: Sequence[int], device: str = "cpu",
                    batch_size: int = 1, warmup: int = 5, repeats: int = 20) -> float:
    """Median wall time of one forward pass in milliseconds on ``device`` (after warm-up).

    Runs on a copy of the model in eval mode without grad, synchronising CUDA around each
    timed call, so the caller's model is left where it was.
    """
    import torch

    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    target = torch.device(device)
    runner = copy.deepcopy(model).to(target).eval()
    x = torch.randn((batch_size, *input_shape), device=target)

    def sync() -> None:
        if target.type == "cuda":
            torch.cuda.synchronize(target)

    times: list[float] = []
    with torch.no_grad():
        for _ in range(max(0, warmup)):
            runner(x)
        sync()
        for _ in range(repeats):
            start = time.perf_counter()
            runner(x)
            sync()
            times.append((time.perf_counter() - start) * 1000.0)
    return float(statistics.median(times))


def fvcore_counts(model: Any, input_shape: Sequence[int]) -> dict[str, int]:
    """Params and conv+linear MAdds from fvcore, an independent counter (test/diagnostic aid).

    fvcore counts one "flop" per multiply-add for convolutions and matmuls, so its ``conv``,
    ``linear``, ``addmm`` and ``matmul`` entries are MAdds; its batch-norm, pooling and
    element-wise entries follow other rules and are left out (see docs/spaces-and-costs.md).
    Requires the ``fvcore`` package (in the ``dev`` extra).
    """
    import torch
    from fvcore.nn import FlopCountAnalysis, parameter_count

    was_training = model.training
    model.eval()
    try:
        analysis = FlopCountAnalysis(model, torch.zeros((1, *input_shape)))
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        by_operator = analysis.by_operator()
    finally:
        model.train(was_training)
    madds = sum(int(by_operator.get(op, 0)) for op in ("conv", "linear", "addmm", "matmul",
                                                       "bmm", "einsum"))
    return {"params": int(parameter_count(model)[""]), "madds": madds}


def cross_check(space: Any, genotype: Mapping[str, Any], input_shape: Sequence[int] | None = None,
                num_classes: int | None = None, use_fvcore: bool = True) -> dict[str, Any]:
    """Compare a space's own costs with the tracer and (optionally) fvcore on one genotype.

    Works for any space (``mbconv``, ``rcas``, ``layerwise``, ``cell``): ``space.costs`` must
    equal :func:`measure` on ``space.build`` in every metric, and params / MAdds must equal
    fvcore's. Returns ``{"space", "traced", "fvcore", "mismatches"}`` where ``mismatches``
    lists one readable line per disagreement (empty when all agree).
    """
    shape = tuple(input_shape or space.input_shape)
    classes = num_classes or space.num_classes
    own = space.costs(genotype, shape, classes)
    model = space.build(genotype, shape, classes)
    traced = measure(model, shape)
    mismatches = [f"{metric}: space.costs {own.get(metric)!r} != measure {traced[metric]!r}"
                  for metric in (*METRICS, "intensity") if own.get(metric) != traced[metric]]
    independent: dict[str, int] = {}
    if use_fvcore:
        independent = fvcore_counts(model, shape)
        mismatches += [f"{metric}: measure {traced[metric]!r} != fvcore {value!r}"
                       for metric, value in independent.items() if traced[metric] != value]
    return {"space": own, "traced": traced, "fvcore": independent, "mismatches": mismatches}


__all__ = [
    "BYTES_PER_VALUE", "METRICS", "LayerCost", "activation", "batchnorm", "channel_scale",
    "conv2d", "conv_out_size", "cross_check", "fvcore_counts", "global_pool", "linear", "measure",
    "measure_latency", "pointwise", "pool2d", "residual_add", "total", "with_intensity",
]
