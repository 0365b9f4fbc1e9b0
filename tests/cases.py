"""Cases and comparisons shared by the test modules (tests import from here, never from each other).

Tolerances are xpconv's one table (``xpconv.tools.check.TOLERANCE``), applied with its one
relative-error function, against the independent plain-loop oracle in ``oracle.py``.
"""

import gzip
from pathlib import Path

import numpy as np
import pytest

import xpconv
from xpconv.tools.check import TOLERANCE, relative_error

import oracle

# (N, C, H, W, O, kh, kw, stride, padding, dilation, groups)
CONFIGS = [
    pytest.param((2, 3, 6, 6, 4, 3, 3, 1, 1, 1, 1), id="3x3-pad1"),
    pytest.param((3, 1, 8, 8, 4, 5, 5, 1, "same", 1, 1), id="book-5x5-same"),
    pytest.param((2, 2, 7, 5, 3, 2, 2, 1, 0, 1, 1), id="even-kernel-nonsquare"),
    pytest.param((2, 3, 6, 9, 4, 2, 3, 1, "same", 1, 1), id="same-even-rect"),
    pytest.param((2, 2, 7, 8, 2, 4, 2, 1, "same", (2, 1), 1), id="same-dilated-even"),
    pytest.param((2, 3, 9, 7, 2, 3, 2, (2, 3), (1, 2), 1, 1), id="stride-rect-pad"),
    pytest.param((2, 2, 9, 9, 3, 3, 3, 2, 0, 2, 1), id="stride-dilation"),
    pytest.param((2, 4, 6, 7, 6, 3, 1, 1, (0, 1), (1, 2), 2), id="groups-2"),
    pytest.param((3, 4, 7, 7, 4, 3, 3, 1, 1, 1, 4), id="depthwise"),
    pytest.param((2, 3, 6, 6, 6, 3, 3, 2, 1, 1, 3), id="depthwise-multiplier"),
    pytest.param((2, 5, 4, 6, 3, 1, 1, 1, 0, 1, 1), id="pointwise"),
    pytest.param((2, 4, 5, 5, 4, 1, 1, 2, 1, 1, 2), id="1x1-stride-pad-groups"),
    pytest.param((1, 2, 5, 6, 3, 5, 6, 1, "valid", 1, 1), id="kernel-equals-input"),
    pytest.param((2, 2, 8, 7, 3, 3, 3, 3, 0, 1, 1), id="stride-leaves-edge"),
    pytest.param((2, 4, 5, 6, 2, 2, 3, 1, (2, 1), 1, 2), id="padded-beyond-kernel"),
    pytest.param((2, 6, 7, 6, 3, 3, 2, 1, (1, 0), (2, 3), 3), id="stride1-fewer-outputs-dilated"),
]


def to_host(a):
    """A NumPy copy of ``a`` (a NumPy array or a device array of the stand-in or of CuPy)."""
    return xpconv.to_numpy(a)


def assert_close(actual, expected, dtype, what=""):
    """``actual`` has ``dtype``, ``expected``'s shape, and is within ``TOLERANCE[dtype]`` of it."""
    dtype = np.dtype(dtype)
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype}, expected {dtype}"
    assert tuple(actual.shape) == expected.shape, f"{what}: shape {tuple(actual.shape)}, expected {expected.shape}"
    err = relative_error(actual, expected)
    tol = TOLERANCE[dtype.name]
    assert err <= tol, f"{what}: relative error {err:.3e} > {tol:.0e} for {dtype}"


def random_array(rng, shape, dtype=np.float64):
    """Standard normal entries: never zeros, never all-ones."""
    return rng.standard_normal(shape).astype(dtype)


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def resolve(cfg):
    """A case's explicit ``(stride, (top, bottom, left, right), dilation)``, computed by the oracle's rules."""
    n, c, h, w, o, kh, kw, s, p, d, g = cfg
    stride, dilation = pair(s), pair(d)
    if p == "same":
        pad = oracle.same_padding((kh, kw), dilation)
    elif p == "valid":
        pad = (0, 0, 0, 0)
    else:
        ph, pw = pair(p)
        pad = (ph, ph, pw, pw)
    return stride, pad, dilation


def make_case(rng, cfg, dtype):
    """Random ``x, weight, bias`` of a case and its keyword arguments."""
    n, c, h, w, o, kh, kw, s, p, d, g = cfg
    x = random_array(rng, (n, c, h, w), dtype)
    wt = random_array(rng, (o, c // g, kh, kw), dtype)
    b = random_array(rng, (o,), dtype)
    return x, wt, b, dict(stride=s, padding=p, dilation=d, groups=g)


def check_against_oracle(rng, cfg, dtype, to=lambda a: a, **extra):
    """conv2d and its three gradients (inputs moved by ``to``) against the plain-loop oracle."""
    x, wt, b, kw = make_case(rng, cfg, dtype)
    stride, pad, dilation = resolve(cfg)
    groups = kw["groups"]
    ref_y = oracle.oracle_conv2d(x, wt, b, stride, pad, dilation, groups)
    y = xpconv.conv2d(to(x), to(wt), to(b), **kw, **extra)
    assert type(y) is type(to(x))
    assert_close(y, ref_y, dtype, "forward")
    go = random_array(rng, ref_y.shape, dtype)
    dx, dw, db = oracle.oracle_conv2d_grads(go, x, wt, stride, pad, dilation, groups)
    grads = xpconv.conv2d_backward(to(go), to(x), to(wt), **kw, **extra)
    assert all(type(a) is type(to(x)) for a in grads)
    assert_close(grads.input, dx, dtype, "grad input")
    assert_close(grads.weight, dw, dtype, "grad weight")
    assert_close(grads.bias, db, dtype, "grad bias")


def check_finite_differences(rng, cfg, **extra):
    """Central differences of L = sum(go * conv2d(x, w, b)) at random entries of x, w, b, in
    float64, against conv2d_backward (``extra``: e.g. ``algorithm=``)."""
    x, wt, b, kw = make_case(rng, cfg, np.float64)
    kw.update(extra)
    go = random_array(rng, xpconv.conv2d(x, wt, b, **kw).shape)
    grads = xpconv.conv2d_backward(go, x, wt, **kw)

    def loss(x_, w_, b_):
        return float(np.sum(go * xpconv.conv2d(x_, w_, b_, **kw)))

    eps = 1e-6
    for k, (arr, grad) in enumerate([(x, grads.input), (wt, grads.weight), (b, grads.bias)]):
        for flat in rng.choice(arr.size, size=min(arr.size, 8), replace=False):
            idx = np.unravel_index(flat, arr.shape)
            plus, minus = [a.copy() for a in (x, wt, b)], [a.copy() for a in (x, wt, b)]
            plus[k][idx] += eps
            minus[k][idx] -= eps
            numeric = (loss(*plus) - loss(*minus)) / (2 * eps)
            assert abs(numeric - grad[idx]) <= 1e-6 * max(1.0, abs(numeric)), (k, idx, numeric, grad[idx])


# --- MNIST-format files the tests write ---------------------------------------------------


def idx_bytes(array: np.ndarray, magic_type: int = 0x08) -> bytes:
    header = bytes([0, 0, magic_type, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_pair(folder: Path, prefix: str, images, labels, compress=False):
    for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
        data = idx_bytes(arr)
        name = f"{prefix}-{kind}-ubyte"
        if compress:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)


def digit_like(rng, n, size=8):
    """Images with a bright square whose position encodes the label (0..3)."""
    labels = rng.integers(0, 4, size=n)
    images = rng.integers(0, 40, size=(n, size, size))
    for k, label in enumerate(labels):
        r, c = divmod(int(label), 2)
        images[k, r * 4 : r * 4 + 4, c * 4 : c * 4 + 4] += 200
    return images.astype(np.uint8), labels.astype(np.uint8)


def synthetic_digits(n: int, size: int = 10, seed: int = 11):
    """A DigitData of ``n`` training and 40 test images (1×size×size, float64), ten classes, each a
    fixed random template plus noise."""
    from xpconv.nn import DigitData

    rng = np.random.default_rng(seed)
    templates = rng.standard_normal((10, 1, size, size))
    labels = rng.integers(0, 10, size=n + 40)
    images = templates[labels] + 0.5 * rng.standard_normal((n + 40, 1, size, size))
    return DigitData(images[:n], labels[:n], images[n:], labels[n:], f"{n} synthetic digits")
