"""Datasets as tensors on the training device, with batched on-device augmentation.

Proxy training in NAS trains thousands of small models on small datasets. A per-image Python
pipeline (PIL -> transforms -> collate) then costs more than the model, so -- as airbench does
-- the whole dataset lives on the training device as one tensor, and each batch is gathered,
randomly cropped, flipped and normalised by a handful of batched tensor ops
(:class:`DeviceLoader`).

    bundle = load_dataset("cifar10", root="~/data", device="cuda")
    loader = DeviceLoader.for_training(bundle, batch_size=512, seed=0)
    for x, y in loader: ...

Datasets (``dataset_names()``):

* ``digits`` -- scikit-learn's bundled 8x8 digits (1x8x8, 10 classes); no download, the default.
* ``synthetic`` -- generated, deterministic in its seed and learnable: each class has a smooth
  random template; an image is its class template, randomly shifted and scaled, plus noise.
  Options: ``shape`` (``3x32x32``), ``classes``, ``n`` (total images), ``noise``.
* ``cifar10`` / ``cifar100`` -- torchvision's python-pickle batches under
  ``root/cifar-10-batches-py`` / ``root/cifar-100-python`` (fine labels).
* ``mnist`` / ``fashion-mnist`` -- idx files (optionally ``.gz``) under ``root/MNIST/raw`` /
  ``root/FashionMNIST/raw`` (torchvision's layout), ``root/raw`` or ``root``.
* ``imagefolder`` -- ``root/<class>/<image>``; resized to ``size`` (default: the job's input
  size) and converted to RGB or greyscale by ``channels``.
* ``npz`` -- ``root`` is an ``.npz`` file (or a folder holding ``data.npz``) with arrays ``x``
  and ``y``; ``x`` may be N x H x W, channels-first or channels-last (detected, or forced with
  the ``layout`` option ``nchw`` / ``nhwc``). Labels may be any values; they are mapped to
  ``0..K-1`` in sorted order.

Options are keyword arguments of :func:`load_dataset`, or written in the name for configs:
``"synthetic:shape=3x32x32,classes=100,n=5000"``.

Only the training files are read: the validation set is a held-out part of the training set,
as in the papers (EPNAS, PNAS, PONAS and RCAS all search on a split of the training data and
keep the test set for the final model). The split is a seeded random permutation.

Missing files: torchvision's downloader is tried (``download=True``) and, if that fails (no
network), a :class:`NaswError` names ``dataset.root`` and the files that were expected.
Importing this module does not import torch; :func:`load_dataset` does.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from searchers.errors import NaswError, UnknownName

DATASETS = ("cifar10", "cifar100", "digits", "fashion-mnist", "imagefolder", "mnist", "npz",
            "synthetic")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff",
                  ".webp")
_OPTIONS = {
    "synthetic": {"shape", "classes", "n", "noise"},
    "imagefolder": {"size", "channels", "flips"},
    "npz": {"layout", "flips"},
}
_CACHE_SIZE = 4
_KNOWN_CLASSES = {"cifar10": 10, "cifar100": 100, "digits": 10, "fashion-mnist": 10, "mnist": 10}


def dataset_names() -> list[str]:
    return list(DATASETS)


@dataclass(frozen=True, eq=False)
class DatasetBundle:
    """A dataset split into train and validation tensors, on one device.

    ``x_*`` are float32 ``N x C x H x W`` in their raw scale (images in [0, 1]); ``mean`` and
    ``std`` (per channel, of the training split) are applied per batch by the loader, fused with
    augmentation. ``flips`` says whether horizontal flips preserve the label (natural images:
    yes; digits and handwriting: never). ``crop_padding`` is the random-crop padding that suits
    the image size (4 for 32x32 as in the papers, 1 for 8x8).
    """

    name: str
    x_train: Any
    y_train: Any
    x_val: Any
    y_val: Any
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flips: bool
    crop_padding: int
    classes: tuple[str, ...] = ()

    @property
    def device(self) -> Any:
        return self.x_train.device

    def normalize(self, x: Any) -> Any:
        """(x - mean) / std per channel, as the loader does."""
        import torch

        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x - mean) / std


# -- option parsing -----------------------------------------------------------------------
def parse_dataset_name(name: str) -> tuple[str, dict[str, str]]:
    """``"synthetic:shape=3x32x32,classes=10"`` -> ``("synthetic", {"shape": ..., ...})``."""
    base, _, rest = str(name).partition(":")
    base = base.strip().lower().replace("_", "-")
    if base == "fashionmnist":
        base = "fashion-mnist"
    options: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise NaswError("dataset", name, "name[:key=value,...]", hint=f"option {item!r}")
        options[key.strip()] = value.strip()
    return base, options


def _parse_shape(value: Any, field: str) -> tuple[int, int, int]:
    if isinstance(value, str):
        parts = value.lower().replace(",", "x").split("x")
    else:
        parts = list(value)
    try:
        shape = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise NaswError(field, value, "C x H x W with positive sizes, e.g. 3x32x32")
    return shape  # type: ignore[return-value]


def _as_bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise NaswError(field, value, ["true", "false"])


# -- readers (numpy, CPU) ------------------------------------------------------------------
def _missing(name: str, root: Any, expected: Sequence[str], why: str = "") -> NaswError:
    hint = f"expected {', '.join(expected)}"
    if why:
        hint += f"; {why}"
    return NaswError("dataset.root", None if root is None else str(root),
                     f"a folder holding the {name} files", hint=hint)


def _require_root(name: str, root: Any) -> Path:
    if root is None:
        return Path(os.environ.get("NASW_DATA", "~/.cache/nasw/data")).expanduser()
    return Path(root).expanduser()


def _try_download(name: str, root: Path) -> str:
    """Fetch with torchvision; returns "" on success or the reason it failed."""
    try:
        import torchvision.datasets as tvd

        cls = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100, "mnist": tvd.MNIST,
               "fashion-mnist": tvd.FashionMNIST}[name]
        root.mkdir(parents=True, exist_ok=True)
        cls(str(root), train=True, download=True)
        return ""
    except Exception as exc:  # offline, permissions, partial files: report, don't crash
        return f"download failed: {type(exc).__name__}: {exc}"[:300]


class _ArrayUnpickler(pickle.Unpickler):
    """Reads CIFAR's python batches -- pickles by format -- without running their code.

    A pickle names the callables it wants called; this one resolves only the few that rebuild
    plain containers and numpy arrays (what torchvision's CIFAR files hold). Any other name --
    ``os.system``, ``builtins.eval``, a class of some module -- raises
    :class:`pickle.UnpicklingError` instead of being imported, so a crafted ``data_batch_1``
    in a user-supplied folder cannot execute anything.
    """

    ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a dataset file")
        return super().find_class(module, name)


def load_array_pickle(path: Path) -> Any:
    """A pickled dataset file (CIFAR batch or meta) read with :class:`_ArrayUnpickler`;
    a file that asks for anything else is a :class:`NaswError` naming ``dataset.root``."""
    with open(path, "rb") as fh:
        try:
            return _ArrayUnpickler(fh, encoding="bytes").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError,
                AttributeError, IndexError) as err:
            raise NaswError("dataset.root", str(path), "CIFAR python batches (arrays only)",
                            hint=f"this file cannot be read safely: {err}") from None


def _read_cifar(name: str, root: Path, download: bool) -> tuple[np.ndarray, np.ndarray,
                                                                  tuple[str, ...]]:
    folder, files, label_key, meta_file, names_key = {
        "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)],
                    b"labels", "batches.meta", b"label_names"),
        "cifar100": ("cifar-100-python", ["train"], b"fine_labels", "meta",
                     b"fine_label_names"),
    }[name]
    paths = [root / folder / f for f in files]
    if not all(p.is_file() for p in paths):
        why = _try_download(name, root) if download else "download disabled"
        if not all(p.is_file() for p in paths):
            raise _missing(name, root, [f"{folder}/{f}" for f in files], why)
    xs, ys = [], []
    for path in paths:
        batch = load_array_pickle(path)
        if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
            raise NaswError("dataset.root", str(path), "a CIFAR batch (data and labels)")
        xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(batch[label_key], dtype=np.int64))
    classes: tuple[str, ...] = ()
    meta = root / folder / meta_file
    if meta.is_file():
        info = load_array_pickle(meta)
        if not isinstance(info, dict):
            info = {}
        classes = tuple(n.decode() if isinstance(n, bytes) else str(n)
                        for n in info.get(names_key, []))
    if len(classes) != _KNOWN_CLASSES[name]:
        classes = tuple(str(i) for i in range(_KNOWN_CLASSES[name]))
    return np.concatenate(xs), np.concatenate(ys), classes


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (the MNIST format), gzip-compressed or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if zero != 0 or dtype_code not in dtypes:
        raise NaswError("dataset.root", str(path), "idx files (MNIST format)",
                        hint="bad magic number")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    array = np.frombuffer(data, dtype=dtypes[dtype_code], offset=4 + 4 * ndim)
    if array.size != math.prod(dims):
        raise NaswError("dataset.root", str(path), "idx files (MNIST format)",
                        hint=f"{array.size} values for dims {dims}")
    return array.reshape(dims)


def _read_mnist(name: str, root: Path, download: bool) -> tuple[np.ndarray, np.ndarray,
                                                                  tuple[str, ...]]:
    sub = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}[name]
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")

    def find() -> list[Path] | None:
        for folder in (root / sub / "raw", root / "raw", root):
            found = []
            for stem in stems:
                hit = next((folder / (stem + s) for s in ("", ".gz")
                            if (folder / (stem + s)).is_file()), None)
                found.append(hit)
            if all(found):
                return found  # type: ignore[return-value]
        return None

    paths = find()
    why = ""
    if paths is None:
        why = _try_download(name, root) if download else "download disabled"
        paths = find()
    if paths is None:
        raise _missing(name, root, [f"{sub}/raw/{s}[.gz]" for s in stems], why)
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    classes = (tuple(str(i) for i in range(10)) if name == "mnist" else
               ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                "Sneaker", "Bag", "Ankle boot"))
    return images[:, None].astype(np.uint8), labels.astype(np.int64), classes


def _read_imagefolder(root: Path, size: tuple[int, int], channels: int
                      ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    from PIL import Image

    if not root.is_dir():
        raise _missing("imagefolder", root, ["<root>/<class name>/<image files>"])
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    xs, ys = [], []
    mode = "L" if channels == 1 else "RGB"
    for label, folder in enumerate(class_dirs):
        for file in sorted(folder.rglob("*")):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            with Image.open(file) as img:
                img = img.convert(mode).resize((size[1], size[0]), Image.BILINEAR)
                array = np.asarray(img, dtype=np.uint8)
            xs.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
            ys.append(label)
    if len(set(ys)) < 2:
        raise _missing("imagefolder", root, ["at least two class subfolders with images "
                                             f"({', '.join(IMAGE_SUFFIXES)})"])
    return np.stack(xs), np.asarray(ys, dtype=np.int64), tuple(d.name for d in class_dirs)


def _read_npz(root: Path, layout: str | None) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    path = root / "data.npz" if root.is_dir() else root
    if not path.is_file():
        raise _missing("npz", root, ["an .npz file (or a folder with data.npz) holding x, y"])
    with np.load(path, allow_pickle=False) as archive:
        if "x" not in archive or "y" not in archive:
            raise NaswError("dataset.root", str(path), "an .npz with arrays 'x' and 'y'",
                            hint=f"it holds {sorted(archive.files)}")
        x, y = archive["x"], archive["y"]
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or len(x) != len(y):
        raise NaswError("dataset.root", str(path), "x of N x [C x] H x W and y of N labels",
                        hint=f"got x {x.shape}, y {y.shape}")
    if layout is None:
        layout = "nhwc" if x.shape[-1] <= 4 < x.shape[1] else "nchw"
    if layout not in ("nchw", "nhwc"):
        raise NaswError("dataset.layout", layout, ["nchw", "nhwc"])
    if layout == "nhwc":
        x = x.transpose(0, 3, 1, 2)
    values, labels = np.unique(np.asarray(y).reshape(-1), return_inverse=True)
    return np.ascontiguousarray(x), labels.astype(np.int64), tuple(str(v) for v in values)


def _synthetic(shape: tuple[int, int, int], classes: int, n: int, noise: float, seed: int
               ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Class templates (smooth random fields), shifted by up to 1/8 of the size, plus noise.

    Learnable by a small CNN but not by a lookup: the shift calls for translation invariance
    and the noise keeps accuracy below 100% at small sizes.
    """
    c, h, w = shape
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) % 2**63, 0x5EED]))
    coarse = rng.normal(size=(classes, c, max(3, h // 4), max(3, w // 4)))
    rows = np.linspace(0, coarse.shape[2] - 1, h)
    cols = np.linspace(0, coarse.shape[3] - 1, w)
    # bilinear upsampling of the coarse fields: smooth templates, distinct per class
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    r1, c1 = np.minimum(r0 + 1, coarse.shape[2] - 1), np.minimum(c0 + 1, coarse.shape[3] - 1)
    fr, fc = (rows - r0)[:, None], (cols - c0)[None, :]
    templates = ((1 - fr) * (1 - fc) * coarse[:, :, r0][:, :, :, c0]
                 + (1 - fr) * fc * coarse[:, :, r0][:, :, :, c1]
                 + fr * (1 - fc) * coarse[:, :, r1][:, :, :, c0]
                 + fr * fc * coarse[:, :, r1][:, :, :, c1])
    templates /= templates.std(axis=(1, 2, 3), keepdims=True) + 1e-8  # unit contrast
    labels = rng.integers(0, classes, n)
    max_shift = max(h, w) // 8
    shifts = rng.integers(-max_shift, max_shift + 1, size=(n, 2))
    scales = rng.uniform(0.7, 1.3, size=(n, 1, 1, 1))
    images = np.empty((n, c, h, w), dtype=np.float32)
    for i in range(n):
        images[i] = np.roll(templates[labels[i]], tuple(shifts[i]), axis=(1, 2))
    images *= scales.astype(np.float32)
    images += np.float32(noise) * rng.standard_normal(size=images.shape, dtype=np.float32)
    np.negative(images, out=images)
    np.exp(images, out=images)
    images += 1.0
    np.reciprocal(images, out=images)  # 1 / (1 + exp(-v)): into (0, 1) like pixel intensities
    return images, labels.astype(np.int64), tuple(
        f"class {k}" for k in range(classes))


# -- assembly -----------------------------------------------------------------------------
_cache: OrderedDict[tuple[Any, ...], DatasetBundle] = OrderedDict()
_cache_lock = threading.Lock()


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def _device_of(device: Any) -> Any:
    import torch

    return device if isinstance(device, torch.device) else torch.device(device or "cpu")


def load_dataset(name: str = "digits", root: str | os.PathLike[str] | None = None,
                 val_fraction: float = 0.2, seed: int = 0, device: Any = "cpu", *,
                 input_shape: Sequence[int] | None = None, download: bool = True,
                 **options: Any) -> DatasetBundle:
    """Load ``name`` as a :class:`DatasetBundle` on ``device`` (cached in-process).

    ``input_shape`` is what the model expects: ``synthetic`` and ``imagefolder`` are generated
    or resized to it (unless their options say otherwise); any other dataset must match it.
    ``seed`` fixes the train/validation split (and the synthetic data). A worker evaluating
    many candidates loads each dataset once: bundles are cached by all arguments, the four
    most recent kept.
    """

    base, name_options = parse_dataset_name(name)
    if base not in DATASETS:
        raise UnknownName("dataset", name, DATASETS)
    options = {**name_options, **options}
    unknown = set(options) - _OPTIONS.get(base, set())
    if unknown:
        key = sorted(unknown)[0]
        raise NaswError(f"dataset.{key}", options[key],
                        sorted(_OPTIONS.get(base, ())) or f"no options for {base}")
    if not 0.0 < float(val_fraction) < 1.0:
        raise NaswError("train.val_fraction", val_fraction, "a fraction strictly between 0 and 1")
    torch_device = _device_of(device)
    key = (base, tuple(sorted((k, str(v)) for k, v in options.items())),
           None if root is None else str(Path(root).expanduser().resolve()),
           float(val_fraction), int(seed), str(torch_device),
           None if input_shape is None else tuple(int(v) for v in input_shape))
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    bundle = _load(base, options, root, float(val_fraction), int(seed), torch_device,
                   input_shape, download)
    with _cache_lock:
        _cache[key] = bundle
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return bundle


def _load(base: str, options: Mapping[str, Any], root: Any, val_fraction: float, seed: int,
          device: Any, input_shape: Sequence[int] | None, download: bool) -> DatasetBundle:
    import torch

    wanted = None if input_shape is None else _parse_shape(input_shape, "job.input_shape")
    flips, crop_padding, scale = False, 1, 1.0
    if base == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = digits.images[:, None].astype(np.float32)
        y, classes, scale = digits.target.astype(np.int64), tuple(str(i) for i in range(10)), 16.0
    elif base == "synthetic":
        shape = _parse_shape(options.get("shape", wanted or (3, 32, 32)), "dataset.shape")
        classes_n = int(options.get("classes", 10))
        n = int(options.get("n", 4000))
        if classes_n < 2 or n < 2 * classes_n:
            raise NaswError("dataset.classes", classes_n, "2 or more, with n >= 2 * classes")
        x, y, classes = _synthetic(shape, classes_n, n, float(options.get("noise", 0.5)), seed)
    elif base in ("cifar10", "cifar100"):
        x, y, classes = _read_cifar(base, _require_root(base, root), download)
        flips, scale = True, 255.0
    elif base in ("mnist", "fashion-mnist"):
        x, y, classes = _read_mnist(base, _require_root(base, root), download)
        flips, scale = base == "fashion-mnist", 255.0
    elif base == "imagefolder":
        if root is None:
            raise _missing("imagefolder", root, ["<root>/<class name>/<image files>"])
        size = options.get("size")
        channels = int(options.get("channels", wanted[0] if wanted else 3))
        if size is not None:
            side = [int(v) for v in str(size).lower().split("x")]
            hw = (side[0], side[-1])
        else:
            hw = (wanted[1], wanted[2]) if wanted else (32, 32)
        x, y, classes = _read_imagefolder(Path(root).expanduser(), hw, channels)
        flips, scale = _as_bool(options.get("flips", True), "dataset.flips"), 255.0
    else:  # npz
        if root is None:
            raise _missing("npz", root, ["an .npz file (or a folder with data.npz) holding x, y"])
        layout = options.get("layout")
        x, y, classes = _read_npz(Path(root).expanduser(), None if layout is None
                                  else str(layout).lower())
        flips = _as_bool(options.get("flips", False), "dataset.flips")
        scale = 255.0 if x.dtype == np.uint8 else 1.0

    data_shape = tuple(int(v) for v in x.shape[1:])
    if wanted is not None and data_shape != wanted:
        raise NaswError("job.input_shape", wanted, [data_shape],
                        hint=f"dataset {base} has images of shape {data_shape}")
    n = len(x)
    n_val = max(1, int(round(n * val_fraction)))
    if n - n_val < 1:
        raise NaswError("train.val_fraction", val_fraction,
                        f"a fraction leaving training images ({n} images in {base})")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    val_idx, train_idx = order[:n_val], order[n_val:]
    x_all = torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32)
    if scale != 1.0:
        x_all = x_all / scale
    y_all = torch.from_numpy(np.ascontiguousarray(y)).to(torch.int64)
    x_train, y_train = x_all[train_idx], y_all[train_idx]
    mean = x_train.mean(dim=(0, 2, 3))
    std = x_train.std(dim=(0, 2, 3)).clamp_min(1e-6)
    h, w = data_shape[1], data_shape[2]
    crop_padding = max(1, min(h, w) // 8)
    num_classes = len(classes)
    if int(y_all.max()) >= num_classes or int(y_all.min()) < 0:
        raise NaswError("dataset.root", None if root is None else str(root),
                        f"labels 0..{num_classes - 1} for {base}",
                        hint=f"found labels {int(y_all.min())}..{int(y_all.max())}")
    return DatasetBundle(
        name=base, x_train=x_train.to(device), y_train=y_train.to(device),
        x_val=x_all[val_idx].to(device), y_val=y_all[val_idx].to(device),
        input_shape=data_shape,  # type: ignore[arg-type]
        num_classes=num_classes, mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std), flips=flips, crop_padding=crop_padding,
        classes=classes)


# -- on-device loader ---------------------------------------------------------------------
class DeviceLoader:
    """Batches from tensors on the training device; augmentation and normalisation batched.

    Per batch: gather indices from a permutation drawn with a ``torch.Generator`` seeded from
    the job seed (so the data order is reproducible), then -- when ``augment`` -- pad by
    ``crop_padding`` with zeros (in raw pixel scale, as torchvision's ``RandomCrop(padding=p)``)
    and take one random crop per image with a single gather, flip a random half horizontally
    when ``flip``, and normalise. Everything stays on ``x.device``; nothing runs per image.
    """

    def __init__(self, x: Any, y: Any, batch_size: int, *, mean: Sequence[float],
                 std: Sequence[float], shuffle: bool = True, augment: bool = False,
                 flip: bool = False, crop_padding: int = 0, seed: int = 0,
                 drop_last: bool = False, channels_last: bool = False,
                 max_batches: int | None = None) -> None:
        import torch

        if int(batch_size) < 1:
            raise NaswError("train.batch_size", batch_size, "a positive integer")
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.shuffle, self.augment = shuffle, augment
        self.flip = flip and augment
        self.crop_padding = int(crop_padding) if augment else 0
        self.drop_last, self.channels_last = drop_last, channels_last
        self.max_batches = max_batches
        device = x.device
        self.generator = torch.Generator(device=device).manual_seed(int(seed) % 2**63)
        self._mean = torch.tensor(list(mean), dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self._inv_std = 1.0 / torch.tensor(list(std), dtype=torch.float32,
                                           device=device).view(1, -1, 1, 1)

    @classmethod
    def for_training(cls, bundle: DatasetBundle, batch_size: int, seed: int = 0,
                     augment: bool = True, **kwargs: Any) -> DeviceLoader:
        """Shuffled, augmented batches of the training split.

        The last partial batch is dropped (unless it would be the only one): a batch of one
        image breaks batch normalisation, and each epoch's new permutation uses every image
        over the epochs anyway.
        """
        kwargs.setdefault("drop_last", len(bundle.x_train) > batch_size)
        return cls(bundle.x_train, bundle.y_train, batch_size, mean=bundle.mean,
                   std=bundle.std, shuffle=True, augment=augment, flip=bundle.flips,
                   crop_padding=bundle.crop_padding, seed=seed, **kwargs)

    @classmethod
    def for_evaluation(cls, bundle: DatasetBundle, batch_size: int, **kwargs: Any
                       ) -> DeviceLoader:
        return cls(bundle.x_val, bundle.y_val, batch_size, mean=bundle.mean, std=bundle.std,
                   shuffle=False, augment=False, **kwargs)

    def __len__(self) -> int:
        n = len(self.x)
        batches = n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        return batches if self.max_batches is None else min(batches, int(self.max_batches))

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        import torch

        n = len(self.x)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator, device=self.x.device)
        else:
            order = None
        for b in range(len(self)):
            start = b * self.batch_size
            if order is None:
                xb = self.x[start:start + self.batch_size]
                yb = self.y[start:start + self.batch_size]
            else:
                idx = order[start:start + self.batch_size]
                xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
            yield self.transform(xb), yb

    def transform(self, xb: Any) -> Any:
        """Augment (crop + flip) and normalise one batch, all as batched tensor ops."""
        import torch
        import torch.nn.functional as F

        if self.crop_padding > 0 or self.flip:
            # One gather does crop and flip: row r of image b comes from padded row dy_b + r;
            # column c from dx_b + c, or dx_b + (w - 1 - c) when the image is flipped.
            p = self.crop_padding
            count, channels, h, w = xb.shape
            padded = F.pad(xb, (p, p, p, p)) if p else xb
            offsets = torch.randint(0, 2 * p + 1, (2, count, 1), generator=self.generator,
                                    device=xb.device)
            columns = torch.arange(w, device=xb.device).expand(count, w)
            if self.flip:
                flipped = torch.rand(count, 1, generator=self.generator, device=xb.device) < 0.5
                columns = torch.where(flipped, (w - 1) - columns, columns)
            rows = (offsets[0] + torch.arange(h, device=xb.device)).view(count, 1, h, 1)
            cols = (offsets[1] + columns).view(count, 1, 1, w)
            flat = (rows * (w + 2 * p) + cols).expand(count, channels, h, w)
            xb = padded.flatten(2).gather(2, flat.reshape(count, channels, h * w)).view(
                count, channels, h, w)
        xb = (xb - self._mean) * self._inv_std
        if self.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        return xb


__all__ = ["DATASETS", "DatasetBundle", "DeviceLoader", "clear_cache", "dataset_names",
           "load_dataset", "parse_dataset_name", "read_idx"]
