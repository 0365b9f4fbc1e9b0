"""``xpconv check``: every kernel on one device against the float64 reference.

Errors are relative to the reference's scale, ``max|actual - ref| / max|ref|``
(:func:`relative_error`), and must stay under the tolerance of the dtype (:data:`TOLERANCE`).
The test suite uses the same table and the same function against its own plain-loop oracle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._backend import namespace_for, to_device, to_numpy
from .._geometry import conv_geometry, conv_transpose_geometry, pool_geometry
from .._types import Algorithm, Array, ArrayLike, Device, IntTuple, Padding
from ..bias import bias_add, bias_backward
from ..conv import CONVOLUTIONS
from ..conv_transpose import TRANSPOSED_CONVOLUTIONS
from ..dense import dense, dense_backward
from ..pool import POOLINGS
from .reference import (
    reference_conv,
    reference_conv_backward,
    reference_conv_transpose,
    reference_dense,
    reference_dense_backward,
    reference_pool,
)

# Worst error allowed, relative to the largest magnitude of the float64 reference's result.
# float64: sums of ~1000 products lose ~1e-16 each; float32: unit roundoff 6e-8 times the
# growth of those sums; float16 inputs are rounded before the reference sees them and
# accumulate in float32, and the result is rounded to float16 (unit roundoff 4.9e-4).
TOLERANCE = {"float64": 1e-12, "float32": 1e-5, "float16": 2e-3}

# name: (x shape, weight shape, stride, padding, dilation, groups, algorithm); "auto" takes the
# direct kernels on CUDA for these small layers (im2col on the CPU)
CONFIGS: dict[str, tuple[Any, ...]] = {
    "book 5x5 same": ((4, 1, 12, 12), (6, 1, 5, 5), 1, "same", 1, 1, "im2col"),
    "book 5x5 auto": ((4, 1, 12, 12), (6, 1, 5, 5), 1, "same", 1, 1, "auto"),
    "rect stride/dil": ((3, 4, 11, 8), (6, 2, 3, 2), (2, 1), (1, 2), (2, 1), 2, "im2col"),
    "even same": ((2, 3, 7, 10), (4, 3, 4, 2), 1, "same", 1, 1, "im2col"),
    "depthwise": ((2, 6, 9, 9), (12, 1, 3, 3), 2, 1, 1, 6, "im2col"),
    "depthwise auto": ((2, 6, 9, 9), (12, 1, 3, 3), 2, 1, 1, 6, "auto"),
    "pointwise": ((3, 8, 5, 6), (5, 8, 1, 1), 1, 0, 1, 1, "im2col"),
    "winograd 3x3": ((2, 8, 10, 9), (6, 8, 3, 3), 1, 1, 1, 1, "winograd"),
    "winograd tiles": ((1, 4, 7, 13), (5, 4, 3, 3), 1, (2, 0), 1, 1, "winograd"),
    "1-D dil groups": ((3, 4, 17), (6, 2, 3), 2, 1, 2, 2, "im2col"),
    "1-D same auto": ((2, 3, 12), (4, 3, 4), 1, "same", 1, 1, "auto"),
    "3-D rect": ((2, 3, 6, 7, 5), (4, 3, 3, 2, 3), (1, 2, 1), (1, 0, 1), 1, 1, "im2col"),
    "3-D depthwise": ((2, 4, 5, 5, 5), (4, 1, 3, 3, 3), 1, 1, 1, 4, "auto"),
}
DENSE = {"dense 7x20->9": (7, 20, 9)}
# name: (x shape, weight shape, stride, padding, output_padding, dilation, groups, algorithm)
TRANSPOSED: dict[str, tuple[Any, ...]] = {
    "4x4 s2 p1": ((2, 4, 5, 6), (4, 3, 4, 4), 2, 1, 0, 1, 1, "im2col"),
    "rect groups pad": ((2, 4, 4, 5), (4, 3, 3, 2), (2, 1), (1, 0), (1, 0), 1, 2, "im2col"),
    "winograd 3x3": ((2, 8, 7, 6), (8, 6, 3, 3), 1, 1, 0, 1, 1, "winograd"),
    "1-D 4 s2 p1": ((2, 4, 9), (4, 3, 4), 2, 1, 1, 1, 1, "im2col"),
    "3-D s2": ((1, 4, 3, 4, 3), (4, 1, 2, 3, 2), 2, (0, 1, 0), 1, 1, 2, "im2col"),
}
# name: (kind, x shape, kernel, stride, padding, dilation, ceil_mode, count_include_pad)
POOLS: dict[str, tuple[Any, ...]] = {
    "max 3x3 s2 ceil": ("max", (2, 3, 9, 8), (3, 3), (2, 2), (1, 1), (1, 1), True, True),
    "max dilated": ("max", (2, 3, 8, 9), (2, 3), (2, 2), (0, 1), (2, 1), False, True),
    "avg 3x3 s1 p1": ("avg", (2, 3, 7, 8), (3, 3), (1, 1), (1, 1), (1, 1), False, True),
    "avg ceil no pad": ("avg", (2, 3, 7, 8), (3, 2), (2, 2), (1, 1), (1, 1), True, False),
    "max 1-D ceil": ("max", (2, 3, 11), 3, 2, 1, 1, True, True),
    "avg 1-D no pad": ("avg", (2, 3, 10), 4, 3, 2, 1, True, False),
    "max 3-D dilated": ("max", (1, 2, 7, 6, 7), (2, 2, 3), (2, 1, 2), (0, 1, 1), (2, 1, 1), False, True),
    "avg 3-D": ("avg", (2, 2, 5, 6, 5), (2, 3, 2), (2, 2, 1), (1, 1, 0), 1, False, True),
}


@dataclass
class Row:
    kernel: str
    config: str
    dtype: str
    error: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return bool(self.error <= self.tolerance)  # NaN fails


def relative_error(actual: Array, expected: ArrayLike) -> float:
    """``max|actual - expected| / max|expected|`` in float64 (``actual`` on any device);
    ``inf`` when the shapes differ."""
    actual = to_numpy(actual).astype(np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return float("inf")
    scale = float(np.max(np.abs(expected), initial=0.0)) or 1.0
    return float(np.max(np.abs(actual - expected), initial=0.0) / scale)


def _inputs(rng, dtype, *shapes):
    """Random host arrays of ``dtype`` and their exact float64 values."""
    arrays = [rng.standard_normal(s).astype(dtype) for s in shapes]
    return arrays, [a.astype(np.float64) for a in arrays]


def conv_errors(
    x: Array,
    weight: Array,
    bias: Array | None,
    grad_output: Array,
    *,
    stride: IntTuple = 1,
    padding: Padding = 0,
    dilation: IntTuple = 1,
    groups: int = 1,
    algorithm: Algorithm = "auto",
) -> dict[str, float]:
    """Relative errors of a convolution (``conv1d``, ``conv2d`` or ``conv3d`` by x's rank) and its
    three gradients (arrays on any device) against the float64 reference run on the same values;
    keys ``conv2d`` and ``conv2d_backward.<part>`` (for 2-D)."""
    shape_args: dict[str, Any] = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    g = conv_geometry(x.shape, weight.shape, None if bias is None else bias.shape, **shape_args)
    forward, backward = CONVOLUTIONS[g.dims]
    name = f"conv{g.dims}d"
    kw = {**shape_args, "algorithm": algorithm}
    hyper: dict[str, Any] = dict(stride=g.stride, pad=g.pad, dilation=g.dilation, groups=g.groups)
    xh, wh, bh, gh = (to_numpy(a).astype(np.float64) for a in (x, weight, bias, grad_output))
    errors = {name: relative_error(forward(x, weight, bias, **kw), reference_conv(xh, wh, bh, **hyper))}
    grads = backward(grad_output, x, weight, **kw)
    ref = reference_conv_backward(gh, xh, wh, **hyper)
    for part in ("input", "weight", "bias"):
        errors[f"{name}_backward.{part}"] = relative_error(getattr(grads, part), getattr(ref, part))
    return errors


def run_check(device: Device = "cpu", dtypes: Sequence[str] = ("float32", "float64"), seed: int = 0) -> list[Row]:
    """Every kernel and gradient on ``device`` for each dtype: a :class:`Row` per comparison."""
    namespace_for(device)  # fail early, with the helpful message, if the device is missing
    rng = np.random.default_rng(seed)
    rows = []
    for dtype in dtypes:
        tol = TOLERANCE[dtype]
        for name, (x_shape, w_shape, s, p, d, grp, algorithm) in CONFIGS.items():
            hyper: dict[str, Any] = dict(stride=s, padding=p, dilation=d, groups=grp)
            geometry = conv_geometry(x_shape, w_shape, None, **hyper)
            host, _ = _inputs(rng, dtype, x_shape, w_shape, (w_shape[0],), geometry.output_shape)
            x, wt, b, go = (to_device(a, device) for a in host)
            errors = conv_errors(x, wt, b, go, **hyper, algorithm=algorithm)
            rows += [Row(kernel, name, dtype, error, tol) for kernel, error in errors.items()]
        for name, (n, fin, fout) in DENSE.items():
            host, exact = _inputs(rng, dtype, (n, fin), (fout, fin), (fout,), (n, fout))
            x, wt, b, go = (to_device(a, device) for a in host)
            grads = dense_backward(go, x, wt)
            ref = reference_dense_backward(exact[3], exact[0], exact[1])
            rows.append(Row("dense", name, dtype, relative_error(dense(x, wt, b), reference_dense(*exact[:3])), tol))
            for part in ("input", "weight", "bias"):
                error = relative_error(getattr(grads, part), getattr(ref, part))
                rows.append(Row(f"dense_backward.{part}", name, dtype, error, tol))
        rows += _transposed_rows(rng, dtype, device) + _pool_rows(rng, dtype, device)
        host, exact = _inputs(rng, dtype, (3, 5, 4, 6), (5,))
        x, b = (to_device(a, device) for a in host)
        expected = exact[0] + exact[1][:, None, None]
        rows.append(Row("bias_add", "NCHW axis=1", dtype, relative_error(bias_add(x, b), expected), tol))
        expected = exact[0].sum(axis=(0, 2, 3))
        rows.append(Row("bias_backward", "NCHW axis=1", dtype, relative_error(bias_backward(x), expected), tol))
    return rows


def conv_transpose_errors(
    x: Array, weight: Array, bias: Array | None, grad_output: Array, **kw: Any
) -> dict[str, float]:
    """Relative errors of a transposed convolution (by x's rank) and its three gradients against
    the float64 reference; ``kw``: its hyperparameters and ``algorithm``."""
    hyper = {k: v for k, v in kw.items() if k != "algorithm"}
    g, _ = conv_transpose_geometry(x.shape, weight.shape, None, **hyper)
    forward, backward = TRANSPOSED_CONVOLUTIONS[g.dims]
    name = f"conv_transpose{g.dims}d"
    exact = [to_numpy(a).astype(np.float64) for a in (x, weight, bias, grad_output)]
    ref_y, ref = reference_conv_transpose(
        *exact, stride=g.stride, padding=g.pad_before, dilation=g.dilation, groups=g.groups
    )
    errors = {name: relative_error(forward(x, weight, bias, **kw), ref_y)}
    grads = backward(grad_output, x, weight, **kw)
    for part in ("input", "weight", "bias"):
        errors[f"{name}_bwd.{part}"] = relative_error(getattr(grads, part), getattr(ref, part))
    return errors


def pool_errors(kind: str, x: Array, grad_output: Array, **kw: Any) -> dict[str, float]:
    """Relative errors of a max or average pooling (``kind`` ``"max"``/``"avg"``, by x's rank) and
    its gradient against the float64 reference; ``kw``: the pooling's arguments."""
    g = pool_geometry(
        x.shape,
        kw["kernel_size"],
        kw.get("stride"),
        kw.get("padding", 0),
        kw.get("dilation", 1),
        kw.get("ceil_mode", False),
    )
    forward, backward = POOLINGS[kind, g.dims]
    name = f"{kind}_pool{g.dims}d"
    ref_y, ref_grad = reference_pool(
        to_numpy(x).astype(np.float64),
        to_numpy(grad_output).astype(np.float64),
        kind=kind,
        kernel=g.kernel,
        stride=g.stride,
        padding=g.pad_before,  # the reference reads the output size from grad_output
        dilation=g.dilation,
        count_include_pad=kw.get("count_include_pad", True),
    )
    return {
        name: relative_error(forward(x, **kw), ref_y),
        f"{name}_backward": relative_error(backward(grad_output, x, **kw), ref_grad),
    }


def _transposed_rows(rng, dtype: str, device: Device) -> list[Row]:
    rows = []
    for name, (x_shape, w_shape, s, p, op, d, grp, algorithm) in TRANSPOSED.items():
        hyper: dict[str, Any] = dict(stride=s, padding=p, output_padding=op, dilation=d, groups=grp)
        _, size = conv_transpose_geometry(x_shape, w_shape, None, **hyper)
        host, _ = _inputs(rng, dtype, x_shape, w_shape, (w_shape[1] * grp,), (x_shape[0], w_shape[1] * grp, *size))
        x, wt, b, go = (to_device(a, device) for a in host)
        errors = conv_transpose_errors(x, wt, b, go, **hyper, algorithm=algorithm)
        rows += [Row(kernel, name, dtype, error, TOLERANCE[dtype]) for kernel, error in errors.items()]
    return rows


def _pool_rows(rng, dtype: str, device: Device) -> list[Row]:
    rows = []
    for name, (kind, shape, k, s, p, d, ceil, include) in POOLS.items():
        kw: dict[str, Any] = dict(kernel_size=k, stride=s, padding=p, ceil_mode=ceil)
        kw.update(dict(dilation=d) if kind == "max" else dict(count_include_pad=include))
        g = pool_geometry(shape, k, s, p, d if kind == "max" else 1, ceil)
        (x_host, go_host), _ = _inputs(rng, dtype, shape, g.output_shape)
        errors = pool_errors(kind, to_device(x_host, device), to_device(go_host, device), **kw)
        rows += [Row(kernel, name, dtype, error, TOLERANCE[dtype]) for kernel, error in errors.items()]
    return rows


def format_rows(rows: list[Row]) -> str:
    header = f"{'kernel':<28} {'configuration':<16} {'dtype':<8} {'worst rel. error':>16} {'tolerance':>10}  result"
    lines = [header, "-" * len(header)]
    for r in rows:
        verdict = "ok" if r.ok else "FAIL"
        lines.append(f"{r.kernel:<28} {r.config:<16} {r.dtype:<8} {r.error:>16.2e} {r.tolerance:>10.0e}  {verdict}")
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    """One line: how many checks passed, and the worst error per dtype."""
    worst: dict[str, float] = {}
    for r in rows:
        worst[r.dtype] = max(worst.get(r.dtype, 0.0), r.error)
    per_dtype = ", ".join(f"{dtype} worst {error:.1e}" for dtype, error in worst.items())
    passed = sum(r.ok for r in rows)
    return f"{passed} of {len(rows)} checks within tolerance ({per_dtype})"
