"""A NumPy-backed stand-in for CuPy 14 that is as strict as CuPy where it matters.

Registered as ``cupy`` in ``sys.modules`` for one test at a time (``make_module()``), it imitates:

* **Its own array type.** :class:`ndarray` is not a ``numpy.ndarray`` subclass. ``__array__``
  raises ``TypeError`` ("Implicit conversion to a NumPy array is not allowed"), NumPy ufuncs and
  NumPy functions refuse it, so ``np.asarray(device_array)`` or ``np.sum(device_array)`` fail here
  as they do on a GPU.
* **No host operands.** Module functions, ufuncs and operators reject NumPy arrays and lists as
  operands (``TypeError: Unsupported type <class 'numpy.ndarray'>``); Python and NumPy scalars,
  shapes and axis tuples are fine; host integer arrays are fine as indices.
* **Devices.** Two (or :func:`set_devices`) devices and a current device per thread;
  anything that computes or copies runs on the current device and puts its result there; an
  operand on another device raises ``ValueError`` (CuPy's behaviour without peer access); views
  (slices, reshapes that need no copy, transposes) stay on their source's device;
  ``cuda.Device(i)`` is a context manager.
* **Only real names.** Every public name offered is in ``cupy_api.json``, the snapshot of the real
  CuPy's names (``snapshot_cupy_api.py``); a name CuPy has but the stand-in does not implement
  raises ``AttributeError`` saying so, and a name CuPy lacks raises ``AttributeError`` like CuPy.
* **Raw kernels.** ``RawModule``/``RawKernel`` run CUDA C on the CPU: the source is compiled by the
  system C++ compiler under a header that turns a launch into loops over its blocks and threads
  (``cuda_host.py``).  Every launch is checked as the GPU would read it: the argument count; a
  device array on the current device, C-contiguous, of the pointee's dtype, for every pointer; for
  every value parameter, the C type CuPy marshals the argument as (``cupy/cuda/function.pyx``
  ``_pointer`` and ``cupy/_core/_scalar.pyx`` ``CScalar``: a Python ``int`` is a 64-bit
  ``long long``, a ``float`` a ``double``, a NumPy scalar its own dtype, a structured scalar its
  bytes) against the parameter's, read from the compiled kernel; no written array overlapping
  another argument; grid and block tuples within CUDA's limits.
* **Loud memory.** ``empty`` returns floating memory filled with NaN and other memory with the
  byte 0xA5, so that code reading what it never wrote shows; an ``out=`` that overlaps an input
  without being it is refused (undefined in CuPy's kernels), and ``matmul`` computes such an
  ``out`` in a temporary and copies it, as CuPy does.
* **Counters** (:data:`counters`): device random-generator constructions, host
  synchronisations (``float()``, ``int()``, ``bool()``, ``.get()``, ``.item()``, ``.tolist()``,
  ``asnumpy``), so tests can assert there are none inside the kernels, and **kernel launches**:
  every operation that computes or copies on a device (ufuncs, reductions, ``matmul``, ``take``,
  copies by assignment, ``astype``, ``copy``, a reshape that copies, advanced indexing, creation
  with ``zeros``/``ones``/``full``/``arange``, host-to-device copies); views, ``empty`` and
  ``as_strided`` launch nothing; every raw kernel launch, also counted apart (``raw_launches``).
  With each launch, the bytes it writes (for a raw kernel, the arrays its signature does not
  declare ``const``, which xpconv's kernels write whole); the device bytes allocated (``empty``
  included); and ``matmul``'s multiply-adds ×2.  All counts are deterministic.

Memory is host memory; "device" is a label checked on every operation.  Stricter than CuPy in
one place: assigning a NumPy array into a device array (``a[...] = host``) is refused too.
"""

from __future__ import annotations

import ctypes
import json
import math
import operator
import threading
import types
import weakref
from pathlib import Path

import cuda_host
import numpy as np

_API = json.loads(Path(__file__).with_name("cupy_api.json").read_text())
NAMES = {part: frozenset(names) for part, names in _API["names"].items()}
VERSION = _API["cupy_version"]

counters = {
    "rng_constructions": 0,
    "host_syncs": 0,
    "launches": 0,
    "raw_launches": 0,
    "module_builds": 0,
    "bytes_written": 0,
    "bytes_allocated": 0,
    "gemm_flops": 0,
    "peak_bytes": 0,
}
_local = threading.local()
_live = {"bytes": 0, "owners": set()}  # device memory held by live arrays, and the ids of its owners
_live_lock = threading.Lock()


def reset_counters() -> None:
    """Zero every counter; ``peak_bytes`` starts again from the memory held now."""
    for key in counters:
        counters[key] = 0
    counters["peak_bytes"] = _live["bytes"]


def live_bytes() -> int:
    """Device bytes held by live arrays (scratch, results, constants): what CuPy's pool could not
    reuse now.  ``counters["peak_bytes"]`` is its largest value since :func:`reset_counters`."""
    return _live["bytes"]


def _hold(data: np.ndarray) -> None:
    """Count the memory under ``data`` as held until the array that owns it is collected."""
    owner = data
    while owner.base is not None:
        base = owner.base
        if not isinstance(base, np.ndarray):  # as_strided's views keep their source under a wrapper
            base = getattr(base, "base", None)
            if not isinstance(base, np.ndarray):
                break
        owner = base
    key = id(owner)
    with _live_lock:
        if key in _live["owners"]:
            return
        _live["owners"].add(key)
        _live["bytes"] += owner.nbytes
        counters["peak_bytes"] = max(counters["peak_bytes"], _live["bytes"])
    weakref.finalize(owner, _release, key, owner.nbytes)


def _release(key: int, nbytes: int) -> None:
    with _live_lock:
        _live["owners"].discard(key)
        _live["bytes"] -= nbytes


def current_device() -> int:
    return getattr(_local, "device", 0)


class CUDARuntimeError(RuntimeError):
    pass


class _Runtime:
    """``cupy.cuda.runtime``; :func:`set_devices` and :func:`set_driver` change what it reports."""

    _device_count = 2
    _driver_version = 12080

    def driverGetVersion(self):
        return self._driver_version

    def runtimeGetVersion(self):
        return 12080

    def getDeviceCount(self):
        return self._device_count

    def getDeviceProperties(self, i):
        self._check(i)
        return {"name": b"Stand-in GPU", "totalGlobalMem": 80 * 2**30}

    def _check(self, i):
        if not 0 <= i < self._device_count:
            raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")

    CUDARuntimeError = CUDARuntimeError

    def __getattr__(self, name):
        raise AttributeError(_missing("cupy.cuda.runtime", name))


runtime = _Runtime()


def set_devices(count: int) -> None:
    """How many GPUs the stand-in has (0: a driver but no GPU)."""
    runtime._device_count = count


_memory = {"free": 60 * 2**30, "total": 80 * 2**30}


def set_memory(free: int, total: int = 80 * 2**30) -> None:
    """What ``Device.mem_info`` reports on every device (default: 60 GiB free of 80 GiB)."""
    _memory.update(free=free, total=total)


def set_driver(version: int) -> None:
    """The driver version ``driverGetVersion`` reports (0: no NVIDIA driver, as CuPy reports it)."""
    runtime._driver_version = version


def _missing(part: str, name: str) -> str:
    if name in NAMES[part]:
        return f"fake cupy: {part}.{name} exists in CuPy {VERSION} but the stand-in does not implement it"
    return f"module '{part}' has no attribute '{name}'"


class Device:
    """``cupy.cuda.Device``: ``Device()`` is the current device; ``with Device(i):`` makes ``i`` current."""

    def __init__(self, device=None):
        if isinstance(device, Device):
            device = device.id
        self.id = current_device() if device is None else int(device)
        self._previous = []

    def __enter__(self):
        runtime._check(self.id)
        self._previous.append(current_device())
        _local.device = self.id
        return self

    def __exit__(self, *exc):
        _local.device = self._previous.pop()

    def use(self):
        runtime._check(self.id)
        _local.device = self.id

    @property
    def mem_info(self):
        """(free, total) bytes, as the driver reports them (:func:`set_memory`); no synchronisation."""
        runtime._check(self.id)
        return _memory["free"], _memory["total"]

    def synchronize(self):
        runtime._check(self.id)

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


# --- the array type -------------------------------------------------------------------------


def _unsupported(value):
    return TypeError(f"Unsupported type {type(value)}")


def _check_device(*arrays: ndarray) -> int:
    """Every device operand must be on the current device (no peer access here)."""
    dev = current_device()
    for a in arrays:
        if a._device != dev:
            raise ValueError(
                f"The device where the array resides ({a._device}) is different from the current device "
                f"({dev}). Peer access is unavailable between these devices."
            )
    return dev


def _operand(value, arrays: list):
    """A device array's data (recorded in ``arrays``), or a scalar; host arrays and lists refused."""
    if isinstance(value, ndarray):
        arrays.append(value)
        return value._data
    if isinstance(value, (bool, int, float, complex, np.generic)) or value is None:
        return value
    raise _unsupported(value)


def _wrap(result, device: int):
    """NumPy results -> device arrays on ``device`` (reductions give 0-d arrays, as in CuPy)."""
    if isinstance(result, np.ndarray):
        return ndarray._from_data(result, device)
    if isinstance(result, np.generic):
        return ndarray._from_data(np.asarray(result), device)
    if isinstance(result, tuple):
        return tuple(_wrap(r, device) for r in result)
    if isinstance(result, list):
        return [_wrap(r, device) for r in result]
    return result


def _compute(fn, args, kwargs, *, sequence_first=False, out=None):
    """Run ``fn`` on the data of device operands, on the current device, with CuPy's checks."""
    arrays: list[ndarray] = []
    plain = []
    for k, a in enumerate(args):
        if k == 0 and sequence_first:
            if not isinstance(a, (list, tuple)):
                raise _unsupported(a)
            plain.append([_operand(item, arrays) for item in a])
        else:
            plain.append(a if _is_option(a) else _operand(a, arrays))
    options = {}
    for key, value in kwargs.items():
        options[key] = value if _is_option(value) else _operand(value, arrays)
    if out is not None:
        if not isinstance(out, ndarray):
            raise TypeError(f"out must be a cupy.ndarray, got {type(out)}")
        arrays.append(out)
    dev = _check_device(*arrays)
    if out is not None:
        _refuse_partial_overlap(out, arrays[:-1])
        fn(*plain, **options, out=out._data)
        _launched(out.nbytes)
        _count_gemm(fn, plain, out._data)
        return out
    result = fn(*plain, **options)
    if not (isinstance(result, np.ndarray) and any(np.shares_memory(result, a._data) for a in arrays)):
        size = np.asarray(result).nbytes
        _launched(size, size)  # a view of an operand (broadcast_to, moveaxis, ...) launches nothing
        _count_gemm(fn, plain, result)
    return _wrap(result, dev)


def _same_memory(a: np.ndarray, b: np.ndarray) -> bool:
    return a.__array_interface__["data"][0] == b.__array_interface__["data"][0] and (a.shape, a.strides) == (
        b.shape,
        b.strides,
    )


def _refuse_partial_overlap(out: ndarray, inputs) -> None:
    """An ``out`` that overlaps an input must be that input exactly (an in-place update); any other
    overlap is undefined in CuPy's elementwise kernels, whose threads run in no fixed order."""
    for a in inputs:
        if isinstance(a, ndarray) and np.shares_memory(out._data, a._data) and not _same_memory(out._data, a._data):
            raise ValueError("fake cupy: out overlaps an input without being it (undefined in CuPy's kernels)")


def _launched(written: int, allocated: int = 0) -> None:
    """One kernel, writing ``written`` bytes into memory of which ``allocated`` bytes are new."""
    counters["launches"] += 1
    counters["bytes_written"] += int(written)
    counters["bytes_allocated"] += int(allocated)


def _count_gemm(fn, operands, result) -> None:
    if fn is np.matmul:
        counters["gemm_flops"] += 2 * np.asarray(result).size * np.shape(operands[0])[-1]


def _matmul(a, b, out=None):
    """``matmul`` with the kernels CuPy 14 launches around its cuBLAS call
    (``cupy/_core/_routines_linalg.pyx``), each counted:

    * a product of 2-D operands: a cast for an operand of another dtype, a copy for one that is
      neither C- nor F-contiguous (cuBLAS reads a transpose in place), and a temporary plus a copy
      for an ``out`` that is not C-contiguous or not of the result's dtype;
    * a batched product (3-D or more): a copy for every operand that is not C-contiguous or not
      of the compute dtype (float32 for float16), three pointer-array kernels per batch axis
      when an operand is broadcast along a batch axis (``gemmBatched`` instead of the strided
      call), and a temporary plus a copy for an ``out`` that is not C-contiguous or not of the
      compute dtype.
    """
    for v in (a, b):
        if not isinstance(v, ndarray):
            raise _unsupported(v)
    if out is not None and not isinstance(out, ndarray):
        raise TypeError(f"out must be a cupy.ndarray, got {type(out)}")
    dev = _check_device(a, b, *(() if out is None else (out,)))
    ad, bd = a._data, b._data
    shares = out is not None and any(np.may_share_memory(out._data, v) for v in (ad, bd))
    result = np.matmul(ad, bd)
    ret = result.dtype
    copies = []  # bytes each hidden kernel writes
    if max(ad.ndim, bd.ndim) <= 2:
        for v in (ad, bd):
            if v.dtype != ret or (v.ndim == 2 and not (v.flags.c_contiguous or v.flags.f_contiguous)):
                copies.append(v.size * ret.itemsize)  # tensordot_core's astype, _mat_to_cublas_contiguous's copy
        if out is not None and (shares or not (out._data.flags.c_contiguous and out.dtype == ret)):
            copies.append(out.nbytes)  # a temporary, then elementwise_copy
    else:
        compute = np.dtype(np.float32) if ret == np.float16 else ret
        for v in (ad, bd):
            if v.dtype != compute or not v.flags.c_contiguous:
                copies.append(v.size * compute.itemsize)  # ascontiguousarray(v, dtype)
        batch = result.shape[:-2]
        for v in (ad, bd):
            shape = (1,) * (result.ndim - v.ndim) + v.shape[:-2]
            if any(s == 1 and r > 1 for s, r in zip(shape, batch, strict=True)):
                copies += [8 * math.prod(batch)] * (3 * len(batch))  # _mat_ptrs for a, b and c
                break
        if (out is None and compute != ret) or (
            out is not None and (shares or not (out._data.flags.c_contiguous and out.dtype == compute))
        ):
            copies.append(result.nbytes)  # computed in a temporary, then copied
    for written in copies:
        _launched(written, written)
    counters["gemm_flops"] += 2 * result.size * ad.shape[-1]
    if out is not None:
        if out.shape != result.shape:
            raise ValueError("Output array has an invalid size")
        out._data[...] = result
        _launched(out.nbytes)
        return out
    _launched(result.nbytes, result.nbytes)
    return _wrap(result, dev)


def _is_option(value) -> bool:
    """Shapes, axes, dtypes and strings pass through as they are (they are not operands)."""
    if isinstance(value, (str, type, np.dtype)) or value is None:
        return True
    return isinstance(value, tuple) and all(isinstance(v, (int, np.integer)) for v in value)


def _index(key, arrays: list):
    """An index: slices, ints, host integer/bool arrays (CuPy copies those over), device arrays."""
    if isinstance(key, tuple):
        return tuple(_index(k, arrays) for k in key)
    if isinstance(key, ndarray):
        arrays.append(key)
        return key._data
    if isinstance(key, np.ndarray):
        if key.dtype.kind not in "iub":
            raise IndexError(f"arrays used as indices must be of integer or boolean type, got {key.dtype}")
        return key
    if isinstance(key, list):
        return np.asarray(key)
    return key


def _is_basic(key) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    return all(k is None or k is Ellipsis or isinstance(k, (slice, int, np.integer)) for k in keys)


_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "truediv": np.true_divide,
    "floordiv": np.floor_divide, "mod": np.remainder, "pow": np.power, "matmul": np.matmul,
    "and": np.logical_and, "or": np.logical_or, "xor": np.logical_xor,
}  # fmt: skip
_COMPARE = {
    "lt": np.less,
    "le": np.less_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
    "eq": np.equal,
    "ne": np.not_equal,
}


class ndarray:  # CuPy's name
    """A device array: NumPy memory labelled with the device it lives on."""

    __array_priority__ = 100
    __slots__ = ("_data", "_device")

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        self._data = _loud(np.empty(shape, dtype=dtype, order=order))
        self._device = current_device()
        _hold(self._data)

    @classmethod
    def _from_data(cls, data: np.ndarray, device: int) -> ndarray:
        obj = cls.__new__(cls)
        obj._data = data
        obj._device = device
        _hold(data)
        return obj

    # what NumPy must not be able to do with a device array
    def __array__(self, *args, **kwargs):
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a NumPy array explicitly."
        )

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return NotImplemented  # NumPy then raises TypeError

    def __array_function__(self, func, types, args, kwargs):
        return NotImplemented

    # attributes
    shape = property(lambda self: self._data.shape)
    dtype = property(lambda self: self._data.dtype)
    ndim = property(lambda self: self._data.ndim)
    size = property(lambda self: self._data.size)
    itemsize = property(lambda self: self._data.itemsize)
    nbytes = property(lambda self: self._data.nbytes)
    strides = property(lambda self: self._data.strides)
    device = property(lambda self: Device(self._device))
    T = property(lambda self: self._view(self._data.T))
    mT = property(lambda self: self._view(np.swapaxes(self._data, -1, -2)))

    def __len__(self):
        return len(self._data)

    def __repr__(self):
        return f"array({self._data!r}, device={self._device})"

    def __iter__(self):
        raise TypeError("iterating a device array element by element: use .get() or index explicitly")

    def _view(self, data: np.ndarray) -> ndarray:
        return ndarray._from_data(data, self._device)

    def _result(self, data, *operands: ndarray):
        """A method's result: a view stays on this array's device, anything else is computed."""
        if isinstance(data, np.ndarray) and np.shares_memory(data, self._data):
            return self._view(data)
        _launched(np.asarray(data).nbytes, np.asarray(data).nbytes)
        return _wrap(data, _check_device(self, *operands))

    # host synchronisations
    def _sync(self):
        counters["host_syncs"] += 1

    def get(self, stream=None, order="C", out=None, blocking=True):
        self._sync()
        return self._data.copy(order=order)

    def item(self):
        self._sync()
        return self._data.item()

    def tolist(self):
        self._sync()
        return self._data.tolist()

    def __float__(self):
        self._sync()
        return float(self._data)

    def __int__(self):
        self._sync()
        return int(self._data)

    def __bool__(self):
        self._sync()
        return bool(self._data)

    def __index__(self):
        raise TypeError("only integer scalar arrays can be converted to a scalar index")

    # indexing
    def __getitem__(self, key):
        arrays: list[ndarray] = []
        index = _index(key, arrays)
        data = self._data[index]
        if _is_basic(key):
            return self._view(data)
        _launched(data.nbytes, data.nbytes)
        return _wrap(data if not np.shares_memory(data, self._data) else data.copy(), _check_device(self, *arrays))

    def __setitem__(self, key, value):
        arrays: list[ndarray] = [self]
        index = _index(key, arrays)
        source = value
        value = _operand(value, arrays)
        _check_device(*arrays)
        if isinstance(source, ndarray) and _is_basic(key):
            _refuse_partial_overlap(self[key], [source])
        self._data[index] = value
        _launched(np.asarray(self._data[index]).nbytes)

    # methods (only names the real cupy.ndarray has)
    def reshape(self, *shape, order="C"):
        return self._result(self._data.reshape(*shape, order=order))

    def transpose(self, *axes):
        return self._view(self._data.transpose(*axes))

    def swapaxes(self, a, b):
        return self._view(self._data.swapaxes(a, b))

    def ravel(self, order="C"):
        return self._result(self._data.ravel(order=order))

    def squeeze(self, axis=None):
        return self._view(self._data.squeeze(axis=axis))

    def view(self, dtype=None):
        return self._view(self._data.view() if dtype is None else self._data.view(dtype))

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        if not copy and np.dtype(dtype) == self.dtype:
            return self
        _launched(self.size * np.dtype(dtype).itemsize, self.size * np.dtype(dtype).itemsize)
        return _wrap(self._data.astype(dtype, order=order), _check_device(self))

    def copy(self, order="C"):
        # CuPy copies onto the *current* device, whatever the source's device
        _launched(self.nbytes, self.nbytes)
        return ndarray._from_data(self._data.copy(order=order), current_device())

    def fill(self, value):
        _check_device(self)
        self._data.fill(_operand(value, []))
        _launched(self.nbytes)

    def __getattr__(self, name):
        if name in NAMES["cupy.ndarray"] and hasattr(np.ndarray, name):
            method = getattr(self._data, name)

            def computed(*args, **kwargs):
                _check_device(self)
                return _compute(method, args, kwargs, out=kwargs.pop("out", None))

            return computed
        raise AttributeError(_missing("cupy.ndarray", name))

    # operators
    def _binary(self, name, other, reflected=False):
        if not isinstance(other, ndarray) and not _is_scalar(other):
            if isinstance(other, np.ndarray) or isinstance(other, list):
                raise _unsupported(other)
            return NotImplemented
        args = (other, self) if reflected else (self, other)
        if name == "matmul":
            return _matmul(*args)
        return _compute(_BINARY[name], args, {})

    def _inplace(self, name, other):
        return _compute(_BINARY[name], (self, other), {}, out=self)

    def __neg__(self):
        return _compute(np.negative, (self,), {})

    def __pos__(self):
        return self

    def __abs__(self):
        return _compute(np.absolute, (self,), {})

    def __invert__(self):
        return _compute(np.invert, (self,), {})


def _loud(data: np.ndarray) -> np.ndarray:
    """Fill fresh memory as no kernel writes it: NaN for floating dtypes, the byte 0xA5 otherwise."""
    if data.dtype.kind in "fc":
        data.fill(np.nan)
    else:
        data.reshape(-1).view(np.uint8).fill(0xA5)
    return data


def _is_scalar(value) -> bool:
    return isinstance(value, (bool, int, float, complex, np.generic))


def _make_operators():
    for name in _BINARY:
        setattr(ndarray, f"__{name}__", lambda self, other, _n=name: self._binary(_n, other))
        setattr(ndarray, f"__r{name}__", lambda self, other, _n=name: self._binary(_n, other, reflected=True))
        setattr(ndarray, f"__i{name}__", lambda self, other, _n=name: self._inplace(_n, other))
    for name, ufunc in _COMPARE.items():

        def compare(self, other, _u=ufunc):
            if not isinstance(other, ndarray) and not _is_scalar(other):
                raise _unsupported(other)
            return _compute(_u, (self, other), {})

        setattr(ndarray, f"__{name}__", compare)
    ndarray.__hash__ = None


_make_operators()


# --- random ---------------------------------------------------------------------------------


class Generator:
    """``cupy.random.Generator``: each construction would allocate and seed cuRAND states."""

    def __init__(self, bit_generator=None):
        counters["rng_constructions"] += 1
        self._device = current_device()
        self._rng = np.random.default_rng(bit_generator)

    def random(self, size=None, dtype=np.float64, out=None):
        dev = _check_device(ndarray._from_data(np.empty(0), self._device))
        return _wrap(self._rng.random(size, dtype=dtype), dev)

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        dev = _check_device(ndarray._from_data(np.empty(0), self._device))
        return _wrap(self._rng.standard_normal(size, dtype=dtype), dev)

    def __getattr__(self, name):
        raise AttributeError(_missing("cupy.random.Generator", name))


def _default_rng(seed=None):
    return Generator(seed)


# --- raw kernels ----------------------------------------------------------------------------


class CUDADriverError(RuntimeError):
    """``cupy_backends.cuda.api.driver.CUDADriverError``."""


_C_NAMES = {("f", 2): "__half", ("f", 4): "float", ("f", 8): "double", ("i", 1): "signed char", ("i", 2): "short",
            ("i", 4): "int", ("i", 8): "long long", ("u", 1): "unsigned char", ("u", 2): "unsigned short",
            ("u", 4): "unsigned int", ("u", 8): "unsigned long long", ("b", 1): "bool"}  # fmt: skip


def _c_type(param: cuda_host.Param) -> str:
    name = _C_NAMES.get((param.kind, param.size), f"a struct of {param.size} bytes")
    if param.pointer:
        return f"{'const ' if param.constant else ''}{name}*"
    return name


def _marshalled_dtype(value) -> np.dtype:
    """The dtype CuPy passes a non-array kernel argument as (``CScalar``): a Python ``bool`` as
    ``bool``, ``int`` as ``int64`` (``uint64`` from 2**63), ``float`` as ``float64``, ``complex``
    as ``complex128``; a NumPy scalar, or a NumPy array of one element, as its own dtype."""
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise TypeError(
                f"You are trying to pass a numpy.ndarray of shape {value.shape} as a kernel parameter. Only "
                "numpy.ndarrays of size one can be passed by value. If you meant to pass a pointer to __global__ "
                "memory, you need to pass a cupy.ndarray instead."
            )
        return value.dtype
    if type(value) is bool:
        return np.dtype(np.bool_)
    if type(value) is int:
        return np.dtype(np.uint64 if value >= 2**63 else np.int64)
    if type(value) is float:
        return np.dtype(np.float64)
    if type(value) is complex:
        return np.dtype(np.complex128)
    if isinstance(value, np.generic):
        return value.dtype
    raise TypeError(f"Unsupported type {type(value)}")


def _matches(param: cuda_host.Param, dtype: np.dtype) -> bool:
    if param.kind == "V":
        return dtype.kind == "V" and dtype.fields is not None and dtype.itemsize == param.size
    return dtype.kind == param.kind and dtype.itemsize == param.size


class _Launch:
    """One launch's arguments as the GPU would read them: checked against the kernel's parameters
    and held as bytes, with an array of pointers to them (``cuLaunchKernel``'s ``kernelParams``)."""

    def __init__(self, kernel: cuda_host.HostKernel, args):
        name, params = kernel.name, kernel.params
        if not isinstance(args, (tuple, list)):
            raise TypeError(f"args must be a tuple of kernel arguments, got {type(args).__name__}")
        if len(args) != len(params):
            raise TypeError(f"fake cupy: kernel {name} takes {len(params)} arguments, {len(args)} given")
        self._keep: list = []
        self.addresses: list[int] = []
        self.written: list[np.ndarray] = []
        pointers: list[tuple[int, np.ndarray]] = []
        for k, (arg, param) in enumerate(zip(args, params, strict=True)):
            where = f"fake cupy: kernel {name}, argument {k} (a {_c_type(param)} parameter)"
            if param.pointer:
                data = self._pointer(arg, param, where)
                if data is not None:
                    pointers.append((k, data))
                    if not param.constant:
                        self.written.append(data)
                continue
            if isinstance(arg, ndarray) or arg is None:
                raise TypeError(
                    f"{where}: CuPy would pass a pointer ({type(arg).__name__}) where the kernel reads a value"
                )
            dtype = _marshalled_dtype(arg)
            if not _matches(param, dtype):
                raise TypeError(
                    f"{where}: CuPy passes {arg!r} as {dtype} ({dtype.itemsize} bytes), which the kernel would read "
                    f"as a {_c_type(param)}; pass np.{_numpy_name(param)}(...)"
                )
            value = np.array(arg, dtype=dtype).reshape(())
            buffer = ctypes.create_string_buffer(value.tobytes(), max(8, dtype.itemsize))
            self._keep.append(buffer)
            self.addresses.append(ctypes.addressof(buffer))
        for k, data in pointers:
            for j, other in pointers:
                if j != k and not params[k].constant and np.may_share_memory(data, other):
                    raise ValueError(f"fake cupy: kernel {name} writes argument {k}, which overlaps argument {j}")

    def _pointer(self, arg, param: cuda_host.Param, where: str) -> np.ndarray | None:
        if arg is None:  # CuPy passes a null pointer
            self._keep.append(ctypes.c_void_p(0))
            self.addresses.append(ctypes.addressof(self._keep[-1]))
            return None
        if not isinstance(arg, ndarray):
            dtype = _marshalled_dtype(arg)  # CuPy's own error for a NumPy array of more than one element
            raise TypeError(
                f"{where}: needs a cupy.ndarray; CuPy would pass this {type(arg).__name__} by value, as {dtype}"
            )
        _check_device(arg)
        data = arg._data
        if not data.flags.c_contiguous:
            raise ValueError(f"{where}: the kernel indexes it as C-contiguous, but its strides are {data.strides}")
        if not _matches(param, data.dtype):
            raise TypeError(f"{where}: an array of {data.dtype}, which the kernel would read as {_c_type(param)}")
        pointer = ctypes.c_void_p(data.__array_interface__["data"][0])
        self._keep.append(pointer)
        self.addresses.append(ctypes.addressof(pointer))
        return data


def _numpy_name(param: cuda_host.Param) -> str:
    if param.kind == "V":
        return "void (a structured scalar)"
    kind = {"f": "float", "i": "int", "u": "uint", "b": "bool"}[param.kind]
    return "bool_" if kind == "bool" else f"{kind}{8 * param.size}"


_GRID_LIMITS = (2**31 - 1, 65535, 65535)
_BLOCK_LIMITS = (1024, 1024, 64)


def _dims(value, what: str) -> tuple[int, int, int]:
    """A launch's grid or block as CuPy's ``Function.__call__`` takes it: a tuple (Cython's typed
    argument), padded with ones and each at least one."""
    if not isinstance(value, tuple):
        raise TypeError(f"Argument '{what}' has incorrect type (expected tuple, got {type(value).__name__})")
    dims = tuple(max(1, operator.index(v)) for v in (value + (1, 1))[:3])
    return dims[0], dims[1], dims[2]


class _Function:
    """A compiled kernel, as ``RawModule.get_function`` returns it."""

    def __init__(self, kernel: cuda_host.HostKernel):
        self.kernel = kernel

    def __call__(self, grid, block, args, shared_mem=0, stream=None, enable_cooperative_groups=False):
        grid3, block3 = _dims(grid, "grid"), _dims(block, "block")
        if (
            any(g > limit for g, limit in zip(grid3, _GRID_LIMITS, strict=True))
            or any(b > limit for b, limit in zip(block3, _BLOCK_LIMITS, strict=True))
            or math.prod(block3) > 1024
        ):
            raise CUDADriverError(f"CUDA_ERROR_INVALID_VALUE: invalid argument (grid {grid3}, block {block3})")
        if shared_mem:
            raise ValueError("fake cupy: xpconv's kernels use no shared memory")
        launch = _Launch(self.kernel, args)
        self.kernel.launch(grid3, block3, launch.addresses)
        counters["raw_launches"] += 1
        _launched(sum(a.nbytes for a in launch.written))


class RawModule:
    """``cupy.RawModule(code=...)``: CUDA C compiled on first use, here for the CPU (``cuda_host``)."""

    def __init__(self, *, code=None, path=None, options=(), backend="nvrtc", translate_cucomplex=False,
                 enable_cooperative_groups=False, name_expressions=None, jitify=False):  # fmt: skip
        if (code is None) == (path is None):
            raise TypeError("Exactly one of code and path keyword arguments must be given.")
        if path is not None:
            raise NotImplementedError("fake cupy: RawModule(path=...) (a cubin file) cannot run on the CPU")
        if not isinstance(code, str) or not isinstance(options, tuple):
            raise TypeError("code must be a str and options a tuple of str")
        self.code, self.options = code, options
        counters["module_builds"] += 1

    def get_function(self, name):
        kernels = cuda_host.build(self.code)
        if name not in kernels:
            raise CUDADriverError("CUDA_ERROR_NOT_FOUND: named symbol not found")
        return _Function(kernels[name])


class RawKernel:
    """``cupy.RawKernel(code, name)``: one kernel of a source."""

    def __init__(self, code, name, options=(), backend="nvrtc", *, translate_cucomplex=False,
                 enable_cooperative_groups=False, jitify=False):  # fmt: skip
        self.module = RawModule(code=code, options=options)
        self.name = name

    def __call__(self, grid, block, args, *, shared_mem=0):
        self.module.get_function(self.name)(grid, block, args, shared_mem=shared_mem)


# --- the module -----------------------------------------------------------------------------

# Functions whose first argument is a sequence of arrays.
_SEQUENCE_FIRST = {"concatenate", "stack", "vstack", "hstack", "dstack", "column_stack"}
# Functions that build from shapes and scalars only.
_CREATION = {"empty", "zeros", "ones", "full", "arange", "eye", "identity", "linspace"}


def _asarray(a, dtype=None, order=None, *, blocking=False):
    if isinstance(a, ndarray):
        return a if dtype is None or np.dtype(dtype) == a.dtype else a.astype(dtype)
    data = np.array(a, dtype=dtype, order=order or "K")
    _launched(data.nbytes, data.nbytes)  # a host-to-device copy
    return ndarray._from_data(data, current_device())


def _asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    if isinstance(a, ndarray):
        counters["host_syncs"] += 1
        return a._data.copy(order=order)
    return np.asarray(a, order=order)


def _as_strided(x, shape=None, strides=None):
    """CuPy's ``as_strided``: a view of a device array's memory (no kernel, no device check);
    like CuPy, it takes no ``writeable`` argument."""
    if not isinstance(x, ndarray):
        raise _unsupported(x)
    return x._view(np.lib.stride_tricks.as_strided(x._data, shape, strides))


def _get_array_module(*args):
    return _MODULE if any(isinstance(a, ndarray) for a in args) else np


def _ascontiguousarray(a, dtype=None):
    if not isinstance(a, ndarray):
        raise _unsupported(a)
    if a._data.flags.c_contiguous and (dtype is None or np.dtype(dtype) == a.dtype):
        return a
    data = np.ascontiguousarray(a._data, dtype=dtype)
    _launched(data.nbytes, data.nbytes)
    return _wrap(data, _check_device(a))


def _module_function(name):
    fn = getattr(np, name)
    if name in _CREATION:

        def create(*args, **kwargs):
            for v in (*args, *kwargs.values()):
                if isinstance(v, (np.ndarray, list, ndarray)):
                    raise _unsupported(v)
            data = fn(*args, **kwargs)
            if name == "empty":  # empty allocates; the others fill
                _loud(data)
                counters["bytes_allocated"] += data.nbytes
            else:
                _launched(data.nbytes, data.nbytes)
            return ndarray._from_data(data, current_device())

        return create

    def compute(*args, **kwargs):
        out = kwargs.pop("out", None)
        return _compute(fn, args, kwargs, sequence_first=name in _SEQUENCE_FIRST, out=out)

    compute.__name__ = name
    return compute


_MODULE: types.ModuleType | None = None


def make_module() -> types.ModuleType:
    """A fresh ``cupy`` module (counters reset, device 0 current, two devices)."""
    global _MODULE
    reset_counters()
    _local.device = 0
    set_devices(2)
    set_driver(12080)
    set_memory(60 * 2**30)
    mod = types.ModuleType("cupy")
    mod.__version__ = VERSION
    mod.ndarray = ndarray
    mod.asarray = _asarray
    mod.array = _asarray
    mod.asnumpy = _asnumpy
    mod.get_array_module = _get_array_module
    mod.ascontiguousarray = _ascontiguousarray
    mod.matmul = _matmul
    mod.RawModule = RawModule
    mod.RawKernel = RawKernel
    mod.random = _namespace("cupy.random", default_rng=_default_rng, Generator=Generator)
    mod.cuda = _namespace("cupy.cuda", Device=Device, runtime=runtime)
    mod.lib = _namespace("cupy.lib", stride_tricks=_namespace("cupy.lib.stride_tricks", as_strided=_as_strided))

    def __getattr__(name):
        if name in NAMES["cupy"] and hasattr(np, name):
            attr = getattr(np, name)
            if isinstance(attr, type) or not callable(attr):
                return attr  # dtypes and constants are NumPy's own in CuPy too
            return _module_function(name)
        raise AttributeError(_missing("cupy", name))

    mod.__getattr__ = __getattr__
    parts = (
        ("cupy", mod),
        ("cupy.random", mod.random),
        ("cupy.cuda", mod.cuda),
        ("cupy.lib", mod.lib),
        ("cupy.lib.stride_tricks", mod.lib.stride_tricks),
    )
    for part, obj in parts:
        offered = {n for n in vars(obj) if not n.startswith("_")}
        assert offered <= NAMES[part], f"the stand-in offers names CuPy lacks: {sorted(offered - NAMES[part])}"
    _MODULE = mod
    return mod


def _namespace(part: str, **members) -> types.ModuleType:
    ns = types.ModuleType(part)
    for key, value in members.items():
        setattr(ns, key, value)

    def __getattr__(name):
        raise AttributeError(_missing(part, name))

    ns.__getattr__ = __getattr__
    return ns
