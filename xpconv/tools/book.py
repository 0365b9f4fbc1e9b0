"""The book's approach, re-implemented faithfully for benchmarks (speed comparison only).

The appendix builds its patches with a Python loop over every output position
(``_get_image_patches``: one ``(N, C, k, k)`` slice per position, then ``np.stack``), pads
each image separately, and then does one ``np.matmul``.  This module keeps that structure —
the per-position loop, the per-image padding, the stack, the matmul — and keeps the input's
dtype; it fixes only what would make the result wrong (the weight gradient's batch order,
the square/odd-kernel limits) and adds stride and groups so that every standard benchmark
shape runs.  The book has no correct input gradient, so none is offered here.
"""

from __future__ import annotations

import numpy as np

from .._geometry import conv_geometry


def _padded(x, p):
    # The book pads image by image: np.stack([_pad_2d_channel(obs, p) for obs in batch]).
    return np.stack([np.pad(obs, ((0, 0), (p, p), (p, p))) for obs in x])


def _patches(x_pad, k, stride, oh, ow):
    """One (N, C, k, k) patch per output position, stacked: (oh·ow, N, C, k, k)."""
    patches = []
    for h in range(oh):
        for w in range(ow):
            patches.append(x_pad[:, :, h * stride : h * stride + k, w * stride : w * stride + k])
    return np.stack(patches)


def book_conv2d(x: np.ndarray, weight: np.ndarray, *, stride: int = 1, padding: int = 0, groups: int = 1) -> np.ndarray:
    """Forward pass: patches (P, N, C, k, k) -> (N, G, P, Cg·k·k) @ (G, Cg·k·k, Og)."""
    n = x.shape[0]
    o, cg, k, _ = weight.shape
    og = o // groups
    oh, ow = conv_geometry(x.shape, weight.shape, None, stride=stride, padding=padding, groups=groups).out
    patches = _patches(_padded(x, padding), k, stride, oh, ow)
    patches = patches.reshape(oh * ow, n, groups, cg * k * k).transpose(1, 2, 0, 3)  # (P, N, C, k, k) -> (N, G, P, K)
    param = weight.reshape(groups, og, cg * k * k).transpose(0, 2, 1)  # (O, Cg, k, k) -> (G, K, Og)
    out = np.matmul(patches, param)  # (N, G, P, K) @ (G, K, Og) -> (N, G, P, Og)
    return out.transpose(0, 1, 3, 2).reshape(n, o, oh, ow)  # (N, G, P, Og) -> (N, G, Og, P) -> (N, O, oh, ow)


def book_conv2d_weight_grad(
    grad_output: np.ndarray, x: np.ndarray, weight: np.ndarray, *, stride: int = 1, padding: int = 0, groups: int = 1
) -> np.ndarray:
    """The book's ``_param_grad_matmul``, with patches and gradient both in (batch, position) order."""
    n = x.shape[0]
    o, cg, k, _ = weight.shape
    og = o // groups
    oh, ow = grad_output.shape[2:]
    patches = _patches(_padded(x, padding), k, stride, oh, ow)
    patches = patches.reshape(oh * ow, n, groups, cg * k * k).transpose(2, 1, 0, 3)  # (P, N, C, k, k) -> (G, N, P, K)
    patches_2d = patches.reshape(groups, n * oh * ow, cg * k * k)  # (G, N, P, K) -> (G, N·P, K)
    grad = grad_output.reshape(n, groups, og, oh * ow).transpose(1, 0, 3, 2)  # (N, O, oh, ow) -> (G, N, P, Og)
    grad = grad.reshape(groups, n * oh * ow, og)  # (G, N, P, Og) -> (G, N·P, Og)
    param_grad = np.matmul(patches_2d.transpose(0, 2, 1), grad)  # (G, K, N·P) @ (G, N·P, Og) -> (G, K, Og)
    return param_grad.transpose(0, 2, 1).reshape(weight.shape)  # (G, K, Og) -> (G, Og, K) -> (O, Cg, k, k)
