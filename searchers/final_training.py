"""Training a chosen architecture from scratch with its preset's full schedule, resumably.

Search-time training is a short proxy; the architecture a user keeps is trained again from
scratch with the papers' final-training settings (:data:`FINAL_SCHEDULES`, by space preset).
That takes hours on real data, so :class:`EpochTrainer` works one epoch at a time and its whole
state -- weights, optimizer, the data-order generator, the curves -- is a plain dict of tensors
and numbers that ``torch.save`` writes and ``torch.load(weights_only=True)`` reads back safely:
a killed training continues from its last finished epoch, with the same data order and
learning-rate schedule it would have had.

Final schedules (``epochs``, ``lr``, ``schedule``, ...) per space preset; where the paper gives
none for a preset, the choice is ours and marked so:

* ``pnas-cifar``: PNAS §5.4's final model: 600 epochs on train + validation
  (``train_on_val``), LR 0.025 cosine, auxiliary head weighted 0.4, drop-path 0.4 (the PNAS
  searcher runs the 300-epoch N/F selection before it).
* ``pnas-digits``: the digits schedule with the same regularisers scaled down (auxiliary head
  0.4, drop-path 0.1) and without ``train_on_val`` (digits have no test split: the validation
  split is the only held-out score).
* ``ponas-imagenet``: PONAS §4.1: SGD with Nesterov momentum 0.9, wd 4e-5, LR 0.045, cosine;
  150 epochs (the paper's §4.3 trains its specialized networks 150 epochs with §4.1's setting).
* ``rcas-cifar100``: 200 epochs, LR 0.1, step decay, wd 4e-5 (RCAS §4.2; the paper steps at
  epochs 60/120/180, our ``step`` schedule at 50%/75%).
* ``rcas-imagenet``: 400 epochs, LR 0.01, step decay (RCAS §4.2).
* ``epnas-cifar``, ``ponas-cifar``: 300 epochs, LR 0.05, cosine (our choice: the papers train
  their CIFAR finals like PNAS/NASNet; EPNAS gives no final schedule).
* every ``*-digits`` preset: 30 epochs, LR 0.05, cosine, batch 64, no augmentation (our choice).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from searchers.base import Job, TrainSpec
from searchers.errors import NaswError

_DIGITS = {"epochs": 30, "batch_size": 64, "lr": 0.05, "schedule": "cosine", "augment": False,
           "weight_decay": 5e-4}
FINAL_SCHEDULES: dict[str, dict[str, Any]] = {
    "pnas-cifar": {"epochs": 600, "batch_size": 128, "lr": 0.025, "schedule": "cosine",
                   "weight_decay": 4e-5, "aux_weight": 0.4, "drop_path": 0.4,
                   "train_on_val": True},
    "pnas-digits": {**_DIGITS, "aux_weight": 0.4, "drop_path": 0.1, "train_on_val": False},
    "ponas-imagenet": {"epochs": 150, "batch_size": 256, "lr": 0.045, "schedule": "cosine",
                       "momentum": 0.9, "nesterov": True, "weight_decay": 4e-5},
    "rcas-cifar100": {"epochs": 200, "batch_size": 128, "lr": 0.1, "schedule": "step",
                      "weight_decay": 4e-5},
    "rcas-imagenet": {"epochs": 400, "batch_size": 256, "lr": 0.01, "schedule": "step",
                      "weight_decay": 4e-5},
    "epnas-cifar": {"epochs": 300, "batch_size": 128, "lr": 0.05, "schedule": "cosine"},
    "ponas-cifar": {"epochs": 300, "batch_size": 128, "lr": 0.05, "schedule": "cosine"},
}


def final_schedule(preset: str | None) -> dict[str, Any]:
    """The final-training fields of ``preset`` (digits presets share one schedule unless they
    have their own)."""
    if preset in FINAL_SCHEDULES:
        return dict(FINAL_SCHEDULES[preset])
    if preset and preset.endswith("-digits"):
        return dict(_DIGITS)
    return dict(FINAL_SCHEDULES.get(preset or "", _DIGITS))


def final_train_spec(search_spec: TrainSpec, preset: str | None,
                     epochs: int | None = None) -> TrainSpec:
    """The search's spec (dataset, split, precision, seed) with the preset's final schedule."""
    spec = search_spec.with_(**final_schedule(preset), max_batches=None)
    if epochs is not None:
        if epochs < 1:
            raise NaswError("epochs", epochs, "a positive integer")
        spec = spec.with_(epochs=int(epochs))
    return spec


class EpochTrainer:
    """One job trained epoch by epoch; :meth:`state_dict` after any epoch resumes exactly."""

    def __init__(self, job: Job, device: Any = None) -> None:
        import torch

        from searchers.data import DeviceLoader, load_dataset
        from searchers.spaces import space_of
        from searchers.training import (
            SPLIT_SEED,
            _use_channels_last,
            build_model,
            device_label,
            inherit_weights,
            make_optimizer,
            resolve_device,
            training_split,
        )

        spec = job.train
        self.job, self.spec = job, spec
        self.device = resolve_device(device)
        self.device_label = device_label(self.device)
        self.channels_last = _use_channels_last(spec, self.device)
        self.bundle = load_dataset(spec.dataset, root=spec.data_root,
                                   val_fraction=spec.val_fraction, seed=SPLIT_SEED,
                                   device=self.device, input_shape=job.input_shape)
        space = space_of(job.genotype)
        self.costs = space.costs(job.genotype, job.input_shape, job.num_classes)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(spec.seed)
            self.model = build_model(space, job)
        if job.inherit:
            inherit_weights(self.model, job.inherit)
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.loader = DeviceLoader.for_training(training_split(self.bundle, spec),
                                                spec.batch_size, seed=spec.seed,
                                                augment=spec.augment,
                                                channels_last=self.channels_last,
                                                max_batches=spec.max_batches)
        self.optimizer = make_optimizer(self.model, spec)
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.started = time.time()

    @property
    def done(self) -> bool:
        return self.epoch >= self.spec.epochs

    def run_epoch(self) -> dict[str, float]:
        """Train one epoch, evaluate; returns ``{epoch, loss, val_accuracy, val_loss, lr}``."""
        from searchers.training import evaluate_model, train_one_epoch

        loss, lr = train_one_epoch(self.model, self.loader, self.optimizer, self.spec,
                                   self.device, self.epoch)
        accuracy, val_loss = evaluate_model(self.model, self.bundle, self.spec, self.device)
        self.epoch += 1
        row = {"epoch": self.epoch, "loss": loss, "val_accuracy": accuracy,
               "val_loss": val_loss, "lr": lr}
        self.history.append(row)
        return row

    def weights(self) -> dict[str, Any]:
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        """Tensors, numbers and strings only: loadable with ``torch.load(weights_only=True)``."""
        return {"epoch": self.epoch, "model": self.weights(),
                "optimizer": self.optimizer.state_dict(),
                "generator": self.loader.generator.get_state(),
                "history": [dict(h) for h in self.history]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.loader.generator.set_state(state["generator"])
        self.epoch = int(state["epoch"])
        self.history = [dict(h) for h in state["history"]]
