"""Training throughput: our proxy-training pipeline vs a plain torchvision DataLoader loop.

Both train the same model, from the same initial weights, on the same CIFAR-shaped synthetic
images (3x32x32, 10 classes, ``synthetic`` dataset), with SGD + Nesterov momentum, batch
``--batch``, random crop (padding 4) + horizontal flip + normalisation:

* baseline -- ``DataLoader`` over PIL images with ``RandomCrop``/``RandomHorizontalFlip``/
  ``ToTensor``/``Normalize`` (``--workers`` processes, default 0), fp32, NCHW, batches copied to
  the device each step: the loop most NAS code bases ship.
* ours -- :func:`searchers.training.fit_model`: data as tensors on the device, batched
  augmentation there, bf16 autocast + channels_last on CUDA, optional ``torch.compile``.

Models: ``airbench`` -- the airbench94 network (Jordan, 2024: 2x2 stem + conv groups of 64, 256,
256 channels, ~2M parameters), the reference for the fastest published CIFAR-10 training
(~140k images/s on one A100 in its full pipeline); ``proxy`` -- a 16-32-64-channel CNN, the size
of a NAS proxy candidate trained on a CPU. Default: ``airbench`` on CUDA, ``proxy`` on CPU
(airbench's forward/backward alone costs ~0.35 GMAC per image: on a CPU both loops are then
bound by the model and the ratio says nothing about the pipeline).

Goals: CPU >= 3x the DataLoader loop; GPU >= 50% of airbench's ~140k images/s.

    python bench/bench_train.py --quick
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch
from bench_data import ArrayImages  # the same PIL-per-item dataset as the data benchmark
from torch import nn

AIRBENCH_IMAGES_PER_S = 140_000  # airbench94: ~130k-150k images/s on one A100


class Mul(nn.Module):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def conv_group(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.MaxPool2d(2),
        nn.BatchNorm2d(cout), nn.GELU(),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU())


def airbench_net(num_classes: int = 10) -> nn.Module:
    """airbench94's network: 2x2 whitening-sized stem, three conv groups, max-pool, linear."""
    return nn.Sequential(
        nn.Conv2d(3, 24, 2, bias=True), nn.GELU(),
        conv_group(24, 64), conv_group(64, 256), conv_group(256, 256),
        nn.MaxPool2d(3), nn.Flatten(), nn.Linear(256, num_classes, bias=False), Mul(1 / 9))


def proxy_net(num_classes: int = 10) -> nn.Module:
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(*block(3, 16), nn.MaxPool2d(2), *block(16, 32), nn.MaxPool2d(2),
                         *block(32, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(64, num_classes))


MODELS = {"airbench": airbench_net, "proxy": proxy_net}


def baseline_loop(model: nn.Module, loader: Any, device: torch.device, steps: int,
                  lr: float) -> float:
    """Images/s of the plain loop over ``steps`` steps after two warm-up steps."""
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True,
                                weight_decay=5e-4)
    done, images, started = 0, 0, 0.0
    while done < steps + 2:
        for xb, yb in loader:
            if done == 2:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            loss = nn.functional.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if done >= 2:
                images += len(xb)
            done += 1
            if done >= steps + 2:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return images / (time.perf_counter() - started)


def our_pipeline(model: nn.Module, bundle: Any, device: torch.device, steps: int, batch: int,
                 lr: float, compile_model: bool, precision: str) -> float:
    """Images/s of :func:`fit_model` (one epoch of ``steps`` batches), after a warm-up fit."""
    from searchers.base import TrainSpec
    from searchers.training import fit_model

    spec = TrainSpec(epochs=1, batch_size=batch, lr=lr, max_batches=2, compile=compile_model,
                     schedule="constant", precision=precision)
    fit_model(model, bundle, spec, device)  # warm-up: cuDNN autotuning, compilation, caches
    spec = spec.with_(max_batches=steps)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    fit_model(model, bundle, spec, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", choices=sorted(MODELS), default=None)
    parser.add_argument("--batch", type=int, default=None, help="default 1024 GPU / 256 CPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per pipeline")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--compile", action="store_true", help="torch.compile our model")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                        help="our pipeline's precision (auto: bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import torchvision.transforms as T

    from searchers.data import load_dataset

    device = torch.device(args.device)
    gpu = device.type == "cuda"
    model_name = args.model or ("airbench" if gpu else "proxy")
    batch = args.batch or (1024 if gpu else 256)
    steps = args.steps or ((10 if args.quick else 40) if not gpu else (20 if args.quick else 100))
    # the val split is tiny: fit_model's closing evaluation should not count against us
    n = batch * (steps + 2) + 64
    bundle = load_dataset(f"synthetic:shape=3x32x32,classes=10,n={n}", val_fraction=64 / n,
                          device=device)
    images = (bundle.x_train.cpu() * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    labels = bundle.y_train.cpu().numpy()
    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(bundle.mean, bundle.std)])
    loader = torch.utils.data.DataLoader(
        ArrayImages(images, labels, transform), batch_size=batch, shuffle=True, drop_last=True,
        num_workers=args.workers, pin_memory=gpu, persistent_workers=args.workers > 0)

    torch.manual_seed(0)
    reference = MODELS[model_name]()
    params = sum(p.numel() for p in reference.parameters())
    lr = 0.05
    baseline_model = MODELS[model_name]()
    baseline_model.load_state_dict(reference.state_dict())
    ours_model = MODELS[model_name]()
    ours_model.load_state_dict(reference.state_dict())
    baseline = baseline_loop(baseline_model, loader, device, steps, lr)
    ours = our_pipeline(ours_model, bundle, device, steps, batch, lr, args.compile,
                        args.precision)
    label = str(device)
    if gpu:
        label += f" ({torch.cuda.get_device_name(device)})"
    figures: dict[str, Any] = {
        "device": label, "model": model_name, "params": params, "batch": batch,
        "steps": steps, "precision": args.precision, "compile": args.compile, "threads": torch.get_num_threads(), "workers": args.workers,
        "dataloader_images_per_s": baseline, "ours_images_per_s": ours,
        "ratio": ours / baseline,
    }
    print(f"bench_train: model {model_name} ({params / 1e6:.2f}M params), batch {batch}, "
          f"{steps} timed steps, device {label}, {torch.get_num_threads()} torch threads, "
          f"DataLoader workers {args.workers}, our precision {args.precision}"
          f"{', compiled' if args.compile else ''}")
    print(f"  DataLoader + torchvision loop: {baseline:>10,.0f} images/s")
    print(f"  our pipeline (fit_model):      {ours:>10,.0f} images/s   ({ours / baseline:.1f}x)")
    if gpu:
        figures["airbench_fraction"] = ours / AIRBENCH_IMAGES_PER_S
        print(f"  fraction of airbench's ~{AIRBENCH_IMAGES_PER_S // 1000}k images/s (A100): "
              f"{figures['airbench_fraction']:.0%} (goal >= 50%)")
    else:
        print(f"  goal on CPU (>= 3x the DataLoader loop): "
              f"{'met' if ours / baseline >= 3 else 'NOT met'}")
    if args.json:
        print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
