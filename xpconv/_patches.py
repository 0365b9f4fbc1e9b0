"""Patch extraction (im2col) and its adjoint (col2im), written once against ``xp``.

Both loop only over the ``kh × kw`` kernel offsets; each offset is one strided slice of
the padded input, so no Python loop ever runs over output positions.  For kernel offset
``(i, j)`` the output pixel ``(p, q)`` reads padded-input pixel ``(p·sh + i·dh, q·sw + j·dw)``.
"""

from __future__ import annotations

from types import ModuleType

from ._geometry import ConvGeometry
from ._types import Array


def pad_input(xp: ModuleType, x: Array, g: ConvGeometry, out: Array | None = None) -> Array:
    """Zero-pad an NCHW batch: (B, C, H, W) -> (B, C, H + top + bottom, W + left + right).

    Writes into ``out`` when given (any contents), else into a new array.
    """
    top, bottom, left, right = g.pad
    if not any(g.pad):
        return x
    hp, wp = g.padded
    x_pad = xp.empty((x.shape[0], g.c, hp, wp), dtype=x.dtype) if out is None else out
    x_pad[:, :, :top] = 0
    x_pad[:, :, hp - bottom :] = 0
    x_pad[:, :, :, :left] = 0
    x_pad[:, :, :, wp - right :] = 0
    x_pad[:, :, top : top + g.h, left : left + g.w] = x
    return x_pad


def im2col(xp: ModuleType, x_pad: Array, g: ConvGeometry, out: Array | None = None) -> Array:
    """Patches of a padded batch: (B, C, Hp, Wp) -> (B, C, kh, kw, oh, ow).

    ``reshape(B, G, Cg·kh·kw, oh·ow)`` then gives each sample's patch matrix per group.
    A 1×1 kernel with stride 1 and no padding needs no copy: the patches are the input.
    """
    oh, ow = g.out
    b = x_pad.shape[0]
    if g.is_pointwise:
        return x_pad.reshape(b, g.c, 1, 1, oh, ow)  # (B, C, H, W) -> (B, C, 1, 1, H, W), a view
    cols = xp.empty((b, g.c, g.kh, g.kw, oh, ow), dtype=x_pad.dtype) if out is None else out
    for i in range(g.kh):
        for j in range(g.kw):
            rows, columns = g.window(i, j)
            cols[:, :, i, j] = x_pad[:, :, rows, columns]  # (B, C, oh, ow) window for offset (i, j)
    return cols


def col2im(xp: ModuleType, cols: Array, g: ConvGeometry, out: Array | None = None) -> Array:
    """Adjoint of :func:`im2col`: (B, C, kh, kw, oh, ow) -> (B, C, H, W), summing overlaps.

    Each kernel offset adds its strided window back with ``+=`` (no scatter with
    ``add.at``, so the result is deterministic); the padding is cropped at the end.
    ``out``, when given, is a (B, C, Hp, Wp) buffer to accumulate in (any contents).
    """
    b = cols.shape[0]
    if g.is_pointwise:
        return cols.reshape(b, g.c, g.h, g.w)  # (B, C, 1, 1, H, W) -> (B, C, H, W)
    x_pad = xp.empty((b, g.c, *g.padded), dtype=cols.dtype) if out is None else out
    x_pad[...] = 0
    for i in range(g.kh):
        for j in range(g.kw):
            rows, columns = g.window(i, j)
            x_pad[:, :, rows, columns] += cols[:, :, i, j]
    top, _, left, _ = g.pad
    return x_pad[:, :, top : top + g.h, left : left + g.w]
