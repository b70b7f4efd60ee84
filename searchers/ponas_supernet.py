"""PONAS stage 2 as published: the supernet ``Â(l)`` of one layer, trained with strict fairness.

Huang & Chu §3.2: to fill row ``l`` of the accuracy table, the block ``B_G`` of layer ``l`` is
replaced by all 12 candidate blocks, each initialised by cropping ``B_G``'s weights; every
other layer keeps its single block and is *shared* by the 12 paths. The supernet is fine-tuned
"with strict fairness" (FairNAS, Chu et al.): each step, every path does one forward and one
backward pass on the *same* batch, the gradients accumulate, and one optimiser update follows.
Then each path ``[B*_0 .. B*_{l-1}, B_i, B_G ..]`` is evaluated on the validation split under
the shared weights: ``T[l, i]``, the one-shot table of the paper's title.

A job is an ordinary :class:`~searchers.base.Job` whose genotype is the layer's default path
(``B_G`` at layer ``l``) and whose ``meta["supernet_layer"]`` names ``l``;
:func:`searchers.evaluators.evaluate` routes it here. The :class:`~searchers.base.Result`
carries the 12 paths in ``paths`` (``choice``, ``accuracy``, ``val_loss``), the best path's
accuracy as ``accuracy``, and -- when asked -- the weights to carry on: the shared layers as
trained, with layer ``l`` holding the best path's block (the paper's
``[B*_1 .. B*_l, B_G ..]`` "with the parameters discovered").

Compute and memory: per batch 12 forward/backward passes, the same as fine-tuning the 12
candidates one by one for the same epochs. Gradients accumulate in place, so activation memory
is that of one path; parameter memory is one network plus the 11 extra blocks of layer ``l``
(each no larger than ``B_G``), plus their momentum buffers -- on ``ponas-imagenet`` at most
12x the largest block of the widest layer, about 1.6M extra parameters over a 9M network.

Choices the paper leaves open: the paths are visited in index order within a step (the update
is their summed gradient, so the order does not matter up to float rounding); batch-norm
running statistics of the shared layers accumulate over all 12 paths (each path's own block
keeps its own statistics) and are used as they are for evaluation.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from typing import Any

from searchers.base import Job, Result

#: the ``Job.meta`` key that marks a one-layer supernet job
SUPERNET_KEY = "supernet_layer"


def is_supernet_job(job: Job) -> bool:
    return job.meta.get(SUPERNET_KEY) is not None


def path_genotype(genotype: Mapping[str, Any], layer: int, choice: int) -> dict[str, Any]:
    """The genotype of path ``choice`` of the layer-``layer`` supernet."""
    choices = list(genotype["choices"])
    choices[layer] = int(choice)
    return {**dict(genotype), "choices": choices}


def evaluate_supernet(job: Job, evaluator: str, device: Any = None) -> Result:
    """A supernet job on the ``train`` or ``synthetic`` evaluator (never raises for a job)."""
    if evaluator == "synthetic":
        return _synthetic(job)
    return train_supernet(job, device)


def _synthetic(job: Job) -> Result:
    """Each path scored by the synthetic objective (the same seed for all 12: one batch order)."""
    from searchers.objectives import synthetic_result
    from searchers.spaces import space_of

    started = time.perf_counter()
    layer = int(job.meta[SUPERNET_KEY])
    space = space_of(job.genotype)
    paths = []
    for choice in range(int(space.num_options)):
        single = dataclasses.replace(job, genotype=path_genotype(job.genotype, layer, choice))
        outcome = synthetic_result(single, space)
        if outcome.status != "ok":
            return dataclasses.replace(outcome, wall_time=time.perf_counter() - started)
        paths.append({"choice": choice, "accuracy": outcome.accuracy,
                      "val_loss": outcome.val_loss})
    best = max(paths, key=lambda p: (p["accuracy"], -p["choice"]))
    costs = space.costs(job.genotype, job.input_shape, job.num_classes)
    return Result(status="ok", accuracy=best["accuracy"], val_loss=best["val_loss"],
                  costs=costs, device="synthetic", epochs=int(job.train.epochs),
                  wall_time=time.perf_counter() - started, paths=tuple(paths))


def _path_switch(blocks: list[Any]) -> Any:
    from torch import nn

    class PathSwitch(nn.Module):
        """The 12 candidate blocks of one layer; ``active`` picks the one a forward uses."""

        def __init__(self) -> None:
            super().__init__()
            self.paths = nn.ModuleList(blocks)
            self.active = 0

        def forward(self, x: Any) -> Any:
            return self.paths[self.active](x)

    return PathSwitch()


def build_supernet(space: Any, job: Job) -> tuple[Any, Any]:
    """(model, switch): the default path's network with layer ``l`` swapped for a switch of
    all candidate blocks, each cropped from the inherited ``B_G`` of that layer."""
    from searchers.training import build_model, inherit_weights

    layer = int(job.meta[SUPERNET_KEY])
    model = build_model(space, job)
    if job.inherit:
        inherit_weights(model, job.inherit)
    prefix = f"layers.{layer}."
    source = {k[len(prefix):]: v for k, v in model.state_dict().items() if k.startswith(prefix)}
    blocks = []
    for choice in range(int(space.num_options)):
        donor = space.build(path_genotype(job.genotype, layer, choice), job.input_shape,
                            job.num_classes)
        block = donor.layers[str(layer)]
        inherit_weights(block, source)
        blocks.append(block)
    switch = _path_switch(blocks)
    model.layers[str(layer)] = switch
    return model, switch


def fair_epoch(model: Any, switch: Any, loader: Any, optimizer: Any, spec: Any, device: Any,
               epoch: int) -> float:
    """One epoch of strict fairness: per batch every path forward + backward, one update.
    Returns the mean training loss over paths and batches."""
    import torch
    import torch.nn.functional as F

    from searchers.training import (
        _use_bf16,
        check_running_loss,
        epoch_mean_loss,
        lr_factor,
    )

    steps_per_epoch = len(loader)
    total_steps = steps_per_epoch * spec.epochs
    warmup_steps = int(round(spec.warmup_epochs * steps_per_epoch))
    lr_min_ratio = spec.lr_min / spec.lr if spec.lr > 0 else 0.0
    bf16 = _use_bf16(spec, device)
    paths = len(switch.paths)
    step = epoch * steps_per_epoch
    model.train()
    running = torch.zeros((), dtype=torch.float32, device=device)
    batches = 0
    for xb, yb in loader:
        lr = spec.lr * lr_factor(step, total_steps, warmup_steps, spec.schedule, lr_min_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        for path in range(paths):
            switch.active = path
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb, label_smoothing=spec.label_smoothing)
            loss.backward()
            running += loss.detach() / paths
        optimizer.step()
        batches += 1
        step += 1
        check_running_loss(running, batches, step)
    return epoch_mean_loss(running, batches, epoch)


def train_supernet(job: Job, device: Any = None) -> Result:
    """Fine-tune the layer's supernet with strict fairness and measure its 12 paths."""
    import torch

    from searchers.data import DeviceLoader, load_dataset
    from searchers.spaces import space_of
    from searchers.training import (
        SPLIT_SEED,
        Diverged,
        _error_text,
        _free_memory,
        _is_oom,
        _use_channels_last,
        device_label,
        evaluate_model,
        make_optimizer,
        resolve_device,
        training_split,
    )

    started = time.perf_counter()
    spec = job.train
    try:
        device = resolve_device(device)
        label = device_label(device)
    except Exception as exc:
        return Result(status="failed", error=_error_text(exc), device=str(device))
    layer = int(job.meta[SUPERNET_KEY])
    status, error, paths, curve, weights, costs = "ok", "", [], [], None, {}
    model = switch = None
    try:
        space = space_of(job.genotype)
        costs = {k: float(v) for k, v in
                 space.costs(job.genotype, job.input_shape, job.num_classes).items()}
        bundle = load_dataset(spec.dataset, root=spec.data_root, val_fraction=spec.val_fraction,
                              seed=SPLIT_SEED, device=device, input_shape=job.input_shape)
        fork_devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(spec.seed)
            model, switch = build_supernet(space, job)
            channels_last = _use_channels_last(spec, device)
            model.to(device)
            if channels_last:
                model.to(memory_format=torch.channels_last)
            loader = DeviceLoader.for_training(training_split(bundle, spec), spec.batch_size,
                                               seed=spec.seed, augment=spec.augment,
                                               channels_last=channels_last,
                                               max_batches=spec.max_batches)
            optimizer = make_optimizer(model, spec)
            for epoch in range(spec.epochs):
                curve.append(fair_epoch(model, switch, loader, optimizer, spec, device, epoch))
            for choice in range(len(switch.paths)):
                switch.active = choice
                accuracy, val_loss = evaluate_model(model, bundle, spec, device)
                if not math.isfinite(val_loss):
                    raise Diverged(f"validation loss of path {choice} is {val_loss}")
                paths.append({"choice": choice, "accuracy": accuracy, "val_loss": val_loss})
        best = max(paths, key=lambda p: (p["accuracy"], -p["choice"]))
        if job.return_weights:
            weights = _carried_weights(model, switch, layer, best["choice"])
    except Diverged as exc:
        status, error = "diverged", str(exc)
    except Exception as exc:
        status = "oom" if _is_oom(exc) else "failed"
        error = _error_text(exc)
    model = switch = None
    if status != "ok":
        if status == "oom" or device.type == "cuda":
            _free_memory(device)
        return Result(status=status, error=error, costs=costs, device=label,
                      wall_time=time.perf_counter() - started)
    return Result(status="ok", accuracy=best["accuracy"], val_loss=best["val_loss"],
                  loss_curve=tuple(curve), costs=costs, device=label, epochs=spec.epochs,
                  wall_time=time.perf_counter() - started, weights=weights,
                  paths=tuple(paths))


def _carried_weights(model: Any, switch: Any, layer: int, choice: int) -> dict[str, Any]:
    """The supernet's state dict in the plain network's layout, layer ``l`` = path ``choice``."""
    prefix = f"layers.{layer}."
    out = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
           if not k.startswith(prefix)}
    for name, value in switch.paths[choice].state_dict().items():
        out[prefix + name] = value.detach().to("cpu", copy=True)
    return out


__all__ = ["SUPERNET_KEY", "build_supernet", "evaluate_supernet", "fair_epoch",
           "is_supernet_job", "path_genotype", "train_supernet"]
