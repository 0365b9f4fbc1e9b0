"""Independent float64 oracle: plain scalar loops straight from the definitions.

No padding array, no patches, no matmul, nothing imported from xpconv: every output
pixel is a sum over (input channel, kernel row, kernel column), skipping taps that fall
outside the image.  Gradients are the same loops with the chain rule applied by hand.
Slow, so tests keep the shapes small.
"""

import numpy as np


def _taps(n_o, o, p, q, x_shape, w_shape, stride, pad, dilation, groups):
    """Yield (c, i, j, ih, iw) for every in-image tap that output (o, p, q) reads."""
    _, c_in, h, w = x_shape
    o_total, cg, kh, kw = w_shape
    g = o // (o_total // groups)
    for c in range(cg):
        for i in range(kh):
            ih = p * stride[0] - pad[0] + i * dilation[0]
            if not 0 <= ih < h:
                continue
            for j in range(kw):
                iw = q * stride[1] - pad[2] + j * dilation[1]
                if 0 <= iw < w:
                    yield g * cg + c, c, i, j, ih, iw


def out_size(x_shape, w_shape, stride, pad, dilation):
    h, w = x_shape[2:]
    kh, kw = w_shape[2:]
    oh = (h + pad[0] + pad[1] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w + pad[2] + pad[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    return oh, ow


def oracle_conv2d(x, w, b, stride, pad, dilation, groups):
    """``pad`` is (top, bottom, left, right); ``stride``/``dilation`` are pairs."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    n = x.shape[0]
    o_total = w.shape[0]
    oh, ow = out_size(x.shape, w.shape, stride, pad, dilation)
    y = np.zeros((n, o_total, oh, ow))
    for s in range(n):
        for o in range(o_total):
            for p in range(oh):
                for q in range(ow):
                    acc = 0.0 if b is None else float(b[o])
                    for cin, c, i, j, ih, iw in _taps(n, o, p, q, x.shape, w.shape, stride, pad, dilation, groups):
                        acc += x[s, cin, ih, iw] * w[o, c, i, j]
                    y[s, o, p, q] = acc
    return y


def oracle_conv2d_grads(go, x, w, stride, pad, dilation, groups):
    """(dL/dx, dL/dw, dL/db) for L = sum(go * conv2d(x, w, b))."""
    go = np.asarray(go, np.float64)
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    n, o_total, oh, ow = go.shape
    for s in range(n):
        for o in range(o_total):
            for p in range(oh):
                for q in range(ow):
                    g = go[s, o, p, q]
                    for cin, c, i, j, ih, iw in _taps(n, o, p, q, x.shape, w.shape, stride, pad, dilation, groups):
                        dx[s, cin, ih, iw] += g * w[o, c, i, j]
                        dw[o, c, i, j] += g * x[s, cin, ih, iw]
    db = np.array([go[:, o].sum() for o in range(o_total)])
    return dx, dw, db


def oracle_dense(x, w, b):
    n, fin = x.shape
    fout = w.shape[0]
    y = np.zeros((n, fout))
    for s in range(n):
        for o in range(fout):
            y[s, o] = sum(float(x[s, i]) * float(w[o, i]) for i in range(fin)) + (0.0 if b is None else float(b[o]))
    return y


def oracle_dense_grads(go, x, w):
    n, fin = x.shape
    fout = w.shape[0]
    dx = np.zeros((n, fin))
    dw = np.zeros((fout, fin))
    for s in range(n):
        for o in range(fout):
            for i in range(fin):
                dx[s, i] += go[s, o] * w[o, i]
                dw[o, i] += go[s, o] * x[s, i]
    return dx, dw, np.array([sum(float(go[s, o]) for s in range(n)) for o in range(fout)])


def same_padding(kernel, dilation):
    """PyTorch's 'same': total d·(k-1), the odd extra at the bottom/right."""
    pads = []
    for k, d in zip(kernel, dilation, strict=True):
        total = d * (k - 1)
        pads += [total // 2, total - total // 2]
    return tuple(pads)
