"""CPU <-> CUDA parity on a real GPU.  Collected always; skipped unless CuPy sees a device.

Run on a GPU machine with ``python -m pytest -m gpu`` (``benchmarks/gpu_check.sh`` does).
The kernels run under ``cupyx.allow_synchronize(False)``: a host synchronisation inside them fails.
xpconv's CUDA C kernels are compiled here by CuPy (NVRTC) for the card, and every algorithm runs;
their results repeat bit for bit (no atomics).
"""

import numpy as np
import pytest

import xpconv

from cases import (
    CONFIGS,
    ND_AVG_POOLS,
    ND_CONVS,
    ND_MAX_POOLS,
    ND_TRANSPOSES,
    assert_close,
    check_avg_pool_nd,
    check_conv_nd,
    check_conv_transpose_nd,
    check_max_pool_nd,
    make_case,
    random_array,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not xpconv.cuda_available(), reason="needs CuPy and a visible CUDA device"),
]

DTYPES = [np.float16, np.float32, np.float64]


def _cuda(a):
    return xpconv.to_device(a, "cuda")


def _no_sync():
    import cupyx

    return cupyx.allow_synchronize(False)


@pytest.mark.parametrize("algorithm", ["auto", "im2col", "direct"])
@pytest.mark.parametrize("workspace", [None, 1])  # 1 byte: the chunked path, one sample at a time
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", CONFIGS)
def test_conv2d_cpu_cuda_parity(rng, cfg, dtype, workspace, algorithm):
    import cupy

    x, wt, b, kw = make_case(rng, cfg, dtype)
    cpu_kw = dict(kw)
    kw.update(workspace_bytes=workspace, algorithm=algorithm)
    y_cpu = xpconv.conv2d(x, wt, b, **cpu_kw)
    go = random_array(rng, y_cpu.shape, dtype)
    g_cpu = xpconv.conv2d_backward(go, x, wt, **cpu_kw)
    xd, wd, bd, god = map(_cuda, (x, wt, b, go))
    with _no_sync():
        y_gpu = xpconv.conv2d(xd, wd, bd, **kw)
        g_gpu = xpconv.conv2d_backward(god, xd, wd, **kw)
        again = xpconv.conv2d_backward(god, xd, wd, **kw)
    assert isinstance(y_gpu, cupy.ndarray)
    for first, second in zip(g_gpu, again, strict=True):  # deterministic: bit for bit
        np.testing.assert_array_equal(xpconv.to_numpy(first), xpconv.to_numpy(second))
    assert_close(y_gpu, y_cpu.astype(np.float64), dtype, "forward")
    for part in ("input", "weight", "bias"):
        assert_close(getattr(g_gpu, part), getattr(g_cpu, part).astype(np.float64), dtype, part)


@pytest.mark.parametrize("algorithm", ["auto", "im2col", "direct"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", ND_CONVS)
def test_conv_1d_3d_on_gpu_match_oracle(rng, cfg, dtype, algorithm):
    """conv1d/conv3d and their gradients, by each CUDA algorithm, against the oracle."""
    check_conv_nd(rng, cfg, dtype, to=_cuda, algorithm=algorithm)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pooling_and_transposes_1d_3d_on_gpu_match_oracle(rng, dtype):
    for cfg in ND_TRANSPOSES:
        check_conv_transpose_nd(rng, cfg.values[0], dtype, to=_cuda)
    for cfg in ND_MAX_POOLS:
        check_max_pool_nd(rng, cfg.values[0], dtype, to=_cuda)
    for cfg in ND_AVG_POOLS:
        check_avg_pool_nd(rng, cfg.values[0], dtype, to=_cuda)


@pytest.mark.parametrize("padding", [0, 1, (2, 1)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_winograd_cpu_cuda_parity(rng, dtype, padding):
    x, wt, b = (random_array(rng, s, dtype) for s in [(4, 8, 13, 10), (6, 8, 3, 3), (6,)])
    kw = dict(padding=padding, algorithm="winograd")
    y_cpu = xpconv.conv2d(x, wt, b, **kw)
    go = random_array(rng, y_cpu.shape, dtype)
    g_cpu = xpconv.conv2d_backward(go, x, wt, **kw)
    with _no_sync():
        y_gpu = xpconv.conv2d(_cuda(x), _cuda(wt), _cuda(b), **kw)
        g_gpu = xpconv.conv2d_backward(_cuda(go), _cuda(x), _cuda(wt), **kw)
    assert_close(y_gpu, y_cpu.astype(np.float64), dtype, "forward")
    for part in ("input", "weight", "bias"):
        assert_close(getattr(g_gpu, part), getattr(g_cpu, part).astype(np.float64), dtype, part)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_and_bias_cpu_cuda_parity(rng, dtype):
    x, w, b, go = (random_array(rng, s, dtype) for s in [(16, 40), (24, 40), (24,), (16, 24)])
    x4 = random_array(rng, (3, 24, 5, 6), dtype)
    with _no_sync():
        y = xpconv.dense(_cuda(x), _cuda(w), _cuda(b))
        g_gpu = xpconv.dense_backward(_cuda(go), _cuda(x), _cuda(w))
        added = xpconv.bias_add(_cuda(x4), _cuda(b))
        summed = xpconv.bias_backward(_cuda(x4))
    assert_close(y, xpconv.dense(x, w, b).astype(np.float64), dtype)
    g_cpu = xpconv.dense_backward(go, x, w)
    for part in ("input", "weight", "bias"):
        assert_close(getattr(g_gpu, part), getattr(g_cpu, part).astype(np.float64), dtype, part)
    assert_close(added, xpconv.bias_add(x4, b).astype(np.float64), dtype)
    assert_close(summed, xpconv.bias_backward(x4).astype(np.float64), dtype)


def test_layers_and_fit_on_cuda():
    from xpconv.nn import SGD, DigitData, SoftmaxCrossEntropy, book_network, fit

    rng = np.random.default_rng(0)
    images = rng.standard_normal((24, 1, 10, 10))
    labels = rng.integers(0, 10, size=24)
    losses = {}
    for device in ("cpu", "cuda"):
        model = book_network(10, 10, device=device, dtype="float64", seed=1, dropout=0.0)
        loss_fn, opt = SoftmaxCrossEntropy(), SGD(model.parameters(), lr=0.05, momentum=0.9)
        x, y = xpconv.to_device(images, device), xpconv.to_device(labels, device)
        losses[device] = []
        for _ in range(3):
            losses[device].append(loss_fn.forward(model.forward(x), y))
            model.backward(loss_fn.backward())
            opt.step()
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=1e-10)
    data = DigitData(images[:18].astype(np.float32), labels[:18], images[18:].astype(np.float32), labels[18:], "tiny")
    history = fit(
        book_network(10, 10, device="cuda"), data, device="cuda", batch_size=6, progress=False, log=lambda s: None
    )
    assert np.isfinite(history[0].loss)


def test_check_command_on_cuda():
    from xpconv.tools.check import run_check

    rows = run_check("cuda", dtypes=("float16", "float32", "float64"))
    assert all(r.ok for r in rows), [r for r in rows if not r.ok]


@pytest.mark.parametrize("dtype", DTYPES)
def test_pooling_and_transposed_cpu_cuda_parity(rng, dtype):
    x = random_array(rng, (3, 4, 11, 9), dtype)
    x[0, 0, :2, :2] = np.nan
    pools = [
        (xpconv.max_pool2d, xpconv.max_pool2d_backward, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
        (xpconv.avg_pool2d, xpconv.avg_pool2d_backward, dict(kernel_size=3, stride=1, padding=1)),
    ]
    for forward, backward, kw in pools:
        y_cpu = forward(x, **kw)
        go = random_array(rng, y_cpu.shape, dtype)
        with _no_sync():
            y_gpu, g_gpu = forward(_cuda(x), **kw), backward(_cuda(go), _cuda(x), **kw)
        np.testing.assert_array_equal(xpconv.to_numpy(y_gpu), y_cpu)  # NaN where NaN
        assert_close(g_gpu, backward(go, x, **kw).astype(np.float64), dtype, forward.__name__)
    x, wt, b = (random_array(rng, s, dtype) for s in [(2, 6, 7, 5), (6, 4, 4, 4), (4,)])
    kw = dict(stride=2, padding=1)
    y_cpu = xpconv.conv_transpose2d(x, wt, b, **kw)
    go = random_array(rng, y_cpu.shape, dtype)
    with _no_sync():
        y_gpu = xpconv.conv_transpose2d(_cuda(x), _cuda(wt), _cuda(b), **kw)
        g_gpu = xpconv.conv_transpose2d_backward(_cuda(go), _cuda(x), _cuda(wt), **kw)
    assert_close(y_gpu, y_cpu.astype(np.float64), dtype, "conv_transpose2d")
    for part, cpu in zip(("input", "weight", "bias"), xpconv.conv_transpose2d_backward(go, x, wt, **kw), strict=True):
        assert_close(getattr(g_gpu, part), cpu.astype(np.float64), dtype, part)


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_indices_cpu_cuda_parity(rng, dtype):
    x = rng.integers(-2, 3, size=(3, 4, 11, 9)).astype(dtype)  # ties
    x[0, 0, :2, :2] = np.nan
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    y_cpu, i_cpu = xpconv.max_pool2d(x, **kw, return_indices=True)
    go = random_array(rng, y_cpu.shape, dtype)
    with _no_sync():
        y_gpu, i_gpu = xpconv.max_pool2d(_cuda(x), **kw, return_indices=True)
        g_gpu = xpconv.max_pool2d_backward(_cuda(go), _cuda(x), **kw, indices=i_gpu)
    np.testing.assert_array_equal(xpconv.to_numpy(i_gpu), i_cpu)
    assert_close(g_gpu, xpconv.max_pool2d_backward(go, x, **kw, indices=i_cpu).astype(np.float64), dtype)
