"""Proxy training: the loop learns, is deterministic, turns failures into results, inherits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import nn

from searchers import spaces as spaces_module
from searchers.base import Job, TrainSpec
from searchers.data import load_dataset
from searchers.errors import GenotypeError, NaswError
from searchers.evaluators import evaluate
from searchers.spaces import Space
from searchers.training import SCHEDULES, fit_model, inherit_weights, lr_factor, train


def small_cnn(width: int = 24, in_channels: int = 1, num_classes: int = 10) -> nn.Module:
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(*block(in_channels, width), *block(width, 2 * width), nn.MaxPool2d(2),
                         *block(2 * width, 2 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(2 * width, num_classes))


class Broken(nn.Module):
    """A candidate that fails in a chosen way on its first forward pass."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.linear(x.flatten(1))
        if self.mode == "nan":
            return logits * float("nan")
        if self.mode == "oom":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if self.mode == "oom-runtime":
            raise RuntimeError("CUDA error: out of memory")
        raise ValueError("boom: a broken candidate")


class ConvSpace(Space):
    """Genotype ``{"space": "testconv", "width": w}`` or ``{"mode": "nan" | "oom" | ...}``."""

    name = "testconv"
    presets = {"digits": {"input_shape": (1, 8, 8), "num_classes": 10}}
    default_preset = "digits"

    def sample(self, rng: Any) -> dict[str, Any]:
        return {"space": "testconv", "width": int(rng.choice([8, 16]))}

    def validate(self, genotype: Mapping[str, Any]) -> dict[str, Any]:
        self._check_space(genotype)
        if "mode" in genotype:
            return {"space": "testconv", "mode": str(genotype["mode"])}
        if int(genotype.get("width", 0)) < 1:
            raise GenotypeError("genotype.width", genotype.get("width"), "a positive integer")
        return {"space": "testconv", "width": int(genotype["width"])}

    def costs(self, genotype: Mapping[str, Any], input_shape: Any = None,
              num_classes: Any = None) -> dict[str, float]:
        model = self.build(genotype)
        return {"params": float(sum(p.numel() for p in model.parameters()))}

    def graph(self, genotype: Mapping[str, Any]) -> Any:
        raise NotImplementedError("not needed by these tests")

    def build(self, genotype: Mapping[str, Any], input_shape: Any = None,
              num_classes: Any = None) -> nn.Module:
        g = self.validate(genotype)
        return Broken(g["mode"]) if "mode" in g else small_cnn(g["width"])


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    """CI runs two test processes on two cores: one torch thread each avoids oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(spaces_module._SPACES, "testconv", f"{__name__}:ConvSpace")


QUICK = TrainSpec(epochs=2, batch_size=64, max_batches=4, lr=0.05, seed=3)


@pytest.mark.slow
def test_small_cnn_reaches_97_percent_on_digits_in_10_epochs() -> None:
    torch.manual_seed(0)
    bundle = load_dataset("digits")
    outcome = fit_model(small_cnn(), bundle, TrainSpec(epochs=10, batch_size=64, lr=0.05))
    assert outcome.accuracy >= 0.97, outcome
    assert len(outcome.loss_curve) == 10
    assert outcome.loss_curve[-1] < outcome.loss_curve[0] / 5


def test_same_job_twice_gives_identical_results(registered: None) -> None:
    job = Job(id=0, genotype={"space": "testconv", "width": 8}, train=QUICK)
    first, second = train(job), train(job)
    assert first.status == "ok", first.error
    assert (first.accuracy, first.val_loss, first.loss_curve) == (
        second.accuracy, second.val_loss, second.loss_curve)
    assert len(first.loss_curve) == 2 and first.epochs == 2
    assert first.device == "cpu"
    assert first.costs == {"params": float(sum(p.numel() for p in small_cnn(8).parameters()))}
    assert first.weights is None
    other_seed = train(Job(id=0, genotype=job.genotype, train=QUICK.with_(seed=4)))
    assert other_seed.loss_curve != first.loss_curve


def test_training_leaves_the_callers_rng_alone(registered: None) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(Job(id=0, genotype={"space": "testconv", "width": 8}, train=QUICK))
    assert torch.equal(torch.rand(3), expected)


def test_weights_come_back_and_reproduce_the_accuracy(registered: None) -> None:
    genotype = {"space": "testconv", "width": 8}
    trained = train(Job(id=0, genotype=genotype, train=QUICK, return_weights=True))
    assert trained.weights is not None
    assert all(t.device.type == "cpu" for t in trained.weights.values())
    evaluated = train(Job(id=1, genotype=genotype, train=QUICK.with_(epochs=0),
                          inherit=trained.weights))
    assert evaluated.status == "ok" and evaluated.loss_curve == () and evaluated.epochs == 0
    assert evaluated.accuracy == pytest.approx(trained.accuracy)
    assert evaluated.val_loss == pytest.approx(trained.val_loss, rel=1e-5)


@pytest.mark.parametrize(("mode", "status", "text"), [
    ("nan", "diverged", "nan"),
    ("oom", "oom", "out of memory"),
    ("oom-runtime", "oom", "out of memory"),
    ("boom", "failed", "boom: a broken candidate"),
])
def test_failures_are_results(registered: None, mode: str, status: str, text: str) -> None:
    job = Job(id=0, genotype={"space": "testconv", "mode": mode}, train=QUICK)
    result = train(job)
    assert result.status == status
    assert text in result.error.lower()
    assert result.accuracy is None and result.weights is None
    assert evaluate(job, "train").status == status


def test_bad_specs_fail_with_the_field_named(registered: None) -> None:
    genotype = {"space": "testconv", "width": 8}
    bad_precision = train(Job(id=0, genotype=genotype, train=QUICK.with_(precision="fp8")))
    assert bad_precision.status == "failed" and "train.precision" in bad_precision.error
    wrong_classes = train(Job(id=0, genotype=genotype, train=QUICK, num_classes=7))
    assert wrong_classes.status == "failed" and "job.num_classes" in wrong_classes.error
    wrong_shape = train(Job(id=0, genotype=genotype, train=QUICK, input_shape=(3, 32, 32)))
    assert wrong_shape.status == "failed" and "job.input_shape" in wrong_shape.error
    bad_genotype = train(Job(id=0, genotype={"space": "testconv", "width": 0}, train=QUICK))
    assert bad_genotype.status == "failed" and "genotype.width" in bad_genotype.error


def test_learning_rate_schedules() -> None:
    assert [lr_factor(s, 10, 2, "cosine", 0.0) for s in (0, 1)] == [0.5, 1.0]
    assert lr_factor(2, 10, 2, "cosine", 0.0) == pytest.approx(1.0)
    assert lr_factor(10, 10, 2, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(6, 10, 2, "cosine", 0.0) == pytest.approx(0.5)
    assert [lr_factor(s, 8, 0, "step", 0.0) for s in (0, 3, 4, 6, 7)] == [1, 1, 0.1, 0.01, 0.01]
    assert lr_factor(7, 8, 0, "constant", 0.0) == 1.0
    with pytest.raises(NaswError, match="train.schedule") as err:
        lr_factor(0, 8, 0, "linear", 0.0)
    assert all(name in str(err.value) for name in SCHEDULES)  # the message lists every one


def test_inherit_copies_crops_pads_and_reports() -> None:
    torch.manual_seed(0)
    source = nn.Sequential(nn.Conv2d(3, 8, 5, padding=2), nn.BatchNorm2d(8), nn.Linear(8, 4))
    target = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Linear(8, 4))
    state = source.state_dict()
    state["extra.weight"] = torch.ones(2)
    state["2.bias"] = torch.zeros(2, 2)  # different rank: skipped
    report = inherit_weights(target, state)
    assert sorted(report.copied) == ["1.num_batches_tracked", "2.weight"]
    assert sorted(report.cropped) == ["0.bias", "0.weight", "1.bias", "1.running_mean",
                                      "1.running_var", "1.weight"]
    assert sorted(report.skipped) == ["2.bias", "extra.weight"]
    assert report.missing == []
    # leading output channels, centre 3x3 of each 5x5 kernel
    assert torch.equal(target[0].weight, source[0].weight[:4, :, 1:4, 1:4])
    assert torch.equal(target[1].running_var, source[1].running_var[:4])


def test_inherit_into_a_larger_kernel_preserves_the_function() -> None:
    torch.manual_seed(0)
    small = nn.Conv2d(4, 6, 3, padding=1)
    large = nn.Conv2d(4, 10, 5, padding=2)
    init_extra = large.weight[6:].detach().clone()
    report = inherit_weights(large, small.state_dict())
    assert sorted(report.cropped) == ["bias", "weight"]
    x = torch.randn(2, 4, 9, 9)
    assert torch.allclose(large(x)[:, :6], small(x), atol=1e-6)
    assert torch.equal(large.weight[6:], init_extra), "new channels keep their initialisation"
    assert torch.count_nonzero(large.weight[:6, :, 0]) == 0, "the ring around 3x3 is zero"
    assert inherit_weights(large, None).missing == ["weight", "bias"]


@pytest.mark.slow
def test_synthetic_data_is_learnable() -> None:
    torch.manual_seed(0)
    bundle = load_dataset("synthetic:shape=1x8x8,n=1000")
    outcome = fit_model(small_cnn(8), bundle, TrainSpec(epochs=3, batch_size=64, lr=0.05))
    assert outcome.accuracy > 0.5  # chance is 0.1


def _importable_spaces() -> list[str]:
    import importlib

    names = []
    for name in spaces_module.space_names():
        try:
            importlib.import_module(spaces_module._SPACES[name].split(":")[0])
        except ModuleNotFoundError:
            continue
        names.append(name)
    return names


@pytest.mark.parametrize("name", _importable_spaces())
def test_a_sampled_genotype_of_every_space_trains(name: str) -> None:
    """The default (digits) preset of each space builds, trains a step and is scored."""
    import numpy as np

    space = spaces_module.get_space(name)
    genotype = space.sample(np.random.default_rng(0))
    job = Job(id=0, genotype=genotype, input_shape=space.input_shape,
              num_classes=space.num_classes, return_weights=True,
              train=TrainSpec(epochs=1, batch_size=32, max_batches=1))
    result = train(job)
    assert result.status == "ok", result.error
    assert 0.0 <= result.accuracy <= 1.0 and len(result.loss_curve) == 1
    assert result.costs == space.costs(genotype, space.input_shape, space.num_classes)
    report = inherit_weights(space.build(genotype), result.weights)
    assert report.cropped == [] and report.skipped == [] and report.missing == []


# -- the accelerator options, exercised on the CPU ----------------------------------------
# bf16 autocast, channels_last and torch.compile are GPU-speed features, but each is a code
# path of the one training loop: these tests prove on a CPU that the option takes effect and
# that training with it still learns and returns plain weights.
def _conv_output_dtypes(model: nn.Module) -> list[torch.dtype]:
    seen: list[torch.dtype] = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    return seen


def test_bf16_autocast_runs_the_convolutions_in_bf16_and_follows_the_fp32_run() -> None:
    runs = {}
    for precision in ("fp32", "auto", "bf16"):
        torch.manual_seed(0)
        model = small_cnn(8)
        dtypes = _conv_output_dtypes(model)
        spec = TrainSpec(epochs=3, batch_size=64, lr=0.05, seed=1, precision=precision)
        runs[precision] = fit_model(model, load_dataset("digits"), spec)
        expected = torch.bfloat16 if precision == "bf16" else torch.float32  # auto: fp32 on CPU
        assert set(dtypes) == {expected}, precision  # in training and in evaluation
        assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights
    fp32, bf16 = runs["fp32"], runs["bf16"]
    assert runs["auto"] == fp32
    assert bf16.loss_curve != fp32.loss_curve  # really another arithmetic...
    assert bf16.loss_curve == pytest.approx(fp32.loss_curve, rel=0.02)  # ...on the same path
    assert bf16.loss_curve[-1] < bf16.loss_curve[0] * 0.7
    assert bf16.accuracy == pytest.approx(fp32.accuracy, abs=0.03)


@pytest.mark.parametrize(("option", "expected"), [("auto", True), ("on", True), ("off", False)])
def test_channels_last_option_sets_the_memory_format(option: str, expected: bool) -> None:
    torch.manual_seed(0)
    model = small_cnn(8)
    inputs: list[bool] = []
    second_conv = model[3]  # 8 -> 16 channels: unlike the 1-channel input, the layout shows

    def record_layout(conv: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if conv.training:  # in evaluation oneDNN may pick its own layout
            inputs.append(args[0].is_contiguous(memory_format=torch.channels_last))

    second_conv.register_forward_pre_hook(record_layout)
    outcome = fit_model(model, load_dataset("digits"), QUICK.with_(channels_last=option))
    weight = second_conv.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) is expected
    assert set(inputs) == {expected}
    assert 0.0 <= outcome.accuracy <= 1.0


@pytest.mark.slow
def test_compiled_training_matches_eager_and_returns_plain_weights(registered: None) -> None:
    """``compile: true`` trains the same network as eager mode (to float tolerance) and its
    weights carry the module's own names, not ``_orig_mod.*``, so they can be inherited."""
    genotype = {"space": "testconv", "width": 8}
    spec = QUICK.with_(epochs=1, max_batches=3)
    eager = train(Job(id=0, genotype=genotype, train=spec, return_weights=True))
    compiled = train(Job(id=0, genotype=genotype, train=spec.with_(compile=True),
                         return_weights=True))
    assert compiled.status == "ok", compiled.error
    assert compiled.weights.keys() == eager.weights.keys()
    for name, value in eager.weights.items():
        torch.testing.assert_close(compiled.weights[name], value, rtol=1e-3, atol=1e-4)
    assert compiled.accuracy == pytest.approx(eager.accuracy, abs=0.02)
