"""The device shim, and the kernels on the "cuda" namespace, with CuPy mocked out."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import xpconv

import fake_cupy
from cases import CONFIGS, assert_close, check_against_oracle, random_array


def test_cpu_namespace_is_numpy():
    assert xpconv.namespace_for() is np
    assert xpconv.namespace_for("cpu") is np


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:-1", "cuda0", "CPU", "", "cpu:1", "tpu"])
def test_bad_device_string(device):
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'cuda:N'"):
        xpconv.namespace_for(device)


def test_device_must_be_a_string():
    with pytest.raises(TypeError, match="device must be a string"):
        xpconv.namespace_for(0)


def test_cuda_without_cupy_says_what_to_install(no_cupy):
    with pytest.raises(xpconv.DeviceUnavailableError) as info:
        xpconv.namespace_for("cuda")
    assert 'pip install "xpconv[cuda12]"' in str(info.value)
    assert "xpconv[cuda13]" in str(info.value)
    assert not xpconv.cuda_available()
    with pytest.raises(xpconv.DeviceUnavailableError, match="CuPy"):
        xpconv.to_device(np.ones(2), "cuda")


def test_cuda_without_gpu_says_no_device(fake_cupy_module, monkeypatch):
    assert xpconv.cuda_available()
    fake_cupy.set_devices(0)
    with pytest.raises(xpconv.DeviceUnavailableError, match="no CUDA device found"):
        xpconv.namespace_for("cuda")
    assert not xpconv.cuda_available()


def test_cuda_without_driver_says_no_driver(fake_cupy_module):
    fake_cupy.set_driver(0)  # what CuPy reports on a machine without the NVIDIA driver
    with pytest.raises(xpconv.DeviceUnavailableError, match="no NVIDIA driver found") as info:
        xpconv.namespace_for("cuda")
    assert "insufficient" not in str(info.value) and "device='cpu'" in str(info.value)
    assert not xpconv.cuda_available()


def test_cuda_index_out_of_range(fake_cupy_module):
    with pytest.raises(xpconv.DeviceUnavailableError, match="'cuda:3' does not exist: 2 CUDA device"):
        xpconv.namespace_for("cuda:3")


def test_import_does_not_import_cupy(tmp_path):
    # A "cupy" on the path that explodes when imported: xpconv must never touch it.
    (tmp_path / "cupy.py").write_text("raise RuntimeError('cupy was imported')\n")
    code = textwrap.dedent(
        """
        import sys, numpy as np, xpconv
        x = np.random.default_rng(0).standard_normal((1, 1, 4, 4))
        xpconv.conv2d(x, x[:, :, :2, :2])
        xpconv.array_namespace(x)
        assert "cupy" not in sys.modules
        """
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_cuda_selection_and_transfers(fake_cupy_module):
    cp = fake_cupy_module
    assert xpconv.namespace_for("cuda") is cp
    assert xpconv.namespace_for("cuda:0") is cp
    host = np.arange(6.0).reshape(2, 3)
    dev = xpconv.to_device(host, "cuda")
    assert isinstance(dev, cp.ndarray)
    assert xpconv.array_namespace(dev) is cp
    assert xpconv.device_of(dev) == "cuda:0"
    back = xpconv.to_numpy(dev)
    assert type(back) is np.ndarray
    np.testing.assert_array_equal(back, host)
    assert type(xpconv.to_device(dev, "cpu")) is np.ndarray
    assert xpconv.to_numpy(host) is host
    assert xpconv.to_device(dev, "cuda:0") is dev  # already there: no copy
    moved = xpconv.to_device(dev, "cuda:1")
    assert xpconv.device_of(moved) == "cuda:1" and xpconv.device_of(dev) == "cuda:0"
    np.testing.assert_array_equal(xpconv.to_numpy(moved), host)


def test_mixed_devices_are_an_error(fake_cupy_module):
    host = np.ones((1, 1, 3, 3))
    dev = xpconv.to_device(host, "cuda")
    with pytest.raises(ValueError, match=r"different devices \['cpu', 'cuda:0'\]"):
        xpconv.array_namespace(host, dev)
    with pytest.raises(ValueError, match="different devices"):
        xpconv.conv2d(dev, host)
    with pytest.raises(ValueError, match="different devices"):
        xpconv.dense_backward(dev[0, 0], host[0, 0], dev[0, 0])


def test_two_gpus_are_an_error(fake_cupy_module):
    a = xpconv.to_device(np.ones((1, 1, 3, 3)), "cuda:0")
    b = xpconv.to_device(np.ones((1, 1, 2, 2)), "cuda:1")
    assert xpconv.device_of(b) == "cuda:1"
    with pytest.raises(ValueError, match=r"\['cuda:0', 'cuda:1'\]"):
        xpconv.conv2d(a, b)


def test_non_arrays_are_a_type_error():
    with pytest.raises(TypeError, match="expected a NumPy or CuPy array, got list"):
        xpconv.array_namespace([1.0])
    with pytest.raises(TypeError, match="at least one array"):
        xpconv.array_namespace(None)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", CONFIGS[::2])
def test_conv2d_on_cuda_namespace_matches_oracle(fake_cupy_module, rng, cfg, dtype):
    check_against_oracle(rng, cfg, dtype, to=lambda a: xpconv.to_device(a, "cuda"))


def test_dense_and_bias_on_cuda_namespace(fake_cupy_module, rng):
    cp = fake_cupy_module
    x, w, b, go = (random_array(rng, s, np.float32) for s in [(4, 5), (3, 5), (3,), (4, 3)])
    d = [xpconv.to_device(a, "cuda") for a in (x, w, b, go)]
    y = xpconv.dense(*d[:3])
    grads = xpconv.dense_backward(d[3], d[0], d[1])
    assert isinstance(y, cp.ndarray) and all(isinstance(g, cp.ndarray) for g in grads)
    x64, w64, go64 = (a.astype(np.float64) for a in (x, w, go))
    assert_close(y, x64 @ w64.T + b.astype(np.float64), np.float32)
    assert_close(grads.input, go64 @ w64, np.float32)
    assert_close(grads.weight, go64.T @ x64, np.float32)
    assert_close(grads.bias, go64.sum(0), np.float32)
    assert isinstance(xpconv.bias_backward(d[0], axis=1), cp.ndarray)
