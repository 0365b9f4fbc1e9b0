"""The book's convolutional network, LeNet-5, and the loop that trains them (``fit``), on CPU or CUDA."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from .._backend import device_scope, to_device, to_numpy
from .._types import Device, DTypeLike
from .checkpoint import load as load_checkpoint
from .checkpoint import read_metadata as read_checkpoint_metadata
from .checkpoint import save as save_checkpoint
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
    """Accuracy of ``model`` (in evaluation mode, restored afterwards) on host arrays
    ``images``/``labels`` (cast to the model's dtype); with a communicator each rank evaluates
    its share and the counts are summed, so every rank reports the same accuracy."""
    was_training = model.training
    model.eval()
    dtype = _model_dtype(model)
    if communicator is not None:
        images, labels = (np.array_split(a, communicator.size)[communicator.rank] for a in (images, labels))
    correct = 0.0
    try:
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].astype(dtype, copy=False)
            logits = model.forward(to_device(batch, device))
            correct += float((to_numpy(logits).argmax(axis=1) == labels[start : start + batch_size]).sum())
    finally:
        model.train(was_training)
    count = float(len(images))
    if communicator is not None:
        correct, count = communicator.sum(correct, count)
    return correct / max(count, 1.0)


def _model_dtype(model: Layer) -> np.dtype:
    """The dtype of the model's parameters, which its inputs must have (float32 without parameters)."""
    dtypes = {np.dtype(p.value.dtype) for p in model.parameters()}
    if len(dtypes) > 1:
        raise ValueError(f"the model's parameters have several dtypes {sorted(d.name for d in dtypes)}; use one")
    return dtypes.pop() if dtypes else np.dtype(np.float32)


def describe_run(model: Layer, data: DigitData, **settings: Any) -> dict[str, Any]:
    """What every rank of a distributed run must agree on: settings, parameter shapes and dtypes, data sizes."""
    shapes = [(p.name, tuple(p.value.shape), str(p.value.dtype)) for p in model.parameters()]
    sizes = {"train images": data.train_images.shape, "test images": data.test_images.shape}
    return {**settings, "parameters": shapes, **sizes}


class NonFiniteLoss(FloatingPointError):
    """Training stopped at the first NaN or infinite loss (the parameters were not updated by it)."""

    def __init__(self, epoch: int, step: int, loss: float) -> None:
        super().__init__(
            f"the loss became {loss} at epoch {epoch}, step {step}: training stopped, the parameters are those "
            "before that step (and the checkpoint, if any, the last one written); try a smaller --lr"
        )
        self.epoch, self.step, self.loss = epoch, step, loss


class Interrupted(Exception):
    """Training stopped on a signal, after writing its checkpoint."""

    def __init__(self, signal_number: int, path: str) -> None:
        super().__init__(f"stopped by signal {signal_number}; the training state is in {path} (resume with --resume)")
        self.signal_number = signal_number


class ResumeMismatch(ValueError):
    """A checkpoint written by a run with other arguments or data than the one resuming it."""


@dataclass
class Checkpointing:
    """Where and when :func:`fit` saves the whole training state (model, optimizer, data order,
    every random generator): ``path`` at the end of each epoch, every ``every`` steps (0: not
    within epochs), when ``stop()`` returns a signal number, and at the end.  With ``resume`` the
    run continues from ``path`` and ends as the uninterrupted run would have, bit for bit.
    ``identity`` is added to what a resumed run must share with the run that wrote the file (the
    network's name)."""

    path: str
    every: int = 0
    resume: bool = False
    stop: Callable[[], int | None] = lambda: None
    identity: dict[str, Any] = field(default_factory=dict)


def _dropout_layers(model: Layer) -> list[Dropout]:
    layers = list(model) if isinstance(model, Sequential) else [model]
    return [layer for layer in layers if isinstance(layer, Dropout)]


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
    checkpoint: Checkpointing | None = None,
) -> list[EpochStats]:
    """Train with softmax cross-entropy and SGD with momentum; one line of stats per epoch.  The
    data are cast to the model's dtype.

    With a :class:`~xpconv.nn.distributed.Communicator`, ``batch_size`` is the global batch:
    every rank draws the same shuffled order, takes its slice of each batch, and the gradients are
    averaged over the ranks weighted by slice size, so the run takes the same steps as one process
    would; rank 0 alone shows progress and logs, with the total images per second.

    With :class:`Checkpointing`, the training state is saved (by rank 0) and, with ``resume``,
    restored first (by every rank); a checkpoint of another run is a :class:`ResumeMismatch`.
    A NaN or infinite loss stops training before its step (:class:`NonFiniteLoss`); a stop
    request saves the state and raises :class:`Interrupted`.
    """
    n = len(data.train_labels)
    if batch_size > n:
        raise ValueError(
            f"batch_size={batch_size} is larger than the {n} training images: each epoch would be one step "
            f"of {n}; use a batch size of at most {n}"
        )
    loss_fn = SoftmaxCrossEntropy()
    parameters = model.parameters()
    optimizer = SGD(parameters, lr=lr, momentum=momentum)
    dtype = _model_dtype(model)
    rng = np.random.default_rng(seed)
    dropouts = _dropout_layers(model)
    lead = communicator is None or communicator.rank == 0
    ranks = 1 if communicator is None else communicator.size
    identity = {"batch_size": batch_size, "lr": lr, "momentum": momentum, "seed": seed, "dtype": dtype.name,
                "data": data.fingerprint(), "processes": ranks, **(checkpoint.identity if checkpoint else {})}  # fmt: skip
    if communicator is not None:
        settings = dict(epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum, seed=seed)
        communicator.check_consistent(describe_run(model, data, **settings))
        communicator.broadcast_parameters(parameters)
    history: list[EpochStats] = []
    first_epoch, first_step, total_loss, batches = 1, 0, 0.0, 0
    if checkpoint is not None and checkpoint.resume:
        state = _resume(checkpoint.path, model, optimizer, identity, communicator)
        rng.bit_generator.state = state["shuffle"]
        for layer, layer_state in zip(
            dropouts, state["dropout"][0 if communicator is None else communicator.rank], strict=True
        ):
            layer.set_rng_state(layer_state)
        first_epoch, first_step = state["epoch"], state["step"]
        total_loss, batches = state["epoch_loss"], state["epoch_batches"]
        history = [EpochStats(**stats) for stats in state["history"]]

    def save(epoch: int, step: int, shuffle: dict[str, Any], epoch_loss: float, epoch_batches: int) -> None:
        assert checkpoint is not None
        mine = [layer.rng_state() for layer in dropouts]
        every_rank = [mine] if communicator is None else communicator.allgather(mine, "a checkpoint")
        if lead:
            training = dict(epoch=epoch, step=step, shuffle=shuffle, dropout=every_rank, epoch_loss=epoch_loss,
                            epoch_batches=epoch_batches, history=[asdict(h) for h in history])  # fmt: skip
            preprocessing = {"mean": data.mean, "std": data.std}
            save_checkpoint(checkpoint.path, model, optimizer, run=identity, training=training,
                            preprocessing=preprocessing)  # fmt: skip

    for epoch in range(first_epoch, epochs + 1):
        model.train()
        shuffle = dict(rng.bit_generator.state)  # the epoch's order follows from it
        order = rng.permutation(n)
        skip = first_step if epoch == first_epoch else 0
        if skip == 0:
            total_loss, batches = 0.0, 0
        bar = Progress(n, f"epoch {epoch}/{epochs}") if progress and lead else None
        start = time.perf_counter()
        for step, first in enumerate(range(0, n, batch_size)):
            if step < skip:
                continue
            batch = order[first : first + batch_size]
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a non-finite loss is reported below
                loss = _step(model, loss_fn, parameters, data, batch, dtype, device, communicator)
            if not math.isfinite(loss):
                raise NonFiniteLoss(epoch, step + 1, loss)
            total_loss += loss
            optimizer.step()
            batches += 1
            if bar and (batches % 10 == 0 or first + batch_size >= n):
                bar.update(min(first + batch_size, n), f"loss {total_loss / batches:.3f}")
            if checkpoint is not None and first + batch_size < n:
                stop = checkpoint.stop()
                if communicator is not None:
                    stop = communicator.maximum(stop or 0) or None  # every rank stops at the same step
                if stop or (checkpoint.every and optimizer.steps % checkpoint.every == 0):
                    save(epoch, step + 1, shuffle, total_loss, batches)
                if stop:
                    raise Interrupted(stop, checkpoint.path)
        seconds = time.perf_counter() - start
        if bar:
            bar.close()
        accuracy = evaluate(model, data.test_images, data.test_labels, device, communicator=communicator)
        stats = EpochStats(epoch, total_loss / max(batches, 1), accuracy, seconds, (n - skip * batch_size) / seconds)
        history.append(stats)
        if lead:
            processes = "" if communicator is None else f" ({ranks} process{'es' * (ranks > 1)})"
            log(
                f"epoch {epoch}: loss {stats.loss:.4f}  test accuracy {100 * accuracy:.2f}%  "
                f"{seconds:.1f} s  {stats.images_per_second:,.0f} images/s{processes}"
            )
        if checkpoint is not None:
            save(epoch + 1, 0, dict(rng.bit_generator.state), 0.0, 0)
            stop = checkpoint.stop()
            if communicator is not None:
                stop = communicator.maximum(stop or 0) or None
            if stop and epoch < epochs:
                raise Interrupted(stop, checkpoint.path)
    return history


def _step(model, loss_fn, parameters, data, idx, dtype, device, communicator) -> float:
    """One step's forward and backward on this rank's share of the batch ``idx``: the loss
    (summed over the ranks, each weighted by its share), the gradients in ``Parameter.grad``."""
    share = 1.0
    if communicator is not None:
        idx, share = communicator.shard(idx)
    if len(idx):
        x = to_device(data.train_images[idx].astype(dtype, copy=False), device)
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
    return loss


def _resume(path: str, model: Layer, optimizer: SGD, identity: dict[str, Any], communicator) -> dict[str, Any]:
    """Load the checkpoint at ``path`` into the model and optimizer (every rank reads it) after
    checking that it was written by a run like this one; return its training state."""
    metadata = read_checkpoint_metadata(path)
    written = metadata.get("run", {})
    for key, value in identity.items():
        if written.get(key) != value:
            raise ResumeMismatch(
                f"--resume {path}: the checkpoint was written by a run with {key}={written.get(key)!r}, this run has "
                f"{key}={value!r}; resume with the same arguments and data, or start anew without --resume"
            )
    load_checkpoint(path, model, optimizer)
    return metadata["training"]
