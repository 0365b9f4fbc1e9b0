"""One plan per call: how a convolution runs, chosen once from its device, geometry and algorithm.

:func:`conv_plan` is the only place that decides (PyTorch's ``select_conv_backend`` over
``ConvParams`` is the model); the forward, both gradients and the transposed convolution read the
:class:`ConvPlan` it returns, so what a call does on each device reads here:

* **CPU** (NumPy).  ``"auto"``: Winograd F(4×4, 3×3) where it applies with both channel counts
  at least 32 and 12×12 output pixels (measured faster there: :data:`WINOGRAD_MIN_CHANNELS`), else
  im2col.  im2col runs a GEMM per sample, or, for grouped convolutions and outputs of at most
  :data:`FOLDED_MAX_PIXELS` pixels, one per chunk with the chunk's images folded into its columns; its input gradient is, at stride 1 where the output has
  no more channels than the input, the correlation of the output gradient with the flipped,
  transposed kernel, else the col2im adjoint.  Winograd's input gradient is its own forward of the
  output gradient.
* **CUDA** (CuPy and xpconv's kernels, :mod:`xpconv._cuda`).  ``"auto"``: the direct kernels for
  layers whose every output sums at most :data:`DIRECT_MAX_PRODUCTS` products (depthwise layers,
  one-channel inputs), else as on the CPU.  im2col folds the chunk's images into one GEMM per
  group; its patches, col2im and the layout passes around the GEMMs are kernels, and its input
  gradient is always col2im (one GEMM and one gather, sharing the output gradient's layout pass
  with the weight gradient: fewer bytes and launches than a second im2col).  A 1×1 convolution
  (stride 1, no padding, float32 or float64) with fewer output channels than output pixels needs
  no patches: one strided-batched GEMM per image on the input itself, the weight repeated over the
  chunk (O·C values an image, where the folded layout would copy the input, C·P values), writing
  NCHW directly.  Winograd's transforms are kernels that gather their own tiles.

``"im2col"``, ``"winograd"`` and ``"direct"`` force an algorithm where it applies (Winograd: 3×3,
stride 1, dilation 1, one group; direct: CUDA only).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from ._geometry import ConvGeometry, transposed_geometry
from ._types import DTypeLike

ALGORITHMS = ("auto", "im2col", "winograd", "direct")

# "auto" picks Winograd where it measured faster than im2col: train step (forward + backward) on
# 2 cores, NumPy/OpenBLAS, float32, side by side; im2col time / Winograd time:
#   64x32x32x32->64 (cifar) 1.32;  32x64x28x28->64 1.57;  16x128x14x14->128 1.43;
#   8x256x7x7->256 0.91;  32x16x28x28->16 0.86;  32x16x8x8->32 0.83;  32x8x32x32->16 0.78;
#   32x3x32x32->16 0.50;  resnet 32x64x56x56->64: forward 1.5, backward 1.5.
# Its transforms cost memory passes in proportion to the channels while its GEMMs save
# multiplications in proportion to their product, so few channels favour im2col; on small
# outputs the last row and column of 4x4 tiles are mostly padding (7x7 -> 8x8 computed).
# Hence: both channel counts >= 32 and outputs of at least 12x12 pixels.  No GPU has measured
# this; CUDA uses the same rule.
# Winograd is 2-D only: a 1-D F(4, 3) saves half the multiplications, not three quarters, and a
# NumPy prototype measured 0.20-0.86 of im2col's speed on 3-tap 1-D layers (the README's Speed).
WINOGRAD_MIN_CHANNELS = 32
WINOGRAD_MIN_PIXELS = 12 * 12

# On the CPU, im2col folds a chunk's images into one GEMM (columns pixel by pixel, the images
# innermost: long rows for the patch copies and col2im) for grouped convolutions, and where the
# output is small: per-sample time / folded time, forward and backward, 2 cores, float32, side by
# side in alternating blocks:  64x16x7x7->32 3x3: 1.0, 1.24-1.39;  16x256x4x4->256: 1.24-1.37,
# 1.58-1.96;  60x6x14x14->16 5x5 (LeNet's second layer, 10x10 out): 0.97-1.00, 1.02-1.15;
# 64x16x14x14->32 3x3 (196 pixels out): 0.94-1.14, 1.14-1.24;  32x64x14x14->64: 0.88-0.99,
# 0.99-1.07;  one channel in, 28x28 (mnist, LeNet's first layer): 0.57-0.81, 0.41-0.61;  the
# large bench shapes 0.51-1.0.  Hence: folded where the output has at most 100 pixels.
FOLDED_MAX_PIXELS = 100

# On CUDA the direct kernels write only their outputs, in one launch forward and three backward,
# where im2col writes a patch matrix K times the input and launches twice as often.  Chosen by
# the first-order model of benchmarks/gpu_model.py (launches and bytes written), not measured on
# a GPU: for the depthwise bench shape (9 products an output) and mnist's first layer (25).
DIRECT_MAX_PRODUCTS = 32


@dataclass(frozen=True)
class ConvPlan:
    """How one convolution call runs."""

    device: str  # "cpu" or "cuda"
    algorithm: str  # "im2col", "winograd" or "direct"
    # im2col's GEMMs: "per-sample" (one an image), "folded" (the chunk's images side by side in
    # the columns) or "pointwise" (1×1: per-image GEMMs on the input itself, the weight repeated)
    layout: str
    input_gradient: str  # "col2im", "transposed" (a stride-1 correlation), "winograd" or "direct"

    @property
    def on_cuda(self) -> bool:
        return self.device == "cuda"


def winograd_applies(g: ConvGeometry) -> bool:
    """Winograd F(m×m, 3×3) here: 2-D, a 3×3 kernel, stride 1, dilation 1, no groups (any padding)."""
    return (g.kernel, g.stride, g.dilation, g.groups) == ((3, 3), (1, 1), (1, 1), 1)


def direct_products(g: ConvGeometry) -> int:
    """Products each output of the convolution sums: ``C/groups`` times the kernel's taps."""
    return g.c // g.groups * g.taps


def conv_plan(xp: ModuleType, g: ConvGeometry, algorithm: str, dtype: DTypeLike = "float32") -> ConvPlan:
    """The plan of a convolution of geometry ``g`` in ``dtype`` on ``xp``'s device for
    ``algorithm`` (``"auto"``, ``"im2col"``, ``"winograd"`` or ``"direct"``); a ``ValueError``
    where the algorithm does not apply."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(map(repr, ALGORITHMS))}, got {algorithm!r}")
    device = "cpu" if xp is np else "cuda"
    if algorithm == "winograd" and not winograd_applies(g):
        raise ValueError(
            "algorithm='winograd' needs a 2-D 3x3 kernel, stride 1, dilation 1 and groups=1; got kernel "
            f"{'x'.join(map(str, g.kernel))}, stride {g.stride}, dilation {g.dilation}, groups={g.groups}"
        )
    if algorithm == "direct" and device == "cpu":
        raise ValueError("algorithm='direct' runs on CUDA only (xpconv's direct kernels); use 'auto' or 'im2col'")
    if algorithm == "auto":
        algorithm = _auto(device, g)
    if algorithm == "direct":
        return ConvPlan(device, "direct", "none", input_gradient="direct")
    if device == "cuda":
        through = "winograd" if algorithm == "winograd" and transposed_geometry(g) is not None else "col2im"
        pointwise = g.is_pointwise and g.o // g.groups < g.pixels and np.dtype(dtype) != np.float16
        return ConvPlan(device, algorithm, "pointwise" if pointwise else "folded", input_gradient=through)
    if algorithm == "winograd":
        through = "winograd" if transposed_geometry(g) is not None else "col2im"
        return ConvPlan(device, "winograd", "per-sample", input_gradient=through)
    # the transposed correlation's patches are no larger than col2im's where O <= C
    through = "col2im" if g.o > g.c or transposed_geometry(g) is None else "transposed"
    folded = g.groups > 1 or g.pixels <= FOLDED_MAX_PIXELS
    return ConvPlan(device, "im2col", "folded" if folded else "per-sample", input_gradient=through)


def _auto(device: str, g: ConvGeometry) -> str:
    if device == "cuda" and direct_products(g) <= DIRECT_MAX_PRODUCTS:
        return "direct"
    large = min(g.c, g.o) >= WINOGRAD_MIN_CHANNELS and g.pixels >= WINOGRAD_MIN_PIXELS
    return "winograd" if winograd_applies(g) and large else "im2col"
