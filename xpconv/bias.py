"""Bias add and its gradient: a sum over every axis the bias was broadcast along."""

from __future__ import annotations

from ._backend import array_namespace
from ._checks import check_array, common_dtype, compute_dtype


def _normalize_axis(axis, ndim: int, name: str) -> int:
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise TypeError(f"axis must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for {name} with {ndim} dimensions")
    return axis % ndim


def bias_add(x, bias, axis: int = 1, *, out=None):
    """Return ``x + bias`` with the 1-D ``bias`` laid along ``axis`` of ``x``.

    ``axis=1`` is the feature axis of a dense batch ``(N, F)`` and the channel axis of an
    NCHW batch ``(N, C, H, W)``.  ``bias`` must have ``x.shape[axis]`` entries.  With
    ``out`` (which may be ``x`` itself) the sum is written there, as NumPy's ``out=``.
    """
    check_array(x, "x")
    check_array(bias, "bias", ndim=1)
    common_dtype(x=x, bias=bias)
    axis = _normalize_axis(axis, x.ndim, "x")
    if bias.shape[0] != x.shape[axis]:
        raise ValueError(f"bias has {bias.shape[0]} entries but x has {x.shape[axis]} along axis {axis} (shape {tuple(x.shape)})")
    shape = [1] * x.ndim
    shape[axis] = bias.shape[0]
    xp = array_namespace(x, bias)
    return xp.add(x, bias.reshape(shape), out=out)  # (F,) -> (1, F, 1, ...): broadcast along every other axis


def bias_backward(grad_output, axis: int = 1):
    """Gradient of ``bias_add`` with respect to the bias: ``grad_output`` summed over every
    axis but ``axis`` (axis 0 of a dense batch, axes 0, 2, 3 of an NCHW batch)."""
    check_array(grad_output, "grad_output")
    axis = _normalize_axis(axis, grad_output.ndim, "grad_output")
    others = tuple(a for a in range(grad_output.ndim) if a != axis)
    acc = compute_dtype(grad_output.dtype)
    return grad_output.sum(axis=others, dtype=acc).astype(grad_output.dtype, copy=False)
