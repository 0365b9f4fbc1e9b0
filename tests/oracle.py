"""Independent float64 oracle: plain scalar loops straight from the definitions, for 1 to 3
spatial axes.

No padding array, no patches, no matmul, nothing imported from xpconv: every output
pixel is a sum over (input channel, kernel offset), skipping taps that fall outside the
input.  Gradients are the same loops with the chain rule applied by hand.  Pixels and kernel
offsets are index tuples, one entry per spatial axis; ``pad`` is flat, ``(before, after)`` per
axis (``(top, bottom, left, right)`` in 2-D).  Slow, so tests keep the shapes small.
"""

import itertools

import numpy as np


def _grid(sizes):
    """Every index tuple of an array of ``sizes``, in row-major order."""
    return itertools.product(*(range(s) for s in sizes))


def _read(pixel, tap, stride, before, dilation):
    """The input coordinates output ``pixel`` reads with kernel offset ``tap``."""
    return tuple(p * s - b + t * d for p, t, s, b, d in zip(pixel, tap, stride, before, dilation, strict=True))


def _inside(coord, size):
    return all(0 <= c < s for c, s in zip(coord, size, strict=True))


def _taps(o, pixel, x_shape, w_shape, stride, pad, dilation, groups):
    """Yield (input channel, weight channel, tap, input coordinates) for every in-input tap that
    output (o, pixel) reads."""
    size = x_shape[2:]
    o_total, cg, *kernel = w_shape
    g = o // (o_total // groups)
    for c in range(cg):
        for tap in _grid(kernel):
            coord = _read(pixel, tap, stride, pad[::2], dilation)
            if _inside(coord, size):
                yield g * cg + c, c, tap, coord


def out_size(x_shape, w_shape, stride, pad, dilation):
    return tuple(
        (size + pad[2 * a] + pad[2 * a + 1] - dilation[a] * (k - 1) - 1) // stride[a] + 1
        for a, (size, k) in enumerate(zip(x_shape[2:], w_shape[2:], strict=True))
    )


def oracle_conv(x, w, b, stride, pad, dilation, groups):
    """``pad`` is flat (before, after) per axis; ``stride``/``dilation`` one per axis."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    n = x.shape[0]
    o_total = w.shape[0]
    out = out_size(x.shape, w.shape, stride, pad, dilation)
    y = np.zeros((n, o_total, *out))
    for s in range(n):
        for o in range(o_total):
            for pixel in _grid(out):
                acc = 0.0 if b is None else float(b[o])
                for cin, c, tap, coord in _taps(o, pixel, x.shape, w.shape, stride, pad, dilation, groups):
                    acc += x[(s, cin, *coord)] * w[(o, c, *tap)]
                y[(s, o, *pixel)] = acc
    return y


def oracle_conv_grads(go, x, w, stride, pad, dilation, groups):
    """(dL/dx, dL/dw, dL/db) for L = sum(go * conv(x, w, b))."""
    go = np.asarray(go, np.float64)
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    n, o_total, *out = go.shape
    for s in range(n):
        for o in range(o_total):
            for pixel in _grid(out):
                g = go[(s, o, *pixel)]
                for cin, c, tap, coord in _taps(o, pixel, x.shape, w.shape, stride, pad, dilation, groups):
                    dx[(s, cin, *coord)] += g * w[(o, c, *tap)]
                    dw[(o, c, *tap)] += g * x[(s, cin, *coord)]
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
    """PyTorch's 'same': total d·(k-1), the odd extra after (bottom/right)."""
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
    """Call ``visit(s, c, pixel, taps)`` per output pixel with its in-input taps [coordinates], in
    row-major window order; returns the output's spatial size."""
    n, ch, *size = x.shape
    out = tuple(pool_out_size(*args, ceil_mode) for args in zip(size, kernel, stride, pad, dilation, strict=True))
    for s in range(n):
        for c in range(ch):
            for pixel in _grid(out):
                taps = [_read(pixel, tap, stride, pad, dilation) for tap in _grid(kernel)]
                visit(s, c, pixel, [coord for coord in taps if _inside(coord, size)])
    return out


def oracle_max_pool(x, kernel, stride, pad, dilation, ceil_mode, go=None):
    """``(y, dx)``: the maximum over each window's in-input pixels and, for ``go``, the gradient routed
    to the pixel PyTorch chooses: scanning in row-major order from the first in-input pixel, move
    to a value that is greater, or NaN."""
    x = np.asarray(x, np.float64)
    outputs, chosen = {}, {}

    def visit(s, c, pixel, taps):
        best_at, best = (taps or [None])[0], -np.inf  # a dilated window may miss the input: -inf, no gradient
        for coord in taps:
            v = x[(s, c, *coord)]
            if v > best or np.isnan(v):
                best, best_at = v, coord
        outputs[(s, c, *pixel)] = best
        chosen[(s, c, *pixel)] = best_at

    out = _pool_loop(x, kernel, stride, pad, dilation, ceil_mode, visit)
    y = np.zeros((x.shape[0], x.shape[1], *out))
    dx = np.zeros_like(x)
    for key, v in outputs.items():
        y[key] = v
        if go is not None and chosen[key] is not None:
            dx[(*key[:2], *chosen[key])] += go[key]
    return y, dx


def oracle_avg_pool(x, kernel, stride, pad, ceil_mode, count_include_pad, divisor_override, go=None):
    """``(y, dx)``: each window's sum over its in-input pixels divided by ``divisor_override``, or by
    the window's size clipped to the padded input (``count_include_pad``) or to the input."""
    x = np.asarray(x, np.float64)
    n, ch, *size = x.shape
    sums, divisors, members = {}, {}, {}

    def visit(s, c, pixel, taps):
        key = (s, c, *pixel)
        sums[key] = sum(x[(s, c, *coord)] for coord in taps)
        members[key] = taps
        if divisor_override is not None:
            divisors[key] = divisor_override
        elif count_include_pad:
            divisors[key] = 1
            for p, k, st, pa, sz in zip(pixel, kernel, stride, pad, size, strict=True):
                divisors[key] *= min(p * st - pa + k, sz + pa) - (p * st - pa)
        else:
            divisors[key] = len(taps)

    out = _pool_loop(x, kernel, stride, pad, (1,) * len(size), ceil_mode, visit)
    y = np.zeros((n, ch, *out))
    dx = np.zeros_like(x)
    for key, total in sums.items():
        y[key] = total / divisors[key]
        if go is not None:
            for coord in members[key]:
                dx[(*key[:2], *coord)] += go[key] / divisors[key]
    return y, dx


# --- transposed convolution: every input pixel scatters its kernel-weighted value -----------------


def oracle_conv_transpose(x, w, b, stride, pad, output_padding, dilation, groups, go=None):
    """``(y, (dx, dw, db))``: y[n, g·Cog + co, pixel·s - p + tap·d] += x[n, ci, pixel] · w[ci, co, tap]
    over every input pixel and tap landing in the output, then the bias; the gradients, for ``go``,
    by the same loop read backwards.  ``pad``: one per axis (both sides)."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    n, c_in, *size = x.shape
    _, cog, *kernel = w.shape
    cig = c_in // groups
    out = tuple(
        (s - 1) * st - 2 * p + d * (k - 1) + op + 1
        for s, st, p, d, k, op in zip(size, stride, pad, dilation, kernel, output_padding, strict=True)
    )
    y = np.zeros((n, cog * groups, *out))
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for s in range(n):
        for ci in range(c_in):
            g = ci // cig
            for pixel in _grid(size):
                for co in range(cog):
                    for tap in _grid(kernel):
                        target = _read(pixel, tap, stride, pad, dilation)
                        if not _inside(target, out):
                            continue
                        where = (s, g * cog + co, *target)
                        y[where] += x[(s, ci, *pixel)] * w[(ci, co, *tap)]
                        if go is not None:
                            dx[(s, ci, *pixel)] += go[where] * w[(ci, co, *tap)]
                            dw[(ci, co, *tap)] += go[where] * x[(s, ci, *pixel)]
    if b is not None:
        y += np.asarray(b, np.float64).reshape(-1, *[1] * len(size))
    db = None if go is None else np.array([go[:, o].sum() for o in range(cog * groups)])
    return y, (dx, dw, db)


def oracle_max_unpool(x, indices, size, grad_output=None):
    """Zeros of ``size`` (the output's spatial size) per plane, then, window by window in raster
    order, the value of ``x`` written at the place its index names (a later window overwrites an
    earlier one); with ``grad_output``, also the gradient: each window's value of
    ``grad_output`` at its place."""
    n, c, *pooled = x.shape
    plane = int(np.prod(size))
    out = np.zeros((n, c, plane))
    grad = np.zeros(x.shape)
    for b in range(n):
        for ch in range(c):
            for pixel in _grid(pooled):
                where = (b, ch, *pixel)
                place = int(indices[where])
                out[b, ch, place] = x[where]
                if grad_output is not None:
                    grad[where] = grad_output[b, ch].reshape(-1)[place]
    return out.reshape(n, c, *size), grad
