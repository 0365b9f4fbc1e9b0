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


def reference_conv_transpose2d(
    x: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None,
    grad_output: ArrayLike,
    *,
    stride: tuple[int, int],
    padding: tuple[int, int],
    output_padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> tuple[np.ndarray, Gradients]:
    """Transposed convolution and its gradients, scattering from each input pixel: pixel ``(i, j)``
    adds ``x[:, :, i, j]`` times the kernel into the full output's window at ``(i·s, j·s)``, whose
    first ``padding`` rows and columns are then cropped.  -> ``(y, Gradients(input, weight, bias))``."""
    x64, w, go = (np.asarray(a, np.float64) for a in (x, weight, grad_output))
    n, c_in, h, wd = x64.shape
    _, cog, kh, kw = w.shape
    cig = c_in // groups
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    out_h, out_w = go.shape[2:]
    full = np.zeros(
        (n, cog * groups, ph + out_h + (h - 1) * sh + dh * (kh - 1) + 1, pw + out_w + (wd - 1) * sw + dw * (kw - 1) + 1)
    )
    go_full = np.zeros_like(full)
    go_full[:, :, ph : ph + out_h, pw : pw + out_w] = go
    x_g = x64.reshape(n, groups, cig, h, wd)  # (N, C_in, H, W) -> (N, G, Cig, H, W)
    w_g = w.reshape(groups, cig, cog, kh, kw)  # (C_in, Cog, kh, kw) -> (G, Cig, Cog, kh, kw)
    grad_x = np.zeros_like(x_g)
    grad_w = np.zeros_like(w_g)
    for i in range(h):
        for j in range(wd):
            rows = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
            cols = slice(j * sw, j * sw + dw * (kw - 1) + 1, dw)
            target = full[:, :, rows, cols].reshape(n, groups, cog, kh, kw)  # (N, C_out, kh, kw) -> (N, G, Cog, kh, kw)
            target += np.einsum("ngc,gcokl->ngokl", x_g[:, :, :, i, j], w_g)
            full[:, :, rows, cols] = target.reshape(n, groups * cog, kh, kw)  # back into the full output
            g_win = go_full[:, :, rows, cols].reshape(n, groups, cog, kh, kw)  # (N, G, Cog, kh, kw)
            grad_x[:, :, :, i, j] = np.einsum("ngokl,gcokl->ngc", g_win, w_g)
            grad_w += np.einsum("ngc,ngokl->gcokl", x_g[:, :, :, i, j], g_win)
    y = full[:, :, ph : ph + out_h, pw : pw + out_w]
    if bias is not None:
        y = y + np.asarray(bias, np.float64)[None, :, None, None]
    grads = Gradients(grad_x.reshape(x64.shape), grad_w.reshape(w.shape), go.sum(axis=(0, 2, 3)))
    return y, grads


def reference_pool2d(
    x: ArrayLike,
    grad_output: ArrayLike,
    *,
    kind: str,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
    count_include_pad: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Max (``kind="max"``) or average pooling and its input gradient, per output pixel, for an
    output of ``grad_output``'s size: the max picks, in row-major window order among the input
    pixels, the first maximum or else the last NaN; the average divides by the window within the
    padded input, or within the input.  -> ``(y, grad_x)``."""
    x64, go = np.asarray(x, np.float64), np.asarray(grad_output, np.float64)
    n, c, h, w = x64.shape
    oh, ow = go.shape[2:]
    y, grad_x = np.zeros(go.shape), np.zeros_like(x64)
    for p in range(oh):
        for q in range(ow):
            taps = [
                (r, s)
                for r in (p * stride[0] - padding[0] + i * dilation[0] for i in range(kernel[0]))
                for s in (q * stride[1] - padding[1] + j * dilation[1] for j in range(kernel[1]))
                if 0 <= r < h and 0 <= s < w
            ]
            values = np.stack([x64[:, :, r, s] for r, s in taps], axis=-1)  # (N, C, taps)
            if kind == "max":
                nan = np.isnan(values)
                last_nan = len(taps) - 1 - np.argmax(nan[..., ::-1], axis=-1)
                pick = np.where(nan.any(axis=-1), last_nan, np.argmax(values, axis=-1))  # (N, C)
                y[:, :, p, q] = np.take_along_axis(values, pick[..., None], axis=-1)[..., 0]
                for k, (r, s) in enumerate(taps):
                    grad_x[:, :, r, s] += np.where(pick == k, go[:, :, p, q], 0.0)
            else:
                if count_include_pad:
                    rows = min(p * stride[0] - padding[0] + kernel[0], h + padding[0]) - (p * stride[0] - padding[0])
                    cols = min(q * stride[1] - padding[1] + kernel[1], w + padding[1]) - (q * stride[1] - padding[1])
                    size = rows * cols
                else:
                    size = len(taps)
                y[:, :, p, q] = values.sum(axis=-1) / size
                for r, s in taps:
                    grad_x[:, :, r, s] += go[:, :, p, q] / size
    return y, grad_x
