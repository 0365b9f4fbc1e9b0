"""Max and average pooling of batches with 1 to 3 spatial axes, forward and backward, as
``torch.nn.functional``'s ``max_pool1d/2d/3d``, ``avg_pool1d/2d/3d`` and ``max_unpool1d/2d/3d``.

A pooling is a reduction over each window of the padded input.  Its windows are a convolution's
patches with one channel per group (:func:`xpconv._geometry.pool_geometry`), so it runs on the
same machinery.  Notation: input ``(N, C, *size)``, output ``(N, C, *out)`` with, per axis,

    out = (size + 2·padding - dilation·(kernel - 1) - 1) / stride + 1

rounded down, or up with ``ceil_mode``, where the last window must start inside the input or its
left padding.  Each public function (``max_pool2d``, ...) checks its input's rank and calls the
one implementation here, written once for every number of axes.

One way per device, both checked against the oracle in the tests:

* **NumPy, by offset**: the padded chunk (−∞ padding for max, zeros for average) as a
  ``(B, C, *kernel, *out)`` :func:`windows` view, reduced by one elementwise update of an
  output-sized accumulator per kernel offset, each reading one offset's strided window; no patch
  matrix is copied.  Measured on 32×64×56×56, one thread: max 2×2 stride 2 in 8 ms, 3×3 stride 1
  in 36–43 ms, against 136–143 ms and 57–71 ms for NumPy's one reduction over the view (its inner
  loop runs over the tiny window axes).  The average's gradient goes through col2im, the max's
  through one scatter of each window's gradient to its pick.
* **CUDA, one kernel each way** (:mod:`xpconv._cuda.pool`): each output scans its window, each
  input pixel gathers the gradients of the windows that read it; the max pooling's forward can
  write where each maximum is, and its gradient then reads those indices rather than search again.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, Literal, overload

import numpy as np

from ._backend import array_namespace, device_scope, is_array
from ._checks import as_bool, as_tuple, check_arrays, check_rank, compute_dtype
from ._chunking import batch_chunks, workspace_limit
from ._cuda import pool as kernels
from ._geometry import ConvGeometry, pool_geometry
from ._parallel import map_chunks
from ._patches import col2im, pad_input, windows
from ._types import Array, IntPair, IntTuple
from ._workspace import scratch

__all__ = [
    "POOLINGS",
    "avg_pool1d",
    "avg_pool1d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "avg_pool3d",
    "avg_pool3d_backward",
    "max_pool1d",
    "max_pool1d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "max_pool3d",
    "max_pool3d_backward",
    "max_unpool1d",
    "max_unpool1d_backward",
    "max_unpool2d",
    "max_unpool2d_backward",
    "max_unpool3d",
    "max_unpool3d_backward",
]


# --- max pooling --------------------------------------------------------------------------------


@overload
def max_pool2d(
    x: Array,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    return_indices: Literal[False] = False,
    *,
    workspace_bytes: int | None = None,
) -> Array: ...
@overload
def max_pool2d(
    x: Array,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    *,
    return_indices: Literal[True],
    workspace_bytes: int | None = None,
) -> tuple[Array, Array]: ...
@overload
def max_pool2d(
    x: Array,
    kernel_size: IntPair,
    stride: IntPair | None,
    padding: IntPair,
    dilation: IntPair,
    ceil_mode: bool,
    return_indices: Literal[True],
    *,
    workspace_bytes: int | None = None,
) -> tuple[Array, Array]: ...
def max_pool2d(
    x: Array,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    *,
    workspace_bytes: int | None = None,
) -> Array | tuple[Array, Array]:
    """The maximum of each window, as ``torch.nn.functional.max_pool2d``.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Default: ``kernel_size``.
    padding : int or (int, int)
        Implicit −∞ on both sides, at most half of ``kernel_size`` (PyTorch's rule).
    dilation : int or (int, int)
    ceil_mode : bool
        Round the output size up: one more window where the last would only partly fit, as
        long as it starts inside the input or its left padding.
    return_indices : bool
        Also return where each maximum is, as PyTorch does: an int64 array of the output's
        shape, each the flat index ``row·W + column`` in its input plane of the window's pick
        (the rule of :func:`max_pool2d_backward`); give it to :func:`max_pool2d_backward` as
        ``indices`` to skip the search there.
    workspace_bytes : int, optional
        Upper bound on the scratch memory held at once (padded copies), default as for
        :func:`xpconv.conv2d`.

    Returns
    -------
    y : array, shape (N, C, oh, ow), x's dtype and device (the formula is in the module's
        docstring).  A NaN in a window makes that window's maximum NaN.  With
        ``return_indices``, ``(y, indices)``.

    Raises
    ------
    TypeError, ValueError
        Arguments of the wrong type, shape or value, naming the argument.

    Examples
    --------
    >>> import numpy as np, xpconv
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> xpconv.max_pool2d(x, 2)[0, 0]
    array([[ 5.,  7.],
           [13., 15.]], dtype=float32)
    """
    return _max_pool(
        "max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, workspace_bytes
    )


@overload
def max_pool1d(
    x: Array,
    kernel_size: IntTuple,
    stride: IntTuple | None = None,
    padding: IntTuple = 0,
    dilation: IntTuple = 1,
    ceil_mode: bool = False,
    return_indices: Literal[False] = False,
    *,
    workspace_bytes: int | None = None,
) -> Array: ...
@overload
def max_pool1d(
    x: Array,
    kernel_size: IntTuple,
    stride: IntTuple | None = None,
    padding: IntTuple = 0,
    dilation: IntTuple = 1,
    ceil_mode: bool = False,
    *,
    return_indices: Literal[True],
    workspace_bytes: int | None = None,
) -> tuple[Array, Array]: ...
@overload
def max_pool1d(
    x: Array,
    kernel_size: IntTuple,
    stride: IntTuple | None,
    padding: IntTuple,
    dilation: IntTuple,
    ceil_mode: bool,
    return_indices: Literal[True],
    *,
    workspace_bytes: int | None = None,
) -> tuple[Array, Array]: ...
def max_pool1d(
    x: Array,
    kernel_size: IntTuple,
    stride: IntTuple | None = None,
    padding: IntTuple = 0,
    dilation: IntTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    *,
    workspace_bytes: int | None = None,
) -> Array | tuple[Array, Array]:
    """The maximum of each window of an (N, C, L) batch, as ``torch.nn.functional.max_pool1d``:
    :func:`max_pool2d` with one spatial axis (each hyperparameter an int or a 1-tuple; the
    indices are places in the length-``L`` rows).  Returns (N, C, L_out)."""
    return _max_pool(
        "max_pool1d", x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, workspace_bytes
    )


@overload
def max_pool3d(
    x: Array,
    kernel_size: IntTuple,
    stride: IntTuple | None = None,
    padding: IntTuple = 0,
    dilation: IntTuple = 1,
    ceil_mode: bool = False,
    return_indices: Literal[False] = False,
    *,
    workspace_bytes: int | None = None,
) -> Array: ...
@overload
def max_pool3d(
    x: Array,
    kernel_size: IntTuple,
    stride: IntTuple | None = None,
    padding: IntTuple = 0,
    dilation: IntTuple = 1,
    ceil_mode: bool = False,
    *,
    return_indices: Literal[True],
    workspace_bytes: int | None = None,
) -> tuple[Array, Array]: ...
@overload
def max_pool3d(
    x: Array,
    kernel_size: IntTuple,
    stride: IntTuple | None,
    padding: IntTuple,
    dilation: IntTuple,
    ceil_mode: bool,
    return_indices: Literal[True],
    *,
    workspace_bytes: int | None = None,
) -> tuple[Array, Array]: ...
def max_pool3d(
    x: Array,
    kernel_size: IntTuple,
    stride: IntTuple | None = None,
    padding: IntTuple = 0,
    dilation: IntTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    *,
    workspace_bytes: int | None = None,
) -> Array | tuple[Array, Array]:
    """The maximum of each window of an (N, C, D, H, W) batch, as ``torch.nn.functional.max_pool3d``:
    :func:`max_pool2d` with three spatial axes (each hyperparameter an int or a 3-tuple; the
    indices are flat places ``(depth·H + row)·W + column`` in the input volumes).  Returns
    (N, C, D_out, H_out, W_out)."""
    return _max_pool(
        "max_pool3d", x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, workspace_bytes
    )


def _max_pool(name, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, workspace_bytes):
    """The max pooling of the public function ``name``."""
    xp, dtype = check_arrays(("x", x, None))
    check_rank(name, x)
    g = pool_geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    return_indices = as_bool(return_indices, "return_indices")
    limit = workspace_limit(workspace_bytes, x)
    with device_scope(x):
        if xp is not np:
            y, indices = kernels.max_pool(xp, xp.ascontiguousarray(x), g, return_indices)
            return (y, indices) if return_indices else y
        y = xp.empty(g.output_shape, dtype=dtype)  # a maximum is exact in any dtype
        indices = xp.empty(g.output_shape, dtype=np.int64) if return_indices else None

        def run(batch):
            if indices is None:
                _reduce(_padded_windows(xp, x, batch, g, -np.inf, dtype), "max", y[batch])
                return
            win = _searched_windows(xp, x, batch, g, dtype)
            _reduce(win, "max", y[batch])
            _picks(win, y[batch], g, out=indices[batch])

        map_chunks(xp, run, batch_chunks(g.n, _scratch_per_sample(g, dtype, backward=False), limit, xp))
        return (y, indices) if return_indices else y


def max_pool2d_backward(
    grad_output: Array,
    x: Array,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    *,
    indices: Array | None = None,
    workspace_bytes: int | None = None,
) -> Array:
    """The gradient of :func:`max_pool2d` with respect to ``x``, for ``grad_output`` ``(N, C, oh, ow)``.

    Each output's gradient goes to the place of its window's maximum, chosen as PyTorch does:
    the first maximum in row-major window order on ties; in a window holding NaNs, the last NaN;
    in a window whose input values are all −∞, the first input value (never the padding).
    Overlapping windows add up.  ``indices``, when given, are those :func:`max_pool2d` returned
    with ``return_indices=True`` for this ``x`` and these arguments (int64, the output's shape):
    each window's gradient then goes to the place its index names, not searched for again.  Other
    indices are not checked against their windows (a host check would stop a GPU's queue): on the
    CPU the gradient goes where they point, as in PyTorch, and an index outside the plane is a
    ``ValueError``; on CUDA an index that is no pixel of its window routes nothing.  Arguments as
    for :func:`max_pool2d`; returns x's shape, dtype and device.
    """
    return _max_pool_backward(
        "max_pool2d", grad_output, x, kernel_size, stride, padding, dilation, ceil_mode, indices, workspace_bytes
    )


def max_pool1d_backward(
    grad_output: Array,
    x: Array,
    kernel_size: IntTuple,
    stride: IntTuple | None = None,
    padding: IntTuple = 0,
    dilation: IntTuple = 1,
    ceil_mode: bool = False,
    *,
    indices: Array | None = None,
    workspace_bytes: int | None = None,
) -> Array:
    """The gradient of :func:`max_pool1d` with respect to ``x``, for ``grad_output`` (N, C, L_out):
    as :func:`max_pool2d_backward`."""
    return _max_pool_backward(
        "max_pool1d", grad_output, x, kernel_size, stride, padding, dilation, ceil_mode, indices, workspace_bytes
    )


def max_pool3d_backward(
    grad_output: Array,
    x: Array,
    kernel_size: IntTuple,
    stride: IntTuple | None = None,
    padding: IntTuple = 0,
    dilation: IntTuple = 1,
    ceil_mode: bool = False,
    *,
    indices: Array | None = None,
    workspace_bytes: int | None = None,
) -> Array:
    """The gradient of :func:`max_pool3d` with respect to ``x``, for ``grad_output``
    (N, C, D_out, H_out, W_out): as :func:`max_pool2d_backward`."""
    return _max_pool_backward(
        "max_pool3d", grad_output, x, kernel_size, stride, padding, dilation, ceil_mode, indices, workspace_bytes
    )


def _max_pool_backward(
    name, grad_output, x, kernel_size, stride, padding, dilation, ceil_mode, indices, workspace_bytes
):
    """The gradient of the public function ``name``'s max pooling."""
    xp, dtype = check_arrays(("grad_output", grad_output, None), ("x", x, None))
    check_rank(name, x)
    g = pool_geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    _check_grad_output(grad_output, g)
    if indices is not None:
        _check_indices(indices, x, g.output_shape)
    limit = workspace_limit(workspace_bytes, x)
    acc = compute_dtype(dtype)
    with device_scope(x):
        if xp is not np:
            x, grad_output = xp.ascontiguousarray(x), xp.ascontiguousarray(grad_output)
            indices = kernels.max_indices(xp, x, g) if indices is None else xp.ascontiguousarray(indices)
            return kernels.max_pool_backward(xp, grad_output, indices, g)
        if indices is not None:
            _check_places(indices, g.size, "input", -1)
        grad_x = xp.empty(x.shape, dtype=acc)

        def run(batch):
            if indices is None:
                win = _searched_windows(xp, x, batch, g, dtype)
                best = scratch(np, "best", (batch.stop - batch.start, g.c, *g.out), dtype)
                _reduce(win, "max", best)
                places = _picks(win, best, g, out=scratch(np, "places", best.shape, np.int64))
            else:
                places = indices[batch]
            _route(grad_output[batch], places, g, out=grad_x[batch])

        map_chunks(xp, run, batch_chunks(g.n, _scratch_per_sample(g, acc, backward=False), limit, xp))
        return grad_x.astype(dtype, copy=False)


# --- max unpooling ------------------------------------------------------------------------------


def max_unpool2d(
    x: Array,
    indices: Array,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    output_size: Sequence[int] | None = None,
) -> Array:
    """The partial inverse of :func:`max_pool2d`, as ``torch.nn.functional.max_unpool2d``: zeros,
    but each value of ``x`` at the place its index names in its output plane.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
        A max pooling's output (or any values for those places).
    indices : int64 array, x's shape
        As ``max_pool2d(..., return_indices=True)`` returned them: flat places ``row·W_out +
        column`` in the output planes.
    kernel_size, stride, padding :
        The max pooling's (``stride`` defaults to ``kernel_size``).
    output_size : (H_out, W_out) or (N, C, H_out, W_out), optional
        Default per axis ``(H - 1)·stride - 2·padding + kernel_size``; another size must lie within a
        stride of it, as in PyTorch (a pooling with ``ceil_mode`` or an odd input needs it).

    Returns
    -------
    y : array, shape (N, C, H_out, W_out), x's dtype and device.  Where two windows name one place
        (overlapping windows) it holds the value of the last in raster order, as PyTorch's CPU
        gives.  On the CPU an index outside the plane is a ``ValueError``; on CUDA, indices that
        are not places their windows read are not checked (a host check would stop the GPU's
        queue) and write nothing.
    """
    return _max_unpool("max_unpool2d", x, indices, kernel_size, stride, padding, output_size)


def max_unpool1d(
    x: Array,
    indices: Array,
    kernel_size: IntTuple,
    stride: IntTuple | None = None,
    padding: IntTuple = 0,
    output_size: Sequence[int] | None = None,
) -> Array:
    """The partial inverse of :func:`max_pool1d`, as ``torch.nn.functional.max_unpool1d``: as
    :func:`max_unpool2d` for (N, C, L) (``output_size``: ``(L_out,)`` or ``(N, C, L_out)``)."""
    return _max_unpool("max_unpool1d", x, indices, kernel_size, stride, padding, output_size)


def max_unpool3d(
    x: Array,
    indices: Array,
    kernel_size: IntTuple,
    stride: IntTuple | None = None,
    padding: IntTuple = 0,
    output_size: Sequence[int] | None = None,
) -> Array:
    """The partial inverse of :func:`max_pool3d`, as ``torch.nn.functional.max_unpool3d``: as
    :func:`max_unpool2d` for (N, C, D, H, W) (``output_size``: ``(D_out, H_out, W_out)`` or the
    whole shape)."""
    return _max_unpool("max_unpool3d", x, indices, kernel_size, stride, padding, output_size)


def _max_unpool(name, x, indices, kernel_size, stride, padding, output_size) -> Array:
    """The max unpooling of the public function ``name``."""
    xp, dtype = check_arrays(("x", x, None))
    check_rank(name, x)
    g = _unpool_geometry(x.shape, kernel_size, stride, padding, output_size)
    _check_indices(indices, x, tuple(x.shape), "x's shape")
    with device_scope(x):
        if xp is not np:
            return kernels.max_unpool(xp, xp.ascontiguousarray(x), xp.ascontiguousarray(indices), g)
        _check_places(indices, g.size, "output", 0)
        rows = g.n * g.c
        y = np.zeros((rows, math.prod(g.size)), dtype=dtype)
        np.put_along_axis(y, indices.reshape(rows, -1), x.reshape(rows, -1), axis=1)  # (N, C, *out) -> (N·C, P)
        return y.reshape(g.input_shape)  # (N·C, prod(size)) -> (N, C, *size)


def max_unpool2d_backward(
    grad_output: Array,
    indices: Array,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
) -> Array:
    """The gradient of :func:`max_unpool2d` with respect to ``x``: each window's place of
    ``grad_output`` (N, C, H_out, W_out), read through ``indices``: -> indices' shape."""
    return _max_unpool_backward("max_unpool2d", grad_output, indices, kernel_size, stride, padding)


def max_unpool1d_backward(
    grad_output: Array,
    indices: Array,
    kernel_size: IntTuple,
    stride: IntTuple | None = None,
    padding: IntTuple = 0,
) -> Array:
    """The gradient of :func:`max_unpool1d` with respect to ``x``: as :func:`max_unpool2d_backward`."""
    return _max_unpool_backward("max_unpool1d", grad_output, indices, kernel_size, stride, padding)


def max_unpool3d_backward(
    grad_output: Array,
    indices: Array,
    kernel_size: IntTuple,
    stride: IntTuple | None = None,
    padding: IntTuple = 0,
) -> Array:
    """The gradient of :func:`max_unpool3d` with respect to ``x``: as :func:`max_unpool2d_backward`."""
    return _max_unpool_backward("max_unpool3d", grad_output, indices, kernel_size, stride, padding)


def _max_unpool_backward(name, grad_output, indices, kernel_size, stride, padding) -> Array:
    """The gradient of the public function ``name``'s max unpooling."""
    xp, dtype = check_arrays(("grad_output", grad_output, None))
    check_rank(name, grad_output)
    if not is_array(indices) or indices.ndim != grad_output.ndim:
        raise TypeError(
            f"indices must be a {grad_output.ndim}-D array as {name.replace('unpool', 'pool')} returns them, "
            f"got {indices!r:.80}"
        )
    g = _unpool_geometry(indices.shape, kernel_size, stride, padding, tuple(grad_output.shape))
    _check_indices(indices, grad_output, tuple(indices.shape), "the pooled shape")
    with device_scope(grad_output):
        if xp is np:
            _check_places(indices, g.size, "output", 0)
        rows = g.n * g.c
        planes = grad_output.reshape(rows, math.prod(g.size))  # (N, C, *size) -> (N·C, prod(size))
        picks = indices.reshape(rows, g.pixels)  # (N, C, *out) -> (N·C, P)
        return xp.take_along_axis(planes, picks, axis=1).reshape(indices.shape).astype(dtype, copy=False)


def _unpool_geometry(x_shape, kernel_size, stride, padding, output_size) -> ConvGeometry:
    """The geometry of the max pooling that a max unpooling inverts: over the output planes,
    one window for each pixel of ``x``."""
    n, c, *pooled = x_shape
    dims = len(pooled)
    kernel = as_tuple(kernel_size, "kernel_size", dims, minimum=1)
    stride = kernel if stride is None else as_tuple(stride, "stride", dims, minimum=1)
    pads = as_tuple(padding, "padding", dims, minimum=0)
    default = tuple((p - 1) * s - 2 * q + k for p, s, q, k in zip(pooled, stride, pads, kernel, strict=True))
    if output_size is None:
        size = default
    else:
        given = tuple(output_size)
        if len(given) not in (dims, dims + 2) or not all(isinstance(v, int | np.integer) for v in given):
            raise TypeError(
                f"output_size must be the output's {dims} spatial sizes or its whole shape ({dims + 2} ints), "
                f"got {output_size!r}"
            )
        size = tuple(int(v) for v in given[-dims:])
        if not all(d - s < v < d + s for v, d, s in zip(size, default, stride, strict=True)):
            raise ValueError(
                f"output_size {size} must lie within a stride of the default {default} (stride {stride}), as in PyTorch"
            )
    if min(size) < 1:
        raise ValueError(f"the output would be {'x'.join(map(str, size))} for x of shape {tuple(x_shape)}")
    # the far padding that gives exactly one window per pixel of x (negative: pixels no window reads)
    pad = tuple((q, (p - 1) * s + k - v - q) for p, s, k, v, q in zip(pooled, stride, kernel, size, pads, strict=True))
    return ConvGeometry(n, c, size, c, kernel, c, stride, (1,) * dims, pad)


def _check_places(indices: Array, size: tuple[int, ...], which: str, lowest: int) -> None:
    """On the CPU (free there): every index a place of the ``size`` planes (or ``lowest``, -1
    for a window wholly in the padding)."""
    plane = math.prod(size)
    if indices.size and not lowest <= int(indices.min()) <= int(indices.max()) < plane:
        nowhere = ", or -1 for a window in the padding" if lowest < 0 else ""
        raise ValueError(
            f"indices must be places in the {'x'.join(map(str, size))} {which} planes (0 to {plane - 1}{nowhere}), "
            f"got values from {int(indices.min())} to {int(indices.max())}"
        )


# --- average pooling ----------------------------------------------------------------------------


def avg_pool2d(
    x: Array,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    *,
    workspace_bytes: int | None = None,
) -> Array:
    """The mean of each window, as ``torch.nn.functional.avg_pool2d``.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    kernel_size, stride, padding, ceil_mode :
        As for :func:`max_pool2d` (zero padding here).
    count_include_pad : bool
        Divide by the window's size including the zero padding (default), or by the number of
        input pixels it covers.  The part of a ``ceil_mode`` window beyond the padding never counts.
    divisor_override : int, optional
        Divide every window's sum by this instead (non-zero).
    workspace_bytes : int, optional
        Upper bound on the scratch memory held at once, default as for :func:`xpconv.conv2d`.

    Returns
    -------
    y : array, shape (N, C, oh, ow), x's dtype and device; float16 is summed in float32.

    A global average pool is this call with the whole image as the window:
    ``avg_pool2d(x, x.shape[2:])`` gives ``(N, C, 1, 1)``.

    Examples
    --------
    >>> import numpy as np, xpconv
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> xpconv.avg_pool2d(x, 2)[0, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
    """
    return _avg_pool(
        "avg_pool2d", x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, workspace_bytes
    )


def avg_pool1d(
    x: Array,
    kernel_size: IntTuple,
    stride: IntTuple | None = None,
    padding: IntTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    *,
    workspace_bytes: int | None = None,
) -> Array:
    """The mean of each window of an (N, C, L) batch, as ``torch.nn.functional.avg_pool1d``:
    :func:`avg_pool2d` with one spatial axis (and, as in PyTorch, no ``divisor_override``).
    Returns (N, C, L_out)."""
    return _avg_pool("avg_pool1d", x, kernel_size, stride, padding, ceil_mode, count_include_pad, None, workspace_bytes)


def avg_pool3d(
    x: Array,
    kernel_size: IntTuple,
    stride: IntTuple | None = None,
    padding: IntTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    *,
    workspace_bytes: int | None = None,
) -> Array:
    """The mean of each window of an (N, C, D, H, W) batch, as ``torch.nn.functional.avg_pool3d``:
    :func:`avg_pool2d` with three spatial axes.  Returns (N, C, D_out, H_out, W_out)."""
    return _avg_pool(
        "avg_pool3d", x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, workspace_bytes
    )


def _avg_pool(name, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, workspace_bytes):
    """The average pooling of the public function ``name``."""
    xp, dtype = check_arrays(("x", x, None))
    check_rank(name, x)
    g, divisor_args = _avg_geometry(
        x.shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )
    limit = workspace_limit(workspace_bytes, x)
    acc = compute_dtype(dtype)
    with device_scope(x):
        if xp is not np:
            return kernels.avg_pool(xp, xp.ascontiguousarray(x), g, *divisor_args[-2:])
        y = xp.empty(g.output_shape, dtype=acc)
        divisor = _divisors(*divisor_args, acc.name)  # (*out)

        def run(batch):
            win = _padded_windows(xp, x, batch, g, 0.0, acc)
            _reduce(win, "sum", y[batch])
            xp.divide(y[batch], divisor, out=y[batch])

        map_chunks(xp, run, batch_chunks(g.n, _scratch_per_sample(g, acc, backward=False), limit, xp))
        return y.astype(dtype, copy=False)


def avg_pool2d_backward(
    grad_output: Array,
    x: Array,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    *,
    workspace_bytes: int | None = None,
) -> Array:
    """The gradient of :func:`avg_pool2d` with respect to ``x`` (whose values are not read, only its
    shape, dtype and device): each output's gradient divided by its divisor, spread over its window.
    Arguments as for :func:`avg_pool2d`."""
    return _avg_pool_backward(
        "avg_pool2d", grad_output, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
        workspace_bytes,
    )  # fmt: skip


def avg_pool1d_backward(
    grad_output: Array,
    x: Array,
    kernel_size: IntTuple,
    stride: IntTuple | None = None,
    padding: IntTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    *,
    workspace_bytes: int | None = None,
) -> Array:
    """The gradient of :func:`avg_pool1d` with respect to ``x``: as :func:`avg_pool2d_backward`."""
    return _avg_pool_backward(
        "avg_pool1d", grad_output, x, kernel_size, stride, padding, ceil_mode, count_include_pad, None, workspace_bytes
    )


def avg_pool3d_backward(
    grad_output: Array,
    x: Array,
    kernel_size: IntTuple,
    stride: IntTuple | None = None,
    padding: IntTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    *,
    workspace_bytes: int | None = None,
) -> Array:
    """The gradient of :func:`avg_pool3d` with respect to ``x``: as :func:`avg_pool2d_backward`."""
    return _avg_pool_backward(
        "avg_pool3d", grad_output, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
        workspace_bytes,
    )  # fmt: skip


def _avg_pool_backward(
    name, grad_output, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, workspace_bytes
):
    """The gradient of the public function ``name``'s average pooling."""
    xp, dtype = check_arrays(("grad_output", grad_output, None), ("x", x, None))
    check_rank(name, x)
    g, divisor_args = _avg_geometry(
        x.shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )
    _check_grad_output(grad_output, g)
    limit = workspace_limit(workspace_bytes, x)
    acc = compute_dtype(dtype)
    with device_scope(x):
        if xp is not np:
            return kernels.avg_pool_backward(xp, xp.ascontiguousarray(grad_output), g, *divisor_args[-2:])
        grad_x = xp.empty(x.shape, dtype=acc)
        divisor = _divisors(*divisor_args, acc.name)
        every_tap = (slice(None), slice(None), *[None] * g.dims)

        def run(batch):
            b = batch.stop - batch.start
            share = xp.divide(grad_output[batch].astype(acc, copy=False), divisor)  # (B, C, *out)
            spread = np.broadcast_to(share[every_tap], (b, g.c, *g.kernel, *g.out))  # every offset its share
            padded = scratch(xp, "grad_x_pad", (b, g.c, *g.padded), acc)
            grad_x[batch] = col2im(xp, spread, g, out=padded)

        map_chunks(xp, run, batch_chunks(g.n, _scratch_per_sample(g, acc, backward=True), limit, xp))
        return grad_x.astype(dtype, copy=False)


# --- the shared steps ---------------------------------------------------------------------------


def _avg_geometry(x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    """The windows of an average pooling and the arguments of its divisors."""
    g = pool_geometry(x_shape, kernel_size, stride, padding, 1, ceil_mode)
    count_include_pad = as_bool(count_include_pad, "count_include_pad")
    if divisor_override is not None:
        if isinstance(divisor_override, (bool, np.bool_)) or not isinstance(divisor_override, (int, np.integer)):
            raise TypeError(f"divisor_override must be an int or None, got {divisor_override!r}")
        if divisor_override == 0:
            raise ValueError("divisor_override must not be zero")
        divisor_override = int(divisor_override)
    args = (g.size, g.kernel, g.stride, g.pad_before, g.out, count_include_pad, divisor_override)
    return g, args


def _check_grad_output(grad_output: Array, g: ConvGeometry) -> None:
    if tuple(grad_output.shape) != g.output_shape:
        raise ValueError(
            f"grad_output must have the forward output's shape {g.output_shape}, got {tuple(grad_output.shape)}"
        )


def _check_indices(indices: Array, x: Array, shape: tuple[int, ...], name: str = "the forward output's shape") -> None:
    """``indices`` as a max pooling returns them: an int64 array of the pooled ``shape``, on x's device."""
    if not is_array(indices):
        raise TypeError(f"indices must be a NumPy or CuPy array, got {type(indices).__name__}")
    array_namespace(indices, x)  # one device
    if indices.dtype != np.int64:
        raise TypeError(
            f"indices must be int64, as a max pooling with return_indices=True returns them, got {indices.dtype}"
        )
    if tuple(indices.shape) != shape:
        raise ValueError(f"indices must have {name} {shape}, got {tuple(indices.shape)}")


def _scratch_per_sample(g: ConvGeometry, dtype, backward: bool) -> int:
    """Bytes of scratch a sample needs (NumPy): its padded copy; in the backward also its padded
    gradient (an average pooling's) or its maxima and their places (a max pooling's)."""
    itemsize = np.dtype(dtype).itemsize
    padded = g.c * math.prod(g.padded)
    if not backward:  # with a max pooling's copy of its windows, at most the padded size (_searched_windows)
        return 2 * padded * itemsize + g.c * g.pixels * (itemsize + 8)
    return 2 * padded * itemsize


def _padded_windows(xp: ModuleType, x: Array, batch: slice, g: ConvGeometry, value: float, dtype) -> Array:
    """The chunk padded with ``value`` (in this thread's scratch), as windows (B, C, *kernel, *out)."""
    b = batch.stop - batch.start
    chunk = x[batch].astype(dtype, copy=False)
    if any(map(any, g.pad)):
        chunk = pad_input(xp, chunk, g, out=scratch(xp, "x_pad", (b, g.c, *g.padded), dtype), value=value)
    return windows(xp, chunk, g)


def _overlapping(g: ConvGeometry) -> bool:
    """Whether some input pixel lies in two windows."""
    return any(s < d * (k - 1) + 1 for s, d, k in zip(g.stride, g.dilation, g.kernel, strict=True))


def _searched_windows(xp: ModuleType, x: Array, batch: slice, g: ConvGeometry, dtype) -> Array:
    """The chunk's windows padded with −∞, as a max pooling searches them offset by offset for its
    maxima and their places: where windows do not overlap, a contiguous copy in scratch (no larger
    than the padded chunk), which every pass then reads at unit stride.  On LeNet's first pooling
    (60×6×28×28, 2×2) the copy takes 0.13 ms and saves more: the maxima 0.15 -> 0.05 ms, each
    offset's comparison 0.04 -> 0.015 ms."""
    win = _padded_windows(xp, x, batch, g, -np.inf, dtype)
    if _overlapping(g):
        return win
    copy = scratch(xp, "windows", win.shape, dtype)
    copy[...] = win
    return copy


def _offsets(kernel: tuple[int, ...]) -> list[tuple[slice | int, ...]]:
    """The index of each kernel offset's window in a (B, C, *kernel, *out) view, in row-major order."""
    return [(slice(None), slice(None), *offset) for offset in itertools.product(*map(range, kernel))]


def _reduce(win: Array, op: str, out: Array) -> None:
    """``out[...]`` = the maximum or the sum of ``win`` (B, C, *kernel, *out) over the kernel's
    axes, offset by offset (NaNs propagate in both; the module docstring says why not in one
    reduction)."""
    update = np.maximum if op == "max" else np.add
    first, *rest = _offsets(win.shape[2 : 2 + (win.ndim - 2) // 2])
    out[...] = win[first]
    for offset in rest:
        update(out, win[offset], out=out)  # (B, C, *out): the window of one offset


def _picks(win: Array, best: Array, g: ConvGeometry, out: Array) -> Array:
    """Per window, the place in its input plane (row-major flat index, int64) of the tap that
    receives the gradient, by PyTorch's rule: scanning the input values in row-major order from
    the first one inside the input, move on to a value that is greater, or NaN.  That is: the last
    NaN if there is one, else the first maximum (``best``, the windows' maxima), and the first tap
    inside the input where every input value is −∞ (the padding is −∞ too, and must not be
    picked).  Written into ``out`` (B, C, *out).

    A tap's place is linear in its offset: the place of the window's first tap plus a constant of
    the offset (``_tap_steps``).  So the first maximum's place is summed from boolean masks, offset
    by offset (vectorised integer arithmetic: on LeNet's first pooling, 60×6×28×28 in 2×2 windows,
    0.2 ms, against 1.0 ms for a masked copy of each offset's places, NumPy's ``copyto(where=)``
    branching on every element).  NaNs and all −∞ windows, rare, take the masked copies."""
    offsets = _offsets(g.kernel)
    base, steps = _tap_steps(g.size, g.kernel, g.stride, g.dilation, g.pad_before, g.out)  # (*out), (K,)
    found = win[offsets[0]] == best
    small = np.int32 if steps[-1] < 2**31 else np.int64  # half the bytes of int64 (0.1 ms of 0.4)
    step = np.zeros(best.shape, dtype=small)  # the first maximum's offset step
    for k in range(1, len(offsets)):
        hit = win[offsets[k]] == best
        np.greater(hit, found, out=hit)  # a maximum here, none before
        np.bitwise_or(found, hit, out=found)
        step += hit * small(steps[k])
    np.add(base, step, out=out)
    if not np.isfinite(best).all():  # NaN windows match no tap; −∞ ones may match the padding
        places, first = _tap_places(g.size, g.kernel, g.stride, g.dilation, g.pad_before, g.out)  # (K, *out), (*out)
        for k, offset in enumerate(offsets):  # the last NaN is written last
            np.copyto(out, places[k], where=np.isnan(win[offset]))
        unfound = best == -np.inf
        if unfound.any():
            np.copyto(out, first, where=unfound)
    return out


def _route(grad_output: Array, places: Array, g: ConvGeometry, out: Array) -> Array:
    """Each output's gradient to the input place ``places`` names (nowhere for −1): (B, C, *out)
    -> ``out`` (B, C, *size).  Where no input pixel is read by two windows, the places are
    distinct: one assignment.  Else one ``bincount``, which adds the gradients of a place in
    window order (deterministic, in float64)."""
    b = grad_output.shape[0]
    plane = math.prod(g.size)
    rows = out.reshape(b * g.c, plane)  # (B, C, *size) -> (B·C, prod(size)), a view
    picks = places.reshape(b * g.c, -1)  # (B, C, *out) -> (B·C, P)
    values = grad_output.reshape(b * g.c, -1)
    nowhere = picks < 0
    starts = (np.arange(b * g.c) * plane)[:, None]  # each plane's first place in the chunk
    if not _overlapping(g) and not nowhere.any():
        rows[...] = 0
        # one flat assignment (0.12 ms for LeNet's first pooling; put_along_axis 0.24)
        rows.reshape(-1)[(picks + starts).reshape(-1)] = values.reshape(-1)
        return out
    flat = (np.maximum(picks, 0) + starts).reshape(-1)  # place in the chunk
    weights = np.where(nowhere, 0, values).reshape(-1)
    rows[...] = np.bincount(flat, weights=weights, minlength=b * g.c * plane).reshape(rows.shape)
    return out


def _axis_reads(size, kernel, stride, dilation, before, out) -> np.ndarray:
    """Along one axis, the input coordinate tap ``k`` of window ``p`` reads: (kernel, out), negative
    or past ``size`` in the padding."""
    return np.arange(out)[None, :] * stride - before + np.arange(kernel)[:, None] * dilation


@functools.lru_cache(maxsize=64)
def _tap_steps(size, kernel, stride, dilation, before, out) -> tuple[np.ndarray, np.ndarray]:
    """The place (row-major flat index in the input plane) of each window's first tap, outside the
    plane where the padding is, (*out); and each kernel offset's step from it, (K,): offset ``k``
    of a window reads place ``base + steps[k]``.  Read-only (shared by the threads)."""
    base = np.zeros((), dtype=np.int64)
    steps = np.zeros((), dtype=np.int64)
    for s, k, st, d, p, n in zip(size, kernel, stride, dilation, before, out, strict=True):
        base = np.add.outer(base * s, np.arange(n) * st - p)
        steps = np.add.outer(steps * s, np.arange(k) * d)
    return _read_only(base), _read_only(steps.reshape(-1))


@functools.lru_cache(maxsize=64)
def _tap_places(size, kernel, stride, dilation, before, out) -> tuple[np.ndarray, np.ndarray]:
    """For each kernel offset (row-major) and output pixel, the place (row-major flat index) in
    the input plane it reads, −1 in the padding: (K, *out); and per output pixel the place of its
    first tap inside the input, −1 for a window that reads none (it lies in the padding, which a
    dilation can make happen): (*out).  Read-only (shared by the threads)."""
    dims = len(size)
    places = np.zeros((*kernel, *out), dtype=np.int64)
    inside = np.ones((*kernel, *out), dtype=bool)
    for axis, args in enumerate(zip(size, kernel, stride, dilation, before, out, strict=True)):
        shape = [1] * (2 * dims)
        shape[axis], shape[dims + axis] = args[1], args[5]
        reads = _axis_reads(*args).reshape(shape)  # (kernel, out) placed on this axis's two dimensions
        places = places * args[0] + reads
        inside &= (reads >= 0) & (reads < args[0])
    places = np.where(inside, places, -1).reshape(math.prod(kernel), *out)  # (*kernel, *out) -> (K, *out)
    first = _first_inside(kernel, stride, dilation, before, out)  # (*out) offsets
    first_places = np.take_along_axis(places, first[None], axis=0)[0]
    return _read_only(places), _read_only(first_places)


@functools.lru_cache(maxsize=64)
def _first_inside(kernel, stride, dilation, before, out) -> np.ndarray:
    """Per output pixel, the kernel offset (row-major flat index) of its first tap inside the input: (*out)."""
    offset = np.zeros((), dtype=np.intp)
    for k, s, d, p, n in zip(kernel, stride, dilation, before, out, strict=True):
        start = np.arange(n) * s - p  # first tap of each window, in input coordinates
        first = np.minimum(-(-np.maximum(0, -start) // d), k - 1)  # ceil(max(0, -start) / d)
        offset = np.add.outer(offset * k, first)
    return _read_only(offset.astype(np.intp))


@functools.lru_cache(maxsize=64)
def _divisors(size, kernel, stride, before, out, count_include_pad, divisor_override, dtype) -> np.ndarray:
    """Each window's divisor, PyTorch's: its size within the padded input (``count_include_pad``) or
    within the input, or ``divisor_override``: (*out)."""
    if divisor_override is not None:
        return _read_only(np.full(out, divisor_override, dtype=dtype))
    counts = np.ones((), dtype=np.int64)
    for s, k, st, p, n in zip(size, kernel, stride, before, out, strict=True):
        start = np.arange(n) * st - p
        end = np.minimum(start + k, s + p)  # a ceil_mode window's part beyond the padding never counts
        count = end - start if count_include_pad else np.minimum(end, s) - np.maximum(start, 0)
        counts = np.multiply.outer(counts, count)
    return _read_only(counts.astype(dtype))


def _read_only(table: np.ndarray) -> np.ndarray:
    """A cached table, shared by the worker threads: never written."""
    table.setflags(write=False)
    return table


# The poolings and their gradients by kind and number of spatial axes (for the layers and the tools).
POOLINGS: dict[tuple[str, int], tuple[Callable[..., Any], Callable[..., Any]]] = {
    ("max", 1): (max_pool1d, max_pool1d_backward),
    ("max", 2): (max_pool2d, max_pool2d_backward),
    ("max", 3): (max_pool3d, max_pool3d_backward),
    ("avg", 1): (avg_pool1d, avg_pool1d_backward),
    ("avg", 2): (avg_pool2d, avg_pool2d_backward),
    ("avg", 3): (avg_pool3d, avg_pool3d_backward),
}
