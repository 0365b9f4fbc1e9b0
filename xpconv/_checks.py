"""Argument checking shared by the public kernels: one place that turns bad input into
a ``TypeError`` or ``ValueError`` naming the argument and the values involved."""

from __future__ import annotations

import numbers

import numpy as np

from ._backend import array_namespace

_FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def check_array(a, name: str, ndim: int | None = None):
    """Require a floating NumPy/CuPy array (optionally of rank ``ndim``); return it."""
    try:
        array_namespace(a)
    except TypeError:
        raise TypeError(f"{name} must be a NumPy or CuPy array, got {type(a).__name__}") from None
    if a.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must be float16, float32 or float64, got dtype {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(a.shape)}")
    return a


def common_dtype(**arrays) -> np.dtype:
    """The one floating dtype shared by the given (non-``None``) arrays."""
    dtypes = {name: a.dtype for name, a in arrays.items() if a is not None}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{name} is {dt}" for name, dt in dtypes.items())
        raise TypeError(f"arrays must share one dtype: {listed}")
    return next(iter(dtypes.values()))


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """float16 is stored as given but accumulated in float32."""
    return np.dtype(np.float32) if dtype == np.float16 else np.dtype(dtype)


def as_pair(value, name: str, minimum: int) -> tuple[int, int]:
    """An ``int`` or a pair of ints, each at least ``minimum``, as a 2-tuple."""
    pair = (value, value) if _is_int(value) else value
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(_is_int(v) for v in pair)):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    pair = (int(pair[0]), int(pair[1]))
    if min(pair) < minimum:
        kind = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return pair


def as_positive_int(value, name: str) -> int:
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return int(value)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
