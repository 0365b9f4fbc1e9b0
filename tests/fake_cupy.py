"""A NumPy-backed stand-in for CuPy, registered as ``cupy`` for one test at a time.

It has what xpconv's shim and kernels touch: its own ``ndarray`` type (a NumPy subclass
that refuses to mix with plain NumPy arrays in arithmetic, as real CuPy does), module
functions that return that type, ``asarray``/``asnumpy``, ``get_array_module``,
``random.default_rng``, ``cuda.Device`` (with ``synchronize`` and a current-device context), ``cuda.runtime``
and ``cuda.Stream.null.synchronize``.
"""

from __future__ import annotations

import types

import numpy as np

_current_device = [0]


class FakeCupyArray(np.ndarray):
    """A "device" array: NumPy memory, its own type, and a ``device`` attribute."""

    def __array_finalize__(self, obj):
        self._device_id = getattr(obj, "_device_id", _current_device[0])

    @property
    def device(self):
        return Device(self._device_id)

    def get(self):
        return np.asarray(self).view(np.ndarray).copy()

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        operands = inputs + (out or ())
        if any(type(a) is np.ndarray for a in operands):
            raise TypeError(f"fake cupy: {ufunc.__name__} mixes a NumPy array with a device array")
        args = [a.view(np.ndarray) if isinstance(a, FakeCupyArray) else a for a in inputs]
        if out is not None:
            kwargs["out"] = tuple(a.view(np.ndarray) for a in out)
        result = getattr(ufunc, method)(*args, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)


def _wrap(result):
    if isinstance(result, np.ndarray) and not isinstance(result, FakeCupyArray):
        return result.view(FakeCupyArray)
    if isinstance(result, tuple):
        return tuple(_wrap(r) for r in result)
    return result


def _unwrap(value):
    if isinstance(value, FakeCupyArray):
        return value.view(np.ndarray)
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v) for v in value)
    return value


class Device:
    def __init__(self, device_id=None):
        self.id = _current_device[0] if device_id is None else device_id
        self._previous = None

    def __enter__(self):
        if self.id >= runtime.device_count:
            raise RuntimeError(f"fake cupy: invalid device {self.id}")
        self._previous = _current_device[0]
        _current_device[0] = self.id
        return self

    def __exit__(self, *exc):
        _current_device[0] = self._previous

    def synchronize(self):
        pass


class _Runtime:
    device_count = 1

    def driverGetVersion(self):
        return 12040

    def getDeviceCount(self):
        return self.device_count

    def getDeviceProperties(self, i):
        return {"name": b"Fake GPU"}


runtime = _Runtime()


def make_module() -> types.ModuleType:
    """A fresh ``cupy`` module object backed by NumPy."""
    mod = types.ModuleType("cupy")
    mod.__version__ = "0.0-fake"
    mod.ndarray = FakeCupyArray
    mod.cuda = types.SimpleNamespace(
        Device=Device,
        runtime=runtime,
        Stream=types.SimpleNamespace(null=types.SimpleNamespace(synchronize=lambda: None)),
    )

    def asarray(a, dtype=None):
        if isinstance(a, FakeCupyArray) and a._device_id == _current_device[0]:
            return a if dtype is None else a.astype(dtype, copy=False)
        return np.array(_unwrap(a), dtype=dtype).view(FakeCupyArray)

    def asnumpy(a):
        return a.get() if isinstance(a, FakeCupyArray) else np.asarray(a)

    def get_array_module(*arrays):
        return mod if any(isinstance(a, FakeCupyArray) for a in arrays) else np

    class _Generator:
        def __init__(self, seed=None):
            self._rng = np.random.default_rng(seed)

        def random(self, size=None, dtype=np.float64):
            return _wrap(self._rng.random(size, dtype=dtype))

    mod.random = types.SimpleNamespace(default_rng=_Generator)
    mod.asarray = asarray
    mod.asnumpy = asnumpy
    mod.get_array_module = get_array_module

    def __getattr__(name):
        attr = getattr(np, name)
        if isinstance(attr, type) or not callable(attr):
            return attr  # dtypes and constants are shared with NumPy

        def wrapped(*args, **kwargs):
            return _wrap(attr(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))

        return wrapped

    mod.__getattr__ = __getattr__
    return mod
