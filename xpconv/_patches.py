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
    """col2im as each padded pixel gathering its contributions: (B, C, kh, kw, oh, ow) -> (B, C, Hp, Wp)."""
    b = cols.shape[0]
    rows = cols.reshape(b * g.c, -1)  # (B, C, kh, kw, oh, ow) -> (B·C, K·P)
    return _gather_rows(xp, rows, g, per_offset=True).reshape(b, g.c, *g.padded)  # -> (B, C, Hp, Wp)


def _gather_rows(xp: ModuleType, rows: Array, g: ConvGeometry, per_offset: bool) -> Array:
    """:func:`gather_sum` of one image's rows (one per (image, channel)), copied into rows with one
    zero appended: (R, L) -> (R, 1, Hp, Wp)."""
    r, length = rows.shape
    extended = xp.empty((r, length + 1), dtype=rows.dtype)
    extended[:, :length] = rows
    extended[:, length] = 0  # the zero
    return gather_sum(xp, extended, g, 1, per_offset=per_offset)


def col2im_shared(xp: ModuleType, values: Array, g: ConvGeometry, out: Array | None = None) -> Array:
    """:func:`col2im` of patches that hold one value per window at every kernel offset (an
    average pooling's gradient): (B, C, oh, ow) -> (B, C, H, W).  On CuPy each pixel gathers from
    the values themselves rather than from ``kh·kw`` copies of them; on NumPy it is :func:`col2im`
    of the broadcast view (``out`` as there)."""
    b = values.shape[0]
    oh, ow = g.out
    if xp is np:
        return col2im(xp, np.broadcast_to(values[:, :, None, None], (b, g.c, g.kh, g.kw, oh, ow)), g, out=out)
    rows = values.reshape(b * g.c, oh * ow)  # (B, C, oh, ow) -> (B·C, P)
    x_pad = _gather_rows(xp, rows, g, per_offset=False).reshape(b, g.c, *g.padded)  # -> (B, C, Hp, Wp)
    top, _, left, _ = g.pad
    return x_pad[:, :, top : top + g.h, left : left + g.w]


def gather_sum(xp: ModuleType, rows: Array, g: ConvGeometry, batch: int, per_offset: bool = True) -> Array:
    """The adjoint of patch extraction by gathering: each row holds one channel's patches of
    ``batch`` images laid out ``(kh, kw, batch, oh, ow)`` followed by at least one zero; each padded
    pixel gathers the places that read it, in a fixed order (deterministic, no atomic adds), and
    sums them: (R, ≥ K·batch·P + 1) -> (R, batch, Hp, Wp).  A pixel read by fewer windows than
    the most gathers the zero for the rest.

    With a vertical stride ``s`` the rows of each phase ``y mod s`` are gathered apart (a take and
    a sum each): a phase whose rows fewer windows read gathers fewer slots, so for a 3×3 kernel at
    stride 2 the gather writes 3 slots a pixel on average instead of 4."""
    hp, wp = g.padded
    sh = g.stride[0]
    sums = xp.empty((rows.shape[0], batch, hp, wp), dtype=rows.dtype)
    for phase in range(min(sh, hp)):
        args = (g.padded, (g.kh, g.kw), g.out, g.stride, g.dilation, batch, phase, per_offset)
        index = constant(xp, _gather_index, *args)
        n = len(range(phase, hp, sh))
        m = index.shape[0] // (batch * n * wp)
        gathered = xp.take(rows, index, axis=1).reshape(rows.shape[0], batch, n, wp, m)  # (R, batch, Hp/s, Wp, M)
        gathered.sum(axis=4, out=sums[:, :, phase::sh])
    return sums


@functools.lru_cache(maxsize=64)
def _gather_index(padded, kernel, out, stride, dilation, batch, phase, per_offset) -> np.ndarray:
    """For each image ``b`` of ``batch`` and padded pixel ``(y, x)`` with ``y ≡ phase`` (mod the
    vertical stride), the places ``((i·kw + j)·batch + b)·oh·ow + p·ow + q`` in a row of patches
    laid out (kh, kw, batch, oh, ow) of the windows that read it (``p·sh + i·dh = y``,
    ``q·sw + j·dw = x``), in row-major order, padded to the most any such pixel has with the place
    ``K·batch·P`` of the zero after the patches: (batch·rows·Wp·M,).  Without ``per_offset`` the
    row holds one value per window for every offset: the places are ``b·oh·ow + p·ow + q`` and
    the zero's ``batch·P``."""
    (kh, kw), (oh, ow) = kernel, out
    per_axis = []
    for size, k, n, s, d in zip(padded, kernel, out, stride, dilation, strict=True):
        readers = [[(i, (y - i * d) // s) for i in range(k) if (y - i * d) % s == 0 and 0 <= (y - i * d) // s < n]
                   for y in range(size)]  # fmt: skip
        per_axis.append(readers)
    rows, columns = per_axis
    rows = rows[phase :: stride[0]]
    offsets = kh * kw if per_offset else 1
    zero = offsets * batch * oh * ow
    m = max(1, max(map(len, rows)) * max(map(len, columns)))
    one = np.full((len(rows), padded[1], m), zero, dtype=np.intp)  # image 0
    for y, row_readers in enumerate(rows):
        for x, column_readers in enumerate(columns):
            places = [
                ((i * kw + j) if per_offset else 0) * batch * oh * ow + p * ow + q
                for i, p in row_readers
                for j, q in column_readers
            ]
            one[y, x, : len(places)] = places
    shift = np.arange(batch).reshape(batch, 1, 1, 1) * oh * ow * (one < zero)  # the zero stays where it is
    return (one[None] + shift).reshape(-1)  # (batch, rows, Wp, M) -> (batch·rows·Wp·M,)
