"""Winograd minimal filtering F(m×m, 3×3) for stride-1, undilated 3×3 convolutions.

Each output tile of ``m×m`` pixels reads an input tile of ``a×a = (m + 2)×(m + 2)`` pixels, and

    Y = Aᵀ [(G w Gᵀ) ⊙ (Bᵀ d B)] A

replaces the ``9·m²`` multiplications of the direct convolution by ``a²`` (F(4×4, 3×3): 36
instead of 144, 4× fewer; F(2×2, 3×3): 16 instead of 36).  Over a batch every frequency
``(i, j)`` of the ``a×a`` transform becomes one matrix product over channels, so a convolution
is: tiles gathered by ``a²`` strided slices, one GEMM with the Kronecker product ``Bᵀ⊗Bᵀ`` (the
input transform), ``a²`` GEMMs ``(O, C) @ (C, tiles)``, one GEMM with ``Aᵀ⊗Aᵀ`` (the output
transform), and ``m²`` strided writes back — the same shape of code as im2col + GEMM.

The matrices come from Toom-Cook interpolation on the points ``x_0 … x_{a-2}`` and ∞. Correlation
``y = C(g)ᵀ d`` is the transpose of the linear convolution ``s = C(g) e``, and Toom-Cook writes
``C(g) = V⁻¹ diag(V_r g) V_m`` with ``V`` the ``a×a`` Vandermonde matrix of the points (∞ takes the
leading coefficient), so ``Aᵀ = V_mᵀ``, ``G = V_r`` and ``Bᵀ = V⁻ᵀ``; each row ``k`` of ``Bᵀ`` is then
multiplied and row ``k`` of ``G`` divided by ``∏_{l≠k}(x_k - x_l)``, which keeps ``Bᵀ``'s entries
small.  They are built once in float64 and cast to the compute dtype.

The points set the rounding error.  Measured float32 forward error (max error / max |y|, weights
scaled 1/√(9C)) for F(4×4, 3×3): points 0, ±1, ±2 give 3.7e-6, 1.1e-5, 7.7e-6 at C = 64, 256, 512;
points 0, 1, −1, ½, −2 give 1.9e-6, 3.0e-6, 2.6e-6 (PyTorch's direct float32 convolution: 2.6e-6
at C = 512).  So F(4×4, 3×3) uses 0, 1, −1, ½, −2; F(2×2, 3×3) uses 0, 1, −1.

This module runs it on NumPy; on CUDA each transform is a kernel that gathers its own tiles
(:mod:`xpconv._cuda.winograd`), with these matrices.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from ._chunking import batch_chunks
from ._constants import constant
from ._geometry import ConvGeometry
from ._parallel import ChunkSum, map_chunks
from ._patches import pad_input
from ._types import Array, DTypeLike
from ._workspace import scratch
from .bias import add_bias, bias_grad

POINTS = {4: (0.0, 1.0, -1.0, 0.5, -2.0), 2: (0.0, 1.0, -1.0)}
R = 3  # kernel size
TILE = 4  # xpconv uses F(4×4, 3×3): 4× fewer multiplications than the direct convolution


@dataclass(frozen=True)
class WinogradMatrices:
    """F(m×m, 3×3): ``AT`` (m, a), ``G`` (a, 3), ``BT`` (a, a), in float64."""

    m: int
    AT: np.ndarray
    G: np.ndarray
    BT: np.ndarray

    @property
    def a(self) -> int:
        return self.m + R - 1


@functools.cache
def matrices(m: int) -> WinogradMatrices:
    """The transforms of F(m×m, 3×3) from its interpolation points (:data:`POINTS`)."""
    points = np.array(POINTS[m], dtype=np.float64)
    a = m + R - 1

    def vandermonde(cols: int) -> np.ndarray:
        """Rows: a polynomial of ``cols`` coefficients evaluated at each point, then at ∞."""
        v = np.zeros((a, cols))
        v[:-1] = points[:, None] ** np.arange(cols)[None, :]
        v[-1, -1] = 1.0  # the value "at ∞" is the leading coefficient
        return v

    scale = np.ones(a)
    for k, x in enumerate(points):
        scale[k] = np.prod([x - other for l_, other in enumerate(points) if l_ != k])
    at = vandermonde(m).T  # (m, a)
    g = vandermonde(R) / scale[:, None]  # (a, 3)
    bt = np.linalg.inv(vandermonde(a)).T * scale[:, None]  # (a, a)
    return WinogradMatrices(m, at, g, bt)


@functools.cache
def _kron(m: int, which: str, dtype: str) -> np.ndarray:
    mats = matrices(m)
    if which == "input":
        k = np.kron(mats.BT, mats.BT)  # (a², a²): vec(Bᵀ d B) = (Bᵀ⊗Bᵀ) vec(d)
    elif which == "output":
        k = np.kron(mats.AT, mats.AT)  # (m², a²): vec(Aᵀ M A) = (Aᵀ⊗Aᵀ) vec(M)
    else:
        k = np.kron(mats.G, mats.G)  # (a², 9): vec(G w Gᵀ) = (G⊗G) vec(w)
    return np.ascontiguousarray(k.astype(dtype))


def kron(xp: ModuleType, m: int, which: str, dtype: DTypeLike) -> Array:
    """``Bᵀ⊗Bᵀ`` (``"input"``), ``Aᵀ⊗Aᵀ`` (``"output"``) or ``G⊗G`` (``"filter"``) as an ``xp`` array."""
    return constant(xp, _kron, m, which, np.dtype(dtype).name)


def tiles(out_size: int, m: int) -> int:
    """Tiles of ``m`` outputs along an axis of ``out_size`` outputs (the last may stick out)."""
    return -(-out_size // m)


def transform_filter(xp: ModuleType, weight: Array, m: int) -> Array:
    """``G w Gᵀ`` for every (output, input) channel pair: (O, C, 3, 3) -> (a², O, C)."""
    o, c = weight.shape[:2]
    w = weight.reshape(o * c, R * R).T  # (O, C, 3, 3) -> (9, O·C)
    return xp.matmul(kron(xp, m, "filter", weight.dtype), w).reshape(-1, o, c)  # (a², 9) @ (9, O·C) -> (a², O, C)


def filter_gradient(xp: ModuleType, grad_transformed: Array, m: int, out: Array) -> Array:
    """Adjoint of :func:`transform_filter`: (a², O, C) -> (O, C, 3, 3), ``Gᵀ dW G`` per pair,
    written into ``out`` by one product."""
    a2, o, c = grad_transformed.shape
    gg = kron(xp, m, "filter", grad_transformed.dtype)  # (a², 9)
    dw = grad_transformed.reshape(a2, o * c).T  # (a², O, C) -> (a², O·C) -> (O·C, a²), a view
    xp.matmul(dw, gg, out=out.reshape(o * c, R * R))  # (O·C, a²) @ (a², 9) -> (O·C, 9), in (O, C, 3, 3)
    return out


# On NumPy, tiles are gathered and scattered by ``take`` with precomputed flat pixel indices rather than by
# a strided slice per tile offset: on NumPy a strided copy whose innermost run is short (a row of
# 14 tiles) holds the GIL, so two worker threads ran their copies one after the other, while
# ``take`` releases it.  Measured on 2 cores, resnet forward: 95-120 ms with strided slices on 2
# workers (83 ms on one), TAKE_MS with ``take``.


@functools.lru_cache(maxsize=64)
def tile_index(width: int, plane: int, batch: int, size: int, m: int, th: int, tw: int) -> np.ndarray:
    """Flat pixel, in ``batch`` images of ``plane`` pixels each ``width`` wide, that offset (i, j)
    of tile (s, t) of image b reads: ``b·plane + (s·m + i)·width + t·m + j``, for ``size × size``
    tiles every ``m`` pixels; shape (size²·batch·th·tw,) ordered (i, j, b, s, t).  ``size = m + 2``
    gathers the overlapping input tiles, ``size = m`` the output-gradient tiles."""
    i, j, b, s, t = np.meshgrid(*(np.arange(k) for k in (size, size, batch, th, tw)), indexing="ij")
    return _read_only((b * plane + (s * m + i) * width + t * m + j).reshape(-1))


@functools.lru_cache(maxsize=64)
def output_tile_index(oh: int, ow: int, batch: int, m: int, th: int, tw: int) -> np.ndarray:
    """For each output pixel (b, row, col), its place in tiles laid out (m, m, batch, th, tw):
    ``((p·m + q)·batch + b)·th·tw + s·tw + t`` with ``row = s·m + p``, ``col = t·m + q``; shape
    (batch·oh·ow,)."""
    b, row, col = np.meshgrid(np.arange(batch), np.arange(oh), np.arange(ow), indexing="ij")
    s, p = np.divmod(row, m)
    t, q = np.divmod(col, m)
    return _read_only((((p * m + q) * batch + b) * th * tw + s * tw + t).reshape(-1))


def _read_only(index: np.ndarray) -> np.ndarray:
    """A cached index, shared by the worker threads: never written."""
    index.setflags(write=False)
    return index


def take_into(xp: ModuleType, source: Array, index: Array, out: Array) -> Array:
    """``out[..., k] = source[..., index[k]]`` along the last axis (indices known to be in range).

    NumPy's default ``mode="raise"`` first copies ``out`` into a temporary (so that a bad index
    leaves it untouched): a second pass and an allocation the size of ``out``; ``mode="clip"``
    writes in place."""
    return np.take(source, index, axis=-1, out=out, mode="clip")


# --- the chunk loops ------------------------------------------------------------------------


def _tiled_geometry(g: ConvGeometry) -> tuple[ConvGeometry, int, int]:
    """``g`` padded further at the bottom/right so that whole tiles cover the output, and the
    tile counts ``(th, tw)``: the padded input has ``th·m + 2`` rows and ``tw·m + 2`` columns."""
    m = TILE
    oh, ow = g.out
    th, tw = tiles(oh, m), tiles(ow, m)
    (top, _), (left, _) = g.pad
    h, w = g.size
    pad = ((top, th * m + 2 - h - top), (left, tw * m + 2 - w - left))
    return dataclasses.replace(g, pad=pad), th, tw


def _channel_major(xp, x, batch: slice, g_tiles: ConvGeometry, slot: str, dtype):
    """The chunk zero-padded into this thread's scratch with channels first, (C, B, Hp, Wp), so
    that each channel's tiles of the whole chunk sit side by side: the GEMMs then run over
    ``B·tiles`` columns rather than one sample's tiles."""
    c, b = g_tiles.c, batch.stop - batch.start
    x_pad = scratch(xp, slot, (c, b, *g_tiles.padded), dtype)
    view = x_pad.transpose(1, 0, 2, 3)  # (C, B, Hp, Wp) -> (B, C, Hp, Wp), a view
    if any(map(any, g_tiles.pad)):
        pad_input(xp, x[batch].astype(dtype, copy=False), g_tiles, out=view)
    else:
        view[...] = x[batch]
    return x_pad


def _input_transform(xp, x, batch: slice, g: ConvGeometry, th: int, tw: int, dtype):
    """The chunk's input tiles after ``Bᵀ d B``, in this thread's scratch: -> (a², C, B·th·tw),
    a view of (C, a², B·T)."""
    m, c = TILE, g.c
    a, b, t = m + 2, batch.stop - batch.start, th * tw
    k_in = kron(xp, m, "input", dtype)  # (a², a²)
    g_tiles, _, _ = _tiled_geometry(g)
    hp, wp = g_tiles.padded
    x_pad = _channel_major(xp, x, batch, g_tiles, "x_pad", dtype)  # (C, B, Hp, Wp)
    index = constant(xp, tile_index, wp, hp * wp, b, a, m, th, tw)  # (a²·B·T,) pixels of every tile
    d = scratch(xp, "wino_d", (c, a * a * b * t), dtype)
    take_into(xp, x_pad.reshape(c, b * hp * wp), index, out=d)  # (C, B·Hp·Wp) -> (C, a²·B·T)
    u = scratch(xp, "wino_u", (c, a * a, b * t), dtype)
    xp.matmul(k_in, d.reshape(c, a * a, b * t), out=u)  # (a², a²) @ (C, a², B·T) -> (C, a², B·T)
    return u.transpose(1, 0, 2)  # -> (a², C, B·T), a view


def _scratch_per_sample(g: ConvGeometry, g_tiles: ConvGeometry, th: int, tw: int, itemsize: int) -> int:
    """Bytes per sample of the scratch slots ``x_pad``, ``wino_d``, ``wino_u``, ``wino_m``,
    ``wino_y`` and ``wino_out``, which the backward reuses with input and output channels
    swapped: so counted with the larger of the two channel counts."""
    m, ch = TILE, max(g.c, g.o)
    a2, t = (m + 2) ** 2, th * tw
    padded = ch * g_tiles.padded[0] * g_tiles.padded[1]
    oh, ow = g.out
    return (padded + 3 * a2 * ch * t + m * m * ch * t + ch * oh * ow) * itemsize


# In the output transform Aᵀ M A, the frequency at point (1, 1) reaches every output pixel of the
# tile with weight 1 (column 1 of Aᵀ is x = 1 to the powers 0..m-1), so adding the bias there adds
# it to the whole tile: O·tiles additions instead of O·pixels; and, the adjoint, the bias gradient
# is the sum of the output gradient's transform at that frequency.
ALL_ONES_FREQUENCY = 1 * (TILE + 2) + 1


def winograd_forward(
    xp: ModuleType, x: Array, weight: Array, bias: Array | None, y: Array, g: ConvGeometry, limit: int
) -> None:
    """Per chunk: tiles, input transform, a² GEMMs ``(O, C) @ (C, B·T)``, output transform with
    the bias, written into ``y``."""
    m, acc = TILE, y.dtype
    a, (oh, ow) = m + 2, g.out
    g_tiles, th, tw = _tiled_geometry(g)
    t = th * tw
    w_t = transform_filter(xp, weight, m)  # (O, C, 3, 3) -> (a², O, C), once per call
    k_out = kron(xp, m, "output", acc)  # (m², a²)

    def run(batch):
        b = batch.stop - batch.start
        u = _input_transform(xp, x, batch, g, th, tw, acc)  # (a², C, B·T)
        prod = scratch(xp, "wino_m", (a * a, g.o, b * t), acc)
        xp.matmul(w_t, u, out=prod)  # (a², O, C) @ (a², C, B·T) -> (a², O, B·T)
        if bias is not None:
            ones = prod[ALL_ONES_FREQUENCY]  # (O, B·T), a view
            add_bias(xp, ones, bias, 0, out=ones)
        out = scratch(xp, "wino_y", (g.o, m * m, b * t), acc)
        xp.matmul(k_out, prod.transpose(1, 0, 2), out=out)  # (m², a²) @ (O, a², B·T) -> (O, m², B·T)
        to_pixels = constant(xp, output_tile_index, oh, ow, b, m, th, tw)  # (B·oh·ow,) places in the tiles
        pixels = scratch(xp, "wino_out", (g.o, b, oh, ow), acc)
        take_into(xp, out.reshape(g.o, m * m * b * t), to_pixels, out=pixels.reshape(g.o, b * oh * ow))
        y[batch] = pixels.transpose(1, 0, 2, 3)  # (O, B, oh, ow) -> (B, O, oh, ow)

    per_sample = _scratch_per_sample(g, g_tiles, th, tw, acc.itemsize)
    map_chunks(xp, run, batch_chunks(g.n, per_sample, limit, xp, flops=g.flops))


def winograd_weight_gradient(
    xp: ModuleType, grad_output: Array, x: Array, grad_w: Array, grad_b: Array | None, g: ConvGeometry, limit: int
) -> None:
    """Weight and bias gradients, written into ``grad_w`` and ``grad_b`` (unless ``None``), as the
    adjoint of :func:`winograd_forward` with respect to the weight: ``grad_output``'s tiles
    through ``Aᵀ⊗Aᵀ`` transposed, one GEMM per frequency with the input tiles, then ``Gᵀ dW G``."""
    m, acc = TILE, grad_w.dtype
    a, (oh, ow) = m + 2, g.out
    g_tiles, th, tw = _tiled_geometry(g)
    t = th * tw
    k_out_t = kron(xp, m, "output", acc).T  # (a², m²)
    # grad_output zero-extended to whole tiles: a geometry that pads it at the bottom/right only
    g_dy = dataclasses.replace(g_tiles, c=g.o, size=(oh, ow), pad=((0, th * m - oh), (0, tw * m - ow)))
    grad_w_t = xp.empty((a * a, g.o, g.c), dtype=acc)
    total = ChunkSum(grad_w_t, grad_b)

    def run(batch):
        b = batch.stop - batch.start
        go = grad_output[batch].astype(acc, copy=False)
        grad_b_part = None if grad_b is None else bias_grad(go, 1, acc, out=total.into(1, batch))
        u = _input_transform(xp, x, batch, g, th, tw, acc)  # (a², C, B·T), a view
        # the input tiles' slots are free again: x_pad and wino_y take the output-gradient tiles
        go_pad = _channel_major(xp, grad_output, batch, g_dy, "x_pad", acc)  # (O, B, th·m, tw·m)
        from_pixels = constant(xp, tile_index, tw * m, th * m * tw * m, b, m, m, th, tw)  # (m²·B·T,)
        dy = scratch(xp, "wino_y", (g.o, m * m * b * t), acc)
        take_into(xp, go_pad.reshape(g.o, -1), from_pixels, out=dy)  # (O, B·th·m·tw·m) -> (O, m²·B·T)
        dm = scratch(xp, "wino_m", (g.o, a * a, b * t), acc)
        xp.matmul(k_out_t, dy.reshape(g.o, m * m, b * t), out=dm)  # (a², m²) @ (O, m², B·T) -> (O, a², B·T)
        # (a², O, B·T) @ (a², B·T, C) -> (a², O, C): one GEMM per frequency over the chunk's tiles
        return xp.matmul(dm.transpose(1, 0, 2), u.transpose(0, 2, 1)), grad_b_part

    per_sample = _scratch_per_sample(g, g_tiles, th, tw, acc.itemsize)
    map_chunks(xp, run, batch_chunks(g.n, per_sample, limit, xp, flops=g.flops), consume=total)
    total.finish()
    filter_gradient(xp, grad_w_t, m, out=grad_w)  # (a², O, C) -> (O, C, 3, 3)
