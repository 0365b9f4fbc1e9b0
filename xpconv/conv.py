"""2-D convolution (cross-correlation, PyTorch layout) as im2col + batched matmul.

Notation: input ``x`` is ``(N, C, H, W)``, ``weight`` is ``(O, C/groups, kh, kw)``, output
``y`` is ``(N, O, oh, ow)`` with, per spatial axis,

    oh = (H + pad_top + pad_bottom - dilation·(kh - 1) - 1) // stride + 1

and ``y[n, o, p, q] = bias[o] + Σ_{c, i, j} x_pad[n, g·Cg + c, p·sh + i·dh, q·sw + j·dw] · weight[o, c, i, j]``
where ``g = o // (O / groups)`` is the group of output channel ``o`` and ``Cg = C / groups``.

The batch is processed in chunks whose scratch memory stays within a workspace limit
(64 MiB by default) whatever the batch size; on the CPU the chunks are also kept small enough
to stay in cache, and run on one worker thread per core (:mod:`xpconv._parallel`).
"""

from __future__ import annotations

import numpy as np

from ._backend import array_namespace
from ._checks import as_pair, as_positive_int, check_array, common_dtype, compute_dtype
from ._grads import Gradients
from ._patches import ConvGeometry, col2im, im2col, pad_input
from ._parallel import map_chunks, workers_for
from ._workspace import scratch
from .bias import bias_add, bias_backward

DEFAULT_WORKSPACE_BYTES = 64 * 2**20  # scratch memory per call, beyond inputs, outputs and gradients
# On the CPU each chunk's scratch is kept near this size, so that a worker's patch matrix is
# still in cache when its GEMM reads it.  Measured on 2 cores (2 MiB L2 each, 2 workers), train
# step forward + backward: cifar 57 ms at 8 MiB against 70 ms at 4 MiB and 74 ms at 32 MiB;
# resnet 139 / 136 / 164 ms (and 340 ms with one 64 MiB chunk, single-threaded, at the start).
CACHE_CHUNK_BYTES = 8 * 2**20


def _resolve_padding(padding, kernel, dilation, stride) -> tuple[int, int, int, int]:
    """``int | pair | "valid" | "same"`` -> ``(top, bottom, left, right)``."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding != "same":
            raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
        if stride != (1, 1):
            raise ValueError(f"padding='same' needs stride 1, got stride={stride}")
        pads = []
        for k, d in zip(kernel, dilation):
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]  # the odd extra row/column goes bottom/right
        return tuple(pads)
    ph, pw = as_pair(padding, "padding", minimum=0)
    return (ph, ph, pw, pw)


def _geometry(x, weight, bias, stride, padding, dilation, groups) -> ConvGeometry:
    check_array(x, "x", ndim=4)
    check_array(weight, "weight", ndim=4)
    if bias is not None:
        check_array(bias, "bias", ndim=1)
    array_namespace(x, weight, bias)
    common_dtype(x=x, weight=weight, bias=bias)
    stride = as_pair(stride, "stride", minimum=1)
    dilation = as_pair(dilation, "dilation", minimum=1)
    groups = as_positive_int(groups, "groups")
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    if min(o, cg, kh, kw) < 1:
        raise ValueError(f"weight must have non-empty dimensions (O, C/groups, kh, kw), got shape {tuple(weight.shape)}")
    if c % groups:
        raise ValueError(f"groups={groups} must divide the input channels, but x has {c} channels")
    if o % groups:
        raise ValueError(f"groups={groups} must divide the output channels, but weight has {o}")
    if cg * groups != c:
        raise ValueError(
            f"weight has {cg} input channels per group but x has {c} channels (groups={groups}); "
            f"expected weight.shape[1] == {c // groups}"
        )
    if bias is not None and bias.shape[0] != o:
        raise ValueError(f"bias must have shape ({o},) to match weight {tuple(weight.shape)}, got {tuple(bias.shape)}")
    pad = _resolve_padding(padding, (kh, kw), dilation, stride)
    g = ConvGeometry(n, c, h, w, o, kh, kw, groups, stride, dilation, pad)
    hp, wp = g.padded
    span = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
    if span[0] > hp or span[1] > wp:
        raise ValueError(
            f"kernel {kh}x{kw} with dilation {dilation} spans {span[0]}x{span[1]} pixels, "
            f"larger than the padded input {hp}x{wp} (x shape {tuple(x.shape)}, padding {pad})"
        )
    return g


def _chunks(n: int, per_sample_bytes: int, workspace_bytes: int | None, xp):
    """Batch slices whose scratch arrays (``per_sample_bytes`` per sample) fit in the
    workspace limit, shared among the worker threads, and on the CPU in about
    ``CACHE_CHUNK_BYTES``; at least 1 sample each, and at least one chunk per worker."""
    limit = DEFAULT_WORKSPACE_BYTES if workspace_bytes is None else as_positive_int(workspace_bytes, "workspace_bytes")
    workers = workers_for(xp)
    limit //= workers
    if xp is np:
        limit = min(limit, CACHE_CHUNK_BYTES)
    step = max(1, min(limit // max(per_sample_bytes, 1), -(-n // workers)))
    return [slice(start, min(start + step, n)) for start in range(0, n, step)]


def _scratch_per_sample(g: ConvGeometry, itemsize: int, backward: bool) -> int:
    """Bytes of scratch one sample needs: its padded copy and patch matrix; in the backward
    also their gradients and the sample's weight-gradient term."""
    oh, ow = g.out
    padded = g.c * g.padded[0] * g.padded[1] if any(g.pad) else 0
    patches = 0 if g.is_pointwise else g.c * g.kh * g.kw * oh * ow
    if not backward:
        return (padded + patches) * itemsize
    return (2 * (padded + patches) + g.o * (g.c // g.groups) * g.kh * g.kw) * itemsize


def conv2d(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1, workspace_bytes=None):
    """2-D cross-correlation of an NCHW batch, as ``torch.nn.functional.conv2d``.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    weight : array, shape (O, C / groups, kh, kw)
    bias : array, shape (O,), optional
    stride, dilation : int or (int, int)
    padding : int, (int, int), ``"valid"`` or ``"same"``
        ``"same"`` needs stride 1; when the total padding is odd the extra row/column
        goes at the bottom/right, as in PyTorch.
    groups : int
        ``C`` and ``O`` must both be divisible by it; ``groups == C`` is depthwise.
    workspace_bytes : int, optional
        Upper bound on the scratch memory (padded copies and patch matrices) held at once
        beyond inputs and outputs, default 64 MiB; the batch is processed in chunks that fit.

    Returns
    -------
    y : array, shape (N, O, oh, ow), same dtype and device as ``x``.

    Examples
    --------
    >>> import numpy as np, xpconv
    >>> x = np.random.default_rng(0).standard_normal((2, 3, 8, 8), dtype=np.float32)
    >>> w = np.random.default_rng(1).standard_normal((4, 3, 3, 3), dtype=np.float32)
    >>> xpconv.conv2d(x, w, padding="same").shape
    (2, 4, 8, 8)
    """
    g = _geometry(x, weight, bias, stride, padding, dilation, groups)
    xp = array_namespace(x, weight, bias)
    acc = compute_dtype(x.dtype)
    y = xp.empty(g.output_shape, dtype=acc)
    chunks = _chunks(g.n, _scratch_per_sample(g, acc.itemsize, backward=False), workspace_bytes, xp)
    weight = xp.ascontiguousarray(weight.astype(acc, copy=False))  # small; strided views would keep GEMMs off BLAS
    _gemm_forward(xp, x, weight, None if bias is None else bias.astype(acc, copy=False), y, g, chunks)
    return y.astype(x.dtype, copy=False)


def _patch_matrices(xp, x, batch: slice, g: ConvGeometry, dtype):
    """The chunk's padded copy and patches, in this thread's scratch: -> (B, G, Cg·kh·kw, oh·ow)."""
    b = batch.stop - batch.start
    oh, ow = g.out
    x_pad = pad_input(xp, x[batch].astype(dtype, copy=False), g, out=scratch(xp, "x_pad", (b, g.c, *g.padded), dtype))
    cols = im2col(xp, x_pad, g, out=scratch(xp, "cols", (b, g.c, g.kh, g.kw, oh, ow), dtype))
    return cols.reshape(b, g.groups, g.c // g.groups * g.kh * g.kw, oh * ow)  # (B, C, kh, kw, oh, ow) -> (B, G, K, P)


def _gemm_forward(xp, x, weight, bias, y, g: ConvGeometry, chunks):
    """Per chunk of the batch: im2col, then one GEMM per sample and group, written into ``y``,
    plus the bias (when not ``None``)."""
    oh, ow = g.out
    og, k = g.o // g.groups, g.c // g.groups * g.kh * g.kw
    w_g = weight.reshape(g.groups, og, k)  # (O, Cg, kh, kw) -> (G, Og, K)

    def run(batch):
        b = batch.stop - batch.start
        cols = _patch_matrices(xp, x, batch, g, y.dtype)
        xp.matmul(w_g, cols, out=y[batch].reshape(b, g.groups, og, oh * ow))  # (G, Og, K) @ (B, G, K, P) -> (B, G, Og, P), in y
        if bias is not None:
            bias_add(y[batch], bias, axis=1, out=y[batch])

    map_chunks(xp, run, chunks)


def conv2d_backward(
    grad_output, x, weight, *, stride=1, padding=0, dilation=1, groups=1, with_bias=True, workspace_bytes=None
) -> Gradients:
    """Gradients of :func:`conv2d` for the upstream gradient ``grad_output`` ``(N, O, oh, ow)``.

    Returns a named tuple ``(input, weight, bias)`` with the shapes of ``x``, ``weight`` and
    ``(O,)``; ``bias`` is ``None`` when ``with_bias=False``.  Arguments as for :func:`conv2d`.

    The weight gradient is ``grad_output`` times the patches' transpose, summed over the batch.
    The input gradient is the adjoint of the forward pass: in general the weight's transpose
    applied to ``grad_output`` then col2im; for stride 1, when ``O <= C``, the equal and cheaper
    correlation of the padded ``grad_output`` with the flipped, transposed kernel.
    """
    g = _geometry(x, weight, None, stride, padding, dilation, groups)
    check_array(grad_output, "grad_output", ndim=4)
    xp = array_namespace(grad_output, x, weight)
    common_dtype(grad_output=grad_output, x=x)
    if tuple(grad_output.shape) != g.output_shape:
        raise ValueError(f"grad_output must have the forward output's shape {g.output_shape}, got {tuple(grad_output.shape)}")
    acc = compute_dtype(x.dtype)
    grad_x = xp.empty(x.shape, dtype=acc)
    grad_w = xp.zeros(weight.shape, dtype=acc)
    grad_b = xp.zeros(g.o, dtype=acc) if with_bias else None
    w = xp.ascontiguousarray(weight.astype(acc, copy=False))
    g_t = _transposed_geometry(g)
    chunks = _chunks(g.n, _scratch_per_sample(g, acc.itemsize, backward=True), workspace_bytes, xp)
    # Without a transposed geometry (strided, or padded beyond the kernel) the same pass over
    # the patches also computes the input gradient, by col2im.
    _gemm_backward(xp, grad_output, x, w, grad_x if g_t is None else None, grad_w, grad_b, g, chunks)
    if g_t is not None:
        chunks = _chunks(g.n, _scratch_per_sample(g_t, acc.itemsize, backward=False), workspace_bytes, xp)
        _gemm_forward(xp, grad_output, _flip_transpose(xp, w, g), None, grad_x, g_t, chunks)
    return Gradients(*(None if a is None else a.astype(x.dtype, copy=False) for a in (grad_x, grad_w, grad_b)))


def _transposed_geometry(g: ConvGeometry) -> ConvGeometry | None:
    """For stride 1, the input gradient is itself a convolution: of ``grad_output`` padded by
    ``dilation·(k - 1) - pad`` with the flipped, transposed kernel (:func:`_flip_transpose`).
    That is cheaper than col2im when the output has no more channels than the input
    (its patches are no larger).  ``None`` where that does not apply."""
    (dh, dw), (top, bottom, left, right) = g.dilation, g.pad
    full_h, full_w = dh * (g.kh - 1), dw * (g.kw - 1)
    if g.stride != (1, 1) or g.o > g.c or max(top, bottom) > full_h or max(left, right) > full_w:
        return None
    oh, ow = g.out
    pad = (full_h - top, full_h - bottom, full_w - left, full_w - right)
    return ConvGeometry(g.n, g.o, oh, ow, g.c, g.kh, g.kw, g.groups, (1, 1), g.dilation, pad)


def _flip_transpose(xp, weight, g: ConvGeometry):
    """(O, Cg, kh, kw) -> (C, Og, kh, kw): swap the channel roles within each group, flip the kernel."""
    og, cg = g.o // g.groups, g.c // g.groups
    w = weight.reshape(g.groups, og, cg, g.kh, g.kw).transpose(0, 2, 1, 3, 4)  # -> (G, Cg, Og, kh, kw)
    flipped = w[..., ::-1, ::-1].reshape(g.c, og, g.kh, g.kw)  # (G, Cg, Og, kh, kw) -> (C, Og, kh, kw)
    # A contiguous copy: a view with negative strides would keep the GEMMs off BLAS (numpy's
    # matmul then falls back to its own loop, 3x slower for the depthwise shape).
    return xp.ascontiguousarray(flipped)


def _gemm_backward(xp, grad_output, x, weight, grad_x, grad_w, grad_b, g: ConvGeometry, chunks):
    """Per chunk: patches again, the chunk's ``go · colsᵀ`` and bias gradient (summed into
    ``grad_w`` and ``grad_b`` in chunk order), and unless ``grad_x`` is ``None``,
    ``grad_cols = wᵀ · go`` and col2im into it."""
    acc = grad_w.dtype
    oh, ow = g.out
    og, k = g.o // g.groups, g.c // g.groups * g.kh * g.kw
    w_t = weight.reshape(g.groups, og, k).transpose(0, 2, 1)  # (O, Cg, kh, kw) -> (G, Og, K) -> (G, K, Og)

    def run(batch):
        b = batch.stop - batch.start
        go_chunk = grad_output[batch].astype(acc, copy=False)
        go = go_chunk.reshape(b, g.groups, og, oh * ow)  # (B, O, oh, ow) -> (B, G, Og, P)
        cols = _patch_matrices(xp, x, batch, g, acc)
        if grad_x is not None:
            grad_cols = xp.matmul(w_t, go, out=scratch(xp, "grad_cols", (b, g.groups, k, oh * ow), acc))  # -> (B, G, K, P)
            grad_cols = grad_cols.reshape(b, g.c, g.kh, g.kw, oh, ow)  # (B, G, K, P) -> (B, C, kh, kw, oh, ow)
            grad_x[batch] = col2im(xp, grad_cols, g, out=scratch(xp, "grad_x_pad", (b, g.c, *g.padded), acc))
        partial_w = xp.matmul(go, cols.transpose(0, 1, 3, 2)).sum(axis=0)  # (B, G, Og, P) @ (B, G, P, K) -> (G, Og, K)
        return partial_w, None if grad_b is None else bias_backward(go_chunk, axis=1)

    grad_w_g = grad_w.reshape(g.groups, og, k)  # (O, Cg, kh, kw) -> (G, Og, K), a view
    for partial_w, partial_b in map_chunks(xp, run, chunks):
        grad_w_g += partial_w
        if grad_b is not None:
            grad_b += partial_b
