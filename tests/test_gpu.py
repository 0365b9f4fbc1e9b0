"""CPU <-> CUDA parity on a real GPU.  Collected always; skipped unless CuPy sees a device.

Run on a GPU machine with ``python -m pytest -m gpu``.
"""

import numpy as np
import pytest

import xpconv

from cases import CONFIGS, assert_close, make_case, random_array

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not xpconv.cuda_available(), reason="needs CuPy and a visible CUDA device"),
]

DTYPES = [np.float32, np.float64]


def _cuda(a):
    return xpconv.to_device(a, "cuda")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", CONFIGS)
def test_conv2d_cpu_cuda_parity(rng, cfg, dtype):
    import cupy

    x, wt, b, kw = make_case(rng, cfg, dtype)
    y_cpu = xpconv.conv2d(x, wt, b, **kw)
    y_gpu = xpconv.conv2d(_cuda(x), _cuda(wt), _cuda(b), **kw)
    assert isinstance(y_gpu, cupy.ndarray)
    assert_close(xpconv.to_numpy(y_gpu), y_cpu.astype(np.float64), dtype, "forward")
    go = random_array(rng, y_cpu.shape, dtype)
    g_cpu = xpconv.conv2d_backward(go, x, wt, **kw)
    g_gpu = xpconv.conv2d_backward(_cuda(go), _cuda(x), _cuda(wt), **kw)
    for part in ("input", "weight", "bias"):
        assert_close(xpconv.to_numpy(getattr(g_gpu, part)), getattr(g_cpu, part).astype(np.float64), dtype, part)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_and_bias_cpu_cuda_parity(rng, dtype):
    x, w, b, go = (random_array(rng, s, dtype) for s in [(16, 40), (24, 40), (24,), (16, 24)])
    assert_close(
        xpconv.to_numpy(xpconv.dense(_cuda(x), _cuda(w), _cuda(b))), xpconv.dense(x, w, b).astype(np.float64), dtype
    )
    g_cpu = xpconv.dense_backward(go, x, w)
    g_gpu = xpconv.dense_backward(_cuda(go), _cuda(x), _cuda(w))
    for part in ("input", "weight", "bias"):
        assert_close(xpconv.to_numpy(getattr(g_gpu, part)), getattr(g_cpu, part).astype(np.float64), dtype, part)
    x4 = random_array(rng, (3, 24, 5, 6), dtype)
    assert_close(
        xpconv.to_numpy(xpconv.bias_add(_cuda(x4), _cuda(b))), xpconv.bias_add(x4, b).astype(np.float64), dtype
    )
    assert_close(xpconv.to_numpy(xpconv.bias_backward(_cuda(x4))), xpconv.bias_backward(x4).astype(np.float64), dtype)


def test_check_command_on_cuda():
    from xpconv.tools.check import run_check

    rows = run_check("cuda")
    assert all(r.ok for r in rows), [r for r in rows if not r.ok]
