"""What the kernels keep on each device between calls — Winograd's transform matrices, pooling
divisors, the compiled CUDA kernel modules — made once per device and kept.

The one home of this mechanism (CuPy's ``memoize(for_each_device=True)`` is its model): every
module that needs something on a device asks :func:`on_device`, or :func:`constant` for an array
built on the host.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from ._types import Array

# Many geometries and dtypes over a long run: start again past this many entries, or past this
# many bytes of arrays, so that the cache never holds much of a GPU's memory.
MAX_DEVICE_CONSTANTS = 256
MAX_DEVICE_CONSTANT_BYTES = 2 * 2**30

_on_device: dict[tuple[Any, ...], Any] = {}


def on_device(xp: ModuleType, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
    """``make()`` for the current CUDA device, made on its first request for ``key`` and kept."""
    full = (*key, xp.cuda.Device().id)
    value = _on_device.get(full)
    if value is None:
        value = make()
        held = sum(getattr(v, "nbytes", 0) for v in _on_device.values())
        if len(_on_device) >= MAX_DEVICE_CONSTANTS or held + getattr(value, "nbytes", 0) > MAX_DEVICE_CONSTANT_BYTES:
            _on_device.clear()
        _on_device[full] = value
    return value


def constant(xp: ModuleType, build: Callable[..., np.ndarray], *args: Any) -> Array:
    """The host array ``build(*args)`` as an ``xp`` array on the current device.

    On NumPy ``build`` runs on every call, so it must be a cached builder (its arrays are
    read-only: worker threads share them).  On CuPy each constant is built and copied to a device
    once and kept, rather than built or copied again for every call or chunk."""
    if xp is np:
        return build(*args)
    return on_device(xp, ("constant", build.__module__, build.__qualname__, args), lambda: xp.asarray(build(*args)))


def reset() -> None:
    """Forget everything kept on the devices (it is made again on next use)."""
    _on_device.clear()
