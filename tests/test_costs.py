"""The cost model: published counts, hand-computed rules, analytic == traced, latency."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from searchers import costs as C
from searchers.costs import cross_check, fvcore_counts, measure, measure_latency
from searchers.spaces import get_space

# (constructor, exact params, published MAdds, exact MAdds of our counter)
PUBLISHED = [
    ("mobilenet_v2", 3_504_872, 300e6, 300_774_272),
    ("resnet18", 11_689_512, 1.81e9, 1_814_073_344),
    ("mnasnet1_0", 4_383_312, 312e6, 314_415_872),
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name, params, published_madds, exact_madds", PUBLISHED)
def test_torchvision_models_match_published_counts(name: str, params: int,
                                                   published_madds: float,
                                                   exact_madds: int) -> None:
    model = getattr(torchvision.models, name)()
    counted = measure(model, (3, 224, 224))
    print(f"{name}: params {counted['params']:.0f}, madds {counted['madds']:.0f}, "
          f"flops {counted['flops']:.0f}, intensity {counted['intensity']:.3f}")
    assert counted["params"] == params
    assert counted["madds"] == exact_madds
    assert abs(counted["madds"] - published_madds) <= 0.01 * published_madds
    assert counted["flops"] > 2 * counted["madds"]  # plus BN, activations, adds, pooling
    assert counted["intensity"] == counted["flops"] / counted["bytes"]


def test_fvcore_agrees_on_mobilenet_v2() -> None:
    model = torchvision.models.mobilenet_v2()
    theirs = fvcore_counts(model, (3, 224, 224))
    assert theirs == {"params": 3_504_872, "madds": 300_774_272}


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU()
        self.pool = nn.AvgPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.act(self.bn(self.conv(x))))))


def test_rules_on_a_hand_computed_network() -> None:
    counted = measure(TinyNet(), (2, 5, 5))
    # conv 2->4 3x3 +bias on 5x5: 72+4 params, 1800 madds, 3600 + 100 (bias) flops
    # bn: 8 params, 100 flops; relu 100; avgpool 2x2 -> 4x2x2: 16 windows x 4 = 64
    # linear 16->3: 51 params, 48 madds, 96 + 3 flops
    assert counted["params"] == 76 + 8 + 51
    assert counted["madds"] == 1800 + 48
    assert counted["flops"] == 3700 + 100 + 100 + 64 + 99
    # bytes: 4 x (weights + inputs + outputs) per computing layer; flatten is free
    assert counted["bytes"] == 4 * ((76 + 50 + 100) + (8 + 100 + 100) + (100 + 100)
                                    + (100 + 16) + (51 + 16 + 3))
    assert counted["intensity"] == counted["flops"] / counted["bytes"]


class FunctionalOps(nn.Module):
    """Point-wise ops written functionally, as torchvision models do."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        y = F.relu(y + x)  # add: 1 per element, relu: 1 per element
        y = y * 0.5  # scalar arithmetic is not a layer
        return y.mean([2, 3])  # global average: 1 per input element


def test_functional_ops_outside_modules_are_counted_once() -> None:
    counted = measure(FunctionalOps(), (3, 4, 4))
    numel = 3 * 4 * 4
    assert counted["madds"] == 9 * 16
    assert counted["flops"] == 2 * 9 * 16 + numel + numel + numel
    assert counted["bytes"] == 4 * ((9 + numel + numel) + (3 * numel) + (2 * numel)
                                    + (numel + 3))


@pytest.mark.parametrize("c_in, c_out, kernel, stride, groups, bias, h, w", [
    (8, 16, 3, 1, 1, False, 9, 9), (8, 16, 5, 2, 1, True, 9, 7), (12, 12, 7, 2, 12, False, 15, 8),
    (8, 12, 1, 1, 4, False, 6, 6), (16, 8, (3, 1), (2, 1), 2, True, 10, 5),
])
def test_analytic_conv_equals_traced_conv(c_in, c_out, kernel, stride, groups, bias, h, w) -> None:
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    module = nn.Conv2d(c_in, c_out, kernel, stride, (kh // 2, kw // 2), groups=groups,
                       bias=bias)
    analytic, h_out, w_out = C.conv2d(c_in, c_out, kernel, h, w, stride=stride, groups=groups,
                                      bias=bias)
    assert module(torch.zeros(1, c_in, h, w)).shape[-2:] == (h_out, w_out)
    assert analytic.as_dict() == measure(module, (c_in, h, w))


def test_analytic_pooling_linear_and_pointwise_equal_traced() -> None:
    assert C.pool2d(4, 7, 7, 3, 2, 1)[0].as_dict() == measure(nn.MaxPool2d(3, 2, 1), (4, 7, 7))
    assert C.global_pool(5, 6, 3).as_dict() == measure(nn.AdaptiveAvgPool2d(1), (5, 6, 3))
    assert C.activation(60).as_dict() == measure(nn.ReLU6(), (5, 4, 3))
    assert C.batchnorm(5, 4, 3).as_dict() == measure(nn.BatchNorm2d(5), (5, 4, 3))
    linear = nn.Sequential(nn.Flatten(), nn.Linear(20, 7))
    assert C.linear(20, 7).as_dict() == measure(linear, (5, 4))


def test_measure_restores_training_mode_and_counts_shared_params_once() -> None:
    shared = nn.Conv2d(4, 4, 3, padding=1)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    model.train()
    counted = measure(model, (4, 6, 6))
    assert model.training
    assert counted["params"] == 4 * 4 * 9 + 4  # parameters once...
    assert counted["madds"] == 2 * 4 * 4 * 9 * 36  # ...compute per call


def test_measure_latency_is_a_positive_median() -> None:
    ms = measure_latency(TinyNet(), (2, 5, 5), warmup=1, repeats=3)
    assert isinstance(ms, float) and ms > 0
    with pytest.raises(ValueError):
        measure_latency(TinyNet(), (2, 5, 5), repeats=0)


def test_costs_module_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import searchers.costs, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


@pytest.mark.parametrize("space_name", ["mbconv", "rcas"])
def test_cross_check_agrees_on_the_chain_spaces(space_name: str) -> None:
    space = get_space(space_name)
    report = cross_check(space, space.sample(np.random.default_rng(0)))
    assert report["mismatches"] == []
    assert report["fvcore"]["madds"] == report["space"]["madds"] > 0


def test_cross_check_reports_a_disagreement() -> None:
    class OffByOne:
        """A space whose own count forgets one parameter."""

        input_shape, num_classes = (2, 5, 5), 3

        def costs(self, genotype, input_shape, num_classes):
            counted = measure(TinyNet(), input_shape)
            return {**counted, "params": counted["params"] - 1}

        def build(self, genotype, input_shape, num_classes):
            return TinyNet()

    report = cross_check(OffByOne(), {}, use_fvcore=False)
    assert report["mismatches"] == ["params: space.costs 134.0 != measure 135.0"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_measure_and_latency_on_cuda_match_cpu_counts() -> None:
    model = torchvision.models.mobilenet_v2()
    on_cpu = measure(model, (3, 224, 224))
    model = model.cuda()
    assert measure(model, (3, 224, 224)) == on_cpu
    assert measure_latency(model, (3, 224, 224), device="cuda", warmup=2, repeats=5) > 0
    assert next(model.parameters()).is_cuda  # the caller's model stays on its device
