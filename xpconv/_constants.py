"""Constants the kernels read on every call — Winograd's transform matrices, tile indices, pooling
divisors — built once on the host and, on CuPy, copied to each device once.

The one home of this mechanism: every module that needs a constant on a device asks here.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from ._types import Array

# Many geometries and batch sizes over a long run: start again past this many constants, or past
# this many bytes (Winograd's gather indices are as large as the tiles they gather: 58 MB for the
# resnet bench shape at batch 32), so that the cache never holds much of a GPU's memory.
MAX_DEVICE_CONSTANTS = 256
MAX_DEVICE_CONSTANT_BYTES = 2 * 2**30

_device_constants: dict[tuple[Any, ...], Array] = {}


def constant(xp: ModuleType, build: Callable[..., np.ndarray], *args: Any) -> Array:
    """The host array ``build(*args)`` as an ``xp`` array on the current device.

    On NumPy ``build`` runs on every call, so it must be a cached builder.  On CuPy each constant
    is built and copied to a device once and kept, rather than built or copied again for every
    call or chunk."""
    if xp is np:
        return build(*args)
    key = (build.__module__, build.__qualname__, args, xp.cuda.Device().id)
    array = _device_constants.get(key)
    if array is None:
        host = build(*args)
        held = sum(a.nbytes for a in _device_constants.values())
        if len(_device_constants) >= MAX_DEVICE_CONSTANTS or held + host.nbytes > MAX_DEVICE_CONSTANT_BYTES:
            _device_constants.clear()
        array = _device_constants[key] = xp.asarray(host)
    return array


def reset() -> None:
    """Forget every device constant (they are copied again on next use)."""
    _device_constants.clear()
