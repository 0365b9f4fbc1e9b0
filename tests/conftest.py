import sys
import zlib

import numpy as np
import pytest
from hypothesis import settings

import fake_cupy

# Reproducible property tests in CI; run with --hypothesis-profile=dev for fresh examples.
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile("ci")

# Worst error allowed, relative to the largest magnitude in the float64 oracle's result.
# float32 sums of ~100 products lose ~1e-7 each; float16 inputs accumulate in float32 and
# the result is rounded to float16 (unit roundoff 4.9e-4).
TOLERANCE = {np.float64: 1e-10, np.float32: 2e-5, np.float16: 3e-3}


def assert_close(actual, expected, dtype, what=""):
    actual = np.asarray(fake_cupy._unwrap(actual))
    assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    tol = TOLERANCE[np.dtype(dtype).type]
    scale = max(float(np.abs(expected).max(initial=0.0)), 1e-300)
    err = float(np.abs(actual.astype(np.float64) - expected).max(initial=0.0)) / scale
    assert err <= tol, f"{what}: relative error {err:.3e} > {tol:.0e} for {np.dtype(dtype)}"


def random_array(rng, shape, dtype=np.float64):
    """Standard normal entries: never zeros, never all-ones."""
    return rng.standard_normal(shape).astype(dtype)


@pytest.fixture
def rng(request):
    # A different but reproducible stream per test.
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def fake_cupy_module(monkeypatch):
    """Register the NumPy-backed CuPy stand-in as ``cupy`` for one test."""
    mod = fake_cupy.make_module()
    monkeypatch.setitem(sys.modules, "cupy", mod)
    monkeypatch.setattr(fake_cupy.runtime, "device_count", 1)
    yield mod


@pytest.fixture
def no_cupy(monkeypatch):
    """Make ``import cupy`` fail, as on a machine without it."""
    monkeypatch.setitem(sys.modules, "cupy", None)
