"""2-D convolution (cross-correlation, PyTorch layout): im2col + batched matmul, or Winograd.

Notation: input ``x`` is ``(N, C, H, W)``, ``weight`` is ``(O, C/groups, kh, kw)``, output
``y`` is ``(N, O, oh, ow)`` with, per spatial axis,

    oh = (H + pad_top + pad_bottom - dilation·(kh - 1) - 1) // stride + 1

and ``y[n, o, p, q] = bias[o] + Σ_{c, i, j} x_pad[n, g·Cg + c, p·sh + i·dh, q·sw + j·dw] · weight[o, c, i, j]``
where ``g = o // (O / groups)`` is the group of output channel ``o`` and ``Cg = C / groups``.

The batch is processed in chunks whose scratch memory stays within a workspace limit
(64 MiB by default on the CPU, a quarter of the free memory on CUDA: :mod:`xpconv._chunking`)
whatever the batch size; on the CPU the chunks are also kept small enough
to stay in cache (:mod:`xpconv._chunking`), and run on one worker thread per core
(:mod:`xpconv._parallel`).  This module holds the im2col path and the choice of algorithm;
Winograd's transforms and chunk loops are in :mod:`xpconv._winograd`.
"""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np

from ._backend import device_scope
from ._checks import as_bool, check_arrays, compute_dtype
from ._chunking import CACHE_CHUNK_BYTES, DEFAULT_WORKSPACE_BYTES, batch_chunks, workspace_limit
from ._geometry import ConvGeometry, conv_geometry, transposed_geometry
from ._parallel import ChunkSum, blas_single_threaded, map_chunks
from ._patches import col2im, gather_sum, im2col, pad_input, windows
from ._types import Algorithm, Array, Gradients, IntPair, Padding
from ._winograd import winograd_applies, winograd_forward, winograd_weight_gradient
from ._workspace import scratch
from .bias import add_bias, bias_grad

__all__ = [
    "ALGORITHMS",
    "DEFAULT_WORKSPACE_BYTES",
    "choose_algorithm",
    "conv2d",
    "conv2d_backward",
    "forward_pass",
    "input_gradient",
    "weight_gradient",
    "winograd_applies",
]

ALGORITHMS = ("auto", "im2col", "winograd")


def _scratch_per_sample(g: ConvGeometry, itemsize: int, backward: bool) -> int:
    """Bytes of scratch one sample needs: its padded copy and patch matrix; in the backward
    also their gradients and the sample's weight-gradient term."""
    oh, ow = g.out
    padded = g.c * g.padded[0] * g.padded[1] if any(g.pad) else 0
    patches = 0 if g.is_pointwise else g.c * g.kh * g.kw * oh * ow
    if not backward:
        return (padded + patches) * itemsize
    return (2 * (padded + patches) + g.o * (g.c // g.groups) * g.kh * g.kw) * itemsize


# "auto" picks Winograd where it measured faster than im2col: train step (forward + backward) on
# 2 cores, NumPy/OpenBLAS, float32, side by side; im2col time / Winograd time:
#   64x32x32x32->64 (cifar) 1.32;  32x64x28x28->64 1.57;  16x128x14x14->128 1.43;
#   8x256x7x7->256 0.91;  32x16x28x28->16 0.86;  32x16x8x8->32 0.83;  32x8x32x32->16 0.78;
#   32x3x32x32->16 0.50;  resnet 32x64x56x56->64: forward 1.5, backward 1.5.
# Its transforms cost memory passes in proportion to the channels while its GEMMs save
# multiplications in proportion to their product, so few channels favour im2col; on small
# outputs the last row and column of 4x4 tiles are mostly padding (7x7 -> 8x8 computed).
# Hence: both channel counts >= 32 and outputs of at least 12x12 pixels.
WINOGRAD_MIN_CHANNELS = 32
WINOGRAD_MIN_PIXELS = 12 * 12


def choose_algorithm(algorithm: str, g: ConvGeometry) -> str:
    """``"im2col"`` or ``"winograd"`` for ``algorithm``; ``"auto"`` takes Winograd F(4×4, 3×3) where
    it applies (3×3, stride 1, dilation 1, groups 1), both channel counts are at least 32 and the
    output has at least 12×12 pixels (the measurements above), im2col elsewhere."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(map(repr, ALGORITHMS))}, got {algorithm!r}")
    if algorithm == "winograd" and not winograd_applies(g):
        raise ValueError(
            "algorithm='winograd' needs a 3x3 kernel, stride 1, dilation 1 and groups=1; got kernel "
            f"{g.kh}x{g.kw}, stride {g.stride}, dilation {g.dilation}, groups={g.groups}"
        )
    if algorithm == "auto":
        oh, ow = g.out
        large = min(g.c, g.o) >= WINOGRAD_MIN_CHANNELS and oh * ow >= WINOGRAD_MIN_PIXELS
        return "winograd" if winograd_applies(g) and large else "im2col"
    return algorithm


def conv2d(
    x: Array,
    weight: Array,
    bias: Array | None = None,
    *,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    workspace_bytes: int | None = None,
    algorithm: Algorithm = "auto",
) -> Array:
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
        beyond inputs and outputs, default 64 MiB on the CPU and a quarter of the device's free
        memory (at most 16 GiB) on CUDA; the batch is processed in chunks that fit.
    algorithm : ``"auto"``, ``"im2col"`` or ``"winograd"``
        ``"im2col"``: patches and one GEMM (the tightest float32 error).  ``"winograd"``:
        F(4×4, 3×3) minimal filtering, 4× fewer multiplications, for 3×3 kernels with stride 1,
        dilation 1 and groups 1 (a ``ValueError`` elsewhere); float32 error within 1e-5 of the
        output's largest magnitude.  ``"auto"`` (default): Winograd where it applies and both
        channel counts are at least 32 and the output has at least 12×12 pixels (where it
        measured faster on the CPU), im2col elsewhere.

    Returns
    -------
    y : array, shape (N, O, oh, ow), same dtype and device as ``x`` (float16 inputs are
        accumulated in float32 and the result rounded to float16), with
        ``oh = (H + pad_top + pad_bottom - dilation·(kh - 1) - 1) // stride + 1`` (``ow`` likewise).

    Raises
    ------
    TypeError, ValueError
        Arguments of the wrong type, shape, dtype or device, naming the argument.

    Examples
    --------
    >>> import numpy as np, xpconv
    >>> x = np.random.default_rng(0).standard_normal((2, 3, 8, 8), dtype=np.float32)
    >>> w = np.random.default_rng(1).standard_normal((4, 3, 3, 3), dtype=np.float32)
    >>> xpconv.conv2d(x, w, padding="same").shape
    (2, 4, 8, 8)
    """
    xp, dtype = check_arrays(("x", x, 4), ("weight", weight, 4), ("bias", bias, 1))
    g = conv_geometry(
        x.shape,
        weight.shape,
        None if bias is None else bias.shape,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
    )
    limit = workspace_limit(workspace_bytes, x)
    method = choose_algorithm(algorithm, g)
    with device_scope(x), blas_single_threaded(xp):
        return forward_pass(xp, x, weight, bias, g, limit, method).astype(dtype, copy=False)


def forward_pass(
    xp: ModuleType, x: Array, weight: Array, bias: Array | None, g: ConvGeometry, limit: int, method: str
) -> Array:
    """The convolution of checked arguments, in the compute dtype (float32 for float16), by
    ``method`` (``"im2col"`` or ``"winograd"``); the caller holds the device and BLAS scopes."""
    acc = compute_dtype(x.dtype)
    y = xp.empty(g.output_shape, dtype=acc)
    weight = xp.ascontiguousarray(weight.astype(acc, copy=False))  # small; strided views would keep GEMMs off BLAS
    bias = None if bias is None else bias.astype(acc, copy=False)
    if method == "winograd":
        winograd_forward(xp, x, weight, bias, y, g, limit)
    else:
        _gemm_forward(xp, x, weight, bias, y, g, limit)
    return y


# The im2col forward's GEMMs are one sample's each, so a larger chunk gains them nothing, while
# the patches it writes should still be in cache when its GEMMs read them: chunks of about 3 MiB
# (one image of stride2, two of stride2-deep, still one chunk a worker for mnist).  Measured on 2
# cores in one process, alternating blocks against 8 MiB chunks, forward time ratio, median
# (range): stride2-deep 0.91 (0.81-1.12) over 20 rounds, 0.88 (0.68-1.17) over 40 at one image a
# chunk; stride2 1.04 (0.92-1.10) and 0.92 (0.80-1.21), no clear change (an 8 MiB against 8 MiB
# pair of the same code read 0.90-1.12: this machine's noise); mnist 0.98.  Smaller targets cut
# mnist's 64 images into three chunks, one worker taking 39 of them.  The backward keeps
# CACHE_CHUNK_BYTES: 4 MiB and 2 MiB chunks made stride2-deep's 1.15 and 1.12 times slower.
FORWARD_CACHE_BYTES = 3 * 2**20


def _forward_cache_bytes(g: ConvGeometry) -> int:
    """The CPU chunk target of :func:`_gemm_forward`: FORWARD_CACHE_BYTES for its per-sample
    GEMMs, CACHE_CHUNK_BYTES where the batch is folded into them (grouped convolutions)."""
    return CACHE_CHUNK_BYTES if _folds(np, g) else FORWARD_CACHE_BYTES


def _patch_matrices(xp, x, batch: slice, g: ConvGeometry, dtype):
    """The chunk's padded copy and patches, in this thread's scratch: -> (B, G, Cg·kh·kw, oh·ow)."""
    b = batch.stop - batch.start
    oh, ow = g.out
    x_pad = pad_input(xp, x[batch].astype(dtype, copy=False), g, out=scratch(xp, "x_pad", (b, g.c, *g.padded), dtype))
    cols = im2col(xp, x_pad, g, out=scratch(xp, "cols", (b, g.c, g.kh, g.kw, oh, ow), dtype))
    return cols.reshape(b, g.groups, g.c // g.groups * g.kh * g.kw, oh * ow)  # (B, C, kh, kw, oh, ow) -> (B, G, K, P)


def _gemm_forward(xp, x, weight, bias, y, g: ConvGeometry, limit: int):
    """Per chunk of the batch (its scratch within ``limit``): im2col, then one GEMM per sample and
    group, written into ``y``, plus the bias (when not ``None``).  On CUDA, and for grouped
    convolutions on the CPU, the batch is folded into the GEMMs instead (:func:`_gemm_forward_folded`)."""
    per_sample = _per_sample(xp, g, y.dtype.itemsize, backward=False)
    chunks = batch_chunks(g.n, per_sample, limit, xp, _forward_cache_bytes(g))
    oh, ow = g.out
    og, k = g.o // g.groups, g.c // g.groups * g.kh * g.kw
    w_g = weight.reshape(g.groups, og, k)  # (O, Cg, kh, kw) -> (G, Og, K)
    if _folds(xp, g):
        _gemm_forward_folded(xp, x, w_g, bias, y, g, chunks)
        return

    def run(batch):
        b = batch.stop - batch.start
        cols = _patch_matrices(xp, x, batch, g, y.dtype)
        xp.matmul(
            w_g, cols, out=y[batch].reshape(b, g.groups, og, oh * ow)
        )  # (G, Og, K) @ (B, G, K, P) -> (B, G, Og, P), in y
        if bias is not None:
            add_bias(xp, y[batch], bias, 1, out=y[batch])

    map_chunks(xp, run, chunks)


# --- the batch folded into the GEMMs (CUDA; grouped convolutions on the CPU) ------------------
#
# CuPy launches a kernel per operation, and its batched matmul copies every operand that is not
# C-contiguous and builds pointer arrays (three kernels per batch axis) for a weight broadcast
# over the batch.  So on CUDA the patches are laid out (G, K, B·P): channels and kernel offsets
# in the rows, the chunk's images side by side in the columns.  Each GEMM then covers the whole
# chunk: the forward is one product (G, Og, K) @ (G, K, B·P); the weight gradient is one product
# (G, Og, B·P) @ (G, B·P, K), its sum over the batch done by the GEMM, with no per-sample
# partials; the input gradient is one product and one gather.  With one group these are 2-D
# products, whose transposed operands cuBLAS reads in place.  On the CPU the same layout gives
# grouped convolutions larger GEMMs than one sample's (:func:`_folds`); there col2im stays the
# per-offset loop.


def _folded_patches(xp, x, batch: slice, g: ConvGeometry, dtype):
    """The chunk's patches with the images side by side, in scratch: -> (G, Cg·kh·kw, B·oh·ow).
    One copy of the padded chunk's windows (which also casts a float16 input to ``dtype``)."""
    b = batch.stop - batch.start
    oh, ow = g.out
    x_pad = pad_input(xp, x[batch], g, out=scratch(xp, "x_pad", (b, g.c, *g.padded), x.dtype))
    cols = scratch(xp, "cols", (g.c, g.kh, g.kw, b, oh, ow), dtype)
    cols[...] = windows(xp, x_pad, g).transpose(1, 2, 3, 0, 4, 5)  # (B, C, kh, kw, oh, ow) -> (C, kh, kw, B, oh, ow)
    return cols.reshape(g.groups, g.c // g.groups * g.kh * g.kw, b * oh * ow)  # -> (G, K, B·P)


def _folded_scratch_per_sample(g: ConvGeometry, itemsize: int, backward: bool) -> int:
    """Bytes of scratch one sample needs on CUDA: its padded copy, patches and output-sized
    product; in the backward also the output gradient's copy, the patch gradient (one zero
    offset more) and the gathered contributions of every padded pixel (``M`` each)."""
    oh, ow = g.out
    padded = g.c * g.padded[0] * g.padded[1]
    patches = g.c * g.kh * g.kw * oh * ow
    if not backward:
        return (padded + patches + g.o * oh * ow) * itemsize
    # the most windows reading one padded pixel (M of gather_sum): offsets i with i·d ≡ y (mod s)
    m = math.prod(-(-k // (s // math.gcd(s, d))) for k, s, d in zip((g.kh, g.kw), g.stride, g.dilation, strict=True))
    return (2 * padded + 2 * patches + g.c * oh * ow + g.o * oh * ow + m * padded) * itemsize


def _folds(xp: ModuleType, g: ConvGeometry) -> bool:
    """Whether the im2col path folds the batch into its GEMMs: always on CUDA (below); on the CPU
    for grouped convolutions, whose per-sample products are one group's few channels.  Measured
    on 2 cores in one process, alternating blocks of 4 calls (after a warm call) over 10 rounds,
    folded / per-sample time, median (2nd-9th of 10): depthwise forward 0.85 (0.83-0.88), backward
    0.93 (0.85-0.94); but stride2 forward 1.09 (1.05-1.20), backward 0.98 (0.92-1.16);
    stride2-deep 0.98 / 1.00; transposed (stride 2) 1.02 / 1.04: so not for strides."""
    return xp is not np or g.groups > 1


def _per_sample(xp: ModuleType, g: ConvGeometry, itemsize: int, backward: bool) -> int:
    """Scratch bytes per sample of the im2col path on ``xp``'s device."""
    if not _folds(xp, g):
        return _scratch_per_sample(g, itemsize, backward)
    return _folded_scratch_per_sample(g, itemsize, backward)


def _gemm_forward_folded(xp, x, w_g, bias, y, g: ConvGeometry, chunks):
    """Per chunk: the patches (G, K, B·P), one product with the weight ``w_g`` (G, Og, K), and its
    transpose into ``y`` with the bias: five kernels with padding, whatever the batch."""
    oh, ow = g.out
    og = w_g.shape[1]

    def run(batch):
        b = batch.stop - batch.start
        cols = _folded_patches(xp, x, batch, g, y.dtype)
        prod = xp.matmul(w_g, cols, out=scratch(xp, "prod", (g.groups, og, b * oh * ow), y.dtype))  # -> (G, Og, B·P)
        out = prod.reshape(g.o, b, oh, ow).transpose(1, 0, 2, 3)  # (G, Og, B·P) -> (O, B, oh, ow) -> (B, O, oh, ow)
        if bias is None:
            y[batch] = out
        else:
            add_bias(xp, out, bias, 1, out=y[batch])

    map_chunks(xp, run, chunks)


def conv2d_backward(
    grad_output: Array,
    x: Array,
    weight: Array,
    *,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    with_bias: bool = True,
    workspace_bytes: int | None = None,
    algorithm: Algorithm = "auto",
) -> Gradients:
    """Gradients of :func:`conv2d` for the upstream gradient ``grad_output`` ``(N, O, oh, ow)``.

    Returns a named tuple ``(input, weight, bias)`` with the shapes of ``x``, ``weight`` and
    ``(O,)``; ``bias`` is ``None`` when ``with_bias=False``.  Arguments as for :func:`conv2d`.

    With ``"im2col"`` the weight gradient is ``grad_output`` times the patches' transpose, summed
    over the batch, and the input gradient is the adjoint of the forward pass: in general the
    weight's transpose applied to ``grad_output`` then col2im; for stride 1, when ``O <= C``, the
    equal and cheaper correlation of the padded ``grad_output`` with the flipped, transposed kernel.
    With ``"winograd"`` the input gradient is that correlation done by Winograd, and the weight
    gradient is the adjoint of the Winograd forward with respect to the weight.
    """
    xp, dtype = check_arrays(("grad_output", grad_output, 4), ("x", x, 4), ("weight", weight, 4))
    g = conv_geometry(x.shape, weight.shape, None, stride=stride, padding=padding, dilation=dilation, groups=groups)
    if tuple(grad_output.shape) != g.output_shape:
        raise ValueError(
            f"grad_output must have the forward output's shape {g.output_shape}, got {tuple(grad_output.shape)}"
        )
    with_bias = as_bool(with_bias, "with_bias")
    limit = workspace_limit(workspace_bytes, x)
    method = choose_algorithm(algorithm, g)
    acc = compute_dtype(dtype)
    with device_scope(x), blas_single_threaded(xp):
        w = xp.ascontiguousarray(weight.astype(acc, copy=False))
        if method == "im2col" and _input_gradient_by_col2im(g):
            # one pass over the patches gives all three gradients
            grad_x = xp.empty(x.shape, dtype=acc)
            grad_w = xp.empty(weight.shape, dtype=acc)  # written by the chunks' sum
            grad_b = xp.empty(g.o, dtype=acc) if with_bias else None
            chunks = batch_chunks(g.n, _per_sample(xp, g, acc.itemsize, backward=True), limit, xp)
            _gemm_backward(xp, grad_output, x, w, grad_x, grad_w, grad_b, g, chunks)
        else:
            grad_w, grad_b = weight_gradient(xp, grad_output, x, g, limit, method, with_bias)
            grad_x = input_gradient(xp, grad_output, w, g, limit, method)
        return Gradients(*(None if a is None else a.astype(dtype, copy=False) for a in (grad_x, grad_w, grad_b)))


def _input_gradient_by_col2im(g: ConvGeometry) -> bool:
    """Whether im2col's input gradient goes through col2im rather than the transposed correlation.

    For stride 1 the input gradient is a convolution of grad_output with the flipped kernel:
    cheaper than col2im when the output has no more channels than the input (its patches are no
    larger).  Elsewhere (and where the padding reaches beyond the kernel) col2im computes it."""
    return g.o > g.c or transposed_geometry(g) is None


def input_gradient(
    xp: ModuleType, grad_output: Array, weight: Array, g: ConvGeometry, limit: int, method: str
) -> Array:
    """The gradient of the convolution with respect to its input (the adjoint of :func:`forward_pass`),
    ``(N, O, oh, ow)`` -> ``(N, C, H, W)`` in the compute dtype.

    By the correlation of the padded ``grad_output`` with the flipped, transposed kernel where
    that applies (stride 1) — by Winograd under ``"winograd"``, and under ``"im2col"`` when
    ``O <= C`` — else by ``wᵀ · grad_output`` and col2im."""
    acc = compute_dtype(grad_output.dtype)
    w = xp.ascontiguousarray(weight.astype(acc, copy=False))
    grad_x = xp.empty((g.n, g.c, g.h, g.w), dtype=acc)
    g_t = transposed_geometry(g)
    if g_t is not None and (method == "winograd" or not _input_gradient_by_col2im(g)):
        if method == "winograd":
            winograd_forward(xp, grad_output, _flip_transpose(xp, w, g), None, grad_x, g_t, limit)
        else:
            _gemm_forward(xp, grad_output, _flip_transpose(xp, w, g), None, grad_x, g_t, limit)
    else:
        chunks = batch_chunks(g.n, _per_sample(xp, g, acc.itemsize, backward=True), limit, xp)
        _gemm_backward(xp, grad_output, None, w, grad_x, None, None, g, chunks)
    return grad_x


def weight_gradient(
    xp: ModuleType, grad_output: Array, x: Array, g: ConvGeometry, limit: int, method: str, with_bias: bool
) -> tuple[Array, Array | None]:
    """The gradients of the convolution with respect to its weight and bias (``None`` unless
    ``with_bias``), in the compute dtype: ``grad_output`` times the patches' transpose, summed
    over the batch, or under ``"winograd"`` the adjoint of the Winograd forward."""
    acc = compute_dtype(x.dtype)
    grad_w = xp.empty(g.weight_shape, dtype=acc)  # written by the chunks' sum
    grad_b = xp.empty(g.o, dtype=acc) if with_bias else None
    if method == "winograd":
        winograd_weight_gradient(xp, grad_output, x, grad_w, grad_b, g, limit)
    else:
        chunks = batch_chunks(g.n, _per_sample(xp, g, acc.itemsize, backward=True), limit, xp)
        _gemm_backward(xp, grad_output, x, None, None, grad_w, grad_b, g, chunks)
    return grad_w, grad_b


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
    ``grad_w`` and ``grad_b`` in chunk order, whatever they held, unless ``grad_w`` is ``None``), and unless ``grad_x``
    is ``None``, ``grad_cols = wᵀ · go`` and col2im into it.  ``weight`` is needed only for
    ``grad_x``, ``x`` only for ``grad_w``.  On CUDA the batch is folded into the GEMMs
    (:func:`_gemm_backward_folded`)."""
    if _folds(xp, g):
        _gemm_backward_folded(xp, grad_output, x, weight, grad_x, grad_w, grad_b, g, chunks)
        return
    acc = grad_x.dtype if grad_w is None else grad_w.dtype
    oh, ow = g.out
    og, k = g.o // g.groups, g.c // g.groups * g.kh * g.kw
    if grad_x is not None:
        w_t = weight.reshape(g.groups, og, k).transpose(0, 2, 1)  # (O, Cg, kh, kw) -> (G, Og, K) -> (G, K, Og)

    def run(batch):
        b = batch.stop - batch.start
        go_chunk = grad_output[batch].astype(acc, copy=False)
        go = go_chunk.reshape(b, g.groups, og, oh * ow)  # (B, O, oh, ow) -> (B, G, Og, P)
        if grad_x is not None:
            grad_cols = xp.matmul(
                w_t, go, out=scratch(xp, "grad_cols", (b, g.groups, k, oh * ow), acc)
            )  # -> (B, G, K, P)
            grad_cols = grad_cols.reshape(b, g.c, g.kh, g.kw, oh, ow)  # (B, G, K, P) -> (B, C, kh, kw, oh, ow)
            grad_x[batch] = col2im(xp, grad_cols, g, out=scratch(xp, "grad_x_pad", (b, g.c, *g.padded), acc))
        if grad_w is None:
            return None
        cols = _patch_matrices(xp, x, batch, g, acc)
        partial_w = xp.matmul(go, cols.transpose(0, 1, 3, 2)).sum(axis=0)  # (B, G, Og, P) @ (B, G, P, K) -> (G, Og, K)
        return partial_w, None if grad_b is None else bias_grad(go_chunk, 1, acc)

    if grad_w is None:
        map_chunks(xp, run, chunks)
        return
    total = ChunkSum(grad_w.reshape(g.groups, og, k), grad_b)  # (O, Cg, kh, kw) -> (G, Og, K), a view
    map_chunks(xp, run, chunks, consume=total)
    total.finish()


def _gemm_backward_folded(xp, grad_output, x, weight, grad_x, grad_w, grad_b, g: ConvGeometry, chunks):
    """Per chunk: ``go`` laid out (G, Og, B·P); the weight gradient as one product with the
    patches (the batch summed by the GEMM) and the bias gradient as one sum, written in place by
    the first chunk; the input gradient as one product ``wᵀ · go`` into the patch gradient, laid
    out per channel (kh·kw + 1, B, oh, ow) with a last offset of zeros from a zero row in the
    weight, then :func:`gather_sum` and one copy into ``grad_x`` (on NumPy: col2im's loop over a
    view of the patch gradient, no zero offset).  Arguments as for :func:`_gemm_backward`."""
    acc = grad_x.dtype if grad_w is None else grad_w.dtype
    (oh, ow), k = g.out, g.kh * g.kw
    og, cg = g.o // g.groups, g.c // g.groups
    zero = 0 if xp is np else 1  # on CUDA a zero offset for the gather
    if grad_x is not None:
        w_t = xp.zeros((g.groups, cg, k + zero, og), dtype=acc)  # offset k: zeros, the gather's zero
        w_t[:, :, :k] = weight.reshape(g.groups, og, cg, k).transpose(0, 2, 3, 1)  # (G, Og, Cg, K) -> (G, Cg, K, Og)
        w_t = w_t.reshape(g.groups, cg * (k + zero), og)  # (G, Cg, K + 1, Og) -> (G, Cg·(K + 1), Og)
    total = ChunkSum(None if grad_w is None else grad_w.reshape(g.groups, og, cg * k), grad_b)  # (G, Og, Cg·K), a view

    def run(batch):
        b = batch.stop - batch.start
        go = scratch(xp, "go", (g.groups, og, b * oh * ow), acc)
        go.reshape(g.o, b, oh * ow)[...] = (
            grad_output[batch].reshape(b, g.o, oh * ow).transpose(1, 0, 2)
        )  # (B, O, P) -> (O, B, P)
        if grad_x is not None:
            grad_cols = xp.matmul(w_t, go, out=scratch(xp, "grad_cols", (g.groups, cg * (k + zero), b * oh * ow), acc))
            if xp is np:
                # (G, Cg·K, B·P) -> (C, kh, kw, B, oh, ow) -> (B, C, kh, kw, oh, ow), a view
                cols6 = grad_cols.reshape(g.c, g.kh, g.kw, b, oh, ow).transpose(3, 0, 1, 2, 4, 5)
                grad_x[batch] = col2im(xp, cols6, g, out=scratch(xp, "grad_x_pad", (b, g.c, *g.padded), acc))
            else:
                rows = grad_cols.reshape(g.c, (k + 1) * b * oh * ow)  # (G, Cg·(K + 1), B·P) -> (C, (K + 1)·B·P)
                sums = gather_sum(xp, rows, g, b)  # (C, B, Hp, Wp)
                top, _, left, _ = g.pad
                grad_x[batch] = sums[:, :, top : top + g.h, left : left + g.w].transpose(1, 0, 2, 3)  # -> (B, C, H, W)
        if grad_w is None:
            return None
        cols = _folded_patches(xp, x, batch, g, acc)  # (G, Cg·K, B·P)
        partial_w = _product_nt(xp, go, cols, out=total.into(0, batch))  # (G, Og, B·P) @ (G, B·P, Cg·K)
        partial_b = None if grad_b is None else bias_grad(grad_output[batch], 1, acc, out=total.into(1, batch))
        return partial_w, partial_b

    map_chunks(xp, run, chunks, consume=None if grad_w is None else total)
    if grad_w is not None:
        total.finish()


def _product_nt(xp, a, b, out=None):
    """``a @ bᵀ`` per group: (G, M, L), (G, N, L) -> (G, M, N), into ``out`` when given.  With one
    group a 2-D product, whose transposed operand cuBLAS reads in place; with more, CuPy's batched
    product would copy the transposed operand, so the product is taken transposed, ``b @ aᵀ``,
    copying ``a`` (the output gradient's side, the smaller) rather than the patches."""
    if a.shape[0] == 1:
        return xp.matmul(a[0], b[0].T, out=None if out is None else out[0])[None]  # (M, L) @ (L, N) -> (1, M, N)
    product_t = xp.matmul(b, xp.ascontiguousarray(a.transpose(0, 2, 1)))  # (G, N, L) @ (G, L, M) -> (G, N, M)
    if out is None:
        return product_t.transpose(0, 2, 1)
    out[...] = product_t.transpose(0, 2, 1)
    return out
