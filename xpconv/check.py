"""``xpconv check``: every kernel on one device against the float64 reference.

Errors are relative to the reference's scale, ``max|actual - ref| / max|ref|``, and must stay
under the tolerance of the dtype (``TOLERANCE``): float64 1e-12, float32 1e-5, float16 2e-3
(float16 inputs are rounded before the reference sees them, and accumulate in float32).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import reference
from ._backend import get_namespace, to_device, to_numpy
from .bias import bias_add, bias_backward
from .conv import _geometry, conv2d, conv2d_backward
from .dense import dense, dense_backward

TOLERANCE = {"float64": 1e-12, "float32": 1e-5, "float16": 2e-3}

# name: (N, C, H, W, O, kh, kw, stride, padding, dilation, groups)
CONFIGS = {
    "book 5x5 same": (4, 1, 12, 12, 6, 5, 5, 1, "same", 1, 1),
    "rect stride/dil": (3, 4, 11, 8, 6, 3, 2, (2, 1), (1, 2), (2, 1), 2),
    "even same": (2, 3, 7, 10, 4, 4, 2, 1, "same", 1, 1),
    "depthwise": (2, 6, 9, 9, 12, 3, 3, 2, 1, 1, 6),
    "pointwise": (3, 8, 5, 6, 5, 1, 1, 1, 0, 1, 1),
}
DENSE = {"dense 7x20->9": (7, 20, 9)}


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


def relative_error(actual, expected) -> float:
    actual = to_numpy(actual).astype(np.float64)
    scale = float(np.max(np.abs(expected), initial=0.0)) or 1.0
    if actual.shape != expected.shape:
        return float("inf")
    return float(np.max(np.abs(actual - expected), initial=0.0) / scale)


def _inputs(rng, dtype, *shapes):
    """Random host arrays of ``dtype`` and their exact float64 values."""
    arrays = [rng.standard_normal(s).astype(dtype) for s in shapes]
    return arrays, [a.astype(np.float64) for a in arrays]


def conv_errors(x, weight, bias, grad_output, *, stride=1, padding=0, dilation=1, groups=1) -> dict[str, float]:
    """Relative errors of conv2d and its three gradients (arrays on any device) against the
    float64 reference run on the same values; keys ``conv2d`` and ``conv2d_backward.<part>``."""
    g = _geometry(x, weight, bias, stride, padding, dilation, groups)
    hyper = dict(stride=g.stride, pad=g.pad, dilation=g.dilation, groups=g.groups)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    xh, wh, bh, gh = (to_numpy(a).astype(np.float64) for a in (x, weight, bias, grad_output))
    errors = {"conv2d": relative_error(conv2d(x, weight, bias, **kw), reference.conv2d(xh, wh, bh, **hyper))}
    grads = conv2d_backward(grad_output, x, weight, **kw)
    ref = reference.conv2d_backward(gh, xh, wh, **hyper)
    for part in ("input", "weight", "bias"):
        errors[f"conv2d_backward.{part}"] = relative_error(getattr(grads, part), getattr(ref, part))
    return errors


def run_check(device: str = "cpu", dtypes=("float32", "float64"), seed: int = 0) -> list[Row]:
    get_namespace(device)  # fail early, with the helpful message, if the device is missing
    rng = np.random.default_rng(seed)
    rows = []
    for dtype in dtypes:
        tol = TOLERANCE[dtype]
        for name, (n, c, h, w, o, kh, kw, s, p, d, grp) in CONFIGS.items():
            host, _ = _inputs(rng, dtype, (n, c, h, w), (o, c // grp, kh, kw), (o,))
            out_shape = _geometry(*host, s, p, d, grp).output_shape
            (go_host,), _ = _inputs(rng, dtype, out_shape)
            x, wt, b, go = (to_device(a, device) for a in (*host, go_host))
            errors = conv_errors(x, wt, b, go, stride=s, padding=p, dilation=d, groups=grp)
            rows += [Row(kernel, name, dtype, error, tol) for kernel, error in errors.items()]
        for name, (n, fin, fout) in DENSE.items():
            host, exact = _inputs(rng, dtype, (n, fin), (fout, fin), (fout,), (n, fout))
            x, wt, b, go = (to_device(a, device) for a in host)
            grads = dense_backward(go, x, wt)
            ref = reference.dense_backward(exact[3], exact[0], exact[1])
            rows.append(Row("dense", name, dtype, relative_error(dense(x, wt, b), reference.dense(*exact[:3])), tol))
            for part in ("input", "weight", "bias"):
                rows.append(Row(f"dense_backward.{part}", name, dtype, relative_error(getattr(grads, part), getattr(ref, part)), tol))
        host, exact = _inputs(rng, dtype, (3, 5, 4, 6), (5,))
        x, b = (to_device(a, device) for a in host)
        rows.append(Row("bias_add", "NCHW axis=1", dtype, relative_error(bias_add(x, b), exact[0] + exact[1][:, None, None]), tol))
        rows.append(Row("bias_backward", "NCHW axis=1", dtype, relative_error(bias_backward(x), exact[0].sum(axis=(0, 2, 3))), tol))
    return rows


def format_rows(rows: list[Row]) -> str:
    header = f"{'kernel':<24} {'configuration':<16} {'dtype':<8} {'worst rel. error':>16} {'tolerance':>10}  result"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r.kernel:<24} {r.config:<16} {r.dtype:<8} {r.error:>16.2e} {r.tolerance:>10.0e}  {'ok' if r.ok else 'FAIL'}")
    return "\n".join(lines)
