"""Shared parameters of the pytest-benchmark suite.

Real runs: ``pytest benchmarks/ --benchmark-only`` (add ``--benchmark-autosave`` /
``--benchmark-compare``).  CI runs these files once each with ``--benchmark-disable`` as
smoke tests.  ``extra_info["gflops"]`` holds each row's throughput.
"""

import pytest

import xpconv
from xpconv.tools.bench import synchronizer

CUDA = pytest.mark.skipif(not xpconv.cuda_available(), reason="needs CuPy and a visible CUDA device")
DEVICE_DTYPES = [
    pytest.param("cpu", "float32", id="cpu-float32"),
    pytest.param("cpu", "float64", id="cpu-float64"),
    pytest.param("cuda", "float32", id="cuda-float32", marks=CUDA),
]


def run(benchmark, fn, device, flops, *, once=False):
    """Time ``fn`` (ending with a device synchronize) and record its GFLOP/s."""
    sync = synchronizer(device)

    def call():
        out = fn()
        sync()
        return out

    if once:  # slow baselines: one round is enough to show their scale
        result = benchmark.pedantic(call, rounds=1, iterations=1, warmup_rounds=0)
    else:
        result = benchmark(call)
    benchmark.extra_info["flops"] = flops
    if benchmark.stats is not None:
        benchmark.extra_info["gflops"] = flops / benchmark.stats.stats.median / 1e9
    return result
