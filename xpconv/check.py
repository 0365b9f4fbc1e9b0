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
from .conv import _resolve_padding, conv2d, conv2d_backward
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


def run_check(device: str = "cpu", dtypes=("float32", "float64"), seed: int = 0) -> list[Row]:
    get_namespace(device)  # fail early, with the helpful message, if the device is missing
    rng = np.random.default_rng(seed)
    rows = []
    for dtype in dtypes:
        tol = TOLERANCE[dtype]
        for name, (n, c, h, w, o, kh, kw, s, p, d, grp) in CONFIGS.items():
            stride, dilation = _pair(s), _pair(d)
            pad = _resolve_padding(p, (kh, kw), dilation, stride)
            host, exact = _inputs(rng, dtype, (n, c, h, w), (o, c // grp, kh, kw), (o,))
            x, wt, b = (to_device(a, device) for a in host)
            y = conv2d(x, wt, b, stride=s, padding=p, dilation=d, groups=grp)
            ref_y = reference.conv2d(*exact, stride=stride, pad=pad, dilation=dilation, groups=grp)
            (go_host,), (go_exact,) = _inputs(rng, dtype, ref_y.shape)
            grads = conv2d_backward(to_device(go_host, device), x, wt, stride=s, padding=p, dilation=d, groups=grp)
            ref = reference.conv2d_backward(go_exact, exact[0], exact[1], stride=stride, pad=pad, dilation=dilation, groups=grp)
            rows.append(Row("conv2d", name, dtype, relative_error(y, ref_y), tol))
            for part in ("input", "weight", "bias"):
                rows.append(Row(f"conv2d_backward.{part}", name, dtype, relative_error(getattr(grads, part), getattr(ref, part)), tol))
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


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def format_rows(rows: list[Row]) -> str:
    header = f"{'kernel':<24} {'configuration':<16} {'dtype':<8} {'worst rel. error':>16} {'tolerance':>10}  result"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r.kernel:<24} {r.config:<16} {r.dtype:<8} {r.error:>16.2e} {r.tolerance:>10.0e}  {'ok' if r.ok else 'FAIL'}")
    return "\n".join(lines)
