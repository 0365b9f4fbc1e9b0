"""Array-namespace shim: which module (``numpy`` or ``cupy``) an array lives in.

Rules, in the spirit of array-api-compat and einops:

* ``import xpconv`` never imports CuPy.  An array can only be a CuPy array if CuPy is
  already in ``sys.modules``, so :func:`array_namespace` looks there and nowhere else.
* :func:`get_namespace` is the only function that imports CuPy, and only for a CUDA device.
* :func:`parse_device` is the only function that validates a device string.
* :func:`to_device` is the only function that moves data between host and GPU.
* Nothing is ever copied between devices silently: mixing NumPy and CuPy arrays, or
  arrays on two GPUs, is a :class:`ValueError`.
"""

from __future__ import annotations

import importlib
import re
import sys
from types import ModuleType

import numpy as np

__all__ = [
    "DeviceUnavailableError",
    "array_namespace",
    "cuda_available",
    "device_of",
    "get_namespace",
    "parse_device",
    "to_device",
    "to_numpy",
]

_DEVICE_RE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")
_INSTALL_HINT = (
    "install CuPy for your CUDA version: pip install xpconv[cuda12] (CUDA 12) "
    "or pip install xpconv[cuda13] (CUDA 13)"
)


class DeviceUnavailableError(RuntimeError):
    """A CUDA device was asked for but CuPy or a visible GPU is missing."""


def parse_device(device: str) -> tuple[str, int]:
    """Split ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into ``(kind, index)``."""
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda:0', got {device!r}")
    match = _DEVICE_RE.match(device)
    if match is None or (match.group(1) == "cpu" and match.group(2) not in (None, "0")):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return match.group(1), int(match.group(2) or 0)


def _import_cupy() -> ModuleType:
    try:
        return importlib.import_module("cupy")
    except ImportError as exc:
        raise DeviceUnavailableError(f"device 'cuda' needs CuPy, which is not installed: {_INSTALL_HINT}") from exc


def get_namespace(device: str = "cpu") -> ModuleType:
    """Return the array module for ``device``: ``numpy`` for ``"cpu"``, ``cupy`` for CUDA.

    Parameters
    ----------
    device : str
        ``"cpu"``, ``"cuda"`` (GPU 0) or ``"cuda:N"``.

    Raises
    ------
    ValueError
        ``device`` is not one of the forms above.
    DeviceUnavailableError
        CuPy is not installed, no GPU is visible, or GPU ``N`` does not exist.
    """
    kind, index = parse_device(device)
    if kind == "cpu":
        return np
    cupy = _import_cupy()
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing or broken: CuPy raises its own error types
        raise DeviceUnavailableError(f"no CUDA device found ({exc}); use device='cpu'") from exc
    if count == 0:
        raise DeviceUnavailableError("no CUDA device found; use device='cpu'")
    if index >= count:
        raise DeviceUnavailableError(f"device {device!r} does not exist: {count} CUDA device(s) visible")
    return cupy


def cuda_available() -> bool:
    """Whether ``device="cuda"`` would work here: CuPy installed and a GPU visible."""
    try:
        get_namespace("cuda")
    except DeviceUnavailableError:
        return False
    return True


def _module_of(array) -> ModuleType:
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(array, cupy.ndarray):
        return cupy
    if isinstance(array, np.ndarray):
        return np
    raise TypeError(f"expected a NumPy or CuPy array, got {type(array).__name__}")


def device_of(array) -> str:
    """``"cpu"`` for a NumPy array, ``"cuda:N"`` for a CuPy array on GPU ``N``."""
    if _module_of(array) is np:
        return "cpu"
    return f"cuda:{array.device.id}"


def array_namespace(*arrays) -> ModuleType:
    """Return the module (``numpy`` or ``cupy``) that all ``arrays`` belong to.

    ``None`` entries are skipped (an absent bias).  Arrays on different devices raise
    :class:`ValueError`; anything that is not a NumPy or CuPy array raises :class:`TypeError`.
    """
    present = [a for a in arrays if a is not None]
    if not present:
        raise TypeError("array_namespace needs at least one array")
    devices = {device_of(a) for a in present}
    if len(devices) > 1:
        raise ValueError(
            f"arrays live on different devices {sorted(devices)}; move them to one device "
            "with xpconv.to_device first"
        )
    return _module_of(present[0])


def to_device(x, device: str):
    """Copy ``x`` (a NumPy or CuPy array, or anything ``numpy.asarray`` takes) to ``device``."""
    kind, index = parse_device(device)
    if kind == "cpu":
        return to_numpy(x)
    cupy = get_namespace(device)
    with cupy.cuda.Device(index):
        return cupy.asarray(x)


def to_numpy(x) -> np.ndarray:
    """Return ``x`` as a NumPy array, copying it from the GPU if it is a CuPy array."""
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(x, cupy.ndarray):
        return cupy.asnumpy(x)
    return np.asarray(x)
