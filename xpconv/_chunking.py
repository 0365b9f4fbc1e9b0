"""How a batch is cut into chunks: each chunk's scratch memory fits the workspace limit.

The limit (``workspace_bytes``) is shared among the worker threads.  Its default depends on the
device:

* CPU: 64 MiB, and a chunk is also kept near ``CACHE_CHUNK_BYTES`` so that its scratch is still
  in cache when its GEMMs read it (the measurements are below); the im2col forward, whose GEMMs
  are one sample's each, asks for less (:data:`xpconv.conv.FORWARD_CACHE_BYTES`).
* CUDA: a quarter of the device's free memory, between 64 MiB and 16 GiB.  On a GPU every chunk
  launches the same kernels again, at 5–10 µs of host time each, so an ordinary batch should be
  one chunk: the ``resnet`` bench shape (32×64×56×56 → 64, 3×3) needs about 0.5 GiB of scratch for
  its backward at batch 32 and 8 GiB at 512, against the 141 GB of an H200 or 80 GB of an H100.
  The cap keeps one call from taking the memory other work on the GPU may need.

An explicit ``workspace_bytes`` bounds it on both.  Every chunk holds at least one sample.

Chunks are cut by a rule of the shapes and the workspace alone, never of the worker count, so that
results (a weight gradient summed chunk by chunk) are the same bits whatever ``XPCONV_NUM_THREADS``
says: each chunk within the cache target and its share of the workspace among the machine's cores
(on the CPU) or the workspace (on CUDA), as few chunks as that allows, of equal sizes (±1); on the
CPU a call large enough to share (:data:`PARALLEL_MIN_BYTES`, :data:`PARALLEL_MIN_FLOPS`) at least
one chunk per core, which :func:`xpconv._parallel.map_chunks` hands to the worker threads, and a
smaller one runs in the calling thread.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from ._checks import as_positive_int
from ._parallel import Chunks, available_cores
from ._types import Array

DEFAULT_WORKSPACE_BYTES = 64 * 2**20  # scratch memory per call, beyond inputs, outputs and gradients
# Measured on 2 cores (2 workers), train step forward + backward: cifar 57 ms at 8 MiB against
# 70 ms at 4 MiB and 74 ms at 32 MiB; resnet 139 / 136 / 164 ms (and 340 ms with one 64 MiB
# chunk, single-threaded, at the start).
CACHE_CHUNK_BYTES = 8 * 2**20
# Handing chunks to worker threads costs their wake-up and the moving of data between the cores'
# caches; measured on 2 cores, a LeNet-5 training step (batch 60, every call's scratch under 10
# MiB) took 7.2 ms in the calling thread against 9.0 ms with its chunks on 2 workers.
# A 1x1 convolution copies no patches but is all arithmetic: the bench's pointwise layer (0.8
# GFLOP, 13 MiB of input) took 10.4 ms forward in one thread and 6.4 ms on two.
# The arithmetic threshold: the bench's mnist layer (64x1x28x28 -> 16, 5x5: 40 MFLOP forward, 80
# backward, both gradients counted) gained on 2 workers, 0.74 against 0.94 ms forward and 1.8-2.0
# against 2.7-3.0 backward; LeNet-5's convolutions (14 and 29 MFLOP forward) were no faster on them
# within a step, and its second layer's backward (58 MFLOP, the folded layout) slower, which
# conv.py's _chunks keeps in the calling thread.
PARALLEL_MIN_BYTES = 16 * 2**20
PARALLEL_MIN_FLOPS = 3e7
DEVICE_WORKSPACE_SHARE = 4  # on CUDA: a quarter of the free memory ...
MAX_DEVICE_WORKSPACE_BYTES = 16 * 2**30  # ... at most 16 GiB


def workspace_limit(workspace_bytes: int | None, x: Array) -> int:
    """The checked ``workspace_bytes`` argument, or the default for ``x``'s device (above)."""
    if workspace_bytes is not None:
        return as_positive_int(workspace_bytes, "workspace_bytes")
    if isinstance(x, np.ndarray):
        return DEFAULT_WORKSPACE_BYTES
    free, _ = x.device.mem_info  # the driver's count; no synchronisation
    return min(max(free // DEVICE_WORKSPACE_SHARE, DEFAULT_WORKSPACE_BYTES), MAX_DEVICE_WORKSPACE_BYTES)


def batch_chunks(
    n: int,
    per_sample_bytes: int,
    limit: int,
    xp: ModuleType,
    cache_bytes: int = CACHE_CHUNK_BYTES,
    flops: float = 0.0,
) -> Chunks:
    """Slices of a batch of ``n`` whose scratch (``per_sample_bytes`` a sample) fits ``limit``
    shared among the cores (and, on the CPU, about ``cache_bytes``), of equal sizes.  On the CPU a
    call whose scratch reaches :data:`PARALLEL_MIN_BYTES`, or whose arithmetic (``flops``, the
    whole call's) reaches :data:`PARALLEL_MIN_FLOPS`, is cut into at least one chunk per core, to
    be shared among the worker threads; a smaller one runs in the calling thread.  The count
    depends on the shapes, the workspace and the machine's cores, never on the worker threads:
    results are the same bits with any ``XPCONV_NUM_THREADS``."""
    cores = 1 if xp is not np else available_cores()
    budget = limit if xp is not np else min(cache_bytes, limit // cores)
    size = max(1, budget // max(per_sample_bytes, 1))
    count = -(-n // size)
    parallel = xp is np and (n * per_sample_bytes >= PARALLEL_MIN_BYTES or flops >= PARALLEL_MIN_FLOPS)
    if parallel:
        count = max(count, min(n, cores))
    if count == 0:
        return Chunks([], parallel)
    q, r = divmod(n, count)  # the larger chunks first: a thread's scratch buffers never grow midway
    bounds = [k * q + min(k, r) for k in range(count + 1)]
    return Chunks([slice(start, stop) for start, stop in zip(bounds, bounds[1:], strict=False)], parallel)
