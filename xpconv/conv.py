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

import dataclasses

import numpy as np

from ._backend import device_scope
from ._checks import as_positive_int, check_arrays, compute_dtype
from ._geometry import ConvGeometry, conv_geometry, transposed_geometry
from ._parallel import blas_single_threaded, map_chunks, workers_for
from ._patches import col2im, im2col, pad_input
from ._types import Array, Gradients
from ._winograd import (
    filter_gradient,
    index_array,
    kron,
    output_tile_index,
    take_into,
    tile_index,
    tiles,
    transform_filter,
)
from ._workspace import scratch
from .bias import add_bias, bias_grad

__all__ = ["ALGORITHMS", "DEFAULT_WORKSPACE_BYTES", "choose_algorithm", "conv2d", "conv2d_backward"]

ALGORITHMS = ("auto", "im2col", "winograd")
WINOGRAD_TILE = 4  # F(4×4, 3×3): 4× fewer multiplications than the direct convolution

DEFAULT_WORKSPACE_BYTES = 64 * 2**20  # scratch memory per call, beyond inputs, outputs and gradients
# On the CPU each chunk's scratch is kept near this size, so that a worker's patch matrix is
# still in cache when its GEMM reads it.  Measured on 2 cores (2 MiB L2 each, 2 workers), train
# step forward + backward: cifar 57 ms at 8 MiB against 70 ms at 4 MiB and 74 ms at 32 MiB;
# resnet 139 / 136 / 164 ms (and 340 ms with one 64 MiB chunk, single-threaded, at the start).
CACHE_CHUNK_BYTES = 8 * 2**20


def _workspace_limit(workspace_bytes: int | None) -> int:
    return DEFAULT_WORKSPACE_BYTES if workspace_bytes is None else as_positive_int(workspace_bytes, "workspace_bytes")


def _chunks(n: int, per_sample_bytes: int, limit: int, xp):
    """Batch slices whose scratch arrays (``per_sample_bytes`` per sample) fit in the
    workspace limit, shared among the worker threads, and on the CPU in about
    ``CACHE_CHUNK_BYTES``; at least 1 sample each, and at least one chunk per worker."""
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


def winograd_applies(g: ConvGeometry) -> bool:
    """Winograd F(m×m, 3×3) here: a 3×3 kernel, stride 1, dilation 1, no groups (any padding)."""
    return (g.kh, g.kw, g.stride, g.dilation, g.groups) == (3, 3, (1, 1), (1, 1), 1)


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
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    workspace_bytes: int | None = None,
    algorithm: str = "auto",
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
        beyond inputs and outputs, default 64 MiB; the batch is processed in chunks that fit.
    algorithm : ``"auto"``, ``"im2col"`` or ``"winograd"``
        ``"im2col"``: patches and one GEMM (the tightest float32 error).  ``"winograd"``:
        F(4×4, 3×3) minimal filtering, 4× fewer multiplications, for 3×3 kernels with stride 1,
        dilation 1 and groups 1 (a ``ValueError`` elsewhere); float32 error within 1e-5 of the
        output's largest magnitude.  ``"auto"`` (default): see :func:`choose_algorithm`.

    Returns
    -------
    y : array, shape (N, O, oh, ow), same dtype and device as ``x``, with
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
    limit = _workspace_limit(workspace_bytes)
    method = choose_algorithm(algorithm, g)
    acc = compute_dtype(dtype)
    with device_scope(x), blas_single_threaded(xp):
        y = xp.empty(g.output_shape, dtype=acc)
        weight = xp.ascontiguousarray(weight.astype(acc, copy=False))  # small; strided views would keep GEMMs off BLAS
        bias = None if bias is None else bias.astype(acc, copy=False)
        if method == "winograd":
            _winograd_forward(xp, x, weight, bias, y, g, limit)
        else:
            chunks = _chunks(g.n, _scratch_per_sample(g, acc.itemsize, backward=False), limit, xp)
            _gemm_forward(xp, x, weight, bias, y, g, chunks)
        return y.astype(dtype, copy=False)


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
        xp.matmul(
            w_g, cols, out=y[batch].reshape(b, g.groups, og, oh * ow)
        )  # (G, Og, K) @ (B, G, K, P) -> (B, G, Og, P), in y
        if bias is not None:
            add_bias(xp, y[batch], bias, 1, out=y[batch])

    map_chunks(xp, run, chunks)


def conv2d_backward(
    grad_output: Array,
    x: Array,
    weight: Array,
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    with_bias: bool = True,
    workspace_bytes: int | None = None,
    algorithm: str = "auto",
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
    limit = _workspace_limit(workspace_bytes)
    method = choose_algorithm(algorithm, g)
    acc = compute_dtype(dtype)
    with device_scope(x), blas_single_threaded(xp):
        grad_x = xp.empty(x.shape, dtype=acc)
        grad_w = xp.zeros(weight.shape, dtype=acc)
        grad_b = xp.zeros(g.o, dtype=acc) if with_bias else None
        w = xp.ascontiguousarray(weight.astype(acc, copy=False))
        if method == "winograd":
            _winograd_backward(xp, grad_output, x, w, grad_x, grad_w, grad_b, g, limit)
            return Gradients(*(None if a is None else a.astype(dtype, copy=False) for a in (grad_x, grad_w, grad_b)))
        # For stride 1 the input gradient is a convolution of grad_output with the flipped kernel:
        # cheaper than col2im when the output has no more channels than the input (its patches
        # are no larger).  Elsewhere the same pass over the patches computes it, by col2im.
        g_t = transposed_geometry(g) if g.o <= g.c else None
        chunks = _chunks(g.n, _scratch_per_sample(g, acc.itemsize, backward=True), limit, xp)
        _gemm_backward(xp, grad_output, x, w, grad_x if g_t is None else None, grad_w, grad_b, g, chunks)
        if g_t is not None:
            chunks = _chunks(g.n, _scratch_per_sample(g_t, acc.itemsize, backward=False), limit, xp)
            _gemm_forward(xp, grad_output, _flip_transpose(xp, w, g), None, grad_x, g_t, chunks)
        return Gradients(*(None if a is None else a.astype(dtype, copy=False) for a in (grad_x, grad_w, grad_b)))


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
            grad_cols = xp.matmul(
                w_t, go, out=scratch(xp, "grad_cols", (b, g.groups, k, oh * ow), acc)
            )  # -> (B, G, K, P)
            grad_cols = grad_cols.reshape(b, g.c, g.kh, g.kw, oh, ow)  # (B, G, K, P) -> (B, C, kh, kw, oh, ow)
            grad_x[batch] = col2im(xp, grad_cols, g, out=scratch(xp, "grad_x_pad", (b, g.c, *g.padded), acc))
        partial_w = xp.matmul(go, cols.transpose(0, 1, 3, 2)).sum(axis=0)  # (B, G, Og, P) @ (B, G, P, K) -> (G, Og, K)
        return partial_w, None if grad_b is None else bias_grad(go_chunk, 1, acc)

    grad_w_g = grad_w.reshape(g.groups, og, k)  # (O, Cg, kh, kw) -> (G, Og, K), a view

    def add(partials):  # in chunk order, as each arrives
        partial_w, partial_b = partials
        grad_w_g[...] += partial_w
        if grad_b is not None:
            grad_b[...] += partial_b

    map_chunks(xp, run, chunks, consume=add)


def _winograd_geometry(g: ConvGeometry) -> tuple[ConvGeometry, int, int]:
    """``g`` padded further at the bottom/right so that whole tiles cover the output, and the
    tile counts ``(th, tw)``: the padded input has ``th·m + 2`` rows and ``tw·m + 2`` columns."""
    m = WINOGRAD_TILE
    oh, ow = g.out
    th, tw = tiles(oh, m), tiles(ow, m)
    top, _, left, _ = g.pad
    pad = (top, th * m + 2 - g.h - top, left, tw * m + 2 - g.w - left)
    return dataclasses.replace(g, pad=pad), th, tw


def _channel_major(xp, x, batch: slice, g_tiles: ConvGeometry, slot: str, dtype):
    """The chunk zero-padded into this thread's scratch with channels first, (C, B, Hp, Wp), so
    that each channel's tiles of the whole chunk sit side by side: the GEMMs then run over
    ``B·tiles`` columns rather than one sample's tiles."""
    c, b = g_tiles.c, batch.stop - batch.start
    x_pad = scratch(xp, slot, (c, b, *g_tiles.padded), dtype)
    view = x_pad.transpose(1, 0, 2, 3)  # (C, B, Hp, Wp) -> (B, C, Hp, Wp), a view
    if any(g_tiles.pad):
        pad_input(xp, x[batch].astype(dtype, copy=False), g_tiles, out=view)
    else:
        view[...] = x[batch]
    return x_pad


def _input_transform(xp, x, batch: slice, g_tiles: ConvGeometry, th: int, tw: int, dtype):
    """The chunk's input tiles after ``Bᵀ d B``, in this thread's scratch: -> (C, a², B·th·tw)."""
    m, c = WINOGRAD_TILE, g_tiles.c
    a, b, t = m + 2, batch.stop - batch.start, th * tw
    hp, wp = g_tiles.padded
    x_pad = _channel_major(xp, x, batch, g_tiles, "x_pad", dtype)  # (C, B, Hp, Wp)
    index = index_array(xp, tile_index(wp, hp * wp, b, a, m, th, tw))  # (a²·B·T,) pixels of every tile
    d = scratch(xp, "wino_d", (c, a * a * b * t), dtype)
    take_into(xp, x_pad.reshape(c, b * hp * wp), index, out=d)  # (C, B·Hp·Wp) -> (C, a²·B·T)
    u = scratch(xp, "wino_u", (c, a * a, b * t), dtype)
    return xp.matmul(kron(xp, m, "input", dtype), d.reshape(c, a * a, b * t), out=u)  # (a², a²) @ (C, a², B·T)


def _winograd_scratch_per_sample(g: ConvGeometry, g_tiles: ConvGeometry, th: int, tw: int, itemsize: int) -> int:
    """Bytes per sample of the scratch slots ``x_pad``, ``wino_d``, ``wino_u``, ``wino_m``,
    ``wino_y`` and ``wino_out``, which the backward reuses with input and output channels
    swapped: so counted with the larger of the two channel counts."""
    m, ch = WINOGRAD_TILE, max(g.c, g.o)
    a2, t = (m + 2) ** 2, th * tw
    padded = ch * g_tiles.padded[0] * g_tiles.padded[1]
    oh, ow = g.out
    return (padded + 3 * a2 * ch * t + m * m * ch * t + ch * oh * ow) * itemsize


# In the output transform Aᵀ M A, the frequency at point (1, 1) reaches every output pixel of the
# tile with weight 1 (column 1 of Aᵀ is x = 1 to the powers 0..m-1), so adding the bias there adds
# it to the whole tile: O·tiles additions instead of O·pixels.
_ALL_ONES_FREQUENCY = 1 * (WINOGRAD_TILE + 2) + 1


def _winograd_forward(xp, x, weight, bias, y, g: ConvGeometry, limit: int):
    """Per chunk: tiles, input transform, a² GEMMs ``(O, C) @ (C, B·T)``, output transform with
    the bias, written into ``y``."""
    m, acc = WINOGRAD_TILE, y.dtype
    a, (oh, ow) = m + 2, g.out
    g_tiles, th, tw = _winograd_geometry(g)
    t = th * tw
    w_t = transform_filter(xp, weight, m)  # (O, C, 3, 3) -> (a², O, C), once per call
    k_out = kron(xp, m, "output", acc)  # (m², a²)

    def run(batch):
        b = batch.stop - batch.start
        u = _input_transform(xp, x, batch, g_tiles, th, tw, acc)  # (C, a², B·T)
        prod = scratch(xp, "wino_m", (a * a, g.o, b * t), acc)
        xp.matmul(w_t, u.transpose(1, 0, 2), out=prod)  # (a², O, C) @ (a², C, B·T) -> (a², O, B·T)
        if bias is not None:
            ones = prod[_ALL_ONES_FREQUENCY]  # (O, B·T), a view
            add_bias(xp, ones, bias, 0, out=ones)
        out = scratch(xp, "wino_y", (g.o, m * m, b * t), acc)
        xp.matmul(k_out, prod.transpose(1, 0, 2), out=out)  # (m², a²) @ (O, a², B·T) -> (O, m², B·T)
        to_pixels = index_array(xp, output_tile_index(oh, ow, b, m, th, tw))  # (B·oh·ow,) places in the tiles
        pixels = scratch(xp, "wino_out", (g.o, b, oh, ow), acc)
        take_into(xp, out.reshape(g.o, m * m * b * t), to_pixels, out=pixels.reshape(g.o, b * oh * ow))
        y[batch] = pixels.transpose(1, 0, 2, 3)  # (O, B, oh, ow) -> (B, O, oh, ow)

    per_sample = _winograd_scratch_per_sample(g, g_tiles, th, tw, acc.itemsize)
    map_chunks(xp, run, _chunks(g.n, per_sample, limit, xp))


def _winograd_backward(xp, grad_output, x, weight, grad_x, grad_w, grad_b, g: ConvGeometry, limit: int):
    """Weight and bias gradients as the adjoint of the Winograd forward; the input gradient as a
    Winograd correlation of ``grad_output`` with the flipped, transposed kernel (or by col2im
    where the padding reaches beyond the kernel)."""
    m, acc = WINOGRAD_TILE, grad_w.dtype
    a, (oh, ow) = m + 2, g.out
    g_tiles, th, tw = _winograd_geometry(g)
    t = th * tw
    k_out_t = kron(xp, m, "output", acc).T  # (a², m²)
    # grad_output zero-extended to whole tiles: a geometry that pads it at the bottom/right only
    g_dy = dataclasses.replace(g_tiles, c=g.o, h=oh, w=ow, pad=(0, th * m - oh, 0, tw * m - ow))

    def run(batch):
        b = batch.stop - batch.start
        u = _input_transform(xp, x, batch, g_tiles, th, tw, acc)  # (C, a², B·T)
        # the input tiles' slots are free again: x_pad and wino_y take the output-gradient tiles
        go_pad = _channel_major(xp, grad_output, batch, g_dy, "x_pad", acc)  # (O, B, th·m, tw·m)
        from_pixels = index_array(xp, tile_index(tw * m, th * m * tw * m, b, m, m, th, tw))  # (m²·B·T,)
        dy = scratch(xp, "wino_y", (g.o, m * m * b * t), acc)
        take_into(xp, go_pad.reshape(g.o, -1), from_pixels, out=dy)  # (O, B·th·m·tw·m) -> (O, m²·B·T)
        dm = scratch(xp, "wino_m", (g.o, a * a, b * t), acc)
        xp.matmul(k_out_t, dy.reshape(g.o, m * m, b * t), out=dm)  # (a², m²) @ (O, m², B·T) -> (O, a², B·T)
        # (a², O, B·T) @ (a², B·T, C) -> (a², O, C): one GEMM per frequency over the chunk's tiles
        partial = xp.matmul(dm.transpose(1, 0, 2), u.transpose(1, 2, 0))
        go = grad_output[batch].astype(acc, copy=False)
        return partial, None if grad_b is None else bias_grad(go, 1, acc)

    per_sample = _winograd_scratch_per_sample(g, g_tiles, th, tw, acc.itemsize)
    grad_w_t = xp.zeros((a * a, g.o, g.c), dtype=acc)

    def add(partials):  # in chunk order, as each arrives
        partial, partial_b = partials
        grad_w_t[...] += partial
        if grad_b is not None:
            grad_b[...] += partial_b

    map_chunks(xp, run, _chunks(g.n, per_sample, limit, xp), consume=add)
    grad_w += filter_gradient(xp, grad_w_t, m)  # (a², O, C) -> (O, C, 3, 3)
    g_t = transposed_geometry(g)
    if g_t is not None:
        _winograd_forward(xp, grad_output, _flip_transpose(xp, weight, g), None, grad_x, g_t, limit)
    else:
        chunks = _chunks(g.n, _scratch_per_sample(g, acc.itemsize, backward=True), limit, xp)
        _gemm_backward(xp, grad_output, x, weight, grad_x, xp.zeros_like(grad_w), None, g, chunks)
