"""A float64 reference for ``xpconv check`` and ``xpconv bench``: a loop over output positions.

For every output pixel ``(p, q)`` it cuts one ``(N, C, kh, kw)`` patch out of the padded
input and contracts it with the weight by ``einsum`` (the input gradient scatters the
same way), with rectangular images/kernels, stride, dilation and groups.  It shares no
code with the im2col kernels.  Slow on purpose: one Python iteration per output pixel.
"""

from __future__ import annotations

import numpy as np

from .._types import ArrayLike, Gradients


def _padded(x, pad):
    top, bottom, left, right = pad
    return np.pad(np.asarray(x, dtype=np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)))


def _patch(x_pad, p, q, kernel, stride, dilation):
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    return x_pad[:, :, p * sh : p * sh + dh * (kh - 1) + 1 : dh, q * sw : q * sw + dw * (kw - 1) + 1 : dw]


def reference_conv2d(
    x: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    *,
    stride: tuple[int, int] = (1, 1),
    pad: tuple[int, int, int, int] = (0, 0, 0, 0),
    dilation: tuple[int, int] = (1, 1),
    groups: int = 1,
) -> np.ndarray:
    """Forward pass; ``pad`` is ``(top, bottom, left, right)`` and pairs are explicit."""
    x_pad = _padded(x, pad)
    w = np.asarray(weight, dtype=np.float64)
    n, c = x_pad.shape[:2]
    o, cg, kh, kw = w.shape
    og = o // groups
    oh = (x_pad.shape[2] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (x_pad.shape[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    w_g = w.reshape(groups, og, cg, kh, kw)  # (O, Cg, kh, kw) -> (G, Og, Cg, kh, kw)
    y = np.zeros((n, o, oh, ow))
    for p in range(oh):
        for q in range(ow):
            patch = _patch(x_pad, p, q, (kh, kw), stride, dilation).reshape(
                n, groups, cg, kh, kw
            )  # (N, C, kh, kw) -> (N, G, Cg, kh, kw)
            y[:, :, p, q] = np.einsum("ngcij,gocij->ngo", patch, w_g).reshape(n, o)  # (N, G, Og) -> (N, O)
    if bias is not None:
        y += np.asarray(bias, dtype=np.float64)[None, :, None, None]
    return y


def reference_conv2d_backward(
    grad_output: ArrayLike,
    x: ArrayLike,
    weight: ArrayLike,
    *,
    stride: tuple[int, int] = (1, 1),
    pad: tuple[int, int, int, int] = (0, 0, 0, 0),
    dilation: tuple[int, int] = (1, 1),
    groups: int = 1,
) -> Gradients:
    """Input, weight and bias gradients by the same per-pixel loop."""
    x_pad = _padded(x, pad)
    go = np.asarray(grad_output, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    n, c = x_pad.shape[:2]
    o, cg, kh, kw = w.shape
    og = o // groups
    oh, ow = go.shape[2:]
    w_g = w.reshape(groups, og, cg, kh, kw)  # (O, Cg, kh, kw) -> (G, Og, Cg, kh, kw)
    grad_pad = np.zeros_like(x_pad)
    grad_w = np.zeros_like(w_g)
    for p in range(oh):
        for q in range(ow):
            patch = _patch(x_pad, p, q, (kh, kw), stride, dilation).reshape(
                n, groups, cg, kh, kw
            )  # -> (N, G, Cg, kh, kw)
            g_pq = go[:, :, p, q].reshape(n, groups, og)  # (N, O) -> (N, G, Og)
            grad_w += np.einsum("ngo,ngcij->gocij", g_pq, patch)
            window = _patch(grad_pad, p, q, (kh, kw), stride, dilation)  # (N, C, kh, kw) view
            window += np.einsum("ngo,gocij->ngcij", g_pq, w_g).reshape(
                n, c, kh, kw
            )  # (N, G, Cg, ...) -> (N, C, kh, kw)
    top, bottom, left, right = pad
    grad_x = grad_pad[:, :, top : grad_pad.shape[2] - bottom, left : grad_pad.shape[3] - right]
    return Gradients(grad_x, grad_w.reshape(w.shape), go.sum(axis=(0, 2, 3)))  # (G, Og, Cg, kh, kw) -> (O, Cg, kh, kw)


def reference_dense(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None) -> np.ndarray:
    y = np.einsum("ni,oi->no", np.asarray(x, np.float64), np.asarray(weight, np.float64))
    return y if bias is None else y + np.asarray(bias, np.float64)


def reference_dense_backward(grad_output: ArrayLike, x: ArrayLike, weight: ArrayLike) -> Gradients:
    go, x64, w64 = (np.asarray(a, np.float64) for a in (grad_output, x, weight))
    return Gradients(np.einsum("no,oi->ni", go, w64), np.einsum("no,ni->oi", go, x64), go.sum(axis=0))
