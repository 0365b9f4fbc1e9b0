"""Launchers of ``direct.cu``: the direct convolution's forward and both gradients on CUDA.

No patch matrix and no workspace: the forward and the input gradient are one launch each and
write only their outputs; the weight and bias gradients are two, a deterministic two-stage sum
whose first stage writes :func:`segments` partial sums per weight.  Arrays are C-contiguous, on
the current device, of one dtype (float16, float32 or float64; sums in float32 for float16), and
every output is written whole.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from .._checks import compute_dtype
from .._geometry import ConvGeometry
from .._types import Array
from . import geometry, launch

# Threads of the weight gradient's first stage: enough to fill a GPU, few enough that its
# partial sums stay small (a few MB).  A function of the shapes alone, so results are the same
# on every device.
PARTIAL_SUMS = 2**16


def segments(g: ConvGeometry) -> int:
    """How many parts the weight gradient's sum over (image, output pixel) is cut into."""
    slots = g.o * (g.c // g.groups * g.taps + 1)
    return max(1, min(g.n * g.pixels, -(-PARTIAL_SUMS // slots)))


def forward(xp: ModuleType, x: Array, weight: Array, bias: Array | None, g: ConvGeometry) -> Array:
    """The convolution of ``x`` (N, C, H, W) with ``weight`` (O, Cg, kh, kw), plus ``bias``: -> (N, O, oh, ow)."""
    y = xp.empty(g.output_shape, dtype=x.dtype)
    launch(xp, "direct", "direct_forward", x.dtype, y.size, x, weight, bias, y, geometry(g))
    return y


def input_gradient(xp: ModuleType, grad_y: Array, weight: Array, g: ConvGeometry, bias: Array | None = None) -> Array:
    """The gradient with respect to the input, (N, O, oh, ow) -> (N, C, H, W), plus ``bias`` (C,)
    when given (a transposed convolution's)."""
    grad_x = xp.empty(g.input_shape, dtype=grad_y.dtype)
    launch(xp, "direct", "direct_input_gradient", grad_y.dtype, grad_x.size, grad_y, weight, bias, grad_x, geometry(g))
    return grad_x


def weight_gradient(
    xp: ModuleType, grad_y: Array, x: Array, g: ConvGeometry, with_bias: bool
) -> tuple[Array, Array | None]:
    """The gradients with respect to the weight and (when ``with_bias``) the bias."""
    parts = segments(g)
    slots = g.c // g.groups * g.taps + 1
    partials = xp.empty((g.o, slots, parts), dtype=compute_dtype(x.dtype))
    args = (geometry(g), np.int64(parts))
    launch(xp, "direct", "direct_weight_partials", x.dtype, partials.size, grad_y, x, partials, *args)
    grad_w = xp.empty(g.weight_shape, dtype=x.dtype)
    grad_b = xp.empty(g.o, dtype=x.dtype) if with_bias else None
    launch(xp, "direct", "direct_weight_sum", x.dtype, g.o * slots, partials, grad_w, grad_b, *args)
    return grad_w, grad_b
