"""The CUDA paths on a real GPU: data on the device, bf16 + channels_last by default, a real
out-of-memory that leaves the worker able to train the next job, and a worker per GPU.

Skipped on machines without CUDA (CI); run them on a GPU box with ``pytest tests/test_gpu.py``.
The same options are exercised on the CPU by ``test_training.py`` and the placement of workers
by ``test_runner.py``, so a skip here leaves no code path without a test.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import nn

from searchers import spaces as spaces_module
from searchers.base import Job, TrainSpec
from searchers.data import load_dataset
from searchers.spaces import Space
from searchers.training import fit_model, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

QUICK = TrainSpec(epochs=2, batch_size=128, max_batches=6, lr=0.05, seed=3)


def small_cnn(width: int = 24) -> nn.Module:
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(*block(1, width), *block(width, 2 * width), nn.MaxPool2d(2),
                         *block(2 * width, 2 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(2 * width, 10))


class MemoryHog(nn.Module):
    """Allocates 1 GiB blocks on its device until CUDA runs out of memory: a real OOM."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = []
        while True:
            blocks.append(torch.empty(1 << 30, dtype=torch.uint8, device=x.device))


class GpuTestSpace(Space):
    """``{"space": "gputest", "width": w}`` builds a small CNN; ``{"hog": true}`` a MemoryHog."""

    name = "gputest"
    presets = {"digits": {"input_shape": (1, 8, 8), "num_classes": 10}}
    default_preset = "digits"

    def sample(self, rng: Any) -> dict[str, Any]:
        return {"space": "gputest", "width": 24}

    def validate(self, genotype: Mapping[str, Any]) -> dict[str, Any]:
        self._check_space(genotype)
        if genotype.get("hog"):
            return {"space": "gputest", "hog": True}
        return {"space": "gputest", "width": int(genotype.get("width", 24))}

    def costs(self, genotype: Mapping[str, Any], input_shape: Any = None,
              num_classes: Any = None) -> dict[str, float]:
        return {"params": float(sum(p.numel() for p in self.build(genotype).parameters()))}

    def graph(self, genotype: Mapping[str, Any]) -> Any:
        raise NotImplementedError("not needed by these tests")

    def build(self, genotype: Mapping[str, Any], input_shape: Any = None,
              num_classes: Any = None) -> nn.Module:
        g = self.validate(genotype)
        return MemoryHog() if g.get("hog") else small_cnn(g["width"])


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(spaces_module._SPACES, "gputest", f"{__name__}:GpuTestSpace")


def test_dataset_tensors_live_on_the_gpu() -> None:
    bundle = load_dataset("digits", device="cuda")
    assert bundle.x_train.is_cuda and bundle.y_train.is_cuda and bundle.x_val.is_cuda


def test_default_precision_on_cuda_is_bf16_with_channels_last_and_learns() -> None:
    torch.manual_seed(0)
    model = small_cnn()
    dtypes: list[torch.dtype] = []
    layouts: list[bool] = []

    def record(conv: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        dtypes.append(out.dtype)
        if conv.training:
            layouts.append(args[0].is_contiguous(memory_format=torch.channels_last))

    model[3].register_forward_hook(record)
    outcome = fit_model(model, load_dataset("digits", device="cuda"),
                        TrainSpec(epochs=10, batch_size=64, lr=0.05, seed=1), "cuda")
    assert set(dtypes) == {torch.bfloat16} and set(layouts) == {True}
    assert all(p.is_cuda and p.dtype == torch.float32 for p in model.parameters())
    assert outcome.accuracy >= 0.9, outcome


def test_real_out_of_memory_is_a_result_and_the_next_job_trains(registered: None) -> None:
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    hog = train(Job(id=0, genotype={"space": "gputest", "hog": True}, train=QUICK), "cuda")
    assert hog.status == "oom", hog.error
    assert "out of memory" in hog.error.lower()
    assert torch.cuda.memory_allocated() <= before + (64 << 20)  # the blocks were freed
    ok = train(Job(id=1, genotype={"space": "gputest", "width": 16}, train=QUICK), "cuda")
    assert ok.status == "ok", ok.error
    assert ok.device.startswith("cuda:") and torch.cuda.get_device_name() in ok.device


def test_a_training_run_puts_one_worker_on_each_gpu(tmp_path) -> None:
    """A real ``train`` run through the local backend: a worker per GPU, every candidate
    trained on a GPU."""
    from workbench.config import parse_config
    from workbench.runner import Coordinator, start_run
    from workbench.runner.backend import cuda_devices
    from workbench.store import Store

    gpus = cuda_devices()
    config = parse_config({
        "name": "gpu", "space": {"name": "mbconv", "preset": "ponas-digits"},
        "dataset": {"name": "digits"}, "evaluator": "train", "searcher": {"name": "random"},
        "budget": {"candidates": 2 * len(gpus)},
        "train": {"epochs": 1, "batch_size": 128, "max_batches": 4}, "seed": 0})
    db = tmp_path / "nasw.db"
    run_id = start_run(db, config)
    worker_devices: set[str] = set()

    def watch(run: dict[str, Any]) -> None:
        worker_devices.update(w["device"] for w in run.get("workers") or [])

    assert Coordinator(db, run_id, on_progress=watch).run() == "finished"
    with Store(db) as store:
        rows = store.candidates(run_id)
    assert [r["status"] for r in rows] == ["ok"] * len(rows), [r["error"] for r in rows]
    assert all(r["device"].startswith("cuda:") for r in rows)
    assert worker_devices == {f"cuda:{gpu}" for gpu in gpus}
