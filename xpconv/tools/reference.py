"""A float64 reference for ``xpconv check`` and ``xpconv bench``: a loop over output positions,
for 1 to 3 spatial axes.

For every output pixel it cuts one ``(N, C, *kernel)`` patch out of the padded input and
contracts it with the weight by ``einsum`` (the input gradient scatters the same way), with
rectangular inputs/kernels, stride, dilation and groups.  It shares no code with the im2col
kernels.  Slow on purpose: one Python iteration per output pixel.  ``pad`` is ``(before, after)``
per spatial axis; stride, dilation and the like one entry per axis.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from .._types import ArrayLike, Gradients

Pairs = Sequence[tuple[int, int]]


def _padded(x: ArrayLike, pad: Pairs) -> np.ndarray:
    return np.pad(np.asarray(x, dtype=np.float64), ((0, 0), (0, 0), *pad))


def _window(pixel, kernel, stride, dilation) -> tuple[slice, ...]:
    """The padded input's pixels output ``pixel`` reads, per axis (with the two leading axes)."""
    reads = (
        slice(p * s, p * s + d * (k - 1) + 1, d) for p, k, s, d in zip(pixel, kernel, stride, dilation, strict=True)
    )
    return _at(list(reads))


def _at(pixel: Sequence[object]) -> tuple:
    """The index of ``pixel`` (ints or slices, one per spatial axis) in every image and channel."""
    return (slice(None), slice(None), *pixel)


def _grid(sizes: Sequence[int]):
    return itertools.product(*(range(s) for s in sizes))


def _letters(dims: int) -> str:
    return "ijk"[:dims]


def reference_conv(
    x: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    *,
    stride: Sequence[int],
    pad: Pairs,
    dilation: Sequence[int],
    groups: int = 1,
) -> np.ndarray:
    """Forward pass of a convolution with ``len(stride)`` spatial axes."""
    x_pad = _padded(x, pad)
    w = np.asarray(weight, dtype=np.float64)
    n = x_pad.shape[0]
    o, cg, *kernel = w.shape
    og, dims, taps = o // groups, len(kernel), _letters(len(kernel))
    out = [(p - d * (k - 1) - 1) // s + 1 for p, k, s, d in zip(x_pad.shape[2:], kernel, stride, dilation, strict=True)]
    w_g = w.reshape(groups, og, cg, *kernel)  # (O, Cg, *kernel) -> (G, Og, Cg, *kernel)
    y = np.zeros((n, o, *out))
    for pixel in _grid(out):
        patch = x_pad[_window(pixel, kernel, stride, dilation)].reshape(
            n, groups, cg, *kernel
        )  # -> (N, G, Cg, *kernel)
        y[_at(pixel)] = np.einsum(f"ngc{taps},goc{taps}->ngo", patch, w_g).reshape(n, o)
    if bias is not None:
        y += np.asarray(bias, dtype=np.float64).reshape(o, *[1] * dims)
    return y


def reference_conv_backward(
    grad_output: ArrayLike,
    x: ArrayLike,
    weight: ArrayLike,
    *,
    stride: Sequence[int],
    pad: Pairs,
    dilation: Sequence[int],
    groups: int = 1,
) -> Gradients:
    """Input, weight and bias gradients by the same per-pixel loop."""
    x_pad = _padded(x, pad)
    go = np.asarray(grad_output, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    n, c = x_pad.shape[:2]
    o, cg, *kernel = w.shape
    og, dims, taps = o // groups, len(kernel), _letters(len(kernel))
    w_g = w.reshape(groups, og, cg, *kernel)  # (O, Cg, *kernel) -> (G, Og, Cg, *kernel)
    grad_pad = np.zeros_like(x_pad)
    grad_w = np.zeros_like(w_g)
    for pixel in _grid(go.shape[2:]):
        window = _window(pixel, kernel, stride, dilation)
        patch = x_pad[window].reshape(n, groups, cg, *kernel)  # (N, C, *kernel) -> (N, G, Cg, *kernel)
        g_p = go[_at(pixel)].reshape(n, groups, og)  # (N, O) -> (N, G, Og)
        grad_w += np.einsum(f"ngo,ngc{taps}->goc{taps}", g_p, patch)
        spread = np.einsum(f"ngo,goc{taps}->ngc{taps}", g_p, w_g)  # (N, G, Cg, *kernel)
        grad_pad[window] += spread.reshape(n, c, *kernel)  # -> (N, C, *kernel)
    inside = tuple(slice(b, size - a) for (b, a), size in zip(pad, grad_pad.shape[2:], strict=True))
    grad_x = grad_pad[_at(inside)]
    grad_b = go.sum(axis=(0, *range(2, 2 + dims)))
    return Gradients(grad_x, grad_w.reshape(w.shape), grad_b)  # (G, Og, Cg, *kernel) -> (O, Cg, *kernel)


def reference_dense(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None) -> np.ndarray:
    y = np.einsum("ni,oi->no", np.asarray(x, np.float64), np.asarray(weight, np.float64))
    return y if bias is None else y + np.asarray(bias, np.float64)


def reference_dense_backward(grad_output: ArrayLike, x: ArrayLike, weight: ArrayLike) -> Gradients:
    go, x64, w64 = (np.asarray(a, np.float64) for a in (grad_output, x, weight))
    return Gradients(np.einsum("no,oi->ni", go, w64), np.einsum("no,ni->oi", go, x64), go.sum(axis=0))


def reference_conv_transpose(
    x: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None,
    grad_output: ArrayLike,
    *,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> tuple[np.ndarray, Gradients]:
    """Transposed convolution and its gradients, scattering from each input pixel: pixel ``i`` adds
    ``x[:, :, i]`` times the kernel into the full output's window at ``i·stride``, whose first
    ``padding`` pixels per axis are then cropped; the output's size is ``grad_output``'s.
    -> ``(y, Gradients(input, weight, bias))``."""
    x64, w, go = (np.asarray(a, np.float64) for a in (x, weight, grad_output))
    n, c_in, *size = x64.shape
    _, cog, *kernel = w.shape
    cig, dims, taps = c_in // groups, len(kernel), _letters(len(kernel))
    out = go.shape[2:]
    full_size = [
        p + o + (s - 1) * st + d * (k - 1) + 1
        for p, o, s, st, d, k in zip(padding, out, size, stride, dilation, kernel, strict=True)
    ]
    full = np.zeros((n, cog * groups, *full_size))
    cropped = _at([slice(p, p + o) for p, o in zip(padding, out, strict=True)])
    go_full = np.zeros_like(full)
    go_full[cropped] = go
    x_g = x64.reshape(n, groups, cig, *size)  # (N, C_in, *size) -> (N, G, Cig, *size)
    w_g = w.reshape(groups, cig, cog, *kernel)  # (C_in, Cog, *kernel) -> (G, Cig, Cog, *kernel)
    grad_x = np.zeros_like(x_g)
    grad_w = np.zeros_like(w_g)
    for pixel in _grid(size):
        window = _window(pixel, kernel, stride, dilation)
        here = (slice(None), slice(None), slice(None), *pixel)
        scattered = np.einsum(f"ngc,gco{taps}->ngo{taps}", x_g[here], w_g)  # (N, G, Cog, *kernel)
        full[window] += scattered.reshape(n, groups * cog, *kernel)
        g_win = go_full[window].reshape(n, groups, cog, *kernel)  # (N, C_out, *kernel) -> (N, G, Cog, *kernel)
        grad_x[here] = np.einsum(f"ngo{taps},gco{taps}->ngc", g_win, w_g)
        grad_w += np.einsum(f"ngc,ngo{taps}->gco{taps}", x_g[here], g_win)
    y = full[cropped]
    if bias is not None:
        y = y + np.asarray(bias, np.float64).reshape(-1, *[1] * dims)
    grad_b = go.sum(axis=(0, *range(2, 2 + dims)))
    return y, Gradients(grad_x.reshape(x64.shape), grad_w.reshape(w.shape), grad_b)


def reference_pool(
    x: ArrayLike,
    grad_output: ArrayLike,
    *,
    kind: str,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int] | None = None,
    count_include_pad: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Max (``kind="max"``) or average pooling and its input gradient, per output pixel, for an
    output of ``grad_output``'s size: the max picks, in row-major window order among the input
    pixels, the first maximum or else the last NaN; the average divides by the window within the
    padded input, or within the input.  -> ``(y, grad_x)``."""
    x64, go = np.asarray(x, np.float64), np.asarray(grad_output, np.float64)
    size = x64.shape[2:]
    dilation = dilation or (1,) * len(size)
    y, grad_x = np.zeros(go.shape), np.zeros_like(x64)
    for pixel in _grid(go.shape[2:]):
        start = [p * s - q for p, s, q in zip(pixel, stride, padding, strict=True)]
        reads = [[b + t * d for t in range(k)] for b, k, d in zip(start, kernel, dilation, strict=True)]
        taps = [
            coord for coord in itertools.product(*reads) if all(0 <= r < s for r, s in zip(coord, size, strict=True))
        ]
        values = np.stack([x64[_at(coord)] for coord in taps], axis=-1)  # (N, C, taps)
        out = _at(pixel)
        if kind == "max":
            nan = np.isnan(values)
            last_nan = len(taps) - 1 - np.argmax(nan[..., ::-1], axis=-1)
            pick = np.where(nan.any(axis=-1), last_nan, np.argmax(values, axis=-1))  # (N, C)
            y[out] = np.take_along_axis(values, pick[..., None], axis=-1)[..., 0]
            for k, coord in enumerate(taps):
                grad_x[_at(coord)] += np.where(pick == k, go[out], 0.0)
        else:
            if count_include_pad:
                divisor = 1
                for b, k, s, q in zip(start, kernel, size, padding, strict=True):
                    divisor *= min(b + k, s + q) - b
            else:
                divisor = len(taps)
            y[out] = values.sum(axis=-1) / divisor
            for coord in taps:
                grad_x[_at(coord)] += go[out] / divisor
    return y, grad_x
