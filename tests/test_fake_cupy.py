"""The CuPy stand-in must refuse what CuPy refuses, or the tests that use it prove nothing."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fake_cupy


def test_not_a_numpy_array(fake_cupy_module):
    cp = fake_cupy_module
    a = cp.asarray(np.ones(3))
    assert not isinstance(a, np.ndarray)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(a)
    with pytest.raises(TypeError):
        np.add(a, a)  # a NumPy ufunc on a device array
    with pytest.raises(TypeError):
        np.sum(a)  # a NumPy function on a device array
    with pytest.raises(TypeError):
        np.ones(3) + a


def test_host_operands_are_refused(fake_cupy_module):
    cp = fake_cupy_module
    a = cp.asarray(np.ones((2, 3)))
    with pytest.raises(TypeError, match="Unsupported type <class 'numpy.ndarray'>"):
        a + np.ones(3)
    with pytest.raises(TypeError, match="Unsupported type <class 'numpy.ndarray'>"):
        cp.matmul(a, np.ones((3, 2)))
    with pytest.raises(TypeError, match="Unsupported type <class 'list'>"):
        cp.add(a, [1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="Unsupported type"):
        a[0] = np.zeros(3)
    with pytest.raises(TypeError, match="Unsupported type"):
        cp.zeros(np.array([2, 3]))


def test_scalars_shapes_axes_and_host_indices_are_fine(fake_cupy_module):
    cp = fake_cupy_module
    a = cp.asarray(np.arange(6.0).reshape(2, 3))
    assert (a * np.float32(2) + 1).shape == (2, 3)
    assert a.sum(axis=(0, 1)).shape == ()
    assert cp.zeros((2, 3), dtype=np.float32).dtype == np.float32
    picked = a[np.array([1, 0])]
    assert isinstance(picked, cp.ndarray)
    np.testing.assert_array_equal(cp.asnumpy(picked), [[3, 4, 5], [0, 1, 2]])


def test_devices_and_views(fake_cupy_module):
    cp = fake_cupy_module
    with cp.cuda.Device(1):
        a = cp.asarray(np.arange(12.0).reshape(3, 4))
    assert a.device.id == 1
    # views need no kernel: they stay on their source's device, whatever is current
    assert a[1:].device.id == 1 and a.T.device.id == 1 and a.reshape(4, 3).device.id == 1
    with pytest.raises(ValueError, match=r"resides \(1\) is different from the current device \(0\)"):
        a + 1
    with pytest.raises(ValueError, match="different from the current device"):
        a.T.reshape(12)  # a reshape that must copy is a kernel
    with pytest.raises(ValueError, match="different from the current device"):
        cp.asarray(np.ones(3))[...] = a[0, :3]
    with cp.cuda.Device(1):
        b = a * 2
        assert b.device.id == 1
        c = a.copy()
    assert c.device.id == 1
    assert a.copy().device.id == 0  # CuPy copies onto the current device
    with pytest.raises(fake_cupy.CUDARuntimeError, match="invalid device"):
        with cp.cuda.Device(2):
            pass


def test_current_device_is_per_thread(fake_cupy_module):
    import threading

    cp = fake_cupy_module
    seen = []
    with cp.cuda.Device(1):
        thread = threading.Thread(target=lambda: seen.append(cp.cuda.Device().id))
        thread.start()
        thread.join()
        assert cp.cuda.Device().id == 1
    assert seen == [0]


def test_counts_host_syncs_and_generators(fake_cupy_module):
    cp = fake_cupy_module
    fake_cupy.reset_counters()
    a = cp.asarray(np.ones(4))
    total = a.sum()
    float(total), int(total), total.item(), a.get(), cp.asnumpy(a), bool(total > 0)
    assert fake_cupy.counters["host_syncs"] == 6
    cp.random.default_rng(0)
    cp.random.Generator(1)
    assert fake_cupy.counters["rng_constructions"] == 2


def test_only_real_cupy_names(fake_cupy_module):
    cp = fake_cupy_module
    with pytest.raises(AttributeError, match="has no attribute 'no_such_function'"):
        cp.no_such_function  # noqa: B018
    with pytest.raises(AttributeError, match="exists in CuPy .* but the stand-in does not implement it"):
        cp.asarray(np.ones(2)).scatter_add  # noqa: B018
    with pytest.raises(AttributeError, match="has no attribute 'device_count'"):
        cp.cuda.runtime.device_count  # noqa: B018
    names = fake_cupy.NAMES
    for part, obj in [("cupy", cp), ("cupy.random", cp.random), ("cupy.cuda", cp.cuda)]:
        assert {n for n in vars(obj) if not n.startswith("_")} <= names[part]
    offered = {n for n in dir(fake_cupy.ndarray) if not n.startswith("_")}
    assert offered <= names["cupy.ndarray"], offered - names["cupy.ndarray"]
    offered = {n for n in dir(fake_cupy.Generator) if not n.startswith("_")}
    assert offered <= names["cupy.random.Generator"]
    offered = {n for n in dir(fake_cupy.runtime) if not n.startswith("_")}
    assert offered <= names["cupy.cuda.runtime"]


@pytest.mark.skipif(importlib.util.find_spec("cupy") is None, reason="CuPy is not installed")
def test_snapshot_matches_installed_cupy():
    """The committed name snapshot is the installed CuPy's (regenerate with tests/snapshot_cupy_api.py)."""
    here = str(Path(__file__).resolve().parent)
    code = (
        f"import json, sys; sys.path.insert(0, {here!r}); import cupy, snapshot_cupy_api as s; "
        "print(json.dumps({'version': cupy.__version__, 'names': s.public_names(cupy)}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    installed = json.loads(result.stdout)
    if installed["version"] != fake_cupy.VERSION:
        pytest.skip(f"snapshot is of CuPy {fake_cupy.VERSION}, installed is {installed['version']}")
    for part, names in installed["names"].items():
        assert set(names) == fake_cupy.NAMES[part], part


def _count(call):
    fake_cupy.reset_counters()
    call()
    return fake_cupy.counters["launches"]


def test_counts_launches_as_cupy_launches_them(fake_cupy_module):
    """Every operation that computes or copies is a kernel; views and ``empty`` are none; and
    around a matmul, what CuPy 14's ``_routines_linalg.matmul`` launches itself."""
    cp = fake_cupy_module
    a = cp.asarray(np.arange(24.0).reshape(2, 3, 4))
    assert _count(lambda: (a.T, a[0], a.reshape(6, 4), cp.empty(5))) == 0
    assert _count(lambda: (a + 1, cp.zeros(3), a.sum(axis=0), a.astype(np.float32))) == 4
    m, v = cp.asarray(np.ones((4, 5))), cp.asarray(np.ones((3, 4)))
    assert _count(lambda: cp.matmul(v, m)) == 1
    assert _count(lambda: cp.matmul(m.T, v.T)) == 1  # 2-D: cuBLAS reads a transpose in place
    strided_a, strided_b = cp.asarray(np.ones((3, 8)))[:, ::2], cp.asarray(np.ones((4, 10)))[:, ::2]
    assert _count(lambda: cp.matmul(strided_a, strided_b)) == 3  # neither C- nor F-contiguous: copies
    assert _count(lambda: cp.matmul(v, m, out=cp.empty((5, 3)).T)) == 2  # a temporary, then a copy
    b, w = cp.asarray(np.ones((2, 4, 5))), cp.asarray(np.ones((2, 3, 4)))
    assert _count(lambda: cp.matmul(w, b)) == 1
    assert _count(lambda: cp.matmul(w, b.transpose(0, 2, 1).transpose(0, 2, 1).copy())) == 2  # the copy itself
    assert _count(lambda: cp.matmul(b.transpose(0, 2, 1), w.transpose(0, 2, 1))) == 3  # batched: each copied
    assert _count(lambda: cp.matmul(v, b)) == 1 + 3  # broadcast over the batch: pointer arrays for a, b, c
    half = cp.asarray(np.ones((2, 3, 4), dtype=np.float16))
    assert _count(lambda: cp.matmul(half, half.transpose(0, 2, 1).copy())) == 1 + 2 + 1 + 1  # casts in and out


def test_peak_bytes_follows_live_arrays(fake_cupy_module):
    cp = fake_cupy_module
    fake_cupy.reset_counters()
    start = fake_cupy.live_bytes()
    a = cp.empty(1000, dtype=np.float64)
    view = a[::2].reshape(25, 20)
    del a
    assert fake_cupy.live_bytes() == start + 8000  # the view keeps its memory
    del view
    b = cp.zeros(500, dtype=np.float64)
    assert fake_cupy.live_bytes() == start + 4000 and fake_cupy.counters["peak_bytes"] == start + 8000
    del b
    assert fake_cupy.live_bytes() == start
