"""Images/s of the on-device batched loader vs a torch DataLoader with torchvision transforms.

Both pipelines produce the same thing from the same 32x32 RGB images: random crop with 4 pixels
of zero padding, random horizontal flip, per-channel normalisation, batches of ``--batch``.

* baseline -- ``torch.utils.data.DataLoader`` over a CIFAR10-style dataset (uint8 HWC arrays,
  ``PIL.Image.fromarray`` per item, as ``torchvision.datasets.CIFAR10`` does) with
  ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip()``, ``ToTensor()``, ``Normalize``;
  ``--workers`` worker processes (default 0: the plain loop).
* ours -- :class:`searchers.data.DeviceLoader` over the same images held as one tensor on the
  device; crop, flip and normalisation as batched tensor ops.

Two figures each, in one run: the loader alone (batches consumed and discarded) and the loader
feeding the same small CNN (forward pass, no grad). Goal: loader alone >= 5x on CPU.

    python bench/bench_data.py --quick
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


class ArrayImages(torch.utils.data.Dataset):
    """uint8 N x H x W x C images as PIL per item, like torchvision's CIFAR10."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Any) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def small_cnn() -> nn.Module:
    """A NAS-proxy-sized CNN (16-32-64 channels) fed by both pipelines."""
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(*block(3, 16), nn.MaxPool2d(2), *block(16, 32), nn.MaxPool2d(2),
                         *block(32, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def measure(batches: Iterable[tuple[Any, Any]], device: torch.device, model: nn.Module | None,
            max_batches: int) -> float:
    """Images/s over ``max_batches`` batches after one warm-up batch."""
    iterator = iter(batches)
    count, started = 0, 0.0
    with torch.no_grad():
        for i in range(max_batches + 1):
            try:
                xb, _ = next(iterator)
            except StopIteration:
                break
            xb = xb.to(device, non_blocking=True)
            if model is not None:
                model(xb)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i == 0:
                started = time.perf_counter()
            else:
                count += len(xb)
    return count / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (about 10 s on CPU)")
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import torchvision.transforms as T

    from searchers.data import DeviceLoader

    device = torch.device(args.device)
    n = 3000 if args.quick else args.images
    max_batches = max(2, min(n // args.batch - 1, 8 if args.quick else 60))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n)

    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(MEAN, STD)])
    baseline = torch.utils.data.DataLoader(
        ArrayImages(images, labels, transform), batch_size=args.batch, shuffle=True,
        num_workers=args.workers, pin_memory=device.type == "cuda", drop_last=True,
        persistent_workers=args.workers > 0)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).to(device)
    ours = DeviceLoader(x, torch.from_numpy(labels).to(device), args.batch, mean=MEAN, std=STD,
                        augment=True, flip=True, crop_padding=4, seed=0, drop_last=True)

    model = small_cnn().to(device).eval()
    figures = {
        "loader_only": {"dataloader": measure(baseline, device, None, max_batches),
                        "ours": measure(ours, device, None, max_batches)},
        "feeding_model": {"dataloader": measure(baseline, device, model, max_batches),
                          "ours": measure(ours, device, model, max_batches)},
    }
    print(f"bench_data: {n} images 3x32x32, batch {args.batch}, device {device}, "
          f"{torch.get_num_threads()} torch threads, DataLoader workers {args.workers}")
    print(f"{'':16}{'DataLoader+torchvision':>24}{'on-device batched':>20}{'ratio':>9}")
    for name, row in figures.items():
        row["ratio"] = row["ours"] / row["dataloader"]
        print(f"{name:16}{row['dataloader']:>18,.0f} im/s{row['ours']:>15,.0f} im/s"
              f"{row['ratio']:>8.1f}x")
    goal = figures["loader_only"]["ratio"] >= 5
    print(f"goal (loader alone >= 5x on CPU): {'met' if goal else 'NOT met'} "
          f"({figures['loader_only']['ratio']:.1f}x)")
    if args.json:
        print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
