"""Cases and comparisons shared by the test modules (tests import from here, never from each other).

Tolerances are xpconv's one table (``xpconv.tools.check.TOLERANCE``), applied with its one
relative-error function, against the independent plain-loop oracle in ``oracle.py``.
"""

import gzip
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st

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


@st.composite
def conv_configs(draw):
    """A random convolution configuration, as in :data:`CONFIGS` (Hypothesis)."""
    groups = draw(st.integers(1, 3))
    c = groups * draw(st.integers(1, 2))
    o = groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(
        st.one_of(
            st.integers(0, 2),
            st.tuples(st.integers(0, 2), st.integers(0, 2)),
            st.sampled_from(["valid", "same"]),
        )
    )
    stride = (1, 1) if padding == "same" else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    # The input must be at least as large as the dilated kernel once padded.
    h = draw(st.integers(dilation[0] * (kh - 1) + 1, 9))
    w = draw(st.integers(dilation[1] * (kw - 1) + 1, 9))
    n = draw(st.integers(1, 3))
    return (n, c, h, w, o, kh, kw, stride, padding, dilation, groups)


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
    ref_y = oracle.oracle_conv(x, wt, b, stride, pad, dilation, groups)
    y = xpconv.conv2d(to(x), to(wt), to(b), **kw, **extra)
    assert type(y) is type(to(x))
    assert_close(y, ref_y, dtype, "forward")
    go = random_array(rng, ref_y.shape, dtype)
    dx, dw, db = oracle.oracle_conv_grads(go, x, wt, stride, pad, dilation, groups)
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
    assert_gradients_match(rng, lambda *a: xpconv.conv2d(*a, **kw), go, [x, wt, b], list(grads))


def assert_gradients_match(rng, forward, go, inputs, grads, count=8):
    """Central differences (float64, step 1e-6) of L = sum(go · forward(*inputs)) at ``count`` random
    entries of each input, against the analytic ``grads`` (one per input)."""

    def loss(arrays):
        return float(np.sum(go * forward(*arrays)))

    eps = 1e-6
    for k, (arr, grad) in enumerate(zip(inputs, grads, strict=True)):
        for flat in rng.choice(arr.size, size=min(arr.size, count), replace=False):
            idx = np.unravel_index(flat, arr.shape)
            plus, minus = [a.copy() for a in inputs], [a.copy() for a in inputs]
            plus[k][idx] += eps
            minus[k][idx] -= eps
            numeric = (loss(plus) - loss(minus)) / (2 * eps)
            assert abs(numeric - grad[idx]) <= 1e-6 * max(1.0, abs(numeric)), (k, idx, numeric, grad[idx])


# --- pooling and transposed convolution -------------------------------------------------

# (N, C, H, W, kernel_size, stride, padding, dilation, ceil_mode)
MAX_CASES = [
    pytest.param((2, 3, 6, 6, 2, None, 0, 1, False), id="2x2"),
    pytest.param((2, 2, 7, 5, 3, 2, 1, 1, True), id="3x3-s2-p1-ceil"),
    pytest.param((1, 3, 9, 8, (3, 2), (2, 1), (1, 1), (2, 1), False), id="rect-dilated"),
    pytest.param((2, 2, 5, 7, 3, 1, 1, 1, False), id="3x3-s1-overlapping"),
    pytest.param((2, 2, 6, 6, 2, 3, 1, 1, True), id="stride-beyond-kernel-ceil"),
    pytest.param((1, 2, 5, 5, 5, 1, 2, 1, False), id="kernel-as-large-as-input"),
    pytest.param((2, 1, 7, 7, 3, 2, 0, 2, True), id="dilated-ceil"),
    pytest.param((1, 2, 4, 6, (1, 3), (1, 2), (0, 1), 1, True), id="1x3-ceil"),
]
# (N, C, H, W, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
AVG_CASES = [
    pytest.param((2, 3, 6, 6, 2, None, 0, False, True, None), id="2x2"),
    pytest.param((2, 2, 7, 5, 3, 2, 1, True, True, None), id="3x3-s2-p1-ceil"),
    pytest.param((2, 2, 7, 5, 3, 2, 1, True, False, None), id="ceil-without-padding"),
    pytest.param((1, 3, 9, 8, (3, 2), (2, 1), (1, 1), False, False, None), id="rect-without-padding"),
    pytest.param((2, 2, 5, 7, 3, 1, 1, False, True, None), id="3x3-s1-p1"),
    pytest.param((1, 2, 6, 5, (2, 3), 2, (1, 1), True, True, 7), id="divisor-override"),
    pytest.param((2, 2, 5, 6, (5, 6), None, 0, False, True, None), id="global"),
]


def max_pool_args(cfg):
    n, c, h, w, k, s, p, d, ceil = cfg
    return (n, c, h, w), dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil)


def max_pool_oracle(x, go, kw):
    k = pair(kw["kernel_size"])
    s = k if kw["stride"] is None else pair(kw["stride"])
    return oracle.oracle_max_pool(x, k, s, pair(kw["padding"]), pair(kw["dilation"]), kw["ceil_mode"], go)


def avg_pool_args(cfg):
    n, c, h, w, k, s, p, ceil, include, divisor = cfg
    kw = dict(kernel_size=k, stride=s, padding=p, ceil_mode=ceil, count_include_pad=include, divisor_override=divisor)
    return (n, c, h, w), kw


def avg_pool_oracle(x, go, kw):
    k = pair(kw["kernel_size"])
    s = k if kw["stride"] is None else pair(kw["stride"])
    return oracle.oracle_avg_pool(
        x, k, s, pair(kw["padding"]), kw["ceil_mode"], kw["count_include_pad"], kw["divisor_override"], go
    )


def max_pool_input(rng, shape, dtype, ties):
    """Standard normal values, or small integers so that windows hold ties."""
    if ties:
        return rng.integers(-2, 3, size=shape).astype(dtype)
    return random_array(rng, shape, dtype)


def check_max_pool(rng, cfg, dtype, ties=False, to=lambda a: a, after_kernels=lambda outputs: None, **extra):
    """max_pool2d and its gradient (inputs moved by ``to``) against the oracle; ``after_kernels``
    sees the outputs before they are compared (copied to the host)."""
    shape, kw = max_pool_args(cfg)
    x = max_pool_input(rng, shape, dtype, ties)
    y = xpconv.max_pool2d(to(x), **kw, **extra)
    go = random_array(rng, tuple(y.shape), dtype)
    dx = xpconv.max_pool2d_backward(to(go), to(x), **kw, **extra)
    after_kernels([y, dx])
    ref_y, ref_dx = max_pool_oracle(x, go.astype(np.float64), kw)
    assert y.dtype == dtype
    np.testing.assert_array_equal(to_host(y), ref_y)  # a maximum is one of the inputs: exact, -inf included
    assert_close(dx, ref_dx, dtype, "max_pool2d_backward")


def check_max_pool_indices(rng, cfg, dtype, to=lambda a: a, **extra):
    """``max_pool2d(..., return_indices=True)``'s indices route the oracle's gradient (every
    window's pick, by PyTorch's tie and NaN rules), and the gradient through ``indices=`` matches
    the oracle.  Returns the indices (on the host) for comparisons across devices."""
    shape, kw = max_pool_args(cfg)
    x = max_pool_input(rng, shape, dtype, ties=True)
    x[0, 0, :2, :2] = np.nan  # a window with NaNs picks its last NaN
    x[-1, -1, -2:, :] = -np.inf  # and one of only -inf its first pixel inside the input
    y, indices = xpconv.max_pool2d(to(x), **kw, return_indices=True, **extra)
    assert indices.dtype == np.int64 and tuple(indices.shape) == tuple(y.shape)
    go = random_array(rng, tuple(y.shape), dtype)
    ref_y, ref_dx = max_pool_oracle(x, go.astype(np.float64), kw)
    np.testing.assert_array_equal(to_host(y), ref_y)
    host = to_host(indices)
    routed = np.zeros((x.shape[0] * x.shape[1], x.shape[2] * x.shape[3]))  # each go to the plane place picked
    np.add.at(
        routed,
        (np.arange(routed.shape[0])[:, None], host.reshape(routed.shape[0], -1)),
        go.reshape(routed.shape[0], -1),
    )
    np.testing.assert_allclose(routed.reshape(x.shape), ref_dx, rtol=1e-3 if dtype == np.float16 else 1e-12)
    dx = xpconv.max_pool2d_backward(to(go), to(x), **kw, indices=indices, **extra)
    assert_close(dx, ref_dx, dtype, "max_pool2d_backward with indices")
    return host


def check_max_unpool(rng, cfg, dtype, to=lambda a: a):
    """``max_unpool2d`` of a max pooling's output and indices, and its gradient, against the oracle
    (a sequential scatter: the last window in raster order wins a place named twice)."""
    shape, kw = max_pool_args(cfg)
    x = max_pool_input(rng, shape, dtype, ties=True)
    y, indices = xpconv.max_pool2d(x, **kw, return_indices=True)
    kw = {k: v for k, v in kw.items() if k in ("kernel_size", "stride", "padding")}
    k, s, p = pair(kw["kernel_size"]), pair(kw["stride"] or kw["kernel_size"]), pair(kw["padding"])
    default = [(n - 1) * st - 2 * pa + ke for n, st, pa, ke in zip(y.shape[2:], s, p, k, strict=True)]
    if not all(d - st < size < d + st for d, st, size in zip(default, s, shape[2:], strict=True)):
        pytest.skip(f"x's size {shape[2:]} is beyond a stride of the unpooling's {default}: PyTorch refuses it too")
    values = random_array(rng, y.shape, dtype)  # any values for the places
    unpooled = xpconv.max_unpool2d(to(values), to(indices), **kw, output_size=shape[2:])
    go = random_array(rng, tuple(unpooled.shape), dtype)
    grad = xpconv.max_unpool2d_backward(to(go), to(indices), **kw)
    ref, ref_grad = oracle.oracle_max_unpool(values.astype(np.float64), indices, shape[2:], go.astype(np.float64))
    np.testing.assert_array_equal(to_host(unpooled), ref.astype(dtype))  # values moved, not summed: exact
    np.testing.assert_array_equal(to_host(grad), ref_grad.astype(dtype))
    assert unpooled.dtype == grad.dtype == dtype


def check_avg_pool(rng, cfg, dtype, to=lambda a: a, after_kernels=lambda outputs: None, **extra):
    """avg_pool2d and its gradient against the oracle, as :func:`check_max_pool`."""
    shape, kw = avg_pool_args(cfg)
    x = random_array(rng, shape, dtype)
    y = xpconv.avg_pool2d(to(x), **kw, **extra)
    go = random_array(rng, tuple(y.shape), dtype)
    dx = xpconv.avg_pool2d_backward(to(go), to(x), **kw, **extra)
    after_kernels([y, dx])
    ref_y, ref_dx = avg_pool_oracle(x, go.astype(np.float64), kw)
    assert_close(y, ref_y, dtype, "avg_pool2d")
    assert_close(dx, ref_dx, dtype, "avg_pool2d_backward")


# (N, C_in, H, W, C_out, kh, kw, stride, padding, output_padding, dilation, groups)
TRANSPOSE_CASES = [
    pytest.param((2, 3, 4, 5, 4, 3, 3, 1, 0, 0, 1, 1), id="3x3"),
    pytest.param((2, 4, 4, 4, 3, 4, 4, 2, 1, 0, 1, 1), id="4x4-s2-p1-upsampling"),
    pytest.param((2, 4, 3, 5, 6, 3, 2, (2, 3), (1, 0), (1, 2), 1, 2), id="rect-output-padding-groups"),
    pytest.param((1, 2, 4, 4, 3, 3, 3, 1, 1, 1, 2, 1), id="output-padding-under-dilation"),
    pytest.param((2, 3, 3, 3, 2, 2, 2, 3, 2, 2, 1, 1), id="stride-beyond-kernel"),
    pytest.param((2, 4, 5, 4, 4, 3, 3, 1, 1, 0, 1, 4), id="depthwise"),
    pytest.param((2, 5, 4, 3, 3, 1, 1, 1, 0, 0, 1, 1), id="pointwise"),
    pytest.param((1, 2, 5, 6, 2, 3, 3, 2, 1, 1, (2, 1), 1), id="strided-dilated"),
]


def make_transpose_case(rng, cfg, dtype):
    n, ci, h, w, co, kh, kw, s, p, op, d, g = cfg
    x = random_array(rng, (n, ci, h, w), dtype)
    wt = random_array(rng, (ci, co // g, kh, kw), dtype)
    b = random_array(rng, (co,), dtype)
    return x, wt, b, dict(stride=s, padding=p, output_padding=op, dilation=d, groups=g)


def transpose_oracle(x, wt, b, kw, go=None):
    return oracle.oracle_conv_transpose(
        x, wt, b, pair(kw["stride"]), pair(kw["padding"]), pair(kw["output_padding"]), pair(kw["dilation"]),
        kw["groups"], go,
    )  # fmt: skip


def check_conv_transpose(rng, cfg, dtype, to=lambda a: a, after_kernels=lambda outputs: None, **extra):
    """conv_transpose2d and its three gradients against the oracle, as :func:`check_max_pool`."""
    x, wt, b, kw = make_transpose_case(rng, cfg, dtype)
    y = xpconv.conv_transpose2d(to(x), to(wt), to(b), **kw, **extra)
    go = random_array(rng, tuple(y.shape), dtype)
    grads = xpconv.conv_transpose2d_backward(to(go), to(x), to(wt), **kw, **extra)
    after_kernels([y, *grads])
    ref_y, (dx, dw, db) = transpose_oracle(x, wt, b, kw, go.astype(np.float64))
    assert_close(y, ref_y, dtype, "forward")
    assert_close(grads.input, dx, dtype, "grad input")
    assert_close(grads.weight, dw, dtype, "grad weight")
    assert_close(grads.bias, db, dtype, "grad bias")


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


# --- the command line in processes of its own (mpiexec for the distributed runs) ---------------

HERE = Path(__file__).resolve().parent
BIN = os.path.dirname(sys.executable)
MPIEXEC = shutil.which("mpiexec", path=BIN + os.pathsep + os.environ.get("PATH", ""))
needs_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or MPIEXEC is None,
    reason='needs mpi4py and mpiexec: pip install -e ".[mpi]"',
)


def command_env():
    """The environment of a subprocess running xpconv from this checkout, one worker thread."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)]), "XPCONV_NUM_THREADS": "1"}
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    env.pop("XPCONV_DEVICE", None)
    return env


def run_mpiexec(*programs, timeout=120):
    """``mpiexec -n 1 PROG1 : -n 1 PROG2 ...`` (one rank per program) or ``-n K PROG``."""
    argv = [MPIEXEC]
    for k, program in enumerate(programs):
        argv += ([":"] if k else []) + list(program)
    return subprocess.run(argv, capture_output=True, text=True, env=command_env(), timeout=timeout)


# --- 1-D and 3-D (tests/test_nd.py, and tests/test_gpu.py on a GPU) ----------------------------

# (x shape, weight shape, stride, padding, dilation, groups)
ND_CONVS = [
    pytest.param(((2, 3, 11), (4, 3, 3), 1, 1, 1, 1), id="1d-k3-pad1"),
    pytest.param(((2, 4, 13), (6, 2, 4), 2, (3,), 2, 2), id="1d-stride-dilation-groups"),
    pytest.param(((3, 2, 9), (4, 2, 4), 1, "same", 1, 1), id="1d-same-even"),
    pytest.param(((2, 4, 8), (4, 1, 5), 3, 2, 1, 4), id="1d-depthwise-stride"),
    pytest.param(((2, 5, 7), (3, 5, 1), 1, 0, 1, 1), id="1d-pointwise"),
    pytest.param(((2, 3, 4, 5, 6), (4, 3, 3, 3, 3), 1, 1, 1, 1), id="3d-3x3x3-pad1"),
    pytest.param(((2, 4, 5, 6, 5), (6, 2, 2, 3, 2), (2, 1, 2), (1, 0, 1), (1, 2, 1), 2), id="3d-rect-groups"),
    pytest.param(((1, 2, 4, 5, 4), (2, 2, 2, 3, 2), 1, "same", (2, 1, 1), 1), id="3d-same-even-dilated"),
    pytest.param(((2, 3, 4, 4, 4), (3, 1, 3, 3, 3), 2, 1, 1, 3), id="3d-depthwise-stride"),
    pytest.param(((2, 4, 3, 4, 3), (5, 4, 1, 1, 1), 1, 0, 1, 1), id="3d-pointwise"),
]


def per_axis(value, dims):
    return (value,) * dims if isinstance(value, int) else tuple(value)


def conv_case_nd(rng, cfg, dtype):
    """Random ``x, weight, bias``, the keyword arguments, and the oracle's explicit stride, flat
    padding and dilation."""
    x_shape, w_shape, s, p, d, g = cfg
    dims = len(x_shape) - 2
    x, wt, b = (random_array(rng, shape, dtype) for shape in (x_shape, w_shape, (w_shape[0],)))
    stride, dilation = per_axis(s, dims), per_axis(d, dims)
    if p == "same":
        pad = oracle.same_padding(w_shape[2:], dilation)
    else:
        pad = tuple(v for q in per_axis(p, dims) for v in (q, q))
    return x, wt, b, dict(stride=s, padding=p, dilation=d, groups=g), (stride, pad, dilation, g)


def conv_functions(dims):
    return getattr(xpconv, f"conv{dims}d"), getattr(xpconv, f"conv{dims}d_backward")


def check_conv_nd(rng, cfg, dtype, to=lambda a: a, **extra):
    """conv1d/conv3d and its three gradients (inputs moved by ``to``) against the oracle."""
    x, wt, b, kw, exact = conv_case_nd(rng, cfg, dtype)
    forward, backward = conv_functions(x.ndim - 2)
    ref_y = oracle.oracle_conv(x, wt, b, *exact)
    y = forward(to(x), to(wt), to(b), **kw, **extra)
    assert type(y) is type(to(x))
    assert_close(y, ref_y, dtype, "forward")
    go = random_array(rng, ref_y.shape, dtype)
    dx, dw, db = oracle.oracle_conv_grads(go, x, wt, *exact)
    grads = backward(to(go), to(x), to(wt), **kw, **extra)
    assert_close(grads.input, dx, dtype, "grad input")
    assert_close(grads.weight, dw, dtype, "grad weight")
    assert_close(grads.bias, db, dtype, "grad bias")


# (x shape, weight shape (C_in, C_out/groups, *kernel), stride, padding, output_padding, dilation, groups)
ND_TRANSPOSES = [
    pytest.param(((2, 3, 6), (3, 2, 3), 1, 0, 0, 1, 1), id="1d-k3"),
    pytest.param(((2, 4, 5), (4, 3, 4), 2, 1, 1, 1, 2), id="1d-s2-p1-output-padding-groups"),
    pytest.param(((1, 2, 4), (2, 3, 3), 3, 2, 1, 2, 1), id="1d-stride-beyond-kernel-dilated"),
    pytest.param(((2, 2, 2, 3, 2), (2, 3, 2, 3, 2), (2, 1, 2), (0, 1, 0), (1, 0, 0), 1, 1), id="3d-rect-s2"),
    pytest.param(((1, 4, 2, 2, 3), (4, 1, 3, 3, 3), 1, 1, 0, (1, 2, 1), 4), id="3d-depthwise-dilated"),
]


def transpose_case_nd(rng, cfg, dtype):
    x_shape, w_shape, s, p, op, d, g = cfg
    x, wt, b = (random_array(rng, shape, dtype) for shape in (x_shape, w_shape, (w_shape[1] * g,)))
    return x, wt, b, dict(stride=s, padding=p, output_padding=op, dilation=d, groups=g)


def transpose_functions(dims):
    return getattr(xpconv, f"conv_transpose{dims}d"), getattr(xpconv, f"conv_transpose{dims}d_backward")


def check_conv_transpose_nd(rng, cfg, dtype, to=lambda a: a, **extra):
    x, wt, b, kw = transpose_case_nd(rng, cfg, dtype)
    dims = x.ndim - 2
    forward, backward = transpose_functions(dims)
    y = forward(to(x), to(wt), to(b), **kw, **extra)
    go = random_array(rng, tuple(y.shape), dtype)
    grads = backward(to(go), to(x), to(wt), **kw, **extra)
    hyper = [per_axis(kw[k], dims) for k in ("stride", "padding", "output_padding", "dilation")]
    ref_y, (dx, dw, db) = oracle.oracle_conv_transpose(x, wt, b, *hyper, kw["groups"], go.astype(np.float64))
    assert_close(y, ref_y, dtype, "forward")
    assert_close(grads.input, dx, dtype, "grad input")
    assert_close(grads.weight, dw, dtype, "grad weight")
    assert_close(grads.bias, db, dtype, "grad bias")


# (x shape, kernel_size, stride, padding, dilation, ceil_mode)
ND_MAX_POOLS = [
    pytest.param(((2, 3, 10), 2, None, 0, 1, False), id="1d-2"),
    pytest.param(((2, 2, 11), 3, 2, 1, 1, True), id="1d-3-s2-p1-ceil"),
    pytest.param(((1, 2, 12), 3, 1, 1, 2, False), id="1d-dilated-overlapping"),
    pytest.param(((2, 2, 4, 6, 5), 2, None, 0, 1, False), id="3d-2"),
    pytest.param(((1, 2, 5, 5, 6), (3, 2, 3), (2, 1, 2), (1, 1, 1), 1, True), id="3d-rect-ceil"),
    pytest.param(((1, 2, 6, 5, 7), (2, 2, 3), (1, 2, 2), (0, 1, 1), (2, 1, 1), False), id="3d-dilated"),
]
# (x shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
ND_AVG_POOLS = [
    pytest.param(((2, 3, 10), 2, None, 0, False, True, None), id="1d-2"),
    pytest.param(((2, 2, 11), 3, 2, 1, True, False, None), id="1d-ceil-without-padding"),
    pytest.param(((2, 2, 4, 6, 5), (2, 3, 2), (2, 1, 2), (1, 1, 0), True, True, None), id="3d-rect-ceil"),
    pytest.param(((1, 2, 5, 4, 5), 3, 1, 1, False, False, None), id="3d-3-s1-p1-without-padding"),
    pytest.param(((1, 2, 4, 5, 4), 2, 2, 1, False, True, 5), id="3d-divisor-override"),
]


def max_pool_functions(dims):
    return getattr(xpconv, f"max_pool{dims}d"), getattr(xpconv, f"max_pool{dims}d_backward")


def _max_pool_input(rng, shape, dtype):
    """Small integers (windows hold ties), a NaN and a plane of −∞ (PyTorch's pick rules)."""
    x = rng.integers(-2, 3, size=shape).astype(dtype)
    x.reshape(-1)[1] = np.nan
    x[-1, -1] = -np.inf
    return x


def check_max_pool_nd(rng, cfg, dtype, to=lambda a: a):
    """The maximum, the indices (each window's pick by PyTorch's tie and NaN rules: they route the
    oracle's gradient) and the gradient with and without them, against the oracle."""
    shape, k, s, p, d, ceil = cfg
    dims = len(shape) - 2
    kw = dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    x = _max_pool_input(rng, shape, dtype)
    pool, backward = max_pool_functions(dims)
    y, indices = pool(to(x), **kw, return_indices=True)
    go = random_array(rng, tuple(y.shape), dtype)
    kernel = per_axis(k, dims)
    stride = kernel if s is None else per_axis(s, dims)
    ref_y, ref_dx = oracle.oracle_max_pool(
        x, kernel, stride, per_axis(p, dims), per_axis(d, dims), ceil, go.astype(np.float64)
    )
    np.testing.assert_array_equal(to_host(y), ref_y)  # a maximum is one of the inputs: exact
    planes = x.shape[0] * x.shape[1]
    routed = np.zeros((planes, int(np.prod(shape[2:]))))
    np.add.at(routed, (np.arange(planes)[:, None], to_host(indices).reshape(planes, -1)), go.reshape(planes, -1))
    np.testing.assert_allclose(routed.reshape(x.shape), ref_dx, rtol=1e-3 if dtype == np.float16 else 1e-12)
    assert_close(backward(to(go), to(x), **kw), ref_dx, dtype, "max pool backward")
    assert_close(backward(to(go), to(x), **kw, indices=indices), ref_dx, dtype, "max pool backward with indices")


def check_avg_pool_nd(rng, cfg, dtype, to=lambda a: a):
    shape, k, s, p, ceil, include, divisor = cfg
    dims = len(shape) - 2
    kw = dict(kernel_size=k, stride=s, padding=p, ceil_mode=ceil, count_include_pad=include)
    if divisor is not None:
        kw["divisor_override"] = divisor
    x = random_array(rng, shape, dtype)
    pool, backward = getattr(xpconv, f"avg_pool{dims}d"), getattr(xpconv, f"avg_pool{dims}d_backward")
    y = pool(to(x), **kw)
    go = random_array(rng, tuple(y.shape), dtype)
    kernel = per_axis(k, dims)
    stride = kernel if s is None else per_axis(s, dims)
    ref_y, ref_dx = oracle.oracle_avg_pool(
        x, kernel, stride, per_axis(p, dims), ceil, include, divisor, go.astype(np.float64)
    )
    assert_close(y, ref_y, dtype, "avg pool")
    assert_close(backward(to(go), to(x), **kw), ref_dx, dtype, "avg pool backward")
