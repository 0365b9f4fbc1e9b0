"""The book's convolutional network, LeNet-5, and the loop that trains them (``fit``), on CPU or CUDA."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from .._backend import device_scope, to_device, to_numpy
from .._types import Device, DTypeLike
from .data import DigitData
from .layers import Conv2D, Dense, Dropout, Flatten, Layer, MaxPool2D, ReLU, Sequential, Tanh
from .loss import SoftmaxCrossEntropy
from .optim import SGD

if TYPE_CHECKING:
    from .distributed import Communicator


def book_network(
    height: int,
    width: int,
    *,
    device: Device | None = None,
    dtype: DTypeLike = "float32",
    seed: int = 0,
    dropout: float = 0.2,
    dropout_seed: int | None = None,
) -> Sequential:
    """Conv2D(1→16, 5×5, same) → Tanh → Dropout → Flatten → Dense(16·H·W → 10), Glorot init.

    The book's ``dropout=0.8`` is a keep probability, i.e. ``p = 0.2`` here.  The dropout masks
    come from ``dropout_seed`` (default ``seed + 1``; each rank of a distributed run uses its own).
    """
    return Sequential(
        Conv2D(1, 16, 5, padding="same", device=device, dtype=dtype, seed=seed),
        Tanh(),
        Dropout(dropout, seed=seed + 1 if dropout_seed is None else dropout_seed),
        Flatten(),
        Dense(16 * height * width, 10, device=device, dtype=dtype, seed=seed + 2),
    )


def lenet5_network(
    height: int = 28, width: int = 28, *, device: Device | None = None, dtype: DTypeLike = "float32", seed: int = 0
) -> Sequential:
    """LeNet-5 with ReLU and max pooling, Glorot init: Conv2D(1→6, 5×5, padding 2) → ReLU → MaxPool2D(2)
    → Conv2D(6→16, 5×5) → ReLU → MaxPool2D(2) → Flatten → Dense(400→120) → ReLU → Dense(120→84)
    → ReLU → Dense(84→10); 400 = 16·5·5 for 28×28 images (16·h·w after the pools in general)."""
    h, w = (height // 2 - 4) // 2, (width // 2 - 4) // 2  # 5×5 for 28×28: 28 -> 14 -> 10 -> 5
    if min(h, w) < 1:
        raise ValueError(f"LeNet-5 needs images of at least 12x12 pixels, got {height}x{width}")
    kw: dict[str, Any] = dict(device=device, dtype=dtype)
    return Sequential(
        Conv2D(1, 6, 5, padding=2, seed=seed, **kw),
        ReLU(),
        MaxPool2D(2),
        Conv2D(6, 16, 5, seed=seed + 1, **kw),
        ReLU(),
        MaxPool2D(2),
        Flatten(),
        Dense(16 * h * w, 120, seed=seed + 2, **kw),
        ReLU(),
        Dense(120, 84, seed=seed + 3, **kw),
        ReLU(),
        Dense(84, 10, seed=seed + 4, **kw),
    )


MODELS = ("book", "lenet5")


@dataclass
class EpochStats:
    epoch: int
    loss: float
    accuracy: float
    seconds: float
    images_per_second: float


class Progress:
    """Progress on ``stream`` (stderr by default): on a terminal a one-line bar redrawn in place;
    into a file or a pipe, whole lines, one each tenth of the way, each flushed (no ``\\r``)."""

    def __init__(self, total: int, label: str, stream: IO[str] | None = None, width: int = 30) -> None:
        self.total, self.label, self.width = total, label, width
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.tenths = 0  # tenths of the way already written (not on a terminal)

    def update(self, done: int, extra: str = "") -> None:
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        if self.tty:
            filled = int(self.width * done / max(self.total, 1))
            bar = f"[{'#' * filled}{'.' * (self.width - filled)}] "
            self.stream.write(f"\r{self.label} {bar}{done}/{self.total} {rate:,.0f} img/s {extra}")
        else:
            tenths = 10 * done // max(self.total, 1)
            if tenths <= self.tenths:
                return
            self.tenths = tenths
            self.stream.write(f"{self.label} {done}/{self.total} {rate:,.0f} img/s {extra}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def evaluate(
    model: Layer,
    images: np.ndarray,
    labels: np.ndarray,
    device: Device,
    batch_size: int = 500,
    communicator: Communicator | None = None,
) -> float:
    """Accuracy of ``model`` (in evaluation mode) on host arrays ``images``/``labels``; with a
    communicator each rank evaluates its share and the counts are summed, so every rank reports
    the same accuracy."""
    model.eval()
    if communicator is not None:
        images, labels = (np.array_split(a, communicator.size)[communicator.rank] for a in (images, labels))
    correct = 0.0
    for start in range(0, len(images), batch_size):
        logits = model.forward(to_device(images[start : start + batch_size], device))
        correct += float((to_numpy(logits).argmax(axis=1) == labels[start : start + batch_size]).sum())
    count = float(len(images))
    if communicator is not None:
        correct, count = communicator.sum(correct, count)
    return correct / max(count, 1.0)


def describe_run(model: Layer, data: DigitData, **settings: Any) -> dict[str, Any]:
    """What every rank of a distributed run must agree on: settings, parameter shapes and dtypes, data sizes."""
    shapes = [(p.name, tuple(p.value.shape), str(p.value.dtype)) for p in model.parameters()]
    sizes = {"train images": data.train_images.shape, "test images": data.test_images.shape}
    return {**settings, "parameters": shapes, **sizes}


def fit(
    model: Layer,
    data: DigitData,
    *,
    device: Device,
    epochs: int = 1,
    batch_size: int = 60,
    lr: float = 0.1,
    momentum: float = 0.9,
    seed: int = 0,
    progress: bool = True,
    log: Callable[..., None] = print,
    communicator: Communicator | None = None,
) -> list[EpochStats]:
    """Train with softmax cross-entropy and SGD with momentum; one line of stats per epoch.

    With a :class:`~xpconv.nn.distributed.Communicator`, ``batch_size`` is the global batch:
    every rank draws the same shuffled order, takes its slice of each batch, and the gradients are
    averaged over the ranks weighted by slice size, so the run takes the same steps as one process
    would; rank 0 alone shows progress and logs, with the total images per second.
    """
    loss_fn = SoftmaxCrossEntropy()
    parameters = model.parameters()
    optimizer = SGD(parameters, lr=lr, momentum=momentum)
    rng = np.random.default_rng(seed)
    n = len(data.train_labels)
    lead = communicator is None or communicator.rank == 0
    if communicator is not None:
        settings = dict(epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum, seed=seed)
        communicator.check_consistent(describe_run(model, data, **settings))
        communicator.broadcast_parameters(parameters)
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        order = rng.permutation(n)
        bar = Progress(n, f"epoch {epoch}/{epochs}") if progress and lead else None
        start, total_loss, batches = time.perf_counter(), 0.0, 0
        for first in range(0, n, batch_size):
            idx = order[first : first + batch_size]
            share = 1.0
            if communicator is not None:
                idx, share = communicator.shard(idx)
            if len(idx):
                x = to_device(data.train_images[idx], device)
                y = to_device(data.train_labels[idx], device)
                loss = loss_fn.forward(model.forward(x), y)
                model.backward(loss_fn.backward())
            else:  # more ranks than samples in this batch: this rank contributes nothing
                loss = 0.0
                for p in parameters:
                    with device_scope(p.value):
                        p.grad = p.value * 0
            if communicator is not None:
                loss = communicator.allreduce_gradients(parameters, share, loss)
            total_loss += loss
            optimizer.step()
            batches += 1
            if bar and (batches % 10 == 0 or first + batch_size >= n):
                bar.update(min(first + batch_size, n), f"loss {total_loss / batches:.3f}")
        seconds = time.perf_counter() - start
        if bar:
            bar.close()
        accuracy = evaluate(model, data.test_images, data.test_labels, device, communicator=communicator)
        stats = EpochStats(epoch, total_loss / max(batches, 1), accuracy, seconds, n / seconds)
        history.append(stats)
        if lead:
            ranks = "" if communicator is None else f" ({communicator.size} process{'es' * (communicator.size > 1)})"
            log(
                f"epoch {epoch}: loss {stats.loss:.4f}  test accuracy {100 * accuracy:.2f}%  "
                f"{seconds:.1f} s  {stats.images_per_second:,.0f} images/s{ranks}"
            )
    return history
