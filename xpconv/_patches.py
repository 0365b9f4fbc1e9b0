"""Patch extraction (im2col) and its adjoint (col2im), written once against ``xp``.

For kernel offset ``(i, j)`` the output pixel ``(p, q)`` reads padded-input pixel
``(p·sh + i·dh, q·sw + j·dw)``.  :func:`windows` is every such read at once, as a strided view of
the padded input of shape ``(B, C, kh, kw, oh, ow)`` (no copy); im2col copies it in one operation
(one kernel on CuPy; on NumPy 10–40% faster than a slice copy per offset, measured on the bench's
shapes), and pooling reduces over it.  col2im loops over the ``kh × kw`` offsets, adding each
offset's strided window back; no Python loop ever runs over output positions.
"""

from __future__ import annotations

import functools
from types import ModuleType

import numpy as np

from ._constants import constant
from ._geometry import ConvGeometry
from ._types import Array


def pad_input(xp: ModuleType, x: Array, g: ConvGeometry, out: Array | None = None, value: float = 0.0) -> Array:
    """Pad an NCHW batch with ``value`` (zero for a convolution, −∞ for max pooling):
    (B, C, H, W) -> (B, C, H + top + bottom, W + left + right).  NumPy writes the four margins
    and the interior once each; CuPy fills the whole and copies the interior (two kernels).

    Writes into ``out`` when given (any contents), else into a new array.
    """
    top, bottom, left, right = g.pad
    if not any(g.pad):
        return x
    hp, wp = g.padded
    x_pad = xp.empty((x.shape[0], g.c, hp, wp), dtype=x.dtype) if out is None else out
    if xp is not np:  # on a GPU two launches (fill, copy) cost less than five
        x_pad.fill(value)
        x_pad[:, :, top : top + g.h, left : left + g.w] = x
        return x_pad
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

    Deterministic (no scatter with ``add.at``), in one of two ways:

    * NumPy: each kernel offset adds its strided window back with ``+=``; ``out``, when given,
      is a (B, C, Hp, Wp) buffer to accumulate in (any contents).
    * CuPy: one gather and one sum, a handful of kernels whatever the kernel size
      (:func:`_col2im_by_gather`); ``out`` is not used.

    The padding is cropped at the end (a view).
    """
    b = cols.shape[0]
    if g.is_pointwise:
        return cols.reshape(b, g.c, g.h, g.w)  # (B, C, 1, 1, H, W) -> (B, C, H, W)
    top, _, left, _ = g.pad
    if xp is not np:
        x_pad = _col2im_by_gather(xp, cols, g)
        return x_pad[:, :, top : top + g.h, left : left + g.w]
    x_pad = xp.empty((b, g.c, *g.padded), dtype=cols.dtype) if out is None else out
    x_pad[...] = 0
    for i in range(g.kh):
        for j in range(g.kw):
            rows, columns = g.window(i, j)
            x_pad[:, :, rows, columns] += cols[:, :, i, j]
    return x_pad[:, :, top : top + g.h, left : left + g.w]


def _col2im_by_gather(xp: ModuleType, cols: Array, g: ConvGeometry) -> Array:
    """col2im as each padded pixel gathering its contributions, in a fixed order, then one sum:
    (B, C, kh, kw, oh, ow) -> (B, C, Hp, Wp).  A pixel reached by fewer than the most windows
    gathers a zero appended after the patches for the rest."""
    b = cols.shape[0]
    k, p = g.kh * g.kw, g.out[0] * g.out[1]
    index = constant(xp, _gather_index, g.padded, (g.kh, g.kw), g.out, g.stride, g.dilation)  # (Hp·Wp·M,)
    m = index.shape[0] // (g.padded[0] * g.padded[1])
    extended = xp.empty((b * g.c, k * p + 1), dtype=cols.dtype)
    extended[:, : k * p] = cols.reshape(b * g.c, k * p)  # (B, C, kh, kw, oh, ow) -> (B·C, K·P)
    extended[:, k * p] = 0  # the last column: the zero
    gathered = xp.take(extended, index, axis=1).reshape(b * g.c, g.padded[0] * g.padded[1], m)  # (B·C, Hp·Wp, M)
    return gathered.sum(axis=2).reshape(b, g.c, *g.padded)  # (B·C, Hp·Wp) -> (B, C, Hp, Wp)


@functools.lru_cache(maxsize=64)
def _gather_index(padded, kernel, out, stride, dilation) -> np.ndarray:
    """For each padded pixel ``(y, x)``, the places ``((i·kw + j)·oh + p)·ow + q`` in the flattened
    patches of the windows that read it (``p·sh + i·dh = y``, ``q·sw + j·dw = x``), in row-major
    order, padded to the most any pixel has with the place ``K·P`` of an appended zero: (Hp·Wp·M,)."""
    (kh, kw), (oh, ow) = kernel, out
    per_axis = []
    for size, k, n, s, d in zip(padded, kernel, out, stride, dilation, strict=True):
        readers = [[(i, (y - i * d) // s) for i in range(k) if (y - i * d) % s == 0 and 0 <= (y - i * d) // s < n]
                   for y in range(size)]  # fmt: skip
        per_axis.append(readers)
    rows, columns = per_axis
    m = max(map(len, rows)) * max(map(len, columns))
    index = np.full((padded[0], padded[1], m), kh * kw * oh * ow, dtype=np.intp)
    for y, row_readers in enumerate(rows):
        for x, column_readers in enumerate(columns):
            places = [((i * kw + j) * oh + p) * ow + q for i, p in row_readers for j, q in column_readers]
            index[y, x, : len(places)] = places
    return index.reshape(-1)
