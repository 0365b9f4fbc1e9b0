"""Array-namespace shim: which module (``numpy`` or ``cupy``) an array lives in, and on which device.

Rules, in the spirit of array-api-compat and einops:

* ``import xpconv`` never imports CuPy.  An array can only be a CuPy array if CuPy is
  already in ``sys.modules``, so :func:`array_namespace` looks there and nowhere else.
* :func:`namespace_for` (a device string -> its module) is the only function that imports
  CuPy, and only for a CUDA device.
* :func:`parse_device` is the only function that validates a device string, and
  :func:`resolve_device` the only one that applies the default (``$XPCONV_DEVICE``, else cpu).
* :func:`to_device` is the only function that moves data between host and GPU.
* Nothing is ever copied between devices silently: mixing NumPy and CuPy arrays, or
  arrays on two GPUs, is a :class:`ValueError`.
* Kernels run under their inputs' device (:func:`device_scope`): CuPy allocates results and
  launches kernels on the *current* device, so an input on ``cuda:1`` must make ``cuda:1``
  current for the call.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
from types import ModuleType
from typing import Any

import numpy as np

from ._types import Array, ArrayLike, Device

__all__ = [
    "DeviceUnavailableError",
    "array_namespace",
    "cuda_available",
    "default_device",
    "device_of",
    "device_scope",
    "gpu_report",
    "is_array",
    "namespace_for",
    "parse_device",
    "quiet_floats",
    "resolve_device",
    "to_device",
    "to_numpy",
]

_DEVICE_RE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")
_INSTALL_HINT = 'install CuPy for your CUDA version: pip install "xpconv[cuda12]" (CUDA 12) or pip install "xpconv[cuda13]" (CUDA 13)'


class DeviceUnavailableError(RuntimeError):
    """A CUDA device was asked for but CuPy, an NVIDIA driver or a visible GPU is missing."""


def parse_device(device: Device) -> tuple[str, int]:
    """Split ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into ``(kind, index)``."""
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda:0', got {device!r}")
    match = _DEVICE_RE.match(device)
    if match is None or (match.group(1) == "cpu" and match.group(2) not in (None, "0")):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return match.group(1), int(match.group(2) or 0)


def default_device() -> Device:
    """``$XPCONV_DEVICE`` if set, else ``"cpu"``."""
    return os.environ.get("XPCONV_DEVICE") or "cpu"


def resolve_device(device: Device | None) -> Device:
    """``device`` (or the default when ``None``) in canonical form: ``"cpu"`` or ``"cuda:N"``."""
    if device is None:
        try:
            kind, index = parse_device(default_device())
        except ValueError:
            raise ValueError(f"XPCONV_DEVICE must be 'cpu', 'cuda' or 'cuda:N', got {default_device()!r}") from None
        return "cpu" if kind == "cpu" else f"cuda:{index}"
    kind, index = parse_device(device)
    return "cpu" if kind == "cpu" else f"cuda:{index}"


def _import_cupy() -> ModuleType:
    try:
        return importlib.import_module("cupy")
    except ImportError as exc:
        raise DeviceUnavailableError(f"device 'cuda' needs CuPy, which is not installed: {_INSTALL_HINT}") from exc


def _cuda_device_count(cupy: ModuleType) -> int:
    """Visible GPUs, or :class:`DeviceUnavailableError` saying why there are none."""
    runtime = cupy.cuda.runtime
    try:
        driver = runtime.driverGetVersion()
    except Exception:  # CuPy raises its own error types when the driver library is broken
        driver = 0
    if driver == 0:
        raise DeviceUnavailableError(
            f"no NVIDIA driver found (CuPy {cupy.__version__} is installed, but this machine has no NVIDIA "
            "driver or no NVIDIA GPU); use device='cpu', or install the NVIDIA driver on a machine with a GPU"
        )
    try:
        count = runtime.getDeviceCount()
    except Exception as exc:
        raise DeviceUnavailableError(f"no usable CUDA device ({exc}); use device='cpu'") from exc
    if count == 0:
        raise DeviceUnavailableError("no CUDA device found (the NVIDIA driver sees no GPU); use device='cpu'")
    return count


def namespace_for(device: Device = "cpu") -> ModuleType:
    """Return the array module for a device string: ``numpy`` for ``"cpu"``, ``cupy`` for CUDA.

    (It takes a device, not arrays: for the module of given arrays use :func:`array_namespace`.)

    Parameters
    ----------
    device : str
        ``"cpu"``, ``"cuda"`` (GPU 0) or ``"cuda:N"``.

    Raises
    ------
    ValueError
        ``device`` is not one of the forms above.
    DeviceUnavailableError
        CuPy is not installed, there is no NVIDIA driver or GPU, or GPU ``N`` does not exist.
    """
    kind, index = parse_device(device)
    if kind == "cpu":
        return np
    cupy = _import_cupy()
    count = _cuda_device_count(cupy)
    if index >= count:
        raise DeviceUnavailableError(f"device {device!r} does not exist: {count} CUDA device(s) visible")
    return cupy


def cuda_available() -> bool:
    """Whether ``device="cuda"`` would work here: CuPy installed, an NVIDIA driver and a GPU."""
    try:
        namespace_for("cuda")
    except DeviceUnavailableError:
        return False
    return True


def gpu_report() -> tuple[str, list[str]]:
    """``(what CuPy says, [GPU names])`` for ``xpconv info``: the CuPy version, or why it is unusable."""
    try:
        cupy = importlib.import_module("cupy")
    except ImportError:
        return "not installed", []
    try:
        count = _cuda_device_count(cupy)
    except DeviceUnavailableError as exc:
        return f"{cupy.__version__} ({exc})", []
    names = [cupy.cuda.runtime.getDeviceProperties(i)["name"] for i in range(count)]
    return cupy.__version__, [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _cupy_if_array(array) -> ModuleType | None:
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(array, cupy.ndarray):
        return cupy
    return None


def is_array(array: object) -> bool:
    """Whether ``array`` is a NumPy or a CuPy array (never imports CuPy)."""
    return isinstance(array, np.ndarray) or _cupy_if_array(array) is not None


def _module_of(array) -> ModuleType:
    cupy = _cupy_if_array(array)
    if cupy is not None:
        return cupy
    if isinstance(array, np.ndarray):
        return np
    raise TypeError(f"expected a NumPy or CuPy array, got {type(array).__name__}")


def device_of(array: Array) -> Device:
    """``"cpu"`` for a NumPy array, ``"cuda:N"`` for a CuPy array on GPU ``N``."""
    if _module_of(array) is np:
        return "cpu"
    return f"cuda:{array.device.id}"


def array_namespace(*arrays: Array | None) -> ModuleType:
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
            f"arrays live on different devices {sorted(devices)}; move them to one device with xpconv.to_device first"
        )
    return _module_of(present[0])


def device_scope(array: Array) -> contextlib.AbstractContextManager[Any]:
    """A context in which ``array``'s device is current: ``with cupy.cuda.Device(N)`` for a CuPy
    array on GPU ``N`` (results and kernel launches land there); for NumPy, floating-point errors
    are not reported (:func:`quiet_floats`)."""
    if _cupy_if_array(array) is None:
        return quiet_floats()
    return array.device


def quiet_floats() -> contextlib.AbstractContextManager[Any]:
    """NumPy's floating-point warnings off: a kernel computes as IEEE arithmetic says (an ∞ or a
    NaN in, ∞ or NaN out, as PyTorch does, silently), and no ``RuntimeWarning`` from deep inside
    it reaches the caller.  Worker threads enter it too (:func:`xpconv._parallel.map_chunks`)."""
    return np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore")


def to_device(x: ArrayLike, device: Device) -> Array:
    """Copy ``x`` (a NumPy or CuPy array, or anything ``numpy.asarray`` takes) to ``device``.

    An array already there is returned as it is, without a copy.
    """
    kind, index = parse_device(device)
    if kind == "cpu":
        return to_numpy(x)
    cupy = namespace_for(device)
    with cupy.cuda.Device(index):
        if isinstance(x, cupy.ndarray) and x.device.id == index:
            return x
        if isinstance(x, cupy.ndarray):  # another GPU: a device-to-device copy, made explicitly
            return x.copy()
        return cupy.asarray(np.asarray(x))


def to_numpy(x: ArrayLike) -> np.ndarray:
    """Return ``x`` as a NumPy array, copying it from the GPU if it is a CuPy array."""
    cupy = _cupy_if_array(x)
    if cupy is not None:
        return cupy.asnumpy(x)
    return np.asarray(x)
