"""The CPU worker threads: same results as one thread, deterministic, fork-safe, optional."""

import multiprocessing
import sys
import warnings

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


@pytest.mark.parametrize(
    "call",
    [
        lambda x, w, go: xpconv.conv2d_backward(go, x, w, padding=1, algorithm="im2col"),  # one chunk, any workers
        lambda x, w, go: xpconv.conv2d_backward(go, x, w, padding=1, algorithm="im2col", workspace_bytes=3 * 2**20),
        lambda x, w, go: xpconv.conv2d_backward(go, x, w, padding=1, algorithm="winograd", workspace_bytes=3 * 2**20),
        lambda x, w, go: xpconv.conv2d_backward(go, x, w[:, :8], padding=1, groups=2, workspace_bytes=2**20),
        lambda x, w, go: xpconv.avg_pool2d_backward(go[:, :16, ::2, ::2], x, 2),
    ],
    ids=["im2col", "im2col-chunked", "winograd", "grouped", "avg_pool"],
)
def test_results_do_not_depend_on_the_worker_count(monkeypatch, call):
    """Chunks are cut by the shapes and the workspace alone, so every sum over chunks (the weight
    and bias gradients) is the same bits with one worker thread as with two."""
    pytest.importorskip("threadpoolctl")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 16, 20, 20), dtype=np.float32)
    w = rng.standard_normal((32, 16, 3, 3), dtype=np.float32)
    go = rng.standard_normal((6, 32, 20, 20), dtype=np.float32)
    results = []
    for workers in ("1", "2", "3"):
        monkeypatch.setenv("XPCONV_NUM_THREADS", workers)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # three workers on two cores warn about sharing them
            out = call(x, w, go)
        results.append([a for a in (out if isinstance(out, tuple) else (out,)) if a is not None])
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


def test_kernels_raise_no_floating_point_warnings():
    """A non-finite input gives non-finite outputs, as IEEE arithmetic says, without a
    RuntimeWarning from inside the kernels (in the calling thread or the workers): im2col gives ±inf
    at the outputs whose windows read the ∞ (PyTorch's result), Winograd NaN over the 4x4 output
    tiles whose input tiles hold it."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 32, 16, 16)).astype(np.float32)
    w = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    x[0, 0, 8, 8] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        im2col = xpconv.conv2d(x, w, padding=1, algorithm="im2col")
        winograd = xpconv.conv2d(x, w, padding=1, algorithm="winograd")
        xpconv.conv2d_backward(np.ones_like(winograd), x, w, padding=1, algorithm="winograd")
        xpconv.avg_pool2d(np.full((1, 1, 4, 4), 3e38, np.float32), 2)  # the sums overflow inside
    assert np.isinf(im2col[0, 0, 7:10, 7:10]).all() and np.isinf(im2col[0]).sum() == 9 * 32
    assert np.isnan(winograd[0, 0, 4:12, 4:12]).all() and np.isnan(winograd[0]).sum() == 64 * 32
    assert np.isfinite(im2col[1:]).all() and np.isfinite(winograd[1:]).all()


def test_small_calls_run_in_the_calling_thread(monkeypatch):
    """A call whose scratch and arithmetic are small (LeNet's layers) runs its chunks in the calling
    thread whatever the worker count; a large one is cut into a chunk per core, shared among them."""
    from xpconv import _parallel
    from xpconv._chunking import PARALLEL_MIN_BYTES, batch_chunks

    pytest.importorskip("threadpoolctl")
    monkeypatch.setenv("XPCONV_NUM_THREADS", "2")
    handed = []
    real_pool = _parallel._pool
    monkeypatch.setattr(_parallel, "_pool", lambda workers: handed.append(workers) or real_pool(workers))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 6, 14, 14), dtype=np.float32)
    w = rng.standard_normal((16, 6, 5, 5), dtype=np.float32)
    xpconv.conv2d_backward(rng.standard_normal((60, 16, 10, 10), dtype=np.float32), x, w)
    xpconv.max_pool2d(x, 2, return_indices=True)
    assert handed == []
    assert not batch_chunks(60, 1000, 2**30, np).parallel
    large = batch_chunks(60, PARALLEL_MIN_BYTES // 60 + 1, 2**30, np)
    assert large.parallel and len(large) >= min(60, _parallel.available_cores())
    assert batch_chunks(32, 0, 2**30, np, flops=1e9).parallel  # all arithmetic: a 1x1 convolution
    x = rng.standard_normal((32, 64, 56, 56), dtype=np.float32)
    xpconv.max_pool2d(x, 2)
    assert handed == [2] or _parallel.available_cores() == 1
