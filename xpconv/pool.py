"""Max and average pooling of NCHW batches, forward and backward, as ``torch.nn.functional``.

A pooling is a reduction over each window of the padded input.  Its windows are a convolution's
patches with one channel per group (:func:`xpconv._geometry.pool_geometry`), so it runs on the
same machinery: the padded chunk (−∞ padding for max, zeros for average), :func:`windows` as a
``(B, C, kh, kw, oh, ow)`` view, and col2im for the gradients.  Notation: input ``(N, C, H, W)``,
output ``(N, C, oh, ow)`` with, per axis,

    oh = (H + 2·padding - dilation·(kh - 1) - 1) / stride + 1

rounded down, or up with ``ceil_mode``, where the last window must start inside the input or its
left padding.

Two ways to reduce over the window, one per backend, both checked against the oracle in the
tests (the CuPy stand-in runs the second on NumPy data):

* **By offset** (NumPy): ``kh·kw`` elementwise updates of an output-sized accumulator, each reading
  one offset's strided window; no patch matrix is copied.  Measured on 32×64×56×56, one thread:
  max 2×2 stride 2 in 8 ms, 3×3 stride 1 in 36–43 ms, against 136–143 ms and 57–71 ms for NumPy's
  one reduction over the view (its inner loop runs over the tiny window axes).
* **At once** (CuPy): one reduction kernel over the view, and for the max's gradient ``argmax``
  over a copied patch matrix: a handful of kernels whatever the window, not one per offset.
"""

from __future__ import annotations

import functools
from types import ModuleType

import numpy as np

from ._backend import device_scope
from ._checks import as_bool, check_arrays, compute_dtype
from ._chunking import batch_chunks, workspace_limit
from ._constants import constant
from ._geometry import ConvGeometry, pool_geometry
from ._parallel import map_chunks
from ._patches import col2im, col2im_shared, pad_input, windows
from ._types import Array, IntPair
from ._workspace import scratch

__all__ = ["avg_pool2d", "avg_pool2d_backward", "max_pool2d", "max_pool2d_backward"]


def max_pool2d(
    x: Array,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    *,
    workspace_bytes: int | None = None,
) -> Array:
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
    workspace_bytes : int, optional
        Upper bound on the scratch memory held at once (padded copies), default as for
        :func:`xpconv.conv2d`.

    Returns
    -------
    y : array, shape (N, C, oh, ow), x's dtype and device (the formula is in the module's
        docstring).  A NaN in a window makes that window's maximum NaN.

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
    limit = workspace_limit(workspace_bytes, x)
    with device_scope(x):
        y = xp.empty(g.output_shape, dtype=dtype)  # a maximum is exact in any dtype

        def run(batch):
            win = _padded_windows(xp, x, batch, g, -np.inf, dtype)
            _reduce(xp, win, "max", y[batch])

        map_chunks(xp, run, batch_chunks(g.n, _scratch_per_sample(g, dtype, backward=False), limit, xp))
        return y


def max_pool2d_backward(
    grad_output: Array,
    x: Array,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    *,
    workspace_bytes: int | None = None,
) -> Array:
    """The gradient of :func:`max_pool2d` with respect to ``x``, for ``grad_output`` ``(N, C, oh, ow)``.

    Each output's gradient goes to the place of its window's maximum, chosen as PyTorch does:
    the first maximum in row-major window order on ties; in a window holding NaNs, the last NaN;
    in a window whose input values are all −∞, the first input value (never the padding).
    Overlapping windows add up.  Arguments as for :func:`max_pool2d`; returns x's shape, dtype
    and device.
    """
    xp, dtype = check_arrays(("grad_output", grad_output, 4), ("x", x, 4))
    g = pool_geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    _check_grad_output(grad_output, g)
    limit = workspace_limit(workspace_bytes, x)
    acc = compute_dtype(dtype)
    oh, ow = g.out
    k = g.kh * g.kw
    with device_scope(x):
        grad_x = xp.empty(x.shape, dtype=acc)
        first = constant(xp, _first_inside, g.kh, g.kw, g.stride, g.dilation, g.pad[::2], g.out)
        offsets = constant(xp, _offsets, k)  # (K, 1, 1)

        def run(batch):
            b = batch.stop - batch.start
            win = _padded_windows(xp, x, batch, g, -np.inf, dtype)
            where = _argmax(xp, win, first)  # (B, C, oh, ow), 0 <= where < K
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
        y = xp.empty(g.output_shape, dtype=acc)
        divisor = constant(xp, _divisors, *divisor_args, acc.name)  # (oh, ow)

        def run(batch):
            win = _padded_windows(xp, x, batch, g, 0.0, acc)
            _reduce(xp, win, "sum", y[batch])
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
        grad_x = xp.empty(x.shape, dtype=acc)
        divisor = constant(xp, _divisors, *divisor_args, acc.name)

        def run(batch):
            b = batch.stop - batch.start
            share = xp.divide(grad_output[batch].astype(acc, copy=False), divisor)  # (B, C, oh, ow)
            padded = scratch(xp, "grad_x_pad", (b, g.c, *g.padded), acc)
            grad_x[batch] = col2im_shared(xp, share, g, out=padded)  # every offset of a window gets its share

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


def _scratch_per_sample(g: ConvGeometry, dtype, backward: bool) -> int:
    """Bytes of scratch a sample needs: its padded copy; in the backward also its patch-sized
    mask and gradient (bool + compute dtype) and its padded gradient."""
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


def _by_offset(xp: ModuleType) -> bool:
    """Reduce offset by offset (NumPy) or in one reduction per step (CuPy); the module docstring says why."""
    return xp is np


def _reduce(xp: ModuleType, win: Array, op: str, out: Array) -> None:
    """``out[...] = win.max(axis=(2, 3))`` or ``win.sum(axis=(2, 3))`` (NaNs propagate in both)."""
    if not _by_offset(xp):
        reduction = xp.amax if op == "max" else xp.sum
        reduction(win, axis=(2, 3), out=out)
        return
    update = np.maximum if op == "max" else np.add
    kh, kw = win.shape[2:4]
    out[...] = win[:, :, 0, 0]
    for i in range(kh):
        for j in range(kw):
            if i or j:
                update(out, win[:, :, i, j], out=out)  # (B, C, oh, ow) window of offset (i, j)


def _argmax(xp: ModuleType, win: Array, first: Array) -> Array:
    """Per window, the offset ``i·kw + j`` that receives the gradient: PyTorch's rule, which scans the
    input values in row-major order from the first one inside the input (``first``, (oh, ow)) and
    moves on to a value that is greater, or NaN.  That is: the last NaN if there is one, else the
    first maximum, and ``first`` where every input value is −∞ (the padding is −∞ too, and must
    not be chosen).  -> (B, C, oh, ow) integers."""
    b, c, kh, kw, oh, ow = win.shape
    k = kh * kw
    if _by_offset(xp):
        best = scratch(np, "best", (b, c, oh, ow), win.dtype)
        _reduce(np, win, "max", best)
        where = np.full((b, c, oh, ow), k, dtype=np.intp)
        for offset in reversed(range(k)):  # the first maximum is written last
            np.putmask(where, win[:, :, offset // kw, offset % kw] == best, offset)
        if np.isnan(best).any():  # a host check, free on NumPy
            for offset in range(k):  # the last NaN is written last
                np.putmask(where, np.isnan(win[:, :, offset // kw, offset % kw]), offset)
        unfound = best == -np.inf
        if unfound.any():
            np.copyto(where, np.broadcast_to(first, where.shape), where=unfound)
        return where
    cols = xp.ascontiguousarray(win).reshape(b, c, k, oh, ow)  # (B, C, kh, kw, oh, ow) -> (B, C, K, oh, ow)
    nans = xp.isnan(cols)
    last_nan = (k - 1) - xp.argmax(nans[:, :, ::-1], axis=2)  # argmax of booleans: the first True
    first_max = xp.argmax(cols, axis=2)  # the first maximum, where there is no NaN
    where = xp.where(xp.any(nans, axis=2), last_nan, first_max)
    return xp.where(xp.amax(cols, axis=2) == -np.inf, first, where)


@functools.lru_cache(maxsize=64)
def _offsets(k: int) -> np.ndarray:
    """0, 1, ..., k - 1 as a (K, 1, 1) column, to compare with each window's chosen offset."""
    return np.arange(k).reshape(k, 1, 1)  # (K,) -> (K, 1, 1)


@functools.lru_cache(maxsize=64)
def _first_inside(kh, kw, stride, dilation, pads, out) -> np.ndarray:
    """Per output pixel, the window offset ``i·kw + j`` of its first tap inside the input: (oh, ow)."""
    firsts = []
    for k, s, d, p, n in zip((kh, kw), stride, dilation, pads, out, strict=True):
        start = np.arange(n) * s - p  # first tap of each window, in input coordinates
        firsts.append(np.minimum(-(-np.maximum(0, -start) // d), k - 1))  # ceil(max(0, -start) / d)
    return (firsts[0][:, None] * kw + firsts[1][None, :]).astype(np.intp)


@functools.lru_cache(maxsize=64)
def _divisors(h, w, kh, kw, stride, pads, out, count_include_pad, divisor_override, dtype) -> np.ndarray:
    """Each window's divisor, PyTorch's: its size within the padded input (``count_include_pad``) or
    within the input, or ``divisor_override``: (oh, ow)."""
    if divisor_override is not None:
        return np.full(out, divisor_override, dtype=dtype)
    counts = []
    for size, k, s, p, n in zip((h, w), (kh, kw), stride, pads, out, strict=True):
        start = np.arange(n) * s - p
        end = np.minimum(start + k, size + p)  # a ceil_mode window's part beyond the padding never counts
        counts.append(end - start if count_include_pad else np.minimum(end, size) - np.maximum(start, 0))
    return np.outer(counts[0], counts[1]).astype(dtype)
