"""Peak scratch memory of conv2d forward + backward stays under the workspace limit,
whatever the batch size (tracemalloc sees NumPy's allocations)."""

import tracemalloc

import numpy as np
import pytest

import xpconv
from xpconv._workspace import release
from xpconv.conv import DEFAULT_WORKSPACE_BYTES

MiB = 2**20


def peak_extra_bytes(n, c=16, hw=32, o=16, k=3, workspace_bytes=None, **kw):
    """Peak traced bytes of one forward + backward, minus what it returns (outputs and
    gradients); inputs are allocated before tracing starts.  Cached scratch buffers are
    dropped first, so that none is reused from an earlier call."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, hw, hw), dtype=np.float32)
    w = rng.standard_normal((o, c // kw.get("groups", 1), k, k), dtype=np.float32)
    b = rng.standard_normal(o, dtype=np.float32)
    go = rng.standard_normal((n, o, hw, hw), dtype=np.float32)
    result = {}

    def work():
        release()
        tracemalloc.start()
        y = xpconv.conv2d(x, w, b, padding=1, workspace_bytes=workspace_bytes, **kw)
        grads = xpconv.conv2d_backward(go, x, w, padding=1, workspace_bytes=workspace_bytes, **kw)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        result["extra"] = peak - y.nbytes - sum(g.nbytes for g in grads)

    work()
    return result["extra"]


# o=16: stride-1 flipped-kernel input gradient; o=32: col2im; Winograd's tiles and transforms
@pytest.mark.parametrize(("o", "algorithm"), [(16, "im2col"), (32, "im2col"), (16, "winograd")])
def test_peak_memory_under_default_limit_and_flat_in_batch(o, algorithm):
    n = 160
    unchunked_patches = n * 16 * 9 * 32 * 32 * 4
    assert unchunked_patches > DEFAULT_WORKSPACE_BYTES  # 94 MiB of patches without chunking
    small = peak_extra_bytes(n, o=o, algorithm=algorithm)
    large = peak_extra_bytes(2 * n, o=o, algorithm=algorithm)  # chunks of the same size (cut equal, ±1)
    assert small < DEFAULT_WORKSPACE_BYTES
    assert large < 1.1 * small + MiB  # does not grow with the batch


@pytest.mark.parametrize("algorithm", ["im2col", "winograd"])
def test_user_workspace_limit_is_respected(algorithm):
    per_sample_patches = 16 * 9 * 32 * 32 * 4  # 0.56 MiB (Winograd's tiles and transforms: 0.85 MiB)
    extra = peak_extra_bytes(64, workspace_bytes=2 * MiB, algorithm=algorithm)
    assert extra < 2 * MiB + 2 * per_sample_patches
    assert peak_extra_bytes(64, workspace_bytes=1, algorithm=algorithm) < 6 * per_sample_patches  # one sample at a time


def test_scratch_of_finished_threads_is_freed(monkeypatch):
    import gc
    import threading

    from xpconv import _workspace

    monkeypatch.setenv("XPCONV_NUM_THREADS", "1")  # the work runs in the calling thread
    before = _workspace.live_threads()
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8), dtype=np.float32)
    threads = [
        threading.Thread(target=xpconv.conv2d, args=(x, x[:2, :, :3, :3]), kwargs={"padding": 1}) for _ in range(5)
    ]
    for t in threads:
        t.start()
        t.join()
    gc.collect()
    assert _workspace.live_threads() == before


def test_cpu_chunk_targets(monkeypatch):
    """The im2col forward (a GEMM per sample) cuts its chunks near FORWARD_CACHE_BYTES, the
    backward and the folded (grouped) forward near CACHE_CHUNK_BYTES."""
    from xpconv import conv
    from xpconv._chunking import CACHE_CHUNK_BYTES

    monkeypatch.setenv("XPCONV_NUM_THREADS", "1")
    seen = []
    real = conv.map_chunks

    def recording(xp, fn, chunks, consume=None):
        seen.append([c.stop - c.start for c in chunks])
        return real(xp, fn, chunks, consume)

    monkeypatch.setattr(conv, "map_chunks", recording)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 128, 28, 28), dtype=np.float32)  # the bench's stride2-deep, 8 images
    w = rng.standard_normal((256, 128, 3, 3), dtype=np.float32)
    y = xpconv.conv2d(x, w, stride=2, padding=1, algorithm="im2col")
    xpconv.conv2d_backward(rng.standard_normal(y.shape, dtype=np.float32), x, w, stride=2, padding=1)
    xpconv.conv2d(x, w[:, :64], stride=2, padding=1, groups=2)
    forward = (128 * 30 * 30 + 128 * 9 * 14 * 14) * 4  # padded copy + patches a sample: 1.36 MiB
    assert 2 * forward <= conv.FORWARD_CACHE_BYTES < 3 * forward and 4 * forward < CACHE_CHUNK_BYTES
    assert seen[0] == [2] * 4  # forward: two images a chunk
    backward = 2 * forward + 256 * 128 * 9 * 4  # and the gradients, and one weight-gradient term: 3.7 MiB
    assert CACHE_CHUNK_BYTES // backward == 2 and seen[1] == [2] * 4
    assert min(seen[2]) > 1  # grouped: folded GEMMs, larger chunks
