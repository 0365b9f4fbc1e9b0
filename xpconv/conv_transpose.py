"""Transposed 2-D convolution, as ``torch.nn.functional.conv_transpose2d``, on conv2d's code paths.

A transposed convolution is the adjoint of a convolution.  Write ``C(v; w)`` for the convolution
(:func:`xpconv.conv2d`) of an ``(N, C_out, H_out, W_out)`` batch ``v`` with the weight
``w`` ``(C_in, C_out/groups, kh, kw)`` read in conv2d's layout ``(O, C/groups, kh, kw)``; it gives
``(N, C_in, H, W)``.  The transposed convolution of ``x`` ``(N, C_in, H, W)`` is ``Cᵀ(x; w)``, the
map with ``<Cᵀ(x; w), v> = <x, C(v; w)>`` for every ``v``, plus the bias.  Hence:

* forward: ``y = Cᵀ(x; w) + bias``, which is conv2d's input gradient for ``grad_output = x``;
* ``dL/dx = C(dL/dy; w)``, conv2d's forward of the output gradient;
* ``dL/dw``: conv2d's weight gradient for input ``dL/dy`` and output gradient ``x``;
* ``dL/dbias``: ``dL/dy`` summed over the batch and the pixels.

Each comes from :mod:`xpconv.conv` (:func:`~xpconv.conv.input_gradient`,
:func:`~xpconv.conv.forward_pass`, :func:`~xpconv.conv.weight_gradient`), so the chunking,
workspace bound, threads, Winograd and device handling are conv2d's own.
"""

from __future__ import annotations

from ._backend import device_scope
from ._checks import as_bool, check_arrays, check_rank, compute_dtype
from ._chunking import workspace_limit
from ._geometry import conv_transpose_geometry
from ._parallel import blas_single_threaded
from ._plan import conv_plan
from ._types import Algorithm, Array, Gradients, IntPair, IntTuple
from .bias import add_bias, bias_grad
from .conv import forward_pass, input_gradient, weight_gradient

__all__ = [
    "TRANSPOSED_CONVOLUTIONS",
    "conv_transpose1d",
    "conv_transpose1d_backward",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "conv_transpose3d",
    "conv_transpose3d_backward",
]


def conv_transpose2d(
    x: Array,
    weight: Array,
    bias: Array | None = None,
    *,
    stride: IntPair = 1,
    padding: IntPair = 0,
    output_padding: IntPair = 0,
    groups: int = 1,
    dilation: IntPair = 1,
    workspace_bytes: int | None = None,
    algorithm: Algorithm = "auto",
) -> Array:
    """Transposed 2-D convolution ("deconvolution") of an NCHW batch, as ``torch.nn.functional.conv_transpose2d``.

    Parameters
    ----------
    x : array, shape (N, C_in, H, W)
    weight : array, shape (C_in, C_out / groups, kh, kw)
        PyTorch's layout for transposed convolutions (input channels first).
    bias : array, shape (C_out,), optional
    stride, dilation : int or (int, int)
    padding : int or (int, int)
        Crops ``padding`` rows and columns from each side of the full output (the padding of
        the convolution this is the adjoint of).
    output_padding : int or (int, int)
        Extra rows/columns at the bottom/right, smaller than the stride or the dilation; it picks
        which of the input sizes that a strided convolution maps to ``H`` this output has.
    groups : int
        Must divide ``C_in``.
    workspace_bytes, algorithm :
        As for :func:`xpconv.conv2d`, whose input-gradient code computes this.

    Returns
    -------
    y : array, shape (N, C_out, H_out, W_out), x's dtype and device, with per axis

        H_out = (H - 1)·stride - 2·padding + dilation·(kh - 1) + output_padding + 1

    Raises
    ------
    TypeError, ValueError
        Arguments of the wrong type, shape, dtype or device, naming the argument.

    Examples
    --------
    >>> import numpy as np, xpconv
    >>> x = np.ones((1, 2, 3, 3), np.float32)
    >>> w = np.ones((2, 4, 4, 4), np.float32)
    >>> xpconv.conv_transpose2d(x, w, stride=2, padding=1).shape
    (1, 4, 6, 6)
    """
    return _transposed(
        "conv_transpose2d", x, weight, bias, stride, padding, output_padding, groups, dilation, workspace_bytes,
        algorithm,
    )  # fmt: skip


def conv_transpose1d(
    x: Array,
    weight: Array,
    bias: Array | None = None,
    *,
    stride: IntTuple = 1,
    padding: IntTuple = 0,
    output_padding: IntTuple = 0,
    groups: int = 1,
    dilation: IntTuple = 1,
    workspace_bytes: int | None = None,
    algorithm: Algorithm = "auto",
) -> Array:
    """Transposed 1-D convolution of an (N, C_in, L) batch, as ``torch.nn.functional.conv_transpose1d``:
    :func:`conv_transpose2d` with one spatial axis; ``weight`` (C_in, C_out / groups, k)."""
    return _transposed(
        "conv_transpose1d", x, weight, bias, stride, padding, output_padding, groups, dilation, workspace_bytes,
        algorithm,
    )  # fmt: skip


def conv_transpose3d(
    x: Array,
    weight: Array,
    bias: Array | None = None,
    *,
    stride: IntTuple = 1,
    padding: IntTuple = 0,
    output_padding: IntTuple = 0,
    groups: int = 1,
    dilation: IntTuple = 1,
    workspace_bytes: int | None = None,
    algorithm: Algorithm = "auto",
) -> Array:
    """Transposed 3-D convolution of an (N, C_in, D, H, W) batch, as
    ``torch.nn.functional.conv_transpose3d``: :func:`conv_transpose2d` with three spatial axes;
    ``weight`` (C_in, C_out / groups, kd, kh, kw)."""
    return _transposed(
        "conv_transpose3d", x, weight, bias, stride, padding, output_padding, groups, dilation, workspace_bytes,
        algorithm,
    )  # fmt: skip


def _transposed(
    name, x, weight, bias, stride, padding, output_padding, groups, dilation, workspace_bytes, algorithm
) -> Array:
    """The transposed convolution of the public function ``name``."""
    xp, dtype = check_arrays(("x", x, None), ("weight", weight, None), ("bias", bias, 1))
    check_rank(name, x, weight, transposed=True)
    g, size = conv_transpose_geometry(
        x.shape,
        weight.shape,
        None if bias is None else bias.shape,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        groups=groups,
        dilation=dilation,
    )
    limit = workspace_limit(workspace_bytes, x)
    plan = conv_plan(xp, g, algorithm, dtype)
    with device_scope(x), blas_single_threaded(xp):
        if g.size == size:
            return input_gradient(xp, x, weight, g, limit, plan, bias).astype(dtype, copy=False)
        y = input_gradient(xp, x, weight, g, limit, plan)  # (N, C_out, *the pixels read)
        full = xp.zeros((g.n, g.c, *size), dtype=y.dtype)  # pixels no window reads: zero, then the bias
        read = (slice(None), slice(None), *(slice(0, u) for u in g.size))
        full[read] = y
        if bias is not None:
            add_bias(xp, full, bias.astype(y.dtype, copy=False), 1, out=full)
        return full.astype(dtype, copy=False)


def conv_transpose2d_backward(
    grad_output: Array,
    x: Array,
    weight: Array,
    *,
    stride: IntPair = 1,
    padding: IntPair = 0,
    output_padding: IntPair = 0,
    groups: int = 1,
    dilation: IntPair = 1,
    with_bias: bool = True,
    with_input: bool = True,
    workspace_bytes: int | None = None,
    algorithm: Algorithm = "auto",
) -> Gradients:
    """Gradients of :func:`conv_transpose2d` for the upstream gradient ``grad_output`` ``(N, C_out, H_out, W_out)``.

    Returns a named tuple ``(input, weight, bias)`` with the shapes of ``x``, ``weight`` and
    ``(C_out,)``; ``bias`` is ``None`` when ``with_bias=False``, ``input`` when ``with_input=False``
    (nothing is computed for it).  The input gradient is conv2d's
    forward of ``grad_output``, the weight gradient conv2d's weight gradient (the module's
    docstring); arguments as for :func:`conv_transpose2d`.
    """
    return _transposed_backward(
        "conv_transpose2d", grad_output, x, weight, stride, padding, output_padding, groups, dilation, with_bias,
        with_input, workspace_bytes, algorithm,
    )  # fmt: skip


def conv_transpose1d_backward(
    grad_output: Array,
    x: Array,
    weight: Array,
    *,
    stride: IntTuple = 1,
    padding: IntTuple = 0,
    output_padding: IntTuple = 0,
    groups: int = 1,
    dilation: IntTuple = 1,
    with_bias: bool = True,
    with_input: bool = True,
    workspace_bytes: int | None = None,
    algorithm: Algorithm = "auto",
) -> Gradients:
    """Gradients of :func:`conv_transpose1d`: as :func:`conv_transpose2d_backward`."""
    return _transposed_backward(
        "conv_transpose1d", grad_output, x, weight, stride, padding, output_padding, groups, dilation, with_bias,
        with_input, workspace_bytes, algorithm,
    )  # fmt: skip


def conv_transpose3d_backward(
    grad_output: Array,
    x: Array,
    weight: Array,
    *,
    stride: IntTuple = 1,
    padding: IntTuple = 0,
    output_padding: IntTuple = 0,
    groups: int = 1,
    dilation: IntTuple = 1,
    with_bias: bool = True,
    with_input: bool = True,
    workspace_bytes: int | None = None,
    algorithm: Algorithm = "auto",
) -> Gradients:
    """Gradients of :func:`conv_transpose3d`: as :func:`conv_transpose2d_backward`."""
    return _transposed_backward(
        "conv_transpose3d", grad_output, x, weight, stride, padding, output_padding, groups, dilation, with_bias,
        with_input, workspace_bytes, algorithm,
    )  # fmt: skip


def _transposed_backward(
    name, grad_output, x, weight, stride, padding, output_padding, groups, dilation, with_bias, with_input,
    workspace_bytes, algorithm,
) -> Gradients:  # fmt: skip
    """The gradients of the public function ``name``'s transposed convolution."""
    xp, dtype = check_arrays(("grad_output", grad_output, None), ("x", x, None), ("weight", weight, None))
    check_rank(name, x, weight, transposed=True)
    g, size = conv_transpose_geometry(
        x.shape,
        weight.shape,
        None,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        groups=groups,
        dilation=dilation,
    )
    expected = (g.n, g.c, *size)
    if tuple(grad_output.shape) != expected:
        raise ValueError(f"grad_output must have the forward output's shape {expected}, got {tuple(grad_output.shape)}")
    with_bias = as_bool(with_bias, "with_bias")
    with_input = as_bool(with_input, "with_input")
    limit = workspace_limit(workspace_bytes, x)
    plan = conv_plan(xp, g, algorithm, dtype)
    acc = compute_dtype(dtype)
    with device_scope(x), blas_single_threaded(xp):
        window = (slice(None), slice(None), *(slice(0, u) for u in g.size))
        read = grad_output[window]  # the pixels some window reads (usually all)
        grad_x = forward_pass(xp, read, weight, None, g, limit, plan) if with_input else None
        grad_w, _ = weight_gradient(xp, x, read, g, limit, plan, with_bias=False)
        grad_b = bias_grad(grad_output, 1, acc) if with_bias else None
        return Gradients(*(None if a is None else a.astype(dtype, copy=False) for a in (grad_x, grad_w, grad_b)))


# The transposed convolutions and their gradients by the number of spatial axes.
TRANSPOSED_CONVOLUTIONS = {
    1: (conv_transpose1d, conv_transpose1d_backward),
    2: (conv_transpose2d, conv_transpose2d_backward),
    3: (conv_transpose3d, conv_transpose3d_backward),
}
