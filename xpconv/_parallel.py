"""Data parallelism over batch chunks on the CPU.

Rules:

* Only NumPy work is spread over threads; on CuPy every chunk runs in order (the GPU is
  already parallel and its calls are asynchronous).
* Each worker thread runs whole chunks — patch extraction, its GEMMs, its share of the output —
  while the BLAS library is held to one thread for the duration (``threadpoolctl``), so that
  the cores are not oversubscribed.  Measured on 2 cores: the ``resnet`` train step 169 ms
  sequentially with a 2-thread BLAS, 138 ms as 2 workers with 1-thread BLAS each.
* Without the optional ``threadpoolctl`` (``pip install "xpconv[fast]"``) or with
  ``XPCONV_NUM_THREADS=1``, chunks run in order and the BLAS keeps its own threads.
* Results come back in chunk order, so sums over chunks do not depend on thread timing.
* The pool is created on first use.  Before a ``fork`` its threads are joined (so that the
  process forks with one thread, as Python 3.12 asks: a forked child of a multi-threaded
  process may deadlock), and the next call in parent or child starts a new pool.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import numpy as np

from ._backend import quiet_floats

_state: dict[str, Any] = {"pid": None, "pool": None, "workers": 0, "controller": None, "share": None}
_lock = threading.Lock()


def available_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_workers() -> int:
    """``$XPCONV_NUM_THREADS`` if set, else this process's share of the cores (:func:`share_cores`),
    else the cores this process may run on.

    A count above the cores is honoured (the threads then share cores) with a warning, once.
    """
    env = os.environ.get("XPCONV_NUM_THREADS")
    cores = available_cores()
    if not env:
        return _state["share"] or cores
    try:
        value = int(env)
    except ValueError:
        raise ValueError(f"XPCONV_NUM_THREADS must be a positive integer, got {env!r}") from None
    if value < 1:
        raise ValueError(f"XPCONV_NUM_THREADS must be a positive integer, got {env!r}")
    if value > cores and _state.get("warned") != (value, cores):
        _state["warned"] = (value, cores)
        warnings.warn(
            f"XPCONV_NUM_THREADS={value} is more than the {cores} core(s) this process may use; "
            "the worker threads will share cores and run slower than with one per core",
            RuntimeWarning,
            stacklevel=_caller_outside_package(),
        )
    return value


def _caller_outside_package() -> int:
    """The ``stacklevel`` that makes a warning issued by this function's caller point at the first
    frame outside xpconv (the user's line), however deep inside the package it was raised."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep + "xpconv" + os.sep
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def thread_report() -> str:
    """One line for ``xpconv info``: how many CPU workers conv2d uses, and why."""
    cores, env = available_cores(), os.environ.get("XPCONV_NUM_THREADS")
    workers = workers_for(np)
    if _controller() is None:
        return f'1 CPU worker for conv2d (threadpoolctl is not installed: pip install "xpconv[fast]"); {cores} core(s)'
    source = f"XPCONV_NUM_THREADS={env}" if env else "one per core"
    return f"{workers} CPU worker(s) for conv2d ({source}; {cores} core(s) available)"


def share_cores(processes: int, index: int) -> tuple[int, int | None]:
    """Make this process, the ``index``-th of ``processes`` running on the same machine (MPI ranks
    on one node), use only its share of the cores: ``cores // processes``, one more for the first
    ``cores % processes``, at least one.  Both xpconv's workers and the BLAS's threads are held
    to it, since each process starting one thread per core would run ``processes`` times as many
    spinning threads as cores (measured on 2 cores, 2 ranks: 1,078-1,332 images/s against
    8,240-9,453 with one thread each).  ``$XPCONV_NUM_THREADS`` overrides the share for both.

    Returns ``(xpconv workers, BLAS threads)``; BLAS threads is ``None`` when they cannot be
    limited (no threadpoolctl: ``pip install "xpconv[fast]"``)."""
    cores = available_cores()
    share = max(1, cores // processes + (1 if index < cores % processes else 0))
    _state["share"] = share
    workers = cpu_workers()  # $XPCONV_NUM_THREADS, else the share
    controller = _controller()
    if controller is None:
        return 1, None
    previous = _state.pop("blas_limit", None)
    if previous is not None:
        previous.restore_original_limits()
    _state["blas_limit"] = controller.limit(limits=workers, user_api="blas")  # held until reset()
    return workers_for(np), workers


def _controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController  # pyright: ignore[reportMissingImports]  (an optional extra)
    except ImportError:
        return None
    if _state["controller"] is None:
        _state["controller"] = ThreadpoolController()
    return _state["controller"]


def _pool(workers: int) -> ThreadPoolExecutor:
    """The shared pool of ``workers`` threads (a new one after a fork or a change of count)."""
    with _lock:
        pool = _state["pool"]
        if pool is None or _state["pid"] != os.getpid() or _state["workers"] != workers:
            if pool is not None and _state["pid"] == os.getpid():
                pool.shutdown(wait=False)
            pool = ThreadPoolExecutor(workers, thread_name_prefix="xpconv")
            _state.update(pid=os.getpid(), pool=pool, workers=workers)
        return pool


def workers_for(xp: ModuleType) -> int:
    """How many chunks run at once for arrays of module ``xp``."""
    if xp is not np or _controller() is None:
        return 1
    return cpu_workers()


def blas_single_threaded(xp: ModuleType) -> contextlib.AbstractContextManager[Any]:
    """A context for a whole kernel call that runs its chunks on worker threads: the BLAS is held
    to one thread throughout, also for the small products made outside the chunks (a Winograd
    filter transform).  A BLAS call left at two threads wakes the BLAS's own threads, which then
    spin and take the cores from the workers: measured, the cifar Winograd forward took 47 ms with
    its filter transform outside the limit and 24 ms inside.

    It holds with one worker too: a BLAS on two threads may sum a product in another order than on
    one (OpenBLAS 0.3.20, NumPy 1.23's, does for these small GEMMs), and results must be the same
    bits whatever ``XPCONV_NUM_THREADS`` is."""
    if xp is not np or _controller() is None:
        return contextlib.nullcontext()
    return _controller().limit(limits=1, user_api="blas")


class Chunks(list):
    """The slices of a batch (:func:`xpconv._chunking.batch_chunks`), and whether their work is
    worth sharing among worker threads (``parallel``) or cut only to stay in cache."""

    def __init__(self, slices: list[slice], parallel: bool) -> None:
        super().__init__(slices)
        self.parallel = parallel


def map_chunks(
    xp: ModuleType,
    fn: Callable[[slice], Any],
    chunks: list[slice],
    consume: Callable[[Any], None] | None = None,
) -> None:
    """``fn(chunk)`` for every chunk, on ``workers_for(xp)`` threads when above one and the chunks
    are :class:`Chunks` worth sharing (in the calling thread otherwise); each result is handed to
    ``consume`` in chunk order as soon as it and those before it are done, so that sums over chunks
    depend neither on thread timing nor on the worker count, and results are not all held at once."""
    workers = workers_for(xp)
    consume = consume or (lambda result: None)
    if workers <= 1 or len(chunks) <= 1 or not getattr(chunks, "parallel", True):
        for chunk in chunks:
            consume(fn(chunk))
        return

    def quietly(chunk: slice) -> Any:  # NumPy's error state is per thread
        with quiet_floats():
            return fn(chunk)

    with _controller().limit(limits=1, user_api="blas"):
        for result in _pool(workers).map(quietly, chunks):
            consume(result)


class ChunkSum:
    """A ``consume`` for :func:`map_chunks` that sums each chunk's partial results into ``targets``
    (``None`` targets skipped), in chunk order.  The first chunk's partials are copied in, so the
    targets need no zero fill, or written there by the chunk itself (:meth:`into`), so that a call
    of one chunk adds and copies nothing (on a GPU, kernels fewer); :meth:`finish` zeros them when
    there was no chunk (an empty batch)."""

    def __init__(self, *targets: Any) -> None:
        self.targets = targets
        self.started = False
        self.in_place: set[int] = set()  # targets the first chunk wrote itself

    def into(self, k: int, chunk: slice) -> Any:
        """Where ``chunk`` may write its partial for target ``k``: the target itself for the first
        chunk of the batch (which is consumed first), else ``None`` (a new array)."""
        if chunk.start != 0:
            return None
        self.in_place.add(k)
        return self.targets[k]

    def __call__(self, partials: Sequence[Any]) -> None:
        for k, (target, partial) in enumerate(zip(self.targets, partials, strict=True)):
            if target is None or (not self.started and k in self.in_place):
                continue
            if self.started:
                target[...] += partial
            else:
                target[...] = partial
        self.started = True

    def finish(self) -> None:
        if not self.started:
            for target in self.targets:
                if target is not None:
                    target[...] = 0


def reset() -> None:
    """Forget the pool, the BLAS controller and any core share (the BLAS gets its threads back);
    the next call looks for threadpoolctl again."""
    with _lock:
        if _state["pool"] is not None and _state["pid"] == os.getpid():
            _state["pool"].shutdown(wait=False)
        limit = _state.pop("blas_limit", None)
        if limit is not None:
            limit.restore_original_limits()
        _state.update(pid=None, pool=None, workers=0, controller=None, share=None)


def _join_pool_before_fork() -> None:
    """Stop the pool and wait for its threads (a call in progress on another thread finishes
    first), so that ``fork`` copies a single-threaded process."""
    with _lock:
        pool = _state["pool"]
        if pool is not None and _state["pid"] == os.getpid():
            pool.shutdown(wait=True)
        _state.update(pool=None, workers=0)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_join_pool_before_fork)
