"""The CPU worker threads: same results as one thread, deterministic, fork-safe, optional."""

import multiprocessing
import sys

import numpy as np
import pytest

import xpconv
from xpconv import _parallel

from cases import random_array


def _run(rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    x = random_array(rng, (9, 6, 12, 11), np.float32)
    w = random_array(rng, (4, 6, 3, 3), np.float32)
    b = random_array(rng, (4,), np.float32)
    y = xpconv.conv2d(x, w, b, padding=1, workspace_bytes=6 * 2**14)  # several chunks
    go = random_array(rng, y.shape, np.float32)
    return (y, *xpconv.conv2d_backward(go, x, w, padding=1, workspace_bytes=6 * 2**14))


@pytest.mark.skipif(_parallel.workers_for(np) < 2, reason="needs threadpoolctl and 2 cores")
def test_threads_match_one_thread_and_are_deterministic(monkeypatch):
    parallel = _run()
    np.testing.assert_array_equal(parallel[2], _run()[2])  # weight gradient: same bits every time
    monkeypatch.setenv("XPCONV_NUM_THREADS", "1")
    assert _parallel.workers_for(np) == 1
    for a, b in zip(parallel, _run(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(np.abs(b).max()))


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_bad_thread_count(monkeypatch, value):
    monkeypatch.setenv("XPCONV_NUM_THREADS", value)
    with pytest.raises(ValueError, match="XPCONV_NUM_THREADS must be a positive integer"):
        _parallel.cpu_workers()


@pytest.mark.filterwarnings("ignore:XPCONV_NUM_THREADS=3 is more than")
def test_map_chunks_keeps_order(monkeypatch):
    monkeypatch.setenv("XPCONV_NUM_THREADS", "3")
    chunks = [slice(i, i + 1) for i in range(20)]
    seen = []
    _parallel.map_chunks(np, lambda s: s.start * 2, chunks, consume=seen.append)
    assert seen == [2 * i for i in range(20)]


def test_one_worker_without_threadpoolctl_or_on_cuda(monkeypatch, fake_cupy_module):
    assert _parallel.workers_for(fake_cupy_module) == 1
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    _parallel.reset()
    assert _parallel.workers_for(np) == 1
    y, gx, gw, gb = _run()  # still correct on the sequential path
    assert np.isfinite(gw).all()


def _child(queue):
    queue.put(float(_run()[0].sum()))


# Python 3.12+ warns (DeprecationWarning) when a process with more than one thread forks: the pool's
# threads are joined before a fork, so there must be no such warning, and both sides work after it.
@pytest.mark.filterwarnings("error::DeprecationWarning")
def test_works_in_a_forked_child():
    expected = float(_run()[0].sum())  # the parent's pool exists now
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == pytest.approx(expected, rel=1e-6)
    assert float(_run()[0].sum()) == expected  # the parent starts a new pool


@pytest.mark.parametrize(("cores", "processes", "shares"), [(2, 2, [1, 1]), (8, 3, [3, 3, 2]), (2, 4, [1, 1, 1, 1])])
def test_processes_on_one_machine_split_its_cores(monkeypatch, cores, processes, shares):
    pytest.importorskip("threadpoolctl")
    from threadpoolctl import threadpool_info

    monkeypatch.delenv("XPCONV_NUM_THREADS", raising=False)
    monkeypatch.setattr(_parallel, "available_cores", lambda: cores)
    try:
        for index, share in enumerate(shares):
            assert _parallel.share_cores(processes, index) == (share, share)
            assert _parallel.cpu_workers() == share
            blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
            assert blas and all(n == share for n in blas)
    finally:
        _parallel.reset()  # gives the BLAS its threads back


def test_xpconv_num_threads_overrides_the_share(monkeypatch):
    pytest.importorskip("threadpoolctl")
    monkeypatch.setenv("XPCONV_NUM_THREADS", "1")
    try:
        assert _parallel.share_cores(1, 0) == (1, 1)
    finally:
        _parallel.reset()  # gives the BLAS its threads back
