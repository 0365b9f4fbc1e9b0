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
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

POINTS = {4: (0.0, 1.0, -1.0, 0.5, -2.0), 2: (0.0, 1.0, -1.0)}
R = 3  # kernel size


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


def kron(xp, m: int, which: str, dtype) -> object:
    """``Bᵀ⊗Bᵀ`` (``"input"``), ``Aᵀ⊗Aᵀ`` (``"output"``) or ``G⊗G`` (``"filter"``) as an ``xp`` array."""
    host = _kron(m, which, np.dtype(dtype).name)
    return host if xp is np else xp.asarray(host)


def tiles(out_size: int, m: int) -> int:
    """Tiles of ``m`` outputs along an axis of ``out_size`` outputs (the last may stick out)."""
    return -(-out_size // m)


def transform_filter(xp, weight, m: int):
    """``G w Gᵀ`` for every (output, input) channel pair: (O, C, 3, 3) -> (a², O, C)."""
    o, c = weight.shape[:2]
    w = weight.reshape(o * c, R * R).T  # (O, C, 3, 3) -> (9, O·C)
    return xp.matmul(kron(xp, m, "filter", weight.dtype), w).reshape(-1, o, c)  # (a², 9) @ (9, O·C) -> (a², O, C)


def filter_gradient(xp, grad_transformed, m: int):
    """Adjoint of :func:`transform_filter`: (a², O, C) -> (O, C, 3, 3), ``Gᵀ dW G`` per pair."""
    a2, o, c = grad_transformed.shape
    gg = kron(xp, m, "filter", grad_transformed.dtype)  # (a², 9)
    dw = xp.matmul(gg.T, grad_transformed.reshape(a2, o * c))  # (9, a²) @ (a², O·C) -> (9, O·C)
    return dw.T.reshape(o, c, R, R)  # (9, O·C) -> (O·C, 9) -> (O, C, 3, 3)


# Tiles are gathered and scattered by ``take`` with precomputed flat pixel indices rather than by
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
    return (b * plane + (s * m + i) * width + t * m + j).reshape(-1)


@functools.lru_cache(maxsize=64)
def output_tile_index(oh: int, ow: int, batch: int, m: int, th: int, tw: int) -> np.ndarray:
    """For each output pixel (b, row, col), its place in tiles laid out (m, m, batch, th, tw):
    ``((p·m + q)·batch + b)·th·tw + s·tw + t`` with ``row = s·m + p``, ``col = t·m + q``; shape
    (batch·oh·ow,)."""
    b, row, col = np.meshgrid(np.arange(batch), np.arange(oh), np.arange(ow), indexing="ij")
    s, p = np.divmod(row, m)
    t, q = np.divmod(col, m)
    return (((p * m + q) * batch + b) * th * tw + s * tw + t).reshape(-1)


def index_array(xp, host_index: np.ndarray):
    return host_index if xp is np else xp.asarray(host_index)


def take_into(xp, source, index, out):
    """``out[..., k] = source[..., index[k]]`` along the last axis (indices known to be in range).

    NumPy's default ``mode="raise"`` first copies ``out`` into a temporary (so that a bad index
    leaves it untouched): a second pass and an allocation the size of ``out``; ``mode="clip"``
    writes in place.  CuPy's ``take`` has no ``mode`` and writes in place."""
    if xp is np:
        return np.take(source, index, axis=-1, out=out, mode="clip")
    return xp.take(source, index, axis=-1, out=out)
