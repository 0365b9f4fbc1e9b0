"""Dense (fully connected) layer, PyTorch layout: ``y = x @ weight.T + bias``.

``x`` is ``(N, in)``, ``weight`` is ``(out, in)``, ``bias`` is ``(out,)``.
"""

from __future__ import annotations

from ._backend import device_scope
from ._checks import as_bool, check_arrays, compute_dtype
from ._types import Array, Gradients
from .bias import add_bias, bias_grad

__all__ = ["dense", "dense_backward"]


def _check_features(x, weight, bias) -> None:
    if weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"weight has {weight.shape[1]} input features (shape {tuple(weight.shape)}) "
            f"but x has {x.shape[1]} (shape {tuple(x.shape)})"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(
            f"bias must have shape ({weight.shape[0]},) to match weight {tuple(weight.shape)}, got {tuple(bias.shape)}"
        )


def dense(x: Array, weight: Array, bias: Array | None = None) -> Array:
    """Fully connected layer ``y = x @ weight.T + bias``.

    Parameters
    ----------
    x : array, shape (N, in)
    weight : array, shape (out, in)
    bias : array, shape (out,), optional

    Returns
    -------
    y : array, shape (N, out), same dtype and device as ``x``.
    """
    xp, dtype = check_arrays(("x", x, 2), ("weight", weight, 2), ("bias", bias, 1))
    _check_features(x, weight, bias)
    acc = compute_dtype(dtype)
    with device_scope(x):
        y = xp.matmul(x.astype(acc, copy=False), weight.astype(acc, copy=False).T)  # (N, in) @ (in, out) -> (N, out)
        if bias is None:
            return y.astype(dtype, copy=False)
        # the sum in the compute dtype, rounded into the output (float16: one kernel, not two)
        return add_bias(xp, y, bias, 1, out=y if dtype == acc else xp.empty(y.shape, dtype=dtype))


def dense_backward(
    grad_output: Array, x: Array, weight: Array, *, with_bias: bool = True, with_input: bool = True
) -> Gradients:
    """Gradients of :func:`dense`: ``(input, weight, bias)`` for the upstream ``grad_output``.

    ``input = grad_output @ weight`` (``None`` when ``with_input=False``: not computed),
    ``weight = grad_output.T @ x``, ``bias = grad_output.sum(0)`` (``None`` when ``with_bias=False``).
    """
    xp, dtype = check_arrays(("grad_output", grad_output, 2), ("x", x, 2), ("weight", weight, 2))
    _check_features(x, weight, None)
    expected = (x.shape[0], weight.shape[0])
    if tuple(grad_output.shape) != expected:
        raise ValueError(f"grad_output must have the forward output's shape {expected}, got {tuple(grad_output.shape)}")
    with_bias = as_bool(with_bias, "with_bias")
    with_input = as_bool(with_input, "with_input")
    acc = compute_dtype(dtype)
    with device_scope(x):
        g = grad_output.astype(acc, copy=False)
        grad_input = (
            xp.matmul(g, weight.astype(acc, copy=False)) if with_input else None
        )  # (N, out) @ (out, in) -> (N, in)
        grad_weight = xp.matmul(g.T, x.astype(acc, copy=False))  # (out, N) @ (N, in) -> (out, in)
        grad_bias = bias_grad(g, 1, acc).astype(dtype, copy=False) if with_bias else None
        grad_input = None if grad_input is None else grad_input.astype(dtype, copy=False)
        return Gradients(grad_input, grad_weight.astype(dtype, copy=False), grad_bias)
