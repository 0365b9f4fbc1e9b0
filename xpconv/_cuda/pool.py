"""Launchers of ``pool.cu``: max and average pooling and their gradients on CUDA, one launch each.

No workspace: every kernel reads its input and writes its output whole.  Arrays are
C-contiguous, on the current device, of the input's dtype (sums in float32 for float16); the
indices of a max pooling are int64, each the flat index in its input plane of its window's pick.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from .._geometry import ConvGeometry
from .._types import Array
from . import geometry, launch


def max_pool(xp: ModuleType, x: Array, g: ConvGeometry, with_indices: bool) -> tuple[Array, Array | None]:
    """Each window's maximum (N, C, oh, ow), and with ``with_indices`` where it is (int64)."""
    y = xp.empty(g.output_shape, dtype=x.dtype)
    indices = xp.empty(g.output_shape, dtype=np.int64) if with_indices else None
    launch(xp, "pool", "max_pool", x.dtype, y.size, x, y, indices, geometry(g))
    return y, indices


def max_indices(xp: ModuleType, x: Array, g: ConvGeometry) -> Array:
    """Only the indices of :func:`max_pool`, for a gradient whose forward kept none."""
    indices = xp.empty(g.output_shape, dtype=np.int64)
    launch(xp, "pool", "max_pool", x.dtype, indices.size, x, None, indices, geometry(g))
    return indices


def max_pool_backward(xp: ModuleType, grad_y: Array, indices: Array, g: ConvGeometry) -> Array:
    """The gradient of :func:`max_pool` through its ``indices``: (N, C, oh, ow) -> (N, C, H, W)."""
    grad_x = xp.empty(g.input_shape, dtype=grad_y.dtype)
    launch(xp, "pool", "max_pool_backward", grad_y.dtype, grad_x.size, grad_y, indices, grad_x, geometry(g))
    return grad_x


def avg_pool(xp: ModuleType, x: Array, g: ConvGeometry, count_include_pad: bool, divisor: int | None) -> Array:
    """Each window's mean (N, C, oh, ow), by PyTorch's divisor rule (``divisor``: divisor_override)."""
    y = xp.empty(g.output_shape, dtype=x.dtype)
    args = (geometry(g), np.int32(count_include_pad), np.int32(divisor or 0))
    launch(xp, "pool", "avg_pool", x.dtype, y.size, x, y, *args)
    return y


def avg_pool_backward(
    xp: ModuleType, grad_y: Array, g: ConvGeometry, count_include_pad: bool, divisor: int | None
) -> Array:
    """The gradient of :func:`avg_pool`: (N, C, oh, ow) -> (N, C, H, W)."""
    grad_x = xp.empty(g.input_shape, dtype=grad_y.dtype)
    args = (geometry(g), np.int32(count_include_pad), np.int32(divisor or 0))
    launch(xp, "pool", "avg_pool_backward", grad_y.dtype, grad_x.size, grad_y, grad_x, *args)
    return grad_x


def max_unpool(xp: ModuleType, x: Array, indices: Array, g: ConvGeometry) -> Array:
    """The partial inverse of :func:`max_pool` (``g`` the pooling's geometry): (N, C, oh, ow) ->
    (N, C, H, W), zeros but at the places ``indices`` name."""
    y = xp.empty(g.input_shape, dtype=x.dtype)
    launch(xp, "pool", "max_unpool", x.dtype, y.size, x, indices, y, geometry(g))
    return y
