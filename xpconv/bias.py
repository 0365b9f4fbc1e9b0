"""Bias add and its gradient: a sum over every axis the bias was broadcast along.

:func:`bias_add` and :func:`bias_backward` check their arguments; :func:`add_bias` and
:func:`bias_grad` are the unchecked arithmetic they share with the other kernels' inner loops.
"""

from __future__ import annotations

from types import ModuleType

from ._backend import device_scope
from ._checks import check_arrays, compute_dtype, normalize_axis
from ._types import Array, DTypeLike

__all__ = ["bias_add", "bias_backward"]


def add_bias(xp: ModuleType, x: Array, bias: Array, axis: int, out: Array | None = None) -> Array:
    """``x + bias`` along ``axis`` (non-negative), into ``out`` when given; no checks."""
    shape = [1] * x.ndim
    shape[axis] = bias.shape[0]
    return xp.add(x, bias.reshape(shape), out=out)  # (F,) -> (1, F, 1, ...): broadcast along every other axis


def bias_grad(grad_output: Array, axis: int, dtype: DTypeLike, out: Array | None = None) -> Array:
    """``grad_output`` summed over every axis but ``axis``, accumulated in ``dtype`` (into ``out``
    when given); no checks."""
    others = tuple(a for a in range(grad_output.ndim) if a != axis)
    return grad_output.sum(axis=others, dtype=dtype, out=out)


def bias_add(x: Array, bias: Array, axis: int = 1, *, out: Array | None = None) -> Array:
    """Return ``x + bias`` with the 1-D ``bias`` laid along ``axis`` of ``x``.

    ``axis=1`` is the feature axis of a dense batch ``(N, F)`` and the channel axis of an
    NCHW batch ``(N, C, H, W)``.  ``bias`` must have ``x.shape[axis]`` entries.  With
    ``out`` (which may be ``x`` itself) the sum is written there, as NumPy's ``out=``.
    """
    xp, _ = check_arrays(("x", x, None), ("bias", bias, 1), ("out", out, None))
    axis = normalize_axis(axis, x.ndim, "x")
    if bias.shape[0] != x.shape[axis]:
        raise ValueError(
            f"bias has {bias.shape[0]} entries but x has {x.shape[axis]} along axis {axis} (shape {tuple(x.shape)})"
        )
    if out is not None and out.shape != x.shape:
        raise ValueError(f"out must have the shape of x {tuple(x.shape)}, got {tuple(out.shape)}")
    with device_scope(x):
        return add_bias(xp, x, bias, axis, out=out)


def bias_backward(grad_output: Array, axis: int = 1) -> Array:
    """Gradient of :func:`bias_add` with respect to the bias: ``grad_output`` summed over every
    axis but ``axis`` (axis 0 of a dense batch, axes 0, 2, 3 of an NCHW batch)."""
    _, dtype = check_arrays(("grad_output", grad_output, None))
    axis = normalize_axis(axis, grad_output.ndim, "grad_output")
    with device_scope(grad_output):
        return bias_grad(grad_output, axis, compute_dtype(dtype)).astype(dtype, copy=False)
