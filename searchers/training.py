"""Proxy training: turn a :class:`~searchers.base.Job` into a :class:`~searchers.base.Result`.

``train(job)`` builds the candidate from its genotype, optionally starts from inherited
weights (EPNAS parameter sharing, PONAS cropping), trains it with SGD on the job's dataset --
held as tensors on the device, augmented there in batch (:mod:`searchers.data`) -- and measures
validation accuracy. Failures are results: a NaN/inf loss is ``diverged``, CUDA running out of
memory is ``oom`` (memory is freed first, so the worker can take the next job), anything else is
``failed`` with the end of the traceback.

Choices the papers leave open, made here and tested:

* Weight decay applies to weights with two or more dimensions (conv, linear) and not to biases
  or normalisation parameters -- the usual modern practice; decaying BN scales only slows
  proxy training down.
* ``schedule="step"`` divides the learning rate by 10 at 50% and 75% of the steps;
  ``"rcas-step"`` at 40%, 70% and 90% (RCAS §4.1's epochs 4, 7 and 9 of 10);
  ``"ponas-step"`` at 40% and 80% (PONAS §4.1's meta training: epochs 20 and 40 of 50);
  ``cosine`` anneals from ``lr`` to ``lr_min`` per step after a linear warm-up of
  ``warmup_epochs``.
* The train/validation split always uses split seed 0, independent of ``train.seed``, so
  every candidate of every run is scored on the same validation images; ``train.seed``
  controls initialisation, data order and augmentation.
* PNAS's final-training regularisers (``TrainSpec.aux_weight``, ``drop_path``,
  ``train_on_val``; §5.4): the auxiliary classifier's cross-entropy is added with weight
  ``aux_weight`` (the reported training loss is the main classifier's alone); the drop-path
  probability rises linearly from 0 to ``drop_path`` over the training steps (the released
  code's schedule); ``train_on_val`` trains on the training and validation splits together.
  Spaces whose models lack an auxiliary head or drop-path reject them by name.
* ``precision="auto"``: bf16 autocast on CUDA, fp32 on CPU (bf16 on CPU is allowed, explicit).
  ``channels_last="auto"``: on, on CUDA and on CPU. On CUDA it feeds the tensor cores; on a
  CPU (oneDNN) we measured one training step of a sample of every space's digits/CIFAR preset
  and of a 16-32-64 CNN at 1.1x-2.4x the speed of NCHW, never slower, so there is no reason to
  switch it off there.
"""

from __future__ import annotations

import gc
import math
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from searchers.base import Job, Result, TrainSpec
from searchers.errors import NaswError

SPLIT_SEED = 0
SCHEDULES = ("constant", "cosine", "cosine_restarts", "step", "rcas-step", "ponas-step")
PRECISIONS = ("auto", "bf16", "fp32")
CHANNELS_LAST = ("auto", "on", "off")
EVAL_BATCH = 1024
NAN_CHECK_EVERY = 25  # steps between finite-loss checks (a check syncs the GPU)


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


def check_running_loss(running: Any, batches: int, step: int) -> None:
    """Every :data:`NAN_CHECK_EVERY` batches, raise :class:`Diverged` if the summed loss (a
    device tensor) is not finite; checking less often keeps the GPU from syncing per step."""
    import torch

    if batches % NAN_CHECK_EVERY == 0 and not torch.isfinite(running):
        raise Diverged(f"training loss is {float(running)} at step {step}")


def epoch_mean_loss(running: Any, batches: int, epoch: int) -> float:
    """The epoch's mean training loss; :class:`Diverged` if it is not finite."""
    mean = float(running) / max(batches, 1)
    if not math.isfinite(mean):
        raise Diverged(f"training loss is {mean} in epoch {epoch + 1}")
    return mean


@dataclass
class InheritReport:
    """What :func:`inherit_weights` did with each tensor of the model, by name."""

    copied: list[str] = field(default_factory=list)
    cropped: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[str]]:
        return {"copied": self.copied, "cropped": self.cropped, "skipped": self.skipped,
                "missing": self.missing}


@dataclass
class FitOutcome:
    accuracy: float
    val_loss: float
    loss_curve: list[float]
    epochs: int


# -- devices and options ------------------------------------------------------------------
def resolve_device(device: Any = None) -> Any:
    """``None`` -> the current CUDA device if there is one, else CPU."""
    import torch

    if device is None:
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() \
            else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def device_label(device: Any) -> str:
    """``"cpu"`` or ``"cuda:0 (NVIDIA H100 80GB HBM3)"`` -- stored with every result."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def _use_bf16(spec: TrainSpec, device: Any) -> bool:
    if spec.precision not in PRECISIONS:
        raise NaswError("train.precision", spec.precision, PRECISIONS)
    return spec.precision == "bf16" or (spec.precision == "auto" and device.type == "cuda")


def _use_channels_last(spec: TrainSpec, device: Any) -> bool:
    value = spec.channels_last
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    aliases = {"true": "on", "false": "off", "1": "on", "0": "off", "yes": "on", "no": "off"}
    text = aliases.get(text, text)
    if text not in CHANNELS_LAST:
        raise NaswError("train.channels_last", value, CHANNELS_LAST)
    return text in ("on", "auto")


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str,
              lr_min_ratio: float, steps_per_epoch: int = 1, restart_t0: float = 10,
              restart_mult: float = 2) -> float:
    """Multiplier of the base learning rate at optimisation ``step`` (0-based).

    ``cosine_restarts`` is SGDR (Loshchilov & Hutter; the EPNAS paper's schedule without
    performance prediction): cosine from ``lr`` to ``lr_min`` over ``restart_t0`` epochs,
    then again over ``restart_t0 * restart_mult`` epochs, and so on, the learning rate jumping
    back to ``lr`` at each restart (per step, after the warm-up).
    """
    if schedule not in SCHEDULES:
        raise NaswError("train.schedule", schedule, SCHEDULES)
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    if schedule == "step":
        return 1.0 if progress < 0.5 else 0.1 if progress < 0.75 else 0.01
    if schedule == "cosine_restarts":
        if not (restart_t0 > 0 and restart_mult >= 1):
            raise NaswError("train.restart_t0", (restart_t0, restart_mult),
                            "restart_t0 > 0 epochs and restart_mult >= 1")
        epoch = max(step - warmup_steps, 0) / max(steps_per_epoch, 1)
        period = float(restart_t0)
        while epoch >= period:
            epoch -= period
            period *= restart_mult
        return lr_min_ratio + (1.0 - lr_min_ratio) * 0.5 * (1.0 + math.cos(math.pi * epoch
                                                                            / period))
    if schedule == "ponas-step":  # PONAS §4.1: x0.1 at epochs 20 and 40 of 50
        return 1.0 if progress < 0.4 else 0.1 if progress < 0.8 else 0.01
    if schedule == "rcas-step":  # RCAS §4.1: x0.1 at epochs 4, 7 and 9 of 10
        return 1.0 if progress < 0.4 else 0.1 if progress < 0.7 else 0.01 if progress < 0.9 \
            else 0.001
    return lr_min_ratio + (1.0 - lr_min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


# -- weight inheritance -------------------------------------------------------------------
def _adapt(source: Any, target: Any) -> Any:
    """Fit ``source`` into ``target``'s shape.

    Dims 0 and 1 (output / input channels, features) take the leading slice, or keep the
    target's initial values beyond the source. Dims 2+ (kernel height/width) are centre-cropped,
    or centre-padded with zeros -- a 3x3 kernel inside a zero 5x5 one computes the same
    function, which is what makes EPNAS kernel morphs and PONAS cropping preserve behaviour.
    """
    import torch

    out = target.detach().clone()
    channel_slices_dst, channel_slices_src = [], []
    for dim in range(min(2, target.ndim)):
        n = min(source.shape[dim], target.shape[dim])
        channel_slices_dst.append(slice(0, n))
        channel_slices_src.append(slice(0, n))
    spatial_dst, spatial_src = [], []
    for dim in range(2, target.ndim):
        s, d = source.shape[dim], target.shape[dim]
        if s >= d:
            start = (s - d) // 2
            spatial_src.append(slice(start, start + d))
            spatial_dst.append(slice(0, d))
        else:
            start = (d - s) // 2
            spatial_src.append(slice(0, s))
            spatial_dst.append(slice(start, start + s))
    region = tuple(channel_slices_dst)
    if any(target.shape[dim] > source.shape[dim] for dim in range(2, target.ndim)):
        out[region] = 0  # zero ring around a smaller kernel, within the inherited channels
    src = source.detach().to(device=target.device, dtype=target.dtype)
    with torch.no_grad():
        out[tuple(channel_slices_dst + spatial_dst)] = src[tuple(channel_slices_src + spatial_src)]
    return out


def inherit_weights(model: Any, state_dict: Mapping[str, Any] | None) -> InheritReport:
    """Copy parameters and buffers from ``state_dict`` into ``model`` by name.

    Equal shapes are copied; same rank but different sizes are cropped/padded (:func:`_adapt`);
    a different rank, or a name the model lacks, is skipped; model tensors the state dict lacks
    keep their initialisation and are listed as ``missing``.
    """
    import torch

    report = InheritReport()
    if not state_dict:
        report.missing = list(model.state_dict())
        return report
    own = model.state_dict()
    updated = {}
    for name, target in own.items():
        if name not in state_dict:
            report.missing.append(name)
            continue
        source = state_dict[name]
        if not isinstance(source, torch.Tensor) or source.ndim != target.ndim:
            report.skipped.append(name)
        elif tuple(source.shape) == tuple(target.shape):
            updated[name] = source.detach().to(device=target.device, dtype=target.dtype)
            report.copied.append(name)
        elif target.ndim == 0:
            report.skipped.append(name)
        else:
            updated[name] = _adapt(source, target)
            report.cropped.append(name)
    report.skipped.extend(sorted(set(state_dict) - set(own)))
    with torch.no_grad():
        for name, value in updated.items():
            own[name].copy_(value)
    return report


# -- the loop -----------------------------------------------------------------------------
def _param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def evaluate_model(model: Any, bundle: Any, spec: TrainSpec, device: Any) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) on the validation split."""
    import torch
    import torch.nn.functional as F

    from searchers.data import DeviceLoader

    # twice the training batch (no activations kept for backward), capped: memory-safe
    batch = max(spec.batch_size, min(EVAL_BATCH, 2 * spec.batch_size))
    loader = DeviceLoader.for_evaluation(bundle, batch,
                                         channels_last=_use_channels_last(spec, device))
    bf16 = _use_bf16(spec, device)
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for xb, yb in loader:
            logits = model(xb).float()
            loss_sum += F.cross_entropy(logits, yb, reduction="sum").double()
            correct += (logits.argmax(1) == yb).sum()
    n = len(bundle.y_val)
    return float(correct) / n, float(loss_sum) / n


def check_regularizers(spec: TrainSpec) -> None:
    """``aux_weight >= 0``, ``0 <= drop_path < 1``."""
    if not (isinstance(spec.aux_weight, int | float) and spec.aux_weight >= 0):
        raise NaswError("train.aux_weight", spec.aux_weight, "a number >= 0 (0: no auxiliary head)")
    if not (isinstance(spec.drop_path, int | float) and 0 <= spec.drop_path < 1):
        raise NaswError("train.drop_path", spec.drop_path, "a probability in [0, 1)")


def build_model(space: Any, job: Job) -> Any:
    """``space.build`` for training ``job``: with the auxiliary head when ``aux_weight > 0``;
    checks that the model supports drop-path when ``drop_path > 0``."""
    import inspect

    spec = job.train
    check_regularizers(spec)
    if spec.aux_weight > 0:
        if "aux_head" not in inspect.signature(space.build).parameters:
            raise NaswError("train.aux_weight", spec.aux_weight,
                            f"0 for the {space.name} space (its models have no auxiliary head)")
        model = space.build(job.genotype, job.input_shape, job.num_classes, aux_head=True)
    else:
        model = space.build(job.genotype, job.input_shape, job.num_classes)
    if spec.drop_path > 0 and not hasattr(model, "set_drop_path"):
        raise NaswError("train.drop_path", spec.drop_path,
                        f"0 for the {space.name} space (its models have no drop-path)")
    return model


def training_split(bundle: Any, spec: TrainSpec) -> Any:
    """The data to train on: the training split, plus the validation split when
    ``spec.train_on_val`` (PNAS §5.4's final run)."""
    import dataclasses

    import torch

    if not spec.train_on_val:
        return bundle
    return dataclasses.replace(bundle, x_train=torch.cat([bundle.x_train, bundle.x_val]),
                               y_train=torch.cat([bundle.y_train, bundle.y_val]))


def make_optimizer(model: Any, spec: TrainSpec) -> Any:
    """SGD with (Nesterov) momentum; weight decay on conv/linear weights only."""
    import torch

    return torch.optim.SGD(_param_groups(model, spec.weight_decay), lr=spec.lr,
                           momentum=spec.momentum,
                           nesterov=bool(spec.nesterov and spec.momentum > 0))


def train_one_epoch(model: Any, loader: Any, optimizer: Any, spec: TrainSpec, device: Any,
                    epoch: int) -> tuple[float, float]:
    """One epoch of SGD on ``loader``, the learning rate following ``spec``'s schedule from
    step ``epoch * len(loader)``; returns (mean training loss, last learning rate).

    Shared by proxy training (:func:`fit_model`) and the resumable final training
    (:class:`searchers.final_training.EpochTrainer`), so both follow one schedule exactly.
    Raises :class:`Diverged` on a non-finite loss.
    """
    import torch
    import torch.nn.functional as F

    steps_per_epoch = len(loader)
    total_steps = steps_per_epoch * spec.epochs
    warmup_steps = int(round(spec.warmup_epochs * steps_per_epoch))
    lr_min_ratio = spec.lr_min / spec.lr if spec.lr > 0 else 0.0
    bf16 = _use_bf16(spec, device)
    step = epoch * steps_per_epoch
    lr = spec.lr
    set_drop_path = getattr(model, "set_drop_path", None) if spec.drop_path > 0 else None
    model.train()
    running = torch.zeros((), dtype=torch.float32, device=device)
    batches = 0
    for xb, yb in loader:
        lr = spec.lr * lr_factor(step, total_steps, warmup_steps, spec.schedule, lr_min_ratio,
                                 steps_per_epoch, spec.restart_t0, spec.restart_mult)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if set_drop_path is not None:
            set_drop_path(spec.drop_path * step / max(total_steps, 1))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(xb)
        logits, aux = out if isinstance(out, tuple) else (out, None)
        loss = F.cross_entropy(logits.float(), yb, label_smoothing=spec.label_smoothing)
        total = loss
        if aux is not None and spec.aux_weight > 0:
            total = loss + spec.aux_weight * F.cross_entropy(
                aux.float(), yb, label_smoothing=spec.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        running += loss.detach()
        batches += 1
        step += 1
        check_running_loss(running, batches, step)
    return epoch_mean_loss(running, batches, epoch), lr


def fit_model(model: Any, bundle: Any, spec: TrainSpec, device: Any = None) -> FitOutcome:
    """Train ``model`` on ``bundle`` as ``spec`` says and evaluate it; raises :class:`Diverged`.

    The model is moved to ``device`` (channels_last when asked). Seeds the global torch RNG
    inside a forked RNG state, so the caller's state is untouched and a fixed seed gives the
    same result on CPU.
    """
    import torch

    from searchers.data import DeviceLoader

    device = resolve_device(device)
    channels_last = _use_channels_last(spec, device)
    if spec.schedule not in SCHEDULES:
        raise NaswError("train.schedule", spec.schedule, SCHEDULES)
    if spec.epochs < 0:
        raise NaswError("train.epochs", spec.epochs, "0 (evaluate only) or more")
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if spec.compile else model
    loader = DeviceLoader.for_training(training_split(bundle, spec), spec.batch_size,
                                       seed=spec.seed, augment=spec.augment,
                                       channels_last=channels_last,
                                       max_batches=spec.max_batches)
    optimizer = make_optimizer(model, spec)
    curve: list[float] = []
    for epoch in range(spec.epochs):
        mean_loss, _ = train_one_epoch(step_model, loader, optimizer, spec, device, epoch)
        curve.append(mean_loss)
    accuracy, val_loss = evaluate_model(step_model, bundle, spec, device)
    if not math.isfinite(val_loss):
        raise Diverged(f"validation loss is {val_loss}")
    return FitOutcome(accuracy=accuracy, val_loss=val_loss, loss_curve=curve,
                      epochs=spec.epochs)


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _error_text(exc: BaseException) -> str:
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return (f"{type(exc).__name__}: {exc}\n" + "".join(lines[-4:]))[-4000:]


def _free_memory(device: Any) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def train(job: Job, device: Any = None) -> Result:
    """Build, (inherit,) train and evaluate ``job``'s candidate; never raises for a candidate."""
    import torch

    from searchers.data import load_dataset
    from searchers.spaces import space_of

    started = time.perf_counter()
    spec = job.train
    try:
        device = resolve_device(device)
        label = device_label(device)
    except Exception as exc:
        return Result(status="failed", error=_error_text(exc), device=str(device))
    status, error, outcome, costs, weights, model = "ok", "", None, {}, None, None
    try:
        space = space_of(job.genotype)
        bundle = load_dataset(spec.dataset, root=spec.data_root, val_fraction=spec.val_fraction,
                              seed=SPLIT_SEED, device=device, input_shape=job.input_shape)
        if bundle.num_classes != job.num_classes:
            raise NaswError("job.num_classes", job.num_classes, [bundle.num_classes],
                            hint=f"dataset {bundle.name} has {bundle.num_classes} classes")
        fork_devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(spec.seed)
            costs = {k: float(v) for k, v in
                     space.costs(job.genotype, job.input_shape, job.num_classes).items()}
            model = build_model(space, job)
            if job.inherit:
                inherit_weights(model, job.inherit)
            outcome = fit_model(model, bundle, spec, device)
        if job.return_weights:
            weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    except Diverged as exc:
        status, error = "diverged", str(exc)
    except Exception as exc:
        status = "oom" if _is_oom(exc) else "failed"
        error = _error_text(exc)
    model = None  # drop the last reference before freeing device memory
    if status != "ok":
        if status == "oom" or device.type == "cuda":
            _free_memory(device)  # after the except block: the traceback pins no tensors now
        return Result(status=status, error=error, costs=costs, device=label,
                      wall_time=time.perf_counter() - started)
    assert outcome is not None
    return Result(status="ok", accuracy=outcome.accuracy, val_loss=outcome.val_loss,
                  loss_curve=tuple(outcome.loss_curve), costs=costs, device=label,
                  wall_time=time.perf_counter() - started, epochs=outcome.epochs,
                  weights=weights)


__all__ = ["Diverged", "FitOutcome", "InheritReport", "build_model", "check_regularizers",
           "device_label", "evaluate_model", "fit_model", "inherit_weights", "lr_factor",
           "make_optimizer", "resolve_device", "train", "train_one_epoch", "training_split"]
