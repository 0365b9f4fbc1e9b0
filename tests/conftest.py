import sys
import zlib

import numpy as np
import pytest
from hypothesis import settings

from xpconv import _constants

import fake_cupy

# Reproducible property tests in CI; run with --hypothesis-profile=dev for fresh examples.
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile("ci")


@pytest.fixture
def rng(request):
    # A different but reproducible stream per test.
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def fake_cupy_module(monkeypatch):
    """Register the strict CuPy stand-in (two devices, device 0 current) as ``cupy`` for one test."""
    mod = fake_cupy.make_module()
    monkeypatch.setitem(sys.modules, "cupy", mod)
    yield mod
    fake_cupy.set_devices(2)
    fake_cupy.set_driver(12080)
    _constants.reset()  # the stand-in's arrays leave with it (and its memory counts start afresh)


@pytest.fixture
def no_cupy(monkeypatch):
    """Make ``import cupy`` fail, as on a machine without it."""
    monkeypatch.setitem(sys.modules, "cupy", None)
