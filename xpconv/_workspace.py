"""Scratch arrays for the kernels' intermediate results.

On NumPy, a freshly allocated multi-megabyte array costs a page fault per 4 KiB the first
time it is written, which for small convolutions took longer than the arithmetic (the
``mnist`` forward: 4.6 ms with fresh buffers, 1.6 ms with reused ones).  So each thread
keeps one reusable buffer per named slot, up to ``MAX_CACHED_BYTES`` each (in practice the
size of one chunk's patch matrix, about 8 MiB); :func:`release` drops them all.  CuPy has its
own memory pool, so there this is plain ``xp.empty``.  Scratch arrays never leave xpconv.
"""

from __future__ import annotations

import math
import threading
import weakref
from types import ModuleType

import numpy as np

from ._types import Array, DTypeLike

MAX_CACHED_BYTES = 16 * 2**20


class _Buffers:
    """One thread's slot -> buffer map, in an object that can be weakly referenced."""

    __slots__ = ("slots", "__weakref__")

    def __init__(self):
        self.slots: dict[str, np.ndarray] = {}


_local = threading.local()
_every_thread: weakref.WeakSet = weakref.WeakSet()  # so that release() reaches all live threads
_lock = threading.Lock()


def scratch(xp: ModuleType, slot: str, shape: tuple[int, ...], dtype: DTypeLike) -> Array:
    """An uninitialised array of ``shape``/``dtype``; its contents are garbage."""
    if xp is not np:
        return xp.empty(shape, dtype=dtype)
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    if nbytes > MAX_CACHED_BYTES:
        return np.empty(shape, dtype=dtype)
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = _Buffers()
        with _lock:
            _every_thread.add(buffers)
    buf = buffers.slots.get(slot)
    if buf is None or buf.nbytes < nbytes:
        buf = buffers.slots[slot] = np.empty(max(nbytes, 1), dtype=np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)


def release() -> None:
    """Drop every thread's cached buffers (they are reallocated on next use)."""
    with _lock:
        for buffers in list(_every_thread):
            buffers.slots.clear()


def live_threads() -> int:
    """How many live threads hold scratch buffers (a finished thread's are freed with it)."""
    with _lock:
        return len(_every_thread)
