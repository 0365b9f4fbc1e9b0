"""Patch extraction (im2col) and its adjoint (col2im), and the folded GEMMs' operands.

For kernel offset ``(i, j)`` the output pixel ``(p, q)`` reads padded-input pixel
``(p·sh + i·dh, q·sw + j·dw)``.  On NumPy, :func:`windows` is every such read at once, as a strided
view of the padded input of shape ``(B, C, kh, kw, oh, ow)`` (no copy); im2col copies it in one
operation (10–40% faster than a slice copy per offset, measured on the bench's shapes), and
pooling reduces over it.  col2im loops over the ``kh × kw`` offsets, adding each offset's strided
window back; no Python loop ever runs over output positions.

The folded layout puts a chunk's images side by side in the GEMMs' columns: patches
``(G, Cg·kh·kw, B·oh·ow)``, products and output gradients ``(O, B·oh·ow)``.  Its four steps —
:func:`folded_patches`, :func:`folded_output`, :func:`channel_major`, :func:`folded_col2im` — are
the one place the im2col path differs by device: NumPy views and copies here, on CUDA one kernel
each (:mod:`xpconv._cuda.patches`), with the padding and the casts folded in.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from ._cuda import patches as kernels
from ._geometry import ConvGeometry
from ._types import Array, DTypeLike
from ._workspace import scratch


def pad_input(xp: ModuleType, x: Array, g: ConvGeometry, out: Array | None = None, value: float = 0.0) -> Array:
    """Pad an NCHW batch with ``value`` (zero for a convolution, −∞ for max pooling):
    (B, C, H, W) -> (B, C, H + top + bottom, W + left + right), writing the four margins and the
    interior once each (NumPy; the CUDA kernels fold the padding into their bounds tests).

    Writes into ``out`` when given (any contents), else into a new array.
    """
    top, bottom, left, right = g.pad
    if not any(g.pad):
        return x
    hp, wp = g.padded
    x_pad = xp.empty((x.shape[0], g.c, hp, wp), dtype=x.dtype) if out is None else out
    x_pad[:, :, :top] = value
    x_pad[:, :, hp - bottom :] = value
    x_pad[:, :, :, :left] = value
    x_pad[:, :, :, wp - right :] = value
    x_pad[:, :, top : top + g.h, left : left + g.w] = x
    return x_pad


def windows(xp: ModuleType, x_pad: Array, g: ConvGeometry) -> Array:
    """Every kernel offset's window of a padded batch, as a read-only view:
    (B, C, Hp, Wp) -> (B, C, kh, kw, oh, ow), where ``[:, :, i, j]`` is offset ``(i, j)``'s
    ``(B, C, oh, ow)`` window.  Elements repeat in memory: never write into it."""
    sb, sc, sy, sx = x_pad.strides
    (sh, sw), (dh, dw) = g.stride, g.dilation
    shape = (x_pad.shape[0], g.c, g.kh, g.kw, *g.out)
    return xp.lib.stride_tricks.as_strided(x_pad, shape, (sb, sc, sy * dh, sx * dw, sy * sh, sx * sw))


def im2col(xp: ModuleType, x_pad: Array, g: ConvGeometry, out: Array | None = None) -> Array:
    """Patches of a padded batch, one copy of its :func:`windows`: (B, C, Hp, Wp) -> (B, C, kh, kw, oh, ow).

    ``reshape(B, G, Cg·kh·kw, oh·ow)`` then gives each sample's patch matrix per group.
    A 1×1 kernel with stride 1 and no padding needs no copy: the patches are the input.
    """
    oh, ow = g.out
    b = x_pad.shape[0]
    if g.is_pointwise:
        return x_pad.reshape(b, g.c, 1, 1, oh, ow)  # (B, C, H, W) -> (B, C, 1, 1, H, W), a view
    cols = xp.empty((b, g.c, g.kh, g.kw, oh, ow), dtype=x_pad.dtype) if out is None else out
    cols[...] = windows(xp, x_pad, g)
    return cols


def col2im(xp: ModuleType, cols: Array, g: ConvGeometry, out: Array | None = None) -> Array:
    """Adjoint of :func:`im2col`: (B, C, kh, kw, oh, ow) -> (B, C, H, W), summing overlaps.

    Each kernel offset adds its strided window back with ``+=`` (deterministic, no scatter with
    ``add.at``); ``out``, when given, is a (B, C, Hp, Wp) buffer to accumulate in (any contents).
    The padding is cropped at the end (a view).
    """
    b = cols.shape[0]
    if g.is_pointwise:
        return cols.reshape(b, g.c, g.h, g.w)  # (B, C, 1, 1, H, W) -> (B, C, H, W)
    top, _, left, _ = g.pad
    x_pad = xp.empty((b, g.c, *g.padded), dtype=cols.dtype) if out is None else out
    x_pad[...] = 0
    for i in range(g.kh):
        for j in range(g.kw):
            rows, columns = g.window(i, j)
            x_pad[:, :, rows, columns] += cols[:, :, i, j]
    return x_pad[:, :, top : top + g.h, left : left + g.w]


# --- the folded layout: the chunk's images side by side in the GEMMs' columns ------------------


def folded_patches(xp: ModuleType, x: Array, batch: slice, g: ConvGeometry, dtype: DTypeLike) -> Array:
    """The chunk's patches in scratch, in ``dtype``: -> (G, Cg·kh·kw, B·oh·ow).  NumPy: one copy
    of the padded chunk's windows (which also casts a float16 input); CUDA: the im2col kernel."""
    b = batch.stop - batch.start
    oh, ow = g.out
    k = g.c // g.groups * g.kh * g.kw
    if xp is not np:
        cols = scratch(xp, "cols", (g.groups, k, b * oh * ow), dtype)
        return kernels.im2col(xp, x[batch], g, cols)
    x_pad = pad_input(xp, x[batch], g, out=scratch(xp, "x_pad", (b, g.c, *g.padded), x.dtype))
    cols = scratch(xp, "cols", (g.c, g.kh, g.kw, b, oh, ow), dtype)
    cols[...] = windows(xp, x_pad, g).transpose(1, 2, 3, 0, 4, 5)  # (B, C, kh, kw, oh, ow) -> (C, kh, kw, B, oh, ow)
    return cols.reshape(g.groups, k, b * oh * ow)  # -> (G, K, B·P)


def folded_output(xp: ModuleType, prod: Array, bias: Array | None, out: Array) -> Array:
    """A product (O, B·oh·ow) to ``out`` (B, O, oh, ow), plus ``bias`` (O,) when given (a
    transpose and an add on NumPy, one kernel on CUDA)."""
    if xp is not np:
        return kernels.from_channel_major(xp, prod, bias, out)
    b, o, oh, ow = out.shape
    view = prod.reshape(o, b, oh, ow).transpose(1, 0, 2, 3)  # (O, B·P) -> (O, B, oh, ow) -> (B, O, oh, ow)
    if bias is None:
        out[...] = view
    else:
        xp.add(view, bias.reshape(1, o, 1, 1), out=out)  # (O,) -> (1, O, 1, 1)
    return out


def channel_major(xp: ModuleType, y: Array, dtype: DTypeLike) -> Array:
    """An output gradient ``y`` (B, O, oh, ow) as a GEMM operand in scratch, in ``dtype``: -> (O, B·oh·ow)."""
    b, o = y.shape[:2]
    out = scratch(xp, "go", (o, y.size // max(1, o)), dtype)
    if xp is not np:
        return kernels.to_channel_major(xp, y, out)
    out.reshape(o, b, -1)[...] = y.reshape(b, o, -1).transpose(1, 0, 2)  # (B, O, P) -> (O, B, P)
    return out


def folded_col2im(xp: ModuleType, grad_cols: Array, g: ConvGeometry, out: Array, bias: Array | None = None) -> Array:
    """The patch gradient (C·kh·kw, B·oh·ow) back to the image: writes ``out`` (B, C, H, W), plus
    ``bias`` (C,) when given.  NumPy: col2im's loop over a view; CUDA: one gather kernel."""
    if xp is not np:
        return kernels.col2im(xp, grad_cols, g, bias, out)
    b = out.shape[0]
    oh, ow = g.out
    cols6 = grad_cols.reshape(g.c, g.kh, g.kw, b, oh, ow).transpose(
        3, 0, 1, 2, 4, 5
    )  # -> (B, C, kh, kw, oh, ow), a view
    out[...] = col2im(xp, cols6, g, out=scratch(xp, "grad_x_pad", (b, g.c, *g.padded), grad_cols.dtype))
    if bias is not None:
        out += bias.reshape(1, g.c, 1, 1)  # (C,) -> (1, C, 1, 1)
    return out
