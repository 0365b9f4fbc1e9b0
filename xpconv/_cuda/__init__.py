"""Fused CUDA kernels for the CuPy path: their CUDA C sources, one loader, one launch.

The sources sit beside this file, one module per job: ``patches.cu`` (im2col with the padding
folded in, col2im as a per-pixel gather, the layout passes around the folded GEMMs),
``pool.cu`` (max pooling with its indices, average pooling, both gradients), ``direct.cu`` (a
direct convolution for depthwise and other small layers) and ``winograd.cu`` (Winograd's fused
transforms); ``common.cuh`` holds what they share, the :data:`GEOMETRY` struct first.  Each has
its thin launchers in the Python module of the same name, which say what each kernel reads and
writes.

A module is compiled by CuPy (``RawModule``, NVRTC) once per dtype and device: its text is the
dtype's preamble (:data:`PREAMBLES`: ``scalar_t``, ``acc_t`` and their conversions), then
``common.cuh``, then the module; CuPy caches the binary on disk, and :func:`launch` keeps the
loaded kernels per device (:func:`xpconv._constants.on_device`).  In the tests the same text
runs on the CPU, compiled by the system C++ compiler (``tests/cuda_host.py``), and compiles for
sm_80 and sm_90 (``tests/test_cuda_kernels.py``).

Every kernel is a grid-stride loop over its outputs, so :func:`launch` may cap the grid; none
uses shared memory or atomics, so results repeat bit for bit.
"""

from __future__ import annotations

import functools
from importlib import resources
from types import ModuleType
from typing import Any, cast

import numpy as np

from .._constants import on_device
from .._geometry import ConvGeometry
from .._types import DTypeLike

MODULES = ("patches", "pool", "direct", "winograd")
MAX_DIMS = 3  # spatial axes the kernels handle

# The kernels' Geometry struct (common.cuh), passed by value as a NumPy structured scalar: CuPy
# hands a kernel a NumPy scalar's bytes as they are (cupy/_core/_scalar.pyx, CScalar).
GEOMETRY = np.dtype(
    [
        ("n", np.int64),
        ("c", np.int64),
        ("o", np.int64),
        ("groups", np.int64),
        ("dims", np.int32),
        *((name, np.int32, (MAX_DIMS,)) for name in ("size", "kernel", "out", "stride", "dilation", "pad")),
    ],
    align=True,
)

PREAMBLES = {
    "float16": """#include <cuda_fp16.h>
typedef __half scalar_t;
typedef float acc_t;
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ __half to_scalar(float v) { return __float2half(v); }
__device__ __forceinline__ float infinity() { return __int_as_float(0x7f800000); }
""",
    "float32": """typedef float scalar_t;
typedef float acc_t;
__device__ __forceinline__ float to_scalar(float v) { return v; }
__device__ __forceinline__ float infinity() { return __int_as_float(0x7f800000); }
""",
    "float64": """typedef double scalar_t;
typedef double acc_t;
__device__ __forceinline__ double to_scalar(double v) { return v; }
__device__ __forceinline__ double infinity() { return __longlong_as_double(0x7ff0000000000000LL); }
""",
}
OPTIONS = ("--std=c++17",)
BLOCK = 256  # threads a block
MAX_BLOCKS = 8192  # enough to fill an H200 (132 SMs) several times over; the grid-stride loops do the rest


@functools.cache
def _text(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def source(module: str, dtype: DTypeLike) -> str:
    """The CUDA C compiled for ``module`` in ``dtype``: its preamble, ``common.cuh``, the module."""
    return PREAMBLES[np.dtype(dtype).name] + _text("common.cuh") + _text(f"{module}.cu")


def geometry(g: ConvGeometry, n: int | None = None) -> np.void:
    """``g`` as the kernels' ``Geometry`` struct, for a chunk of ``n`` images (default: all)."""
    if g.dims > MAX_DIMS:
        raise ValueError(f"the CUDA kernels handle 1 to {MAX_DIMS} spatial axes, got {g.dims}")
    struct = np.zeros((), GEOMETRY)
    struct["n"], struct["c"], struct["o"], struct["groups"] = g.n if n is None else n, g.c, g.o, g.groups
    struct["dims"] = g.dims
    unused = MAX_DIMS - g.dims  # axes beyond dims: size, kernel, output, stride and dilation 1, no padding
    for field, values in [
        ("size", g.size),
        ("kernel", g.kernel),
        ("out", g.out),
        ("stride", g.stride),
        ("dilation", g.dilation),
        ("pad", g.pad_before),
    ]:
        struct[field] = (*values, *([0 if field == "pad" else 1] * unused))
    return cast(np.void, struct[()])


def launch(xp: ModuleType, module: str, kernel: str, dtype: DTypeLike, size: int, *args: Any) -> None:
    """Run ``kernel`` of ``module``, compiled for ``dtype``, as a grid-stride loop over ``size``
    elements (no launch for none); the first launch on a device loads the module there."""
    if size <= 0:
        return
    name = np.dtype(dtype).name

    def load():
        compiled = on_device(
            xp, ("cuda-module", module, name), lambda: xp.RawModule(code=source(module, name), options=OPTIONS)
        )
        return compiled.get_function(kernel)

    function = on_device(xp, ("cuda-kernel", module, name, kernel), load)
    blocks = min(-(-size // BLOCK), MAX_BLOCKS)
    function((blocks,), (BLOCK,), args)
