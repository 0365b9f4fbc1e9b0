"""Dense (fully connected) layer, PyTorch layout: ``y = x @ weight.T + bias``.

``x`` is ``(N, in)``, ``weight`` is ``(out, in)``, ``bias`` is ``(out,)``.
"""

from __future__ import annotations

from ._backend import array_namespace
from ._checks import check_array, common_dtype, compute_dtype
from ._grads import Gradients
from .bias import bias_add, bias_backward


def _check_dense(x, weight, bias):
    check_array(x, "x", ndim=2)
    check_array(weight, "weight", ndim=2)
    if bias is not None:
        check_array(bias, "bias", ndim=1)
    xp = array_namespace(x, weight, bias)
    dtype = common_dtype(x=x, weight=weight, bias=bias)
    if weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"weight has {weight.shape[1]} input features (shape {tuple(weight.shape)}) "
            f"but x has {x.shape[1]} (shape {tuple(x.shape)})"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"bias must have shape ({weight.shape[0]},) to match weight {tuple(weight.shape)}, got {tuple(bias.shape)}")
    return xp, dtype


def dense(x, weight, bias=None):
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
    xp, dtype = _check_dense(x, weight, bias)
    acc = compute_dtype(dtype)
    y = xp.matmul(x.astype(acc, copy=False), weight.astype(acc, copy=False).T)  # (N, in) @ (in, out) -> (N, out)
    if bias is not None:
        bias_add(y, bias.astype(acc, copy=False), axis=1, out=y)
    return y.astype(dtype, copy=False)


def dense_backward(grad_output, x, weight, *, with_bias: bool = True) -> Gradients:
    """Gradients of :func:`dense`: ``(input, weight, bias)`` for the upstream ``grad_output``.

    ``input = grad_output @ weight``, ``weight = grad_output.T @ x``, ``bias = grad_output.sum(0)``
    (``None`` when ``with_bias=False``).
    """
    xp, dtype = _check_dense(x, weight, None)
    check_array(grad_output, "grad_output", ndim=2)
    array_namespace(grad_output, x)
    common_dtype(grad_output=grad_output, x=x)
    expected = (x.shape[0], weight.shape[0])
    if tuple(grad_output.shape) != expected:
        raise ValueError(f"grad_output must have the forward output's shape {expected}, got {tuple(grad_output.shape)}")
    acc = compute_dtype(dtype)
    g = grad_output.astype(acc, copy=False)
    grad_input = xp.matmul(g, weight.astype(acc, copy=False))  # (N, out) @ (out, in) -> (N, in)
    grad_weight = xp.matmul(g.T, x.astype(acc, copy=False))  # (out, N) @ (N, in) -> (out, in)
    grad_bias = bias_backward(grad_output, axis=1) if with_bias else None
    return Gradients(grad_input.astype(dtype, copy=False), grad_weight.astype(dtype, copy=False), grad_bias)
