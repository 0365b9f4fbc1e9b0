"""Launchers of ``winograd.cu``, and Winograd F(4×4, 3×3)'s three passes on CUDA.

The method and the matrices are :mod:`xpconv._winograd`'s; here every transform is one kernel
that gathers its own tiles (the padding folded into its bounds tests, no index arrays), and the
products between them are batched GEMMs over the chunk's tiles, all operands C-contiguous:

* forward: the filter transform (a², O, C); per chunk the input transform (a², C, B·T), the
  products (a², O, B·T), the output transform with the bias into ``y``: four launches;
* input gradient: the same with the flipped, transposed kernel over the output gradient;
* weight and bias gradients: per chunk the output gradient's transform (a², O, B·T) and the input
  transform laid out (a², B·T, C + 1), whose last column is 1 at the frequency that reaches every
  pixel of a tile (:data:`xpconv._winograd.ALL_ONES_FREQUENCY`) and 0 elsewhere, so that the
  products' last column is the bias gradient; then the filter transform's adjoint: four launches.

Float16 arrays are read and written as they are, the transforms and products in float32.
"""

from __future__ import annotations

import functools
from types import ModuleType

import numpy as np

from .._checks import compute_dtype
from .._chunking import batch_chunks
from .._constants import constant
from .._geometry import ConvGeometry, transposed_geometry
from .._parallel import ChunkSum, map_chunks
from .._types import Array
from .._winograd import ALL_ONES_FREQUENCY, TILE, matrices, tiles
from .._workspace import scratch
from . import geometry, launch

A2 = (TILE + 2) ** 2  # frequencies of a tile's transform


@functools.lru_cache(maxsize=16)
def _matrix(which: str, dtype: str) -> np.ndarray:
    """``Bᵀ`` (a, a), ``Aᵀ`` (m, a) or ``G`` (a, 3) of F(4×4, 3×3), row-major in ``dtype``, read-only."""
    mats = matrices(TILE)
    host = np.ascontiguousarray({"BT": mats.BT, "AT": mats.AT, "G": mats.G}[which], dtype=dtype)
    host.setflags(write=False)
    return host


def scratch_per_sample(g: ConvGeometry, itemsize: int) -> int:
    """Bytes of scratch per sample, the largest of the three passes: a chunk's transformed tiles
    of its input and output channels (C + O + 1 columns of a² values a tile)."""
    t = tiles(g.out[0], TILE) * tiles(g.out[1], TILE)
    return A2 * t * (g.c + g.o + 1) * itemsize


def filter_transform(xp: ModuleType, weight: Array, g: ConvGeometry, transposed: bool) -> Array:
    """``G w Gᵀ`` of every kernel: (a², O, C); with ``transposed``, of the flipped kernels, (a², C, O)."""
    acc = compute_dtype(weight.dtype)
    u = xp.empty((A2, g.c, g.o) if transposed else (A2, g.o, g.c), dtype=acc)
    gm = constant(xp, _matrix, "G", acc.name)
    launch(xp, "winograd", "winograd_filter", weight.dtype, g.o * g.c, weight, gm, u, geometry(g), np.int32(transposed))
    return u


def forward(xp: ModuleType, x: Array, u: Array, bias: Array | None, y: Array, g: ConvGeometry, limit: int) -> Array:
    """Into ``y`` (N, O, oh, ow): the convolution of ``x`` by the transformed kernels ``u``
    (a², O, C), plus ``bias``, chunk by chunk within ``limit`` bytes of scratch."""
    acc = compute_dtype(x.dtype)
    t = tiles(g.out[0], TILE) * tiles(g.out[1], TILE)
    bt, at = constant(xp, _matrix, "BT", acc.name), constant(xp, _matrix, "AT", acc.name)

    def run(batch):
        b = batch.stop - batch.start
        chunk = geometry(g, n=b)
        v = scratch(xp, "wino_v", (A2, g.c, b * t), acc)
        launch(
            xp, "winograd", "winograd_input", x.dtype, g.c * b * t, x[batch], bt, v, chunk, np.int32(0), np.int32(-1)
        )
        m = xp.matmul(u, v, out=scratch(xp, "wino_m", (A2, g.o, b * t), acc))  # (a², O, C) @ (a², C, B·T)
        launch(xp, "winograd", "winograd_output", y.dtype, g.o * b * t, m, at, bias, y[batch], chunk)

    map_chunks(xp, run, batch_chunks(g.n, scratch_per_sample(g, acc.itemsize), limit, xp))
    return y


def input_gradient(
    xp: ModuleType, grad_y: Array, weight: Array, g: ConvGeometry, limit: int, bias: Array | None = None
) -> Array:
    """The gradient with respect to the input, plus ``bias`` (C,) when given (a transposed
    convolution's): :func:`forward` of ``grad_y`` by the flipped, transposed kernels over the
    stride-1 geometry that pads it by ``2 − pad``."""
    g_t = transposed_geometry(g)
    assert g_t is not None  # the plan routes other paddings to col2im
    u = filter_transform(xp, weight, g, transposed=True)  # (a², C, O)
    grad_x = xp.empty(g.input_shape, dtype=grad_y.dtype)
    return forward(xp, grad_y, u, bias, grad_x, g_t, limit)


def weight_gradient(
    xp: ModuleType, grad_y: Array, x: Array, g: ConvGeometry, limit: int, with_bias: bool
) -> tuple[Array, Array | None]:
    """The gradients with respect to the weight and (when ``with_bias``) the bias."""
    acc = compute_dtype(x.dtype)
    t = tiles(g.out[0], TILE) * tiles(g.out[1], TILE)
    bt, at = constant(xp, _matrix, "BT", acc.name), constant(xp, _matrix, "AT", acc.name)
    du = xp.empty((A2, g.o, g.c + 1), dtype=acc)  # the last column: the bias gradient at ALL_ONES_FREQUENCY
    total = ChunkSum(du)

    def run(batch):
        b = batch.stop - batch.start
        chunk = geometry(g, n=b)
        dm = scratch(xp, "wino_m", (A2, g.o, b * t), acc)
        launch(xp, "winograd", "winograd_output_adjoint", x.dtype, g.o * b * t, grad_y[batch], at, dm, chunk)
        v = scratch(xp, "wino_v", (A2, b * t, g.c + 1), acc)
        ones = np.int32(ALL_ONES_FREQUENCY)
        launch(xp, "winograd", "winograd_input", x.dtype, g.c * b * t, x[batch], bt, v, chunk, np.int32(1), ones)
        return (xp.matmul(dm, v, out=total.into(0, batch)),)  # (a², O, B·T) @ (a², B·T, C + 1)

    map_chunks(xp, run, batch_chunks(g.n, scratch_per_sample(g, acc.itemsize), limit, xp), consume=total)
    total.finish()
    grad_w = xp.empty(g.weight_shape, dtype=x.dtype)
    grad_b = xp.empty(g.o, dtype=x.dtype) if with_bias else None
    gm = constant(xp, _matrix, "G", acc.name)
    args = (geometry(g), np.int32(ALL_ONES_FREQUENCY))
    launch(xp, "winograd", "winograd_filter_adjoint", x.dtype, g.o * (g.c + 1), du, gm, grad_w, grad_b, *args)
    return grad_w, grad_b
