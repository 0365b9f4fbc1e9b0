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
from collections.abc import Sequence
from types import ModuleType
from typing import Literal, overload

import numpy as np

from ._backend import array_namespace, device_scope, is_array
from ._checks import as_bool, as_pair, check_arrays, compute_dtype
from ._chunking import batch_chunks, workspace_limit
from ._cuda import pool as kernels
from ._geometry import ConvGeometry, pool_geometry
from ._parallel import map_chunks
from ._patches import col2im, pad_input, windows
from ._types import Array, IntPair
from ._workspace import scratch

__all__ = [
    "avg_pool2d",
    "avg_pool2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "max_unpool2d",
    "max_unpool2d_backward",
]


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

        def run(batch):
            win = _padded_windows(xp, x, batch, g, -np.inf, dtype)
            _reduce(win, "max", y[batch])
            if indices is not None:
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
    xp, dtype = check_arrays(("grad_output", grad_output, 4), ("x", x, 4))
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
        if indices is not None and indices.size and not -1 <= int(indices.min()) <= int(indices.max()) < g.h * g.w:
            raise ValueError(
                f"indices must be places in the {g.h}x{g.w} input planes (0 to {g.h * g.w - 1}, or -1 for a window "
                f"in the padding), as max_pool2d returns them; got values from {int(indices.min())} to "
                f"{int(indices.max())}"
            )
        grad_x = xp.empty(x.shape, dtype=acc)

        def run(batch):
            if indices is None:
                win = _padded_windows(xp, x, batch, g, -np.inf, dtype)
                best = scratch(np, "best", (batch.stop - batch.start, g.c, *g.out), dtype)
                _reduce(win, "max", best)
                places = _picks(win, best, g, out=scratch(np, "places", best.shape, np.int64))
            else:
                places = indices[batch]
            _route(grad_output[batch], places, g, out=grad_x[batch])

        map_chunks(xp, run, batch_chunks(g.n, _scratch_per_sample(g, acc, backward=False), limit, xp))
        return grad_x.astype(dtype, copy=False)


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
    xp, dtype = check_arrays(("x", x, 4))
    g = _unpool_geometry(x.shape, kernel_size, stride, padding, output_size)
    _check_indices(indices, x, tuple(x.shape), "x's shape")
    with device_scope(x):
        if xp is not np:
            return kernels.max_unpool(xp, xp.ascontiguousarray(x), xp.ascontiguousarray(indices), g)
        _check_places(indices, g)
        y = np.zeros((g.n * g.c, g.h * g.w), dtype=dtype)
        np.put_along_axis(y, indices.reshape(g.n * g.c, -1), x.reshape(g.n * g.c, -1), axis=1)
        return y.reshape(g.n, g.c, g.h, g.w)  # (N·C, H·W) -> (N, C, H, W)


def max_unpool2d_backward(
    grad_output: Array,
    indices: Array,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
) -> Array:
    """The gradient of :func:`max_unpool2d` with respect to ``x``: each window's place of
    ``grad_output`` (N, C, H_out, W_out), read through ``indices``: -> indices' shape."""
    xp, dtype = check_arrays(("grad_output", grad_output, 4))
    if not is_array(indices) or indices.ndim != 4:
        raise TypeError(f"indices must be a 4-D array (N, C, H, W) as max_pool2d returns them, got {indices!r:.80}")
    n, c, h, w = indices.shape
    g = _unpool_geometry((n, c, h, w), kernel_size, stride, padding, tuple(grad_output.shape))
    _check_indices(indices, grad_output, (n, c, h, w), "the pooled shape")
    with device_scope(grad_output):
        if xp is np:
            _check_places(indices, g)
        rows = grad_output.reshape(n * c, g.h * g.w)  # (N, C, H_out, W_out) -> (N·C, H_out·W_out)
        picks = indices.reshape(n * c, h * w)  # (N, C, H, W) -> (N·C, H·W)
        return xp.take_along_axis(rows, picks, axis=1).reshape(n, c, h, w).astype(dtype, copy=False)


def _unpool_geometry(x_shape, kernel_size, stride, padding, output_size) -> ConvGeometry:
    """The geometry of the max pooling that :func:`max_unpool2d` inverts: over the output planes,
    one window for each pixel of ``x``."""
    kh, kw = as_pair(kernel_size, "kernel_size", minimum=1)
    stride = (kh, kw) if stride is None else as_pair(stride, "stride", minimum=1)
    ph, pw = as_pair(padding, "padding", minimum=0)
    n, c, h, w = x_shape
    default = ((h - 1) * stride[0] - 2 * ph + kh, (w - 1) * stride[1] - 2 * pw + kw)
    if output_size is None:
        size = default
    else:
        given = tuple(output_size)
        if len(given) not in (2, 4) or not all(isinstance(v, int | np.integer) for v in given):
            raise TypeError(f"output_size must be (H_out, W_out) or (N, C, H_out, W_out), got {output_size!r}")
        size = (int(given[-2]), int(given[-1]))
        for axis in (0, 1):
            if not default[axis] - stride[axis] < size[axis] < default[axis] + stride[axis]:
                raise ValueError(
                    f"output_size {size} must lie within a stride of the default {default} (stride {stride}), "
                    "as in PyTorch"
                )
    if min(size) < 1:
        raise ValueError(f"the output would be {size[0]}x{size[1]} for x of shape {tuple(x_shape)}")
    # the far padding that gives exactly one window per pixel of x (negative: pixels no window reads)
    pad = (ph, (h - 1) * stride[0] + kh - size[0] - ph, pw, (w - 1) * stride[1] + kw - size[1] - pw)
    return ConvGeometry(n, c, size[0], size[1], c, kh, kw, c, stride, (1, 1), pad)


def _check_places(indices: Array, g: ConvGeometry) -> None:
    """On the CPU (free there): every index a place of the ``g.h × g.w`` planes."""
    if indices.size and not 0 <= int(indices.min()) <= int(indices.max()) < g.h * g.w:
        raise ValueError(
            f"indices must be places in the {g.h}x{g.w} output planes (0 to {g.h * g.w - 1}), got values from "
            f"{int(indices.min())} to {int(indices.max())}"
        )


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


def _check_indices(indices: Array, x: Array, shape: tuple[int, ...], name: str = "the forward output's shape") -> None:
    """``indices`` as :func:`max_pool2d` returns them: an int64 array of the pooled ``shape``, on x's device."""
    if not is_array(indices):
        raise TypeError(f"indices must be a NumPy or CuPy array, got {type(indices).__name__}")
    array_namespace(indices, x)  # one device
    if indices.dtype != np.int64:
        raise TypeError(
            f"indices must be int64, as max_pool2d(..., return_indices=True) returns them, got {indices.dtype}"
        )
    if tuple(indices.shape) != shape:
        raise ValueError(f"indices must have {name} {shape}, got {tuple(indices.shape)}")


def _scratch_per_sample(g: ConvGeometry, dtype, backward: bool) -> int:
    """Bytes of scratch a sample needs (NumPy): its padded copy; in the backward also its padded
    gradient (an average pooling's) or its maxima and their places (a max pooling's)."""
    itemsize = np.dtype(dtype).itemsize
    padded = g.c * g.padded[0] * g.padded[1]
    if not backward:
        return padded * itemsize + g.c * g.out[0] * g.out[1] * (itemsize + 8)
    return 2 * padded * itemsize


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


def _picks(win: Array, best: Array, g: ConvGeometry, out: Array) -> Array:
    """Per window, the place in its input plane (``row·W + column``, int64) of the tap that
    receives the gradient, by PyTorch's rule: scanning the input values in row-major order from
    the first one inside the input, move on to a value that is greater, or NaN.  That is: the last
    NaN if there is one, else the first maximum (``best``, the windows' maxima), and the first tap
    inside the input where every input value is −∞ (the padding is −∞ too, and must not be
    picked).  Written into ``out`` (B, C, oh, ow)."""
    kh, kw = win.shape[2:4]
    places, first = _tap_places(g.h, g.w, g.kh, g.kw, g.stride, g.dilation, g.pad[::2], g.out)  # (K, oh, ow), (oh, ow)
    for offset in reversed(range(kh * kw)):  # the first maximum is written last
        np.copyto(out, places[offset], where=win[:, :, offset // kw, offset % kw] == best)
    if np.isnan(best).any():
        for offset in range(kh * kw):  # the last NaN is written last
            np.copyto(out, places[offset], where=np.isnan(win[:, :, offset // kw, offset % kw]))
    unfound = best == -np.inf
    if unfound.any():
        np.copyto(out, first, where=unfound)
    return out


def _route(grad_output: Array, places: Array, g: ConvGeometry, out: Array) -> Array:
    """Each output's gradient to the input place ``places`` names (nowhere for −1): (B, C, oh, ow)
    -> ``out`` (B, C, H, W).  Where no input pixel is read by two windows, the places are
    distinct: one assignment.  Else one ``bincount``, which adds the gradients of a place in
    window order (deterministic, in float64)."""
    b = grad_output.shape[0]
    plane = g.h * g.w
    rows = out.reshape(b * g.c, plane)  # (B, C, H, W) -> (B·C, H·W), a view
    picks = places.reshape(b * g.c, -1)  # (B, C, oh, ow) -> (B·C, P)
    values = grad_output.reshape(b * g.c, -1)
    overlapping = any(s < d * (k - 1) + 1 for s, d, k in zip(g.stride, g.dilation, (g.kh, g.kw), strict=True))
    nowhere = picks < 0
    if not overlapping and not nowhere.any():
        rows[...] = 0
        np.put_along_axis(rows, picks, values, axis=1)
        return out
    flat = (np.maximum(picks, 0) + (np.arange(b * g.c) * plane)[:, None]).reshape(-1)  # place in the chunk
    weights = np.where(nowhere, 0, values).reshape(-1)
    rows[...] = np.bincount(flat, weights=weights, minlength=b * g.c * plane).reshape(rows.shape)
    return out


@functools.lru_cache(maxsize=64)
def _tap_places(h, w, kh, kw, stride, dilation, pads, out) -> tuple[np.ndarray, np.ndarray]:
    """For each window offset ``i·kw + j`` and output pixel, the place ``row·W + column`` in the
    input plane it reads, −1 in the padding: (K, oh, ow); and per output pixel the place of its
    first tap inside the input, −1 for a window that reads none (it lies in the padding, which a
    dilation can make happen): (oh, ow).  Read-only (shared by the threads)."""
    (oh, ow), (sh, sw), (dh, dw), (top, left) = out, stride, dilation, pads
    rows = np.arange(oh)[:, None] * sh - top + np.arange(kh)[:, None, None] * dh  # (kh, oh, 1)
    columns = np.arange(ow)[None, :] * sw - left + np.arange(kw)[:, None, None] * dw  # (kw, 1, ow)
    inside = ((rows >= 0) & (rows < h))[:, None] & ((columns >= 0) & (columns < w))[None]  # (kh, kw, oh, ow)
    places = np.where(inside, rows[:, None] * w + columns[None], -1).reshape(kh * kw, oh, ow)  # -> (K, oh, ow)
    first = _first_inside(kh, kw, stride, dilation, pads, out)  # (oh, ow) offsets
    first_places = np.take_along_axis(places, first[None], axis=0)[0]
    return _read_only(places.astype(np.int64)), _read_only(first_places.astype(np.int64))


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
