"""Patch extraction (im2col) and its adjoint (col2im), and the folded GEMMs' operands.

Written for any number ``d`` of spatial axes.  For kernel offset ``k`` (one tap per axis) the
output pixel ``p`` reads, per axis, the padded-input pixel ``p·stride + k·dilation``.  On NumPy,
:func:`windows` is every such read at once, as a strided view of the padded input of shape
``(B, C, *kernel, *out)`` (no copy); im2col copies it in one operation (10–40% faster than a slice
copy per offset, measured on the 2-D bench shapes), and pooling reduces over it.  col2im loops
over the kernel's offsets, adding each offset's strided window back; no Python loop ever runs over
output positions.

The folded layout puts a chunk's images side by side in the GEMMs' columns: patches
``(G, Cg·K, B·P)`` (``K`` taps, ``P`` output pixels), products and output gradients ``(O, B·P)``.  Its four steps —
:func:`folded_patches`, :func:`folded_output`, :func:`channel_major`, :func:`folded_col2im` — are
the one place the im2col path differs by device: NumPy views and copies here, on CUDA one kernel
each (:mod:`xpconv._cuda.patches`), with the padding and the casts folded in.
"""

from __future__ import annotations

import itertools
from types import ModuleType

import numpy as np

from ._cuda import patches as kernels
from ._geometry import ConvGeometry
from ._types import Array, DTypeLike
from ._workspace import scratch


def pad_input(xp: ModuleType, x: Array, g: ConvGeometry, out: Array | None = None, value: float = 0.0) -> Array:
    """Pad a batch with ``value`` (zero for a convolution, −∞ for max pooling):
    (B, C, *size) -> (B, C, *padded), writing each axis's two margins and the interior once each
    (NumPy; the CUDA kernels fold the padding into their bounds tests).

    Writes into ``out`` when given (any contents), else into a new array.
    """
    if not any(map(any, g.pad)):
        return x
    x_pad = xp.empty((x.shape[0], g.c, *g.padded), dtype=x.dtype) if out is None else out
    for axis, ((before, after), padded) in enumerate(zip(g.pad, g.padded, strict=True)):
        lead = (slice(None),) * (2 + axis)
        first, last = (*lead, slice(0, before)), (*lead, slice(padded - after, padded))
        x_pad[first] = value
        x_pad[last] = value
    inside = (slice(None), slice(None), *g.interior())
    x_pad[inside] = x
    return x_pad


def windows(xp: ModuleType, x_pad: Array, g: ConvGeometry) -> Array:
    """Every kernel offset's window of a padded batch, as a read-only view:
    (B, C, *padded) -> (B, C, *kernel, *out), where ``[:, :, *k]`` is offset ``k``'s
    ``(B, C, *out)`` window.  Elements repeat in memory: never write into it."""
    sb, sc, *spatial = x_pad.strides
    shape = (x_pad.shape[0], g.c, *g.kernel, *g.out)
    taps = [s * d for s, d in zip(spatial, g.dilation, strict=True)]
    steps = [s * st for s, st in zip(spatial, g.stride, strict=True)]
    return xp.lib.stride_tricks.as_strided(x_pad, shape, (sb, sc, *taps, *steps))


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


def col2im(xp: ModuleType, cols: Array, g: ConvGeometry, out: Array | None = None) -> Array:
    """Adjoint of :func:`im2col`: (B, C, *kernel, *out) -> (B, C, *size), summing overlaps.

    Each kernel offset adds its strided window back with ``+=`` (deterministic, no scatter with
    ``add.at``); ``out``, when given, is a (B, C, *padded) buffer to accumulate in (any contents).
    The padding is cropped at the end (a view).
    """
    b = cols.shape[0]
    if g.is_pointwise:
        return cols.reshape(b, g.c, *g.size)  # (B, C, 1..., *size) -> (B, C, *size)
    x_pad = xp.empty((b, g.c, *g.padded), dtype=cols.dtype) if out is None else out
    x_pad[...] = 0
    every = (slice(None), slice(None))
    for offset in itertools.product(*map(range, g.kernel)):
        window, tap = (*every, *g.window(offset)), (*every, *offset)
        x_pad[window] += cols[tap]
    inside = (*every, *g.interior())
    return x_pad[inside]


# --- the folded layout: the chunk's images side by side in the GEMMs' columns ------------------


def folded_patches(xp: ModuleType, x: Array, batch: slice, g: ConvGeometry, dtype: DTypeLike) -> Array:
    """The chunk's patches in scratch, in ``dtype``: -> (G, Cg·K, B·P).  NumPy: one copy of the
    padded chunk's windows (which also casts a float16 input); CUDA: the im2col kernel."""
    b = batch.stop - batch.start
    k = g.c // g.groups * g.taps
    if xp is not np:
        cols = scratch(xp, "cols", (g.groups, k, b * g.pixels), dtype)
        return kernels.im2col(xp, x[batch], g, cols)
    x_pad = pad_input(xp, x[batch], g, out=scratch(xp, "x_pad", (b, g.c, *g.padded), x.dtype))
    cols = scratch(xp, "cols", (g.c, *g.kernel, b, *g.out), dtype)
    d = g.dims
    # (B, C, *kernel, *out) -> (C, *kernel, B, *out)
    cols[...] = windows(xp, x_pad, g).transpose(1, *range(2, 2 + d), 0, *range(2 + d, 2 + 2 * d))
    return cols.reshape(g.groups, k, b * g.pixels)  # -> (G, K, B·P)


def folded_output(xp: ModuleType, prod: Array, bias: Array | None, out: Array) -> Array:
    """A product (O, B·P) to ``out`` (B, O, *out), plus ``bias`` (O,) when given (a transpose and an
    add on NumPy, one kernel on CUDA)."""
    if xp is not np:
        return kernels.from_channel_major(xp, prod, bias, out)
    b, o, *size = out.shape
    view = prod.reshape(o, b, *size).transpose(1, 0, *range(2, 2 + len(size)))  # (O, B·P) -> (B, O, *out)
    if bias is None:
        out[...] = view
    else:
        xp.add(view, bias.reshape(1, o, *[1] * len(size)), out=out)  # (O,) -> (1, O, 1...)
    return out


def channel_major(xp: ModuleType, y: Array, dtype: DTypeLike) -> Array:
    """An output gradient ``y`` (B, O, *out) as a GEMM operand in scratch, in ``dtype``: -> (O, B·P)."""
    b, o = y.shape[:2]
    out = scratch(xp, "go", (o, y.size // max(1, o)), dtype)
    if xp is not np:
        return kernels.to_channel_major(xp, y, out)
    out.reshape(o, b, -1)[...] = y.reshape(b, o, -1).transpose(1, 0, 2)  # (B, O, P) -> (O, B, P)
    return out


def folded_col2im(xp: ModuleType, grad_cols: Array, g: ConvGeometry, out: Array, bias: Array | None = None) -> Array:
    """The patch gradient (C·K, B·P) back to the image: writes ``out`` (B, C, *size), plus ``bias``
    (C,) when given.  NumPy: col2im's loop over a view; CUDA: one gather kernel."""
    if xp is not np:
        return kernels.col2im(xp, grad_cols, g, bias, out)
    b, d = out.shape[0], g.dims
    # (C·K, B·P) -> (C, *kernel, B, *out) -> (B, C, *kernel, *out), a view
    cols = grad_cols.reshape(g.c, *g.kernel, b, *g.out).transpose(d + 1, 0, *range(1, d + 1), *range(d + 2, 2 * d + 2))
    out[...] = col2im(xp, cols, g, out=scratch(xp, "grad_x_pad", (b, g.c, *g.padded), grad_cols.dtype))
    if bias is not None:
        out += bias.reshape(1, g.c, *[1] * d)  # (C,) -> (1, C, 1...)
    return out
