"""Max and average pooling of NCHW batches, forward and backward, as ``torch.nn.functional``.

A pooling is a reduction over each window of the padded input.  Its windows are a convolution's
patches with one channel per group (:func:`xpconv._geometry.pool_geometry`), so it runs on the
same machinery.  Notation: input ``(N, C, H, W)``, output ``(N, C, oh, ow)`` with, per axis,

    oh = (H + 2·padding - dilation·(kh - 1) - 1) / stride + 1

rounded down, or up with ``ceil_mode``, where the last window must start inside the input or its
left padding.

One way per device, both checked against the oracle in the tests:

* **NumPy, by offset**: the padded chunk (−∞ padding for max, zeros for average) as a
  ``(B, C, kh, kw, oh, ow)`` :func:`windows` view, reduced by ``kh·kw`` elementwise updates of an
  output-sized accumulator, each reading one offset's strided window; no patch matrix is copied.
  Measured on 32×64×56×56, one thread: max 2×2 stride 2 in 8 ms, 3×3 stride 1 in 36–43 ms, against
  136–143 ms and 57–71 ms for NumPy's one reduction over the view (its inner loop runs over the
  tiny window axes).  The gradients go through col2im.
* **CUDA, one kernel each way** (:mod:`xpconv._cuda.pool`): each output scans its window, each
  input pixel gathers the gradients of the windows that read it; the max pooling's forward can
  write where each maximum is, and its gradient then reads those indices rather than search again.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Literal, overload

import numpy as np

from ._backend import array_namespace, device_scope, is_array
from ._checks import as_bool, check_arrays, compute_dtype
from ._chunking import batch_chunks, workspace_limit
from ._cuda import pool as kernels
from ._geometry import ConvGeometry, pool_geometry
from ._parallel import map_chunks
from ._patches import col2im, pad_input, windows
from ._types import Array, IntPair
from ._workspace import scratch

__all__ = ["avg_pool2d", "avg_pool2d_backward", "max_pool2d", "max_pool2d_backward"]


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
    xp, dtype = check_arrays(("x", x, 4))
    g = pool_geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    return_indices = as_bool(return_indices, "return_indices")
    limit = workspace_limit(workspace_bytes, x)
    with device_scope(x):
        if xp is not np:
            y, indices = kernels.max_pool(xp, xp.ascontiguousarray(x), g, return_indices)
            return (y, indices) if return_indices else y
        y = xp.empty(g.output_shape, dtype=dtype)  # a maximum is exact in any dtype
        indices = xp.empty(g.output_shape, dtype=np.int64) if return_indices else None
        first = _first_inside(g.kh, g.kw, g.stride, g.dilation, g.pad[::2], g.out)

        def run(batch):
            win = _padded_windows(xp, x, batch, g, -np.inf, dtype)
            _reduce(win, "max", y[batch])
            if indices is not None:
                indices[batch] = _plane_index(_argmax(win, first, y[batch]), g)

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
    the places are then read from them, not searched for again (an index that is not a place of
    its window contributes nothing).  Arguments as for :func:`max_pool2d`; returns x's shape,
    dtype and device.
    """
    xp, dtype = check_arrays(("grad_output", grad_output, 4), ("x", x, 4))
    g = pool_geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    _check_grad_output(grad_output, g)
    if indices is not None:
        _check_indices(indices, x, g)
    limit = workspace_limit(workspace_bytes, x)
    acc = compute_dtype(dtype)
    oh, ow = g.out
    k = g.kh * g.kw
    with device_scope(x):
        if xp is not np:
            x, grad_output = xp.ascontiguousarray(x), xp.ascontiguousarray(grad_output)
            indices = kernels.max_indices(xp, x, g) if indices is None else xp.ascontiguousarray(indices)
            return kernels.max_pool_backward(xp, grad_output, indices, g)
        grad_x = xp.empty(x.shape, dtype=acc)
        first = _first_inside(g.kh, g.kw, g.stride, g.dilation, g.pad[::2], g.out)
        offsets = _offsets(k)  # (K, 1, 1)

        def run(batch):
            b = batch.stop - batch.start
            if indices is None:
                win = _padded_windows(xp, x, batch, g, -np.inf, dtype)
                where = _argmax(win, first)  # (B, C, oh, ow), 0 <= where < K
            else:
                where = _window_offset(indices[batch], g)  # K where an index is no place of its window
            go = grad_output[batch].astype(acc, copy=False)
            mask = xp.equal(offsets, where[:, :, None], out=scratch(xp, "mask", (b, g.c, k, oh, ow), np.bool_))
            grad_cols = xp.multiply(mask, go[:, :, None], out=scratch(xp, "grad_cols", (b, g.c, k, oh, ow), acc))
            grad_cols = grad_cols.reshape(b, g.c, g.kh, g.kw, oh, ow)  # (B, C, K, oh, ow) -> (B, C, kh, kw, oh, ow)
            grad_x[batch] = col2im(xp, grad_cols, g, out=scratch(xp, "grad_x_pad", (b, g.c, *g.padded), acc))

        map_chunks(xp, run, batch_chunks(g.n, _scratch_per_sample(g, acc, backward=True), limit, xp))
        return grad_x.astype(dtype, copy=False)


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
    xp, dtype = check_arrays(("x", x, 4))
    g, divisor_args = _avg_geometry(
        x.shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )
    limit = workspace_limit(workspace_bytes, x)
    acc = compute_dtype(dtype)
    with device_scope(x):
        if xp is not np:
            return kernels.avg_pool(xp, xp.ascontiguousarray(x), g, *divisor_args[-2:])
        y = xp.empty(g.output_shape, dtype=acc)
        divisor = _divisors(*divisor_args, acc.name)  # (oh, ow)

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
    xp, dtype = check_arrays(("grad_output", grad_output, 4), ("x", x, 4))
    g, divisor_args = _avg_geometry(
        x.shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )
    _check_grad_output(grad_output, g)
    limit = workspace_limit(workspace_bytes, x)
    acc = compute_dtype(dtype)
    oh, ow = g.out
    with device_scope(x):
        if xp is not np:
            return kernels.avg_pool_backward(xp, xp.ascontiguousarray(grad_output), g, *divisor_args[-2:])
        grad_x = xp.empty(x.shape, dtype=acc)
        divisor = _divisors(*divisor_args, acc.name)

        def run(batch):
            b = batch.stop - batch.start
            share = xp.divide(grad_output[batch].astype(acc, copy=False), divisor)  # (B, C, oh, ow)
            spread = np.broadcast_to(share[:, :, None, None], (b, g.c, g.kh, g.kw, oh, ow))  # every offset its share
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
    args = (g.h, g.w, g.kh, g.kw, g.stride, g.pad[::2], g.out, count_include_pad, divisor_override)  # pad: (top, left)
    return g, args


def _check_grad_output(grad_output: Array, g: ConvGeometry) -> None:
    if tuple(grad_output.shape) != g.output_shape:
        raise ValueError(
            f"grad_output must have the forward output's shape {g.output_shape}, got {tuple(grad_output.shape)}"
        )


def _check_indices(indices: Array, x: Array, g: ConvGeometry) -> None:
    """``indices`` as :func:`max_pool2d` returns them: an int64 array of the output's shape, on x's device."""
    if not is_array(indices):
        raise TypeError(f"indices must be a NumPy or CuPy array, got {type(indices).__name__}")
    array_namespace(indices, x)  # one device
    if indices.dtype != np.int64:
        raise TypeError(
            f"indices must be int64, as max_pool2d(..., return_indices=True) returns them, got {indices.dtype}"
        )
    if tuple(indices.shape) != g.output_shape:
        raise ValueError(f"indices must have the forward output's shape {g.output_shape}, got {tuple(indices.shape)}")


def _scratch_per_sample(g: ConvGeometry, dtype, backward: bool) -> int:
    """Bytes of scratch a sample needs (NumPy): its padded copy; in the backward also its
    patch-sized mask and gradient (bool + compute dtype) and its padded gradient."""
    itemsize = np.dtype(dtype).itemsize
    padded = g.c * g.padded[0] * g.padded[1]
    if not backward:
        return padded * itemsize
    oh, ow = g.out
    return 2 * padded * itemsize + g.c * g.kh * g.kw * oh * ow * (itemsize + 1)


def _padded_windows(xp: ModuleType, x: Array, batch: slice, g: ConvGeometry, value: float, dtype) -> Array:
    """The chunk padded with ``value`` (in this thread's scratch), as windows (B, C, kh, kw, oh, ow)."""
    b = batch.stop - batch.start
    chunk = x[batch].astype(dtype, copy=False)
    if any(g.pad):
        chunk = pad_input(xp, chunk, g, out=scratch(xp, "x_pad", (b, g.c, *g.padded), dtype), value=value)
    return windows(xp, chunk, g)


def _reduce(win: Array, op: str, out: Array) -> None:
    """``out[...] = win.max(axis=(2, 3))`` or ``win.sum(axis=(2, 3))``, offset by offset (NaNs
    propagate in both; the module docstring says why not in one reduction)."""
    update = np.maximum if op == "max" else np.add
    kh, kw = win.shape[2:4]
    out[...] = win[:, :, 0, 0]
    for i in range(kh):
        for j in range(kw):
            if i or j:
                update(out, win[:, :, i, j], out=out)  # (B, C, oh, ow) window of offset (i, j)


def _argmax(win: Array, first: Array, best: Array = None) -> Array:
    """Per window, the offset ``i·kw + j`` that receives the gradient: PyTorch's rule, which scans the
    input values in row-major order from the first one inside the input (``first``, (oh, ow)) and
    moves on to a value that is greater, or NaN.  That is: the last NaN if there is one, else the
    first maximum, and ``first`` where every input value is −∞ (the padding is −∞ too, and must
    not be chosen).  ``best``: the windows' maxima, when known.  -> (B, C, oh, ow) integers."""
    b, c, kh, kw, oh, ow = win.shape
    k = kh * kw
    if best is None:
        best = scratch(np, "best", (b, c, oh, ow), win.dtype)
        _reduce(win, "max", best)
    where = np.full((b, c, oh, ow), k, dtype=np.intp)
    for offset in reversed(range(k)):  # the first maximum is written last
        np.putmask(where, win[:, :, offset // kw, offset % kw] == best, offset)
    if np.isnan(best).any():
        for offset in range(k):  # the last NaN is written last
            np.putmask(where, np.isnan(win[:, :, offset // kw, offset % kw]), offset)
    unfound = best == -np.inf
    if unfound.any():
        np.copyto(where, np.broadcast_to(first, where.shape), where=unfound)
    return where


def _tap_origins(g: ConvGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Input row of each output row's offset 0 (oh, 1), and column of each output column's (1, ow)."""
    (oh, ow), (sh, sw) = g.out, g.stride
    top, _, left, _ = g.pad
    return (np.arange(oh) * sh - top)[:, None], (np.arange(ow) * sw - left)[None, :]


def _plane_index(where: Array, g: ConvGeometry) -> Array:
    """Window offsets ``i·kw + j`` (B, C, oh, ow) -> the flat index ``row·W + column`` in the
    input plane of the pixel each reads (int64)."""
    rows, columns = _tap_origins(g)
    i, j = np.divmod(where, g.kw)
    return (rows + i * g.dilation[0]) * g.w + columns + j * g.dilation[1]


def _window_offset(indices: Array, g: ConvGeometry) -> Array:
    """The converse of :func:`_plane_index`: each index's offset in its window, or ``kh·kw`` (no
    offset) where the index is no pixel its window reads."""
    rows, columns = _tap_origins(g)
    i, i_rest = np.divmod(indices // g.w - rows, g.dilation[0])
    j, j_rest = np.divmod(indices % g.w - columns, g.dilation[1])
    inside = (i_rest == 0) & (j_rest == 0) & (i >= 0) & (i < g.kh) & (j >= 0) & (j < g.kw)
    inside &= (indices >= 0) & (indices < g.h * g.w)
    return np.where(inside, i * g.kw + j, g.kh * g.kw)


@functools.lru_cache(maxsize=64)
def _offsets(k: int) -> np.ndarray:
    """0, 1, ..., k - 1 as a (K, 1, 1) column, to compare with each window's chosen offset."""
    return _read_only(np.arange(k).reshape(k, 1, 1))  # (K,) -> (K, 1, 1)


@functools.lru_cache(maxsize=64)
def _first_inside(kh, kw, stride, dilation, pads, out) -> np.ndarray:
    """Per output pixel, the window offset ``i·kw + j`` of its first tap inside the input: (oh, ow)."""
    firsts = []
    for k, s, d, p, n in zip((kh, kw), stride, dilation, pads, out, strict=True):
        start = np.arange(n) * s - p  # first tap of each window, in input coordinates
        firsts.append(np.minimum(-(-np.maximum(0, -start) // d), k - 1))  # ceil(max(0, -start) / d)
    return _read_only((firsts[0][:, None] * kw + firsts[1][None, :]).astype(np.intp))


@functools.lru_cache(maxsize=64)
def _divisors(h, w, kh, kw, stride, pads, out, count_include_pad, divisor_override, dtype) -> np.ndarray:
    """Each window's divisor, PyTorch's: its size within the padded input (``count_include_pad``) or
    within the input, or ``divisor_override``: (oh, ow)."""
    if divisor_override is not None:
        return _read_only(np.full(out, divisor_override, dtype=dtype))
    counts = []
    for size, k, s, p, n in zip((h, w), (kh, kw), stride, pads, out, strict=True):
        start = np.arange(n) * s - p
        end = np.minimum(start + k, size + p)  # a ceil_mode window's part beyond the padding never counts
        counts.append(end - start if count_include_pad else np.minimum(end, size) - np.maximum(start, 0))
    return _read_only(np.outer(counts[0], counts[1]).astype(dtype))


def _read_only(table: np.ndarray) -> np.ndarray:
    """A cached table, shared by the worker threads: never written."""
    table.setflags(write=False)
    return table
