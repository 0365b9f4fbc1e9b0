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


# --- pooling: windows scanned pixel by pixel, PyTorch's rules written out -----------------------


def pool_out_size(size, k, s, p, d, ceil_mode):
    """Windows that start at r·s - p and fit in the padded input; with ceil_mode one more that
    only starts inside it, unless it would start beyond the input and its left padding."""
    span = d * (k - 1) + 1
    count = 0
    while count * s + span <= size + 2 * p:
        count += 1
    if ceil_mode and (count - 1) * s + span < size + 2 * p and count * s < size + p:
        count += 1
    return count


def _pool_loop(x, kernel, stride, pad, dilation, ceil_mode, visit):
    """Call ``visit(s, c, p, q, taps)`` per output pixel with its in-image taps [(ih, iw, flat offset)]."""
    n, ch, h, w = x.shape
    oh = pool_out_size(h, kernel[0], stride[0], pad[0], dilation[0], ceil_mode)
    ow = pool_out_size(w, kernel[1], stride[1], pad[1], dilation[1], ceil_mode)
    for s in range(n):
        for c in range(ch):
            for p in range(oh):
                for q in range(ow):
                    taps = []
                    for i in range(kernel[0]):
                        ih = p * stride[0] - pad[0] + i * dilation[0]
                        for j in range(kernel[1]):
                            iw = q * stride[1] - pad[1] + j * dilation[1]
                            if 0 <= ih < h and 0 <= iw < w:
                                taps.append((ih, iw))
                    visit(s, c, p, q, taps)
    return oh, ow


def oracle_max_pool2d(x, kernel, stride, pad, dilation, ceil_mode, go=None):
    """``(y, dx)``: the maximum over each window's in-image pixels and, for ``go``, the gradient routed
    to the pixel PyTorch chooses: scanning in row-major order from the first in-image pixel, move
    to a value that is greater, or NaN."""
    x = np.asarray(x, np.float64)
    outputs, chosen = {}, {}

    def visit(s, c, p, q, taps):
        best_at, best = (taps or [None])[0], -np.inf  # a dilated window may miss the input: -inf, no gradient
        for ih, iw in taps:
            v = x[s, c, ih, iw]
            if v > best or np.isnan(v):
                best, best_at = v, (ih, iw)
        outputs[s, c, p, q] = best
        chosen[s, c, p, q] = best_at

    oh, ow = _pool_loop(x, kernel, stride, pad, dilation, ceil_mode, visit)
    y = np.zeros((x.shape[0], x.shape[1], oh, ow))
    dx = np.zeros_like(x)
    for (s, c, p, q), v in outputs.items():
        y[s, c, p, q] = v
        if go is not None and chosen[s, c, p, q] is not None:
            ih, iw = chosen[s, c, p, q]
            dx[s, c, ih, iw] += go[s, c, p, q]
    return y, dx


def oracle_avg_pool2d(x, kernel, stride, pad, ceil_mode, count_include_pad, divisor_override, go=None):
    """``(y, dx)``: each window's sum over its in-image pixels divided by ``divisor_override``, or by
    the window's size clipped to the padded input (``count_include_pad``) or to the input."""
    x = np.asarray(x, np.float64)
    n, ch, h, w = x.shape
    sums, divisors, members = {}, {}, {}

    def visit(s, c, p, q, taps):
        sums[s, c, p, q] = sum(x[s, c, ih, iw] for ih, iw in taps)
        members[s, c, p, q] = taps
        if divisor_override is not None:
            divisors[s, c, p, q] = divisor_override
        elif count_include_pad:
            rows = min(p * stride[0] - pad[0] + kernel[0], h + pad[0]) - (p * stride[0] - pad[0])
            cols = min(q * stride[1] - pad[1] + kernel[1], w + pad[1]) - (q * stride[1] - pad[1])
            divisors[s, c, p, q] = rows * cols
        else:
            divisors[s, c, p, q] = len(taps)

    oh, ow = _pool_loop(x, kernel, stride, pad, (1, 1), ceil_mode, visit)
    y = np.zeros((n, ch, oh, ow))
    dx = np.zeros_like(x)
    for key, total in sums.items():
        y[key] = total / divisors[key]
        if go is not None:
            for ih, iw in members[key]:
                dx[key[0], key[1], ih, iw] += go[key] / divisors[key]
    return y, dx


# --- transposed convolution: every input pixel scatters its kernel-weighted value -----------------


def oracle_conv_transpose2d(x, w, b, stride, pad, output_padding, dilation, groups, go=None):
    """``(y, (dx, dw, db))``: y[n, g·Cog + co, ih·s - p + i·d, ...] += x[n, ci, ih, iw] · w[ci, co, i, j]
    over every input pixel and tap landing in the output, then the bias; the gradients, for ``go``,
    by the same loop read backwards."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    n, c_in, h, wd = x.shape
    _, cog, kh, kw = w.shape
    cig = c_in // groups
    out_h = (h - 1) * stride[0] - 2 * pad[0] + dilation[0] * (kh - 1) + output_padding[0] + 1
    out_w = (wd - 1) * stride[1] - 2 * pad[1] + dilation[1] * (kw - 1) + output_padding[1] + 1
    y = np.zeros((n, cog * groups, out_h, out_w))
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for s in range(n):
        for ci in range(c_in):
            g = ci // cig
            for ih in range(h):
                for iw in range(wd):
                    for co in range(cog):
                        for i in range(kh):
                            oy = ih * stride[0] - pad[0] + i * dilation[0]
                            if not 0 <= oy < out_h:
                                continue
                            for j in range(kw):
                                ox = iw * stride[1] - pad[1] + j * dilation[1]
                                if 0 <= ox < out_w:
                                    y[s, g * cog + co, oy, ox] += x[s, ci, ih, iw] * w[ci, co, i, j]
                                    if go is not None:
                                        dx[s, ci, ih, iw] += go[s, g * cog + co, oy, ox] * w[ci, co, i, j]
                                        dw[ci, co, i, j] += go[s, g * cog + co, oy, ox] * x[s, ci, ih, iw]
    if b is not None:
        y += np.asarray(b, np.float64)[None, :, None, None]
    db = None if go is None else np.array([go[:, o].sum() for o in range(cog * groups)])
    return y, (dx, dw, db)


def oracle_max_unpool2d(x, indices, size, grad_output=None):
    """Zeros of ``size`` (H_out, W_out) per plane, then, window by window in raster order, the value
    of ``x`` written at the place its index names (a later window overwrites an earlier one); with
    ``grad_output``, also the gradient: each window's value of ``grad_output`` at its place."""
    n, c, h, w = x.shape
    out = np.zeros((n, c, size[0] * size[1]))
    grad = np.zeros((n, c, h, w))
    for b in range(n):
        for ch in range(c):
            for i in range(h):
                for j in range(w):
                    place = int(indices[b, ch, i, j])
                    out[b, ch, place] = x[b, ch, i, j]
                    if grad_output is not None:
                        grad[b, ch, i, j] = grad_output[b, ch].reshape(-1)[place]
    return out.reshape(n, c, *size), grad
