"""Loading digit images: MNIST-format IDX files from a folder, or the small 8×8 digits set
that ships with scikit-learn.  Nothing is ever downloaded."""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# IDX header: two zero bytes, a type code, the number of dimensions; then one big-endian
# uint32 per dimension, then the data.  MNIST uses type 0x08 (unsigned byte).
_UBYTE = 0x08
_MAGIC = {"images": 0x00000803, "labels": 0x00000801}


@dataclass
class DigitData:
    """Training and test images with their labels, and the preprocessing that made the images:
    ``images = (raw / 255 - mean) / std`` with the training split's ``mean`` and ``std``
    (:meth:`preprocess` applies it to new raw images; a checkpoint keeps both numbers)."""

    train_images: np.ndarray  # (N, 1, H, W) float32, standardised
    train_labels: np.ndarray  # (N,) int64
    test_images: np.ndarray
    test_labels: np.ndarray
    description: str
    mean: float = 0.0  # of the training images scaled to [0, 1]
    std: float = 1.0

    def preprocess(self, raw: np.ndarray) -> np.ndarray:
        """Raw uint8 images (N, H, W) or (N, 1, H, W) as the model saw its training images: (N, 1, H, W) float32."""
        raw = np.asarray(raw)
        images = raw[:, None] if raw.ndim == 3 else raw  # (N, H, W) -> (N, 1, H, W)
        return ((images.astype(np.float32) / 255.0 - np.float32(self.mean)) / np.float32(self.std)).astype(np.float32)

    def fingerprint(self) -> str:
        """A hash of the images and labels, to tell whether a resumed run has the same data."""
        digest = hashlib.sha256()
        for array in (self.train_images, self.train_labels, self.test_images, self.test_labels):
            digest.update(repr((array.shape, array.dtype.str)).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:16]


def read_idx(path: str | os.PathLike[str], kind: str) -> np.ndarray:
    """Read one IDX file (raw or gzip) holding ``kind`` = ``"images"`` (3-D) or ``"labels"`` (1-D)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"IDX file not found: {path}") from None
    except (OSError, EOFError) as exc:  # a damaged gzip stream
        raise ValueError(f"{path}: cannot read ({exc})") from None
    if len(raw) < 4:
        raise ValueError(f"{path}: truncated IDX file ({len(raw)} bytes, no header)")
    magic = int.from_bytes(raw[:4], "big")
    if magic != _MAGIC[kind]:
        raise ValueError(
            f"{path}: wrong magic number 0x{magic:08x} for an IDX {kind} file (expected 0x{_MAGIC[kind]:08x})"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} of {header} bytes)")
    shape = tuple(int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise ValueError(f"{path}: {what}: {len(raw)} bytes, expected {expected} for shape {shape}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).exists():
            return folder / name
    return None


def _pair(folder: Path, prefix: str):
    images = _find(folder, f"{prefix}-images-idx3-ubyte")
    labels = _find(folder, f"{prefix}-labels-idx1-ubyte")
    if images is None and labels is None:
        return None
    if images is None or labels is None:
        missing = f"{prefix}-images-idx3-ubyte" if images is None else f"{prefix}-labels-idx1-ubyte"
        raise FileNotFoundError(f"{folder}: {missing}[.gz] is missing")
    x, y = read_idx(images, "images"), read_idx(labels, "labels")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{folder}: {x.shape[0]} {prefix} images but {y.shape[0]} labels")
    return x, y


def _standardise(train, test, preprocessing: tuple[float, float] | None = None):
    """uint8 (N, H, W) -> float32 (N, 1, H, W), scaled by the training set's mean and std (or the
    given ``(mean, std)``); returns both image sets and the two numbers."""
    train = train.astype(np.float32)[:, None] / 255.0  # (N, H, W) -> (N, 1, H, W)
    test = test.astype(np.float32)[:, None] / 255.0
    mean, std = (float(train.mean()), float(train.std())) if preprocessing is None else preprocessing
    return (train - np.float32(mean)) / np.float32(std), (test - np.float32(mean)) / np.float32(std), mean, std


def load_mnist(
    folder: str | os.PathLike[str],
    train_count: int = 8000,
    *,
    count_name: str = "train_count",
    preprocessing: tuple[float, float] | None = None,
) -> DigitData:
    """MNIST-format data from ``folder``.

    The ``train-*`` pair trains and the ``t10k-*`` pair tests.  With only the ``t10k-*``
    pair, the first ``train_count`` images train and the rest test.  ``count_name`` is what
    an error about ``train_count`` calls it (the command line passes ``--train-count``).
    The images are standardised by the training split's mean and standard deviation, or by
    ``preprocessing = (mean, std)`` (a saved model's: :attr:`DigitData.mean`, :attr:`DigitData.std`).
    """
    folder = Path(folder)
    if folder.is_file():
        raise NotADirectoryError(f"{folder} is a file, not a folder of MNIST IDX files")
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder not found: {folder}")
    train, test = _pair(folder, "train"), _pair(folder, "t10k")
    if test is None:
        raise FileNotFoundError(f"{folder}: t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz] are missing")
    if train is not None:
        description = (
            f"MNIST from {folder}: {len(train[1])} training images (train-*), {len(test[1])} test images (t10k-*)"
        )
    else:
        n = len(test[1])
        if not 0 < train_count < n:
            raise ValueError(f"{count_name} must be between 1 and {n - 1} for {n} t10k images, got {train_count}")
        x, y = test
        train, test = (x[:train_count], y[:train_count]), (x[train_count:], y[train_count:])
        description = (
            f"MNIST from {folder}: only the t10k-* pair is there, so training on its first "
            f"{train_count} images and testing on the other {n - train_count}"
        )
    train_x, test_x, mean, std = _standardise(train[0], test[0], preprocessing)
    return DigitData(train_x, train[1].astype(np.int64), test_x, test[1].astype(np.int64), description, mean, std)


def load_sklearn_digits(test_fraction: float = 0.2, seed: int = 0) -> DigitData:
    """scikit-learn's 1,797 real 8×8 handwritten digits (shipped inside the package)."""
    try:
        from sklearn.datasets import load_digits  # pyright: ignore[reportMissingImports]  (an optional extra)
    except ImportError:
        raise ModuleNotFoundError(
            'without --data, xpconv train uses scikit-learn\'s digits: pip install "xpconv[examples]", '
            "or pass --data DIR with MNIST IDX files"
        ) from None
    digits: Any = load_digits()  # a scikit-learn Bunch
    images = (digits.images * (255.0 / 16.0)).astype(np.uint8)  # 0..16 -> 0..255
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = int(len(images) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    train_x, test_x, mean, std = _standardise(images[train], images[test])
    description = f"scikit-learn's 8x8 digits (no --data given): {len(train)} training and {len(test)} test images"
    return DigitData(
        train_x, digits.target[train].astype(np.int64), test_x, digits.target[test].astype(np.int64), description,
        mean, std,
    )  # fmt: skip
