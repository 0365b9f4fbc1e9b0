"""The book's convolutional network and the loop that trains it (``fit``), on CPU or CUDA."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np

from .._backend import to_device, to_numpy
from .data import DigitData
from .layers import Conv2D, Dense, Dropout, Flatten, Sequential, Tanh
from .loss import SoftmaxCrossEntropy
from .optim import SGD


def book_network(
    height: int, width: int, *, device=None, dtype="float32", seed: int = 0, dropout: float = 0.2
) -> Sequential:
    """Conv2D(1→16, 5×5, same) → Tanh → Dropout → Flatten → Dense(16·H·W → 10), Glorot init.

    The book's ``dropout=0.8`` is a keep probability, i.e. ``p = 0.2`` here.
    """
    return Sequential(
        Conv2D(1, 16, 5, padding="same", device=device, dtype=dtype, seed=seed),
        Tanh(),
        Dropout(dropout, seed=seed + 1),
        Flatten(),
        Dense(16 * height * width, 10, device=device, dtype=dtype, seed=seed + 2),
    )


@dataclass
class EpochStats:
    epoch: int
    loss: float
    accuracy: float
    seconds: float
    images_per_second: float


class Progress:
    """A one-line text progress bar on ``stream`` (stderr by default)."""

    def __init__(self, total: int, label: str, stream=None, width: int = 30):
        self.total, self.label, self.width = total, label, width
        self.stream = sys.stderr if stream is None else stream
        self.start = time.perf_counter()

    def update(self, done: int, extra: str = ""):
        filled = int(self.width * done / max(self.total, 1))
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total} "
            f"{rate:,.0f} img/s {extra}"
        )
        self.stream.flush()

    def close(self):
        self.stream.write("\n")
        self.stream.flush()


def evaluate(model, images, labels, device, batch_size: int = 500) -> float:
    """Accuracy of ``model`` (in evaluation mode) on host arrays ``images``/``labels``."""
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model.forward(to_device(images[start : start + batch_size], device))
        correct += int((to_numpy(logits).argmax(axis=1) == labels[start : start + batch_size]).sum())
    return correct / max(len(images), 1)


def fit(
    model, data: DigitData, *, device, epochs=1, batch_size=60, lr=0.1, momentum=0.9, seed=0, progress=True, log=print
) -> list[EpochStats]:
    """Train with softmax cross-entropy and SGD with momentum; one line of stats per epoch."""
    loss_fn = SoftmaxCrossEntropy()
    optimizer = SGD(model.parameters(), lr=lr, momentum=momentum)
    rng = np.random.default_rng(seed)
    n = len(data.train_labels)
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        order = rng.permutation(n)
        bar = Progress(n, f"epoch {epoch}/{epochs}") if progress else None
        start, total_loss, batches = time.perf_counter(), 0.0, 0
        for first in range(0, n, batch_size):
            idx = order[first : first + batch_size]
            x = to_device(data.train_images[idx], device)
            y = to_device(data.train_labels[idx], device)
            total_loss += loss_fn.forward(model.forward(x), y)
            model.backward(loss_fn.backward())
            optimizer.step()
            batches += 1
            if bar and (batches % 10 == 0 or first + batch_size >= n):
                bar.update(min(first + batch_size, n), f"loss {total_loss / batches:.3f}")
        seconds = time.perf_counter() - start
        if bar:
            bar.close()
        accuracy = evaluate(model, data.test_images, data.test_labels, device)
        stats = EpochStats(epoch, total_loss / max(batches, 1), accuracy, seconds, n / seconds)
        history.append(stats)
        log(
            f"epoch {epoch}: loss {stats.loss:.4f}  test accuracy {100 * accuracy:.2f}%  "
            f"{seconds:.1f} s  {stats.images_per_second:,.0f} images/s"
        )
    return history
