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

MAX_DEVICE_CONSTANTS = 256  # many geometries over a long run: start again past this many

_device_constants: dict[tuple[Any, ...], Array] = {}


def constant(xp: ModuleType, build: Callable[..., np.ndarray], *args: Any) -> Array:
    """The host array ``build(*args)`` (a cached builder) as an ``xp`` array on the current device.

    On CuPy each constant is copied to a device once and kept, rather than copied again for
    every call or chunk."""
    host = build(*args)
    if xp is np:
        return host
    key = (build.__name__, args, xp.cuda.Device().id)
    array = _device_constants.get(key)
    if array is None:
        if len(_device_constants) >= MAX_DEVICE_CONSTANTS:
            _device_constants.clear()
        array = _device_constants[key] = xp.asarray(host)
    return array
