"""Argument checking for the public kernels: done once, at the public entry, turning bad input
into a ``TypeError`` or ``ValueError`` that names the argument and the values involved.

The chunk loops behind the public functions trust what was checked here and check nothing.
"""

from __future__ import annotations

import numbers
from types import ModuleType
from typing import Any

import numpy as np

from ._backend import array_namespace, is_array
from ._types import Array

_FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


_OPTIONAL = frozenset({"bias", "out"})  # the array arguments that may be None


def check_arrays(*specs: tuple[str, Array | None, int | None]) -> tuple[ModuleType, np.dtype]:
    """Check ``(name, array, ndim)`` triples (``ndim`` may be ``None``: any rank): floating
    NumPy/CuPy arrays of the given ranks, on one device, of one dtype; only ``bias`` and ``out``
    may be ``None`` (absent).  Returns ``(xp, dtype)``."""
    present: list[tuple[str, Array]] = []
    for name, given, ndim in specs:
        if given is None and name in _OPTIONAL:
            continue
        if given is None or not is_array(given):
            raise TypeError(f"{name} must be a NumPy or CuPy array, got {type(given).__name__}")
        a: Array = given
        if a.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"{name} must be float16, float32 or float64, got dtype {a.dtype}")
        if ndim is not None and a.ndim != ndim:
            raise ValueError(f"{name} must have {ndim} dimension{'s' * (ndim != 1)}, got shape {tuple(a.shape)}")
        present.append((name, a))
    xp = array_namespace(*(a for _, a in present))
    dtypes = {a.dtype for _, a in present}
    if len(dtypes) > 1:
        listed = ", ".join(f"{name} is {a.dtype}" for name, a in present)
        raise TypeError(f"arrays must share one dtype: {listed}")
    return xp, present[0][1].dtype


# The names of the spatial axes of an input and of a kernel, by their number.
SPATIAL_AXES = {1: "L", 2: "H, W", 3: "D, H, W"}
KERNEL_AXES = {1: "k", 2: "kh, kw", 3: "kd, kh, kw"}


def check_rank(function: str, x: Array, weight: Array | None = None, transposed: bool = False) -> int:
    """``x`` (and ``weight``) of the rank ``function`` (``conv1d``, ``max_pool3d``, ...) takes, or a
    ``ValueError`` naming the function and the expected layout; returns the spatial axes."""
    dims = int(function[-2])  # "conv2d" -> 2
    if x.ndim != dims + 2:
        raise ValueError(f"{function}: x must be (N, C, {SPATIAL_AXES[dims]}), got shape {tuple(x.shape)}")
    if weight is not None and weight.ndim != dims + 2:
        layout = "C_in, C_out/groups" if transposed else "O, C/groups"
        raise ValueError(f"{function}: weight must be ({layout}, {KERNEL_AXES[dims]}), got shape {tuple(weight.shape)}")
    return dims


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """float16 is stored as given but accumulated in float32."""
    return np.dtype(np.float32) if dtype == np.float16 else np.dtype(dtype)


def as_tuple(value: Any, name: str, dims: int, minimum: int) -> tuple[int, ...]:
    """An ``int`` (for every axis) or a sequence of ``dims`` ints, each at least ``minimum``, as a tuple."""
    values = (value,) * dims if _is_int(value) else value
    if not (isinstance(values, (tuple, list)) and len(values) == dims and all(_is_int(v) for v in values)):
        what = "an int" if dims == 1 else f"an int or {'a pair of' if dims == 2 else f'a tuple of {dims}'} ints"
        raise TypeError(f"{name} must be {what}, got {value!r}")
    values = tuple(int(v) for v in values)
    if min(values) < minimum:
        kind = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return values


def as_pair(value: Any, name: str, minimum: int) -> tuple[int, int]:
    """An ``int`` or a pair of ints, each at least ``minimum``, as a 2-tuple."""
    first, second = as_tuple(value, name, 2, minimum)
    return first, second


def as_bool(value: Any, name: str) -> bool:
    """``value`` if it is a ``bool`` (NumPy's included); any other object is a ``TypeError``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def as_positive_int(value: Any, name: str) -> int:
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return int(value)


def normalize_axis(axis: Any, ndim: int, name: str) -> int:
    """``axis`` in ``[-ndim, ndim)`` as a non-negative index into ``name``'s dimensions."""
    if not _is_int(axis):
        raise TypeError(f"axis must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for {name} with {ndim} dimension{'s' * (ndim != 1)}")
    return int(axis) % ndim


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
