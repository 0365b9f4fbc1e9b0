"""Patch extraction (im2col) and its adjoint (col2im), and the folded GEMMs' operands.

Written for any number ``d`` of spatial axes.  For kernel offset ``k`` (one tap per axis) the
output pixel ``p`` reads, per axis, the padded-input pixel ``p·stride + k·dilation``.  On NumPy,
:func:`windows` is every such read at once, as a strided view of the padded input of shape
``(B, C, *kernel, *out)`` (no copy); im2col copies it in one operation (10–40% faster than a slice
copy per offset, measured on the 2-D bench shapes), and pooling reduces over it.  col2im loops
over the kernel's offsets, adding each offset's strided window back; no Python loop ever runs over
output positions.

The folded layout puts a chunk's images side by side in the GEMMs' columns: patches
``(G, Cg·K, B·P)`` (``K`` taps, ``P`` output pixels), products and output gradients ``(O, B·P)``;
on NumPy, for small outputs, the columns run pixel by pixel with the images innermost (``P·B``),
so that the patch copies and col2im move long rows (the batch laid out last: ``(C, *padded, B)``).
Its four steps —
:func:`folded_patches`, :func:`folded_output`, :func:`channel_major`, :func:`folded_col2im` — are
the one place the im2col path differs by device: NumPy views and copies here, on CUDA one kernel
each (:mod:`xpconv._cuda.patches`), with the padding and the casts folded in.
"""

from __future__ import annotations

import itertools
import math
from types import ModuleType

import numpy as np

from ._cuda import patches as kernels
from ._geometry import ConvGeometry
from ._plan import FOLDED_MAX_PIXELS
from ._types import Array, DTypeLike
from ._workspace import scratch


def _at(spatial: tuple, batch_last: bool) -> tuple:
    """The index of ``spatial`` (one entry per spatial axis) in every image and channel of a batch
    laid out (B, C, *spatial), or (C, *spatial, B) with ``batch_last``."""
    every = slice(None)
    return (every, *spatial, every) if batch_last else (every, every, *spatial)


def pad_input(
    xp: ModuleType, x: Array, g: ConvGeometry, out: Array | None = None, value: float = 0.0, batch_last: bool = False
) -> Array:
    """Pad a batch with ``value`` (zero for a convolution, −∞ for max pooling):
    (B, C, *size) -> (B, C, *padded), or with ``batch_last`` -> (C, *padded, B) (the folded
    layout's, NumPy), writing each axis's two margins and the interior once each (NumPy; the CUDA
    kernels fold the padding into their bounds tests).

    Writes into ``out`` when given (any contents), else into a new array.
    """
    if not any(map(any, g.pad)) and not batch_last:
        return x
    b = x.shape[0]
    shape = (g.c, *g.padded, b) if batch_last else (b, g.c, *g.padded)
    x_pad = xp.empty(shape, dtype=x.dtype) if out is None else out
    for axis, ((before, after), padded) in enumerate(zip(g.pad, g.padded, strict=True)):
        lead = (slice(None),) * ((1 if batch_last else 2) + axis)
        first, last = (*lead, slice(0, before)), (*lead, slice(padded - after, padded))
        x_pad[first] = value
        x_pad[last] = value
    source = x.transpose(1, *range(2, 2 + g.dims), 0) if batch_last else x  # (B, C, *size) -> (C, *size, B)
    x_pad[_at(g.interior(), batch_last)] = source
    return x_pad


def windows(xp: ModuleType, x_pad: Array, g: ConvGeometry, batch_last: bool = False) -> Array:
    """Every kernel offset's window of a padded batch, as a read-only view:
    (B, C, *padded) -> (B, C, *kernel, *out), where ``[:, :, *k]`` is offset ``k``'s
    ``(B, C, *out)`` window; with ``batch_last`` (C, *padded, B) -> (C, *kernel, *out, B).
    Elements repeat in memory: never write into it."""
    if batch_last:
        sc, *spatial, sb = x_pad.strides
    else:
        sb, sc, *spatial = x_pad.strides
    b = x_pad.shape[-1] if batch_last else x_pad.shape[0]
    taps = [s * d for s, d in zip(spatial, g.dilation, strict=True)]
    steps = [s * st for s, st in zip(spatial, g.stride, strict=True)]
    if batch_last:
        shape, strides = (g.c, *g.kernel, *g.out, b), (sc, *taps, *steps, sb)
    else:
        shape, strides = (b, g.c, *g.kernel, *g.out), (sb, sc, *taps, *steps)
    return xp.lib.stride_tricks.as_strided(x_pad, shape, strides)


def im2col(xp: ModuleType, x_pad: Array, g: ConvGeometry, out: Array | None = None) -> Array:
    """Patches of a padded batch, one copy of its :func:`windows`: (B, C, *padded) -> (B, C, *kernel, *out).

    ``reshape(B, G, Cg·K, P)`` then gives each sample's patch matrix per group.
    A kernel of one tap with stride 1 and no padding needs no copy: the patches are the input.
    """
    b = x_pad.shape[0]
    if g.is_pointwise:
        return x_pad.reshape(b, g.c, *g.kernel, *g.out)  # (B, C, *size) -> (B, C, 1..., *size), a view
    cols = xp.empty((b, g.c, *g.kernel, *g.out), dtype=x_pad.dtype) if out is None else out
    cols[...] = windows(xp, x_pad, g)
    return cols


def col2im(xp: ModuleType, cols: Array, g: ConvGeometry, out: Array | None = None, batch_last: bool = False) -> Array:
    """Adjoint of :func:`im2col`: (B, C, *kernel, *out) -> (B, C, *size), summing overlaps; with
    ``batch_last`` (C, *kernel, *out, B) -> (C, *size, B).

    Each kernel offset adds its strided window back with ``+=`` (deterministic, no scatter with
    ``add.at``), with the images last through strips (:func:`_col2im_by_strips`); ``out``, when
    given, is a padded buffer to accumulate in (any contents).  The padding is cropped at the end
    (a view).
    """
    if g.is_pointwise and not batch_last:
        return cols.reshape(cols.shape[0], g.c, *g.size)  # (B, C, 1..., *size) -> (B, C, *size)
    b = cols.shape[-1] if batch_last else cols.shape[0]
    shape = (g.c, *g.padded, b) if batch_last else (b, g.c, *g.padded)
    x_pad = xp.empty(shape, dtype=cols.dtype) if out is None else out
    x_pad[...] = 0
    if batch_last and strip_size(g):
        _col2im_by_strips(xp, cols, g, x_pad)
    else:
        for offset in itertools.product(*map(range, g.kernel)):
            x_pad[_at(g.window(offset), batch_last)] += cols[_at(offset, batch_last)]
    return x_pad[_at(g.interior(), batch_last)]


def strip_size(g: ConvGeometry) -> int:
    """The elements a sample's col2im strip holds (:func:`_col2im_by_strips`, the folded layout
    with the images last), 0 where col2im adds tap by tap: other layouts, 1-D, or a stride above
    1 on a leading axis (its windows are strided there too)."""
    if not _images_last(g.pixels) or g.dims == 1 or any(s != 1 for s in g.stride[:-1]):
        return 0
    return g.c * math.prod(g.padded[:-1]) * g.out[-1]


def _col2im_by_strips(xp: ModuleType, cols: Array, g: ConvGeometry, x_pad: Array) -> None:
    """col2im's sum in the folded layout with the images last, (C, *kernel, *out, B) ->
    ``x_pad`` (C, *padded, B): first over the leading axes' taps into a strip as wide as the
    output's last axis, then the strip into ``x_pad`` once per tap of the last axis.  Where the
    leading axes have stride 1 a leading tap's window in the strip is one contiguous run per
    channel, where in ``x_pad`` it is a row per output row, and NumPy adds a strided window row by
    row at about three times a contiguous add's cost.  LeNet's second layer (6 channels, 5×5 taps,
    10×10 out, 60 images): col2im 0.44 -> 0.26 ms alone, its backward 1.10× faster (median of 20
    alternating blocks, 0.95-1.32).  With the images first the same order measured faster alone
    (a 32-image chunk of the ``mnist`` layer, 0.49 -> 0.40 ms; 4×64×56×56 with 3×3 taps, 5.8 ->
    3.8 ms) but not within the call (the ``mnist`` backward 0.67-0.97× on 2 workers, equal on one),
    so it adds tap by tap there.  The same additions in another order: deterministic, within
    rounding of the tap-by-tap sum."""
    every = slice(None)
    strip = scratch(xp, "col2im_strip", (g.c, *g.padded[:-1], g.out[-1], x_pad.shape[-1]), x_pad.dtype)
    for last in range(g.kernel[-1]):
        strip[...] = 0
        for lead in itertools.product(*map(range, g.kernel[:-1])):
            window = g.window((*lead, last))
            strip[_at((*window[:-1], every), True)] += cols[_at((*lead, last), True)]
        last_window = g.window((0,) * (g.dims - 1) + (last,))[-1]
        x_pad[_at((*[every] * (g.dims - 1), last_window), True)] += strip


# --- the folded layout: the chunk's images side by side in the GEMMs' columns ------------------


def _images_last(pixels: int) -> bool:
    """On NumPy, the order of the folded columns: pixel by pixel with the images innermost (P·B) for
    outputs of at most :data:`xpconv._plan.FOLDED_MAX_PIXELS` pixels, whose rows are then long
    enough for the patch copies and col2im (the measurements are in :mod:`xpconv._plan`); image by
    image (B·P) for larger ones (the grouped layers'), as on CUDA, where the transposes would cost
    more than they save (depthwise 56x56 measured 5-10% slower)."""
    return pixels <= FOLDED_MAX_PIXELS


def folded_patches(xp: ModuleType, x: Array, batch: slice, g: ConvGeometry, dtype: DTypeLike) -> Array:
    """The chunk's patches in scratch, in ``dtype``: -> (G, Cg·K, B·P) or, on NumPy for small
    outputs, (G, Cg·K, P·B) (:func:`_images_last`).  NumPy: one copy of the padded chunk's windows
    (which also casts a float16 input); CUDA: the im2col kernel.  The four folded steps agree on
    the order, and the GEMMs between them ignore it."""
    b = batch.stop - batch.start
    k = g.c // g.groups * g.taps
    if xp is not np:
        cols = scratch(xp, "cols", (g.groups, k, b * g.pixels), dtype)
        return kernels.im2col(xp, x[batch], g, cols)
    last = _images_last(g.pixels)
    shape = (g.c, *g.padded, b) if last else (b, g.c, *g.padded)
    x_pad = pad_input(xp, x[batch], g, out=scratch(xp, "x_pad", shape, x.dtype), batch_last=last)
    if last:
        cols = scratch(xp, "cols", (g.c, *g.kernel, *g.out, b), dtype)
        cols[...] = windows(xp, x_pad, g, batch_last=True)  # (C, *kernel, *out, B)
    else:
        d = g.dims
        cols = scratch(xp, "cols", (g.c, *g.kernel, b, *g.out), dtype)
        # (B, C, *kernel, *out) -> (C, *kernel, B, *out)
        cols[...] = windows(xp, x_pad, g).transpose(1, *range(2, 2 + d), 0, *range(2 + d, 2 + 2 * d))
    return cols.reshape(g.groups, k, b * g.pixels)  # -> (G, K, P·B) or (G, K, B·P)


def folded_output(xp: ModuleType, prod: Array, bias: Array | None, out: Array) -> Array:
    """A product (O, B·P) (or (O, P·B), :func:`_images_last`) to ``out`` (B, O, *out), plus ``bias``
    (O,) when given (a transpose and an add on NumPy, one kernel on CUDA)."""
    if xp is not np:
        return kernels.from_channel_major(xp, prod, bias, out)
    b, o, *size = out.shape
    d = len(size)
    if _images_last(math.prod(size)):
        view = prod.reshape(o, *size, b).transpose(d + 1, 0, *range(1, d + 1))  # (O, P·B) -> (B, O, *out)
    else:
        view = prod.reshape(o, b, *size).transpose(1, 0, *range(2, 2 + d))  # (O, B·P) -> (B, O, *out)
    if bias is None:
        out[...] = view
    else:
        xp.add(view, bias.reshape(1, o, *[1] * d), out=out)  # (O,) -> (1, O, 1...)
    return out


def channel_major(xp: ModuleType, y: Array, dtype: DTypeLike) -> Array:
    """An output gradient ``y`` (B, O, *out) as a GEMM operand in scratch, in ``dtype``: -> (O, B·P)
    (or (O, P·B), the order of :func:`folded_patches`' columns)."""
    b, o = y.shape[:2]
    out = scratch(xp, "go", (o, y.size // max(1, o)), dtype)
    if xp is not np:
        return kernels.to_channel_major(xp, y, out)
    if _images_last(y.size // max(1, b * o)):
        out.reshape(o, -1, b)[...] = y.reshape(b, o, -1).transpose(1, 2, 0)  # (B, O, P) -> (O, P, B)
    else:
        out.reshape(o, b, -1)[...] = y.reshape(b, o, -1).transpose(1, 0, 2)  # (B, O, P) -> (O, B, P)
    return out


def folded_col2im(xp: ModuleType, grad_cols: Array, g: ConvGeometry, out: Array, bias: Array | None = None) -> Array:
    """The patch gradient (C·K, B·P) (or (C·K, P·B), :func:`_images_last`) back to the image:
    writes ``out`` (B, C, *size), plus ``bias`` (C,) when given.  NumPy: col2im's loop over the
    columns, then, images last, one transposing copy; CUDA: one gather kernel."""
    if xp is not np:
        return kernels.col2im(xp, grad_cols, g, bias, out)
    b, d = out.shape[0], g.dims
    if _images_last(g.pixels):
        cols = grad_cols.reshape(g.c, *g.kernel, *g.out, b)  # (C·K, P·B) -> (C, *kernel, *out, B)
        padded = scratch(xp, "grad_x_pad", (g.c, *g.padded, b), grad_cols.dtype)
        image = col2im(xp, cols, g, out=padded, batch_last=True)  # (C, *size, B)
        source = image.transpose(d + 1, 0, *range(1, d + 1))  # -> (B, C, *size)
    else:
        # (C·K, B·P) -> (C, *kernel, B, *out) -> (B, C, *kernel, *out), a view
        cols = grad_cols.reshape(g.c, *g.kernel, b, *g.out).transpose(
            d + 1, 0, *range(1, d + 1), *range(d + 2, 2 * d + 2)
        )
        source = col2im(xp, cols, g, out=scratch(xp, "grad_x_pad", (b, g.c, *g.padded), grad_cols.dtype))
    if bias is None:
        out[...] = source
    else:
        xp.add(source, bias.reshape(1, g.c, *[1] * d), out=out)  # (C,) -> (1, C, 1...)
    return out
