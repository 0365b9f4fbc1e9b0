"""Models and training state in files: written atomically, read without running any code.

:func:`save` writes one ``.npz`` file (NumPy's format): the model's parameters as ``model/<path>``
(the keys of :meth:`~xpconv.nn.Layer.state_dict`), the optimizer's momentum buffers as
``optimizer/momentum_buffer/<k>``, and ``metadata``, the UTF-8 bytes of one JSON object (a uint8
array): the format's name and version, xpconv's version, the optimizer's scalars and whatever the
caller adds (network, hyper-parameters, data fingerprint, epoch, step, random generators' states).
:func:`load` reads it with ``allow_pickle=False``: a file can hold only arrays and text, never code.

A path ending in ``.safetensors`` writes the model's parameters alone in that format, under
their paths, which are those of the same ``torch.nn.Sequential``'s ``state_dict``: PyTorch loads
it with ``safetensors.torch.load_file`` and ``load_state_dict(strict=True)``.  It needs the
``safetensors`` package (``pip install "xpconv[safetensors]"``).

Every write goes to a temporary file in the same folder, flushed and ``fsync``-ed, then renamed
over the target (and the folder ``fsync``-ed): a kill at any instant leaves the old file or the
new one, never a torn one.  A file that is missing, truncated, corrupt or not a checkpoint is one
:class:`CheckpointError` (a ``ValueError``) naming the file.
"""

from __future__ import annotations

__all__ = ["CheckpointError", "load", "read", "read_metadata", "save", "write_atomically"]

import contextlib
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from .. import __version__
from .._backend import to_numpy
from .layers import Layer
from .optim import SGD

FORMAT = "xpconv-checkpoint"
FORMAT_VERSION = 1
SAFETENSORS_HINT = 'pip install "xpconv[safetensors]"'


class CheckpointError(ValueError):
    """A file that is not a readable xpconv checkpoint (missing, truncated, corrupt or foreign)."""


def write_atomically(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> None:
    """``write(file)`` into a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    folder = path.parent
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # the rename itself reaches the disk
        folder_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(folder_fd)
        finally:
            os.close(folder_fd)


def _safetensors() -> Any:
    try:
        import safetensors.numpy  # pyright: ignore[reportMissingImports]  (an optional extra)
    except ImportError:
        raise ModuleNotFoundError(f"a .safetensors file needs the safetensors package: {SAFETENSORS_HINT}") from None
    return safetensors.numpy


def save(path: str | os.PathLike[str], model: Layer, optimizer: SGD | None = None, **metadata: Any) -> None:
    """Write ``model``'s parameters (and ``optimizer``'s state) with ``metadata`` (JSON values) to
    ``path``, atomically: ``.npz``, or the parameters alone with ``.safetensors``."""
    path = Path(path)
    arrays = {f"model/{name}": np.ascontiguousarray(to_numpy(v)) for name, v in model.state_dict().items()}
    header: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION, "xpconv": __version__}
    if optimizer is not None:
        state = optimizer.state_dict()
        header["optimizer"] = {k: state[k] for k in ("lr", "momentum", "steps")}
        for k, buffer in enumerate(state["momentum_buffers"]):
            if buffer is not None:
                arrays[f"optimizer/momentum_buffer/{k}"] = np.ascontiguousarray(to_numpy(buffer))
    try:
        text = json.dumps({**header, **metadata}, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"checkpoint metadata must be JSON values (finite numbers): {exc}") from None
    if path.suffix == ".safetensors":
        if optimizer is not None:
            raise ValueError(
                f"{path}: a .safetensors file holds the model's parameters alone (for other tools); "
                "save a training checkpoint with the optimizer as .npz"
            )
        body = _safetensors().save({k.removeprefix("model/"): v for k, v in arrays.items()}, metadata={"xpconv": text})
        write_atomically(path, lambda f: _write(f, body))
        return
    arrays["metadata"] = np.frombuffer(text.encode(), dtype=np.uint8)
    savez: Any = np.savez  # its stubs type **arrays as the allow_pickle flag
    write_atomically(path, lambda f: savez(f, **arrays))


def _write(f: IO[bytes], body: bytes) -> None:
    f.write(body)


def read(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A checkpoint's arrays (by their keys in the file) and its metadata, checked to be an
    xpconv checkpoint; a :class:`CheckpointError` naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        if path.suffix == ".safetensors":
            arrays, text = _read_safetensors(path)
        else:
            with np.load(path, allow_pickle=False) as stored:
                if "metadata" not in stored.files:
                    raise CheckpointError(f"{path}: not an xpconv checkpoint (no metadata entry)")
                arrays = {k: stored[k] for k in stored.files}
            text = arrays.pop("metadata").tobytes().decode()
        metadata = json.loads(text)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, KeyError, ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable xpconv checkpoint (truncated or corrupt: {exc})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an xpconv checkpoint (its metadata names no {FORMAT!r} format)")
    if metadata.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {metadata['format_version']} is newer than this xpconv's "
            f"({FORMAT_VERSION}); upgrade xpconv"
        )
    return arrays, metadata


def _read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], str]:
    module = _safetensors()
    raw = path.read_bytes()
    if len(raw) < 8:
        raise CheckpointError(f"{path}: not a readable xpconv checkpoint (truncated: {len(raw)} bytes)")
    size = int.from_bytes(raw[:8], "little")
    try:
        header = json.loads(raw[8 : 8 + size])
    except ValueError as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file (its header: {exc})") from None
    text = (header.get("__metadata__") or {}).get("xpconv") if isinstance(header, dict) else None
    if text is None:
        raise CheckpointError(f"{path}: not an xpconv checkpoint (no xpconv metadata in its header)")
    try:
        tensors = module.load(raw)
    except Exception as exc:  # safetensors raises its own error type for a damaged file
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    return {f"model/{k}": v for k, v in tensors.items()}, text


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of a checkpoint (the network, its dtype, ...), to build the model it fits."""
    return read(path)[1]


def load(path: str | os.PathLike[str], model: Layer, optimizer: SGD | None = None) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save` into ``model`` (strict: the same parameter
    paths, shapes and dtypes; onto the model's devices) and ``optimizer`` (when given; the file
    must hold its state); return the metadata."""
    arrays, metadata = read(path)
    state = {k.removeprefix("model/"): v for k, v in arrays.items() if k.startswith("model/")}
    try:
        model.load_state_dict(state, strict=True)
        if optimizer is not None:
            if "optimizer" not in metadata:
                raise ValueError("it holds no optimizer state")
            buffers = [arrays.get(f"optimizer/momentum_buffer/{k}") for k in range(len(optimizer.parameters))]
            optimizer.load_state_dict({**metadata["optimizer"], "momentum_buffers": buffers})
    except ValueError as exc:
        raise CheckpointError(f"{path}: does not fit: {exc}") from None
    return metadata
