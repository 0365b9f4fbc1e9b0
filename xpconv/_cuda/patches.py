"""Launchers of ``patches.cu``: the folded GEMMs' operands and results to and from NCHW.

Each takes C-contiguous arrays on the current device and writes the whole of its ``out``; the
kernel is compiled for the dtype of the caller's arrays (float16, float32 or float64), the GEMM
side being in the compute dtype (float32 for float16).  Layouts as in ``patches.cu``.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from .._geometry import ConvGeometry
from .._types import Array
from . import geometry, launch


def im2col(xp: ModuleType, x: Array, g: ConvGeometry, out: Array) -> Array:
    """The patch matrix of the chunk ``x`` (B, C, H, W), the padding folded in: writes ``out``
    (C·K, B·P), B·C·K·P elements of the compute dtype."""
    launch(xp, "patches", "im2col", x.dtype, out.size, x, out, geometry(g, n=x.shape[0]))
    return out


def col2im(xp: ModuleType, cols: Array, g: ConvGeometry, bias: Array | None, out: Array) -> Array:
    """The adjoint of :func:`im2col`, plus ``bias`` (C,) when given: writes ``out`` (B, C, H, W)
    from ``cols`` (C·K, B·P)."""
    launch(xp, "patches", "col2im", out.dtype, out.size, cols, bias, out, geometry(g, n=out.shape[0]))
    return out


def to_channel_major(xp: ModuleType, y: Array, out: Array) -> Array:
    """``y`` (B, O, P...) as a GEMM operand: writes ``out`` (O, B·P) in the compute dtype."""
    b, o = y.shape[:2]
    pixels = y.size // max(1, b * o)
    launch(xp, "patches", "to_channel_major", y.dtype, out.size, y, out, np.int64(b), np.int64(o), np.int64(pixels))
    return out


def from_channel_major(xp: ModuleType, prod: Array, bias: Array | None, out: Array) -> Array:
    """A GEMM's product ``prod`` (O, B·P) to NCHW, plus ``bias`` (O,) when given: writes ``out`` (B, O, P...)."""
    b, o = out.shape[:2]
    pixels = out.size // max(1, b * o)
    launch(
        xp,
        "patches",
        "from_channel_major",
        out.dtype,
        out.size,
        prod,
        bias,
        out,
        np.int64(b),
        np.int64(o),
        np.int64(pixels),
    )
    return out
