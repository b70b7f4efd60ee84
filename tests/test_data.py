"""Datasets in their on-disk formats, the seeded split, and the on-device batched loader."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from searchers.data import DeviceLoader, clear_cache, dataset_names, load_dataset, read_idx
from searchers.errors import NaswError, UnknownName

RNG = np.random.default_rng(0)


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x.flatten(1)}


# -- digits, split, cache -----------------------------------------------------------------
def test_digits_is_the_default_and_splits_by_seed() -> None:
    bundle = load_dataset()
    assert bundle.name == "digits" and bundle.input_shape == (1, 8, 8)
    assert bundle.num_classes == 10 and not bundle.flips and bundle.crop_padding == 1
    assert (len(bundle.x_train), len(bundle.x_val)) == (1438, 359)
    assert float(bundle.x_train.max()) == 1.0 and float(bundle.x_train.min()) == 0.0
    normalised = bundle.normalize(bundle.x_train)
    assert float(normalised.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(normalised.std()) == pytest.approx(1.0, abs=1e-3)
    assert load_dataset("digits") is bundle, "cached in-process"
    again = load_dataset("digits", seed=0, val_fraction=0.2)
    assert torch.equal(again.y_val, bundle.y_val)
    other = load_dataset("digits", seed=1)
    assert not torch.equal(other.y_val, bundle.y_val)
    half = load_dataset("digits", val_fraction=0.5)
    assert len(half.x_val) == 898


def test_unknown_dataset_and_options_name_the_allowed_ones() -> None:
    with pytest.raises(UnknownName, match="dataset: got 'imagenet'; allowed: cifar10, cifar100"):
        load_dataset("imagenet")
    assert "fashion-mnist" in dataset_names()
    with pytest.raises(NaswError, match="dataset.colour.*classes, n, noise, shape"):
        load_dataset("synthetic:colour=red")
    with pytest.raises(NaswError, match="train.val_fraction"):
        load_dataset("digits", val_fraction=1.0)
    with pytest.raises(NaswError, match=r"job.input_shape.*\(1, 8, 8\)"):
        load_dataset("digits", input_shape=(3, 32, 32))


def test_synthetic_is_deterministic_and_configurable() -> None:
    a = load_dataset("synthetic:shape=2x12x10,classes=5,n=200", seed=4)
    clear_cache()
    b = load_dataset("synthetic", seed=4, shape="2x12x10", classes=5, n=200)
    assert a is not b and torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    assert a.input_shape == (2, 12, 10) and a.num_classes == 5
    assert (len(a.x_train), len(a.x_val)) == (160, 40)
    c = load_dataset("synthetic:shape=2x12x10,classes=5,n=200", seed=5)
    assert not torch.equal(a.x_train, c.x_train)
    shaped = load_dataset("synthetic", input_shape=(3, 16, 16), n=100)
    assert shaped.input_shape == (3, 16, 16) and shaped.crop_padding == 2


# -- torchvision on-disk formats ----------------------------------------------------------
def _write_cifar(root: Path, name: str, per_file: int = 4) -> tuple[np.ndarray, np.ndarray]:
    folder, files, key, classes = {
        "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)],
                    b"labels", 10),
        "cifar100": ("cifar-100-python", ["train"], b"fine_labels", 100),
    }[name]
    (root / folder).mkdir(parents=True)
    xs, ys = [], []
    for file in files:
        x = RNG.integers(0, 256, (per_file, 3072), dtype=np.uint8)
        y = [int(v) for v in RNG.integers(0, classes, per_file)]
        with open(root / folder / file, "wb") as fh:
            pickle.dump({b"data": x, key: y, b"batch_label": b"x"}, fh)
        xs.append(x)
        ys.append(y)
    if name == "cifar10":
        with open(root / folder / "batches.meta", "wb") as fh:
            pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, fh)
    return np.concatenate(xs).reshape(-1, 3, 32, 32), np.concatenate(ys)


@pytest.mark.parametrize(("name", "classes"), [("cifar10", 10), ("cifar100", 100)])
def test_cifar_pickle_batches(tmp_path: Path, name: str, classes: int) -> None:
    x, y = _write_cifar(tmp_path, name)
    bundle = load_dataset(name, root=tmp_path, val_fraction=0.25, download=False)
    assert bundle.input_shape == (3, 32, 32) and bundle.num_classes == classes
    assert bundle.flips and bundle.crop_padding == 4
    assert len(bundle.x_train) + len(bundle.x_val) == len(x)
    got = torch.cat([bundle.x_train, bundle.x_val]) * 255
    assert _rows(got.round().to(torch.uint8)) == _rows(torch.from_numpy(x))
    assert sorted(torch.cat([bundle.y_train, bundle.y_val]).tolist()) == sorted(y.tolist())
    if name == "cifar10":
        assert bundle.classes[3] == "c3"


def _write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I",
                                                                     *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


@pytest.mark.parametrize(("name", "folder", "compress", "flips"), [
    ("mnist", "MNIST/raw", True, False),
    ("fashion-mnist", "FashionMNIST/raw", False, True),
])
def test_mnist_idx_files(tmp_path: Path, name: str, folder: str, compress: bool,
                         flips: bool) -> None:
    images = RNG.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    labels = RNG.integers(0, 10, 20).astype(np.uint8)
    (tmp_path / folder).mkdir(parents=True)
    _write_idx(tmp_path / folder / "train-images-idx3-ubyte", images, compress)
    _write_idx(tmp_path / folder / "train-labels-idx1-ubyte", labels, compress)
    bundle = load_dataset(name, root=tmp_path, download=False)
    assert bundle.input_shape == (1, 28, 28) and bundle.num_classes == 10
    assert bundle.flips is flips and bundle.crop_padding == 3
    got = (torch.cat([bundle.x_train, bundle.x_val]) * 255).round().to(torch.uint8)
    assert _rows(got) == _rows(torch.from_numpy(images[:, None]))
    suffix = ".gz" if compress else ""
    assert read_idx(tmp_path / folder / f"train-labels-idx1-ubyte{suffix}").tolist() == \
        labels.tolist()


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "mnist", "fashion-mnist"])
def test_missing_files_name_the_root_and_the_expected_files(tmp_path: Path, name: str) -> None:
    expected = {"cifar10": "cifar-10-batches-py/data_batch_1", "cifar100": "cifar-100-python/train",
                "mnist": "MNIST/raw/train-images-idx3-ubyte",
                "fashion-mnist": "FashionMNIST/raw/train-images-idx3-ubyte"}[name]
    with pytest.raises(NaswError, match="dataset.root") as info:
        load_dataset(name, root=tmp_path, download=False)
    assert expected in str(info.value) and str(tmp_path) in str(info.value)


def test_imagefolder_resizes_and_names_classes(tmp_path: Path) -> None:
    from PIL import Image

    for label, name in enumerate(["cat", "dog", "eel"]):
        (tmp_path / name).mkdir()
        for i in range(3):
            pixels = np.full((20 + i, 30, 3), 40 * label + i, dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / name / f"{i}.png")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    bundle = load_dataset("imagefolder", root=tmp_path, input_shape=(3, 16, 16), val_fraction=0.3)
    assert bundle.classes == ("cat", "dog", "eel") and bundle.num_classes == 3
    assert bundle.input_shape == (3, 16, 16) and bundle.flips
    assert len(bundle.x_train) + len(bundle.x_val) == 9
    grey = load_dataset("imagefolder:size=8,channels=1,flips=false", root=tmp_path)
    assert grey.input_shape == (1, 8, 8) and not grey.flips
    with pytest.raises(NaswError, match="dataset.root"):
        load_dataset("imagefolder", root=tmp_path / "cat")


@pytest.mark.parametrize(("shape", "layout"), [
    ((30, 16, 12, 3), None), ((30, 3, 16, 12), None), ((30, 16, 12), None),
    ((30, 2, 16, 12), "nchw"), ((30, 16, 12, 2), "nhwc"),
])
def test_npz_layouts_and_label_mapping(tmp_path: Path, shape: tuple[int, ...],
                                       layout: str | None) -> None:
    x = RNG.random(shape).astype(np.float32)
    y = np.array(["yes", "no", "maybe"] * 10)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    options = {} if layout is None else {"layout": layout}
    bundle = load_dataset("npz", root=tmp_path, **options)
    channels = 1 if len(shape) == 3 else 2 if 2 in (shape[1], shape[-1]) else 3
    assert bundle.input_shape == (channels, 16, 12)
    assert bundle.classes == ("maybe", "no", "yes") and bundle.num_classes == 3
    assert not bundle.flips
    first = x[0] if len(shape) == 3 else (x[0] if layout == "nchw" or shape[1] == 3
                                          else x[0].transpose(2, 0, 1))
    everything = torch.cat([bundle.x_train, bundle.x_val])
    assert any(torch.allclose(row, torch.from_numpy(first).reshape(row.shape))
               for row in everything)


def test_npz_errors_name_the_field(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", images=np.zeros((4, 8, 8)))
    with pytest.raises(NaswError, match="arrays 'x' and 'y'"):
        load_dataset("npz", root=tmp_path / "bad.npz")
    with pytest.raises(NaswError, match="dataset.root"):
        load_dataset("npz", root=tmp_path / "absent.npz")


# -- the loader ---------------------------------------------------------------------------
def _loader(x: torch.Tensor, **kwargs: object) -> DeviceLoader:
    channels = x.shape[1]
    return DeviceLoader(x, torch.arange(len(x)), 8, mean=[0.0] * channels,
                        std=[1.0] * channels, **kwargs)  # type: ignore[arg-type]


def test_loader_visits_every_example_once_per_epoch_in_seeded_order() -> None:
    x = torch.arange(20 * 4, dtype=torch.float32).view(20, 1, 2, 2)
    loader = _loader(x, seed=7)
    assert len(loader) == 3
    epoch = [y for _, y in loader]
    assert sorted(torch.cat(epoch).tolist()) == list(range(20))
    second = torch.cat([y for _, y in loader])
    assert not torch.equal(torch.cat(epoch), second), "a new permutation every epoch"
    again = _loader(x, seed=7)
    assert torch.equal(torch.cat([y for _, y in again]), torch.cat(epoch))
    assert len(_loader(x, drop_last=True)) == 2 and len(_loader(x, max_batches=1)) == 1
    for xb, yb in _loader(x, seed=1):
        assert torch.equal(xb, x[yb]), "without augmentation the batch is the data"


def test_random_crop_is_a_shifted_window_of_the_zero_padded_image() -> None:
    x = torch.rand(40, 2, 6, 5) + 1.0  # nonzero everywhere, so padding is recognisable
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets = set()
    for xb, yb in _loader(x, augment=True, crop_padding=2, seed=3):
        for image, index in zip(xb, yb.tolist(), strict=True):
            windows = [(dy, dx) for dy in range(5) for dx in range(5)
                       if torch.equal(image, padded[index, :, dy:dy + 6, dx:dx + 5])]
            assert windows, "every crop is one window of the padded image"
            offsets.update(windows)
    assert len(offsets) > 10, "offsets vary"


def test_flips_only_where_asked_and_normalisation_is_fused() -> None:
    x = torch.rand(64, 3, 4, 4)
    flipped = 0
    for xb, yb in _loader(x, augment=True, flip=True, seed=0):
        for image, index in zip(xb, yb.tolist(), strict=True):
            if torch.equal(image, x[index].flip(2)):
                flipped += 1
            else:
                assert torch.equal(image, x[index])
    assert 16 < flipped < 48
    digits = load_dataset("digits")
    loader = DeviceLoader.for_training(digits, 64, seed=0)
    assert loader.flip is False and loader.crop_padding == 1
    indexed = DeviceLoader(digits.x_train, torch.arange(len(digits.x_train)), 64,
                           mean=digits.mean, std=digits.std, seed=0, channels_last=True)
    xb, index = next(iter(indexed))
    assert torch.allclose(xb, digits.normalize(digits.x_train[index]))
    assert xb.is_contiguous(memory_format=torch.channels_last)


def test_training_batches_never_end_with_a_single_image() -> None:
    bundle = load_dataset("synthetic:shape=1x4x4,classes=2,n=83", val_fraction=0.2)
    assert len(bundle.x_train) == 66
    sizes = [len(y) for _, y in DeviceLoader.for_training(bundle, 65)]
    assert sizes == [65]
    assert [len(y) for _, y in DeviceLoader.for_training(bundle, 100)] == [66]
