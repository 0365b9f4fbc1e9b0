"""Throughput of the kernels on the standard shapes, side by side with the alternatives.

Used by ``xpconv bench`` and by the pytest-benchmark suite in ``benchmarks/``.  Every
figure is a median over repeats; GFLOP/s count the multiply-adds of the ideal
convolution (``2·N·O·oh·ow·(C/groups)·kh·kw`` per pass; the backward is two passes,
input and weight gradients; a train step is three).  On CUDA every timed call ends
with a device synchronize.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from . import book
from ._backend import array_namespace, get_namespace, to_device, to_numpy
from ._parallel import workers_for
from .bias import bias_add, bias_backward
from .check import TOLERANCE, conv_errors
from .conv import conv2d, conv2d_backward
from .dense import dense, dense_backward


@dataclass(frozen=True)
class ConvShape:
    n: int
    c: int
    h: int
    w: int
    o: int
    k: int
    stride: int = 1
    padding: int = 0
    groups: int = 1

    @property
    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding, groups=self.groups)

    def out(self):
        size = lambda s: (s + 2 * self.padding - self.k) // self.stride + 1  # noqa: E731
        return size(self.h), size(self.w)

    def flops(self, n=None) -> float:
        """Multiply-adds ×2 of one pass (forward, input gradient or weight gradient)."""
        oh, ow = self.out()
        return 2.0 * (self.n if n is None else n) * self.o * oh * ow * (self.c // self.groups) * self.k * self.k

    def describe(self) -> str:
        g = f" g{self.groups}" if self.groups > 1 else ""
        return f"{self.n}x{self.c}x{self.h}x{self.w}->{self.o} {self.k}x{self.k} s{self.stride} p{self.padding}{g}"


CONV_SHAPES = {
    "mnist": ConvShape(64, 1, 28, 28, 16, 5, 1, 2),
    "cifar": ConvShape(64, 32, 32, 32, 64, 3, 1, 1),
    "resnet": ConvShape(32, 64, 56, 56, 64, 3, 1, 1),
    "stride2": ConvShape(32, 64, 56, 56, 128, 3, 2, 1),
    "depthwise": ConvShape(32, 32, 56, 56, 32, 3, 1, 1, 32),
    "pointwise": ConvShape(32, 128, 28, 28, 128, 1, 1, 0),
}
DENSE_SHAPES = {"dense-784": (256, 784, 512), "dense-4096": (1024, 4096, 4096)}
BIAS_SHAPE = (32, 64, 56, 56)
CONV_OPS = ("conv2d-forward", "conv2d-backward", "conv2d-train-step")
PASSES = {"conv2d-forward": 1, "conv2d-backward": 2, "conv2d-train-step": 3}


def synchronizer(device: str):
    """A function that waits for the device to finish (a no-op on the CPU)."""
    xp = get_namespace(device)
    if xp is np:
        return lambda: None
    return xp.cuda.Device().synchronize


def median_time(fn, sync=lambda: None, *, min_repeats=5, min_seconds=0.5, max_repeats=200, warmup=1) -> float:
    """Median wall time of ``fn()`` in seconds, after ``warmup`` untimed calls.

    A short pause first lets the BLAS/OpenMP worker threads of the previous measurement
    (NumPy's OpenBLAS or PyTorch's OpenMP spin for a while) go idle, so that two libraries
    timed side by side do not steal each other's cores.
    """
    time.sleep(0.2)
    for _ in range(warmup):
        fn()
        sync()
    times, start = [], time.perf_counter()
    while len(times) < min_repeats or (time.perf_counter() - start < min_seconds and len(times) < max_repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def side_by_side(fn_a, fn_b, sync=lambda: None, *, rounds=3, min_seconds=0.5):
    """Median times of ``fn_a`` and ``fn_b`` measured in alternating rounds, so that a slow
    spell of this shared machine hits both; each is the median of its per-round medians."""
    a, b = [], []
    for _ in range(rounds):
        a.append(median_time(fn_a, sync, min_seconds=min_seconds / rounds))
        b.append(median_time(fn_b, sync, min_seconds=min_seconds / rounds))
    return statistics.median(a), statistics.median(b)


def matmul_ceiling(device="cpu", dtype="float32", size=2048) -> float:
    """GFLOP/s of one large square matmul: the machine's practical ceiling."""
    xp = get_namespace(device)
    a = to_device(np.random.default_rng(0).standard_normal((size, size)).astype(dtype), device)
    return 2.0 * size**3 / median_time(lambda: xp.matmul(a, a), synchronizer(device)) / 1e9


# --- inputs and the callables each benchmark times ------------------------------------------


def conv_inputs(shape: ConvShape, device="cpu", dtype="float32", seed=0, n=None):
    """Random ``x, weight, bias, grad_output`` on ``device`` (standard normal, never zeros)."""
    rng = np.random.default_rng(seed)
    n = shape.n if n is None else n
    oh, ow = shape.out()
    host = [
        rng.standard_normal((n, shape.c, shape.h, shape.w)),
        rng.standard_normal((shape.o, shape.c // shape.groups, shape.k, shape.k)) / math.sqrt(shape.c // shape.groups * shape.k**2),
        rng.standard_normal(shape.o),
        rng.standard_normal((n, shape.o, oh, ow)),
    ]
    return [to_device(a.astype(dtype), device) for a in host]


def conv_op(op: str, shape: ConvShape, x, w, b, go):
    """The xpconv call that benchmark ``op`` times."""
    kw = shape.kwargs
    if op == "conv2d-forward":
        return lambda: conv2d(x, w, b, **kw)
    if op == "conv2d-backward":
        return lambda: conv2d_backward(go, x, w, **kw)
    return lambda: (conv2d(x, w, b, **kw), conv2d_backward(go, x, w, **kw))


def book_op(op: str, shape: ConvShape, x, w, b, go):
    """The book's approach (:mod:`xpconv.book`, a Python loop over output positions): the
    forward, and for the backward rows the weight gradient (all its ``_param_grad`` does;
    it has no correct input gradient).  Returns ``(callable, passes it computes)``."""
    kw = shape.kwargs
    if op == "conv2d-forward":
        return (lambda: book.conv2d(x, w, **kw)), 1
    if op == "conv2d-backward":
        return (lambda: book.conv2d_weight_grad(go, x, w, **kw)), 1
    return (lambda: (book.conv2d(x, w, **kw), book.conv2d_weight_grad(go, x, w, **kw))), 2


def torch_op(op: str, shape: ConvShape, x, w, b, go):
    """PyTorch's conv2d (autograd's own backward kernel), or ``None`` without torch."""
    try:
        import torch
    except ImportError:
        return None
    tx, tw, tb, tgo = (torch.from_numpy(to_numpy(a)) for a in (x, w, b, go))
    s, p, g = shape.stride, shape.padding, shape.groups

    def forward():
        with torch.no_grad():
            return torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p, groups=g)

    def backward():
        return torch.ops.aten.convolution_backward(
            tgo, tx, tw, [shape.o], [s, s], [p, p], [1, 1], False, [0, 0], g, [True, True, True]
        )

    def train_step():
        xg, wg, bg = (t.detach().requires_grad_() for t in (tx, tw, tb))
        torch.nn.functional.conv2d(xg, wg, bg, stride=s, padding=p, groups=g).backward(tgo)

    return {"conv2d-forward": forward, "conv2d-backward": backward, "conv2d-train-step": train_step}[op]


def dense_inputs(n, fin, fout, device="cpu", dtype="float32", seed=0):
    rng = np.random.default_rng(seed)
    host = [rng.standard_normal((n, fin)), rng.standard_normal((fout, fin)) / math.sqrt(fin),
            rng.standard_normal(fout), rng.standard_normal((n, fout))]
    return [to_device(a.astype(dtype), device) for a in host]


def dense_step(x, w, b, go):
    return lambda: (dense(x, w, b), dense_backward(go, x, w))


def bare_matmuls(x, w, go):
    """The three products a dense forward + backward needs, and nothing else."""
    xp = array_namespace(x, w, go)
    return lambda: (xp.matmul(x, w.T), xp.matmul(go, w), xp.matmul(go.T, x))


def bias_step(x, b):
    return lambda: (bias_add(x, b), bias_backward(x))


# --- the whole run ------------------------------------------------------------------------


@dataclass
class Result:
    op: str
    shape: str
    median_ms: float
    gflops: float
    book_speedup: float | None = None
    torch_ratio: float | None = None  # xpconv throughput / PyTorch throughput (> 1: xpconv faster)
    error: float | None = None


def _check_conv(shape, device, dtype) -> float:
    """Worst relative error of forward and all gradients on 2 samples vs the float64 reference."""
    x, w, b, go = conv_inputs(shape, device, dtype, seed=1, n=2)
    return max(conv_errors(x, w, b, go, **shape.kwargs).values())


def run(device="cpu", dtype="float32", shapes=None, *, book=True, torch=True, min_seconds=0.5, log=None):
    """Benchmark every op on ``shapes`` (names from ``CONV_SHAPES`` and ``DENSE_SHAPES``)."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    names = list(shapes or [*CONV_SHAPES, *DENSE_SHAPES])
    unknown = [s for s in names if s not in CONV_SHAPES and s not in DENSE_SHAPES]
    if unknown:
        raise ValueError(f"unknown shapes {unknown}; choose from {[*CONV_SHAPES, *DENSE_SHAPES]}")
    sync = synchronizer(device)
    timed = lambda fn: median_time(fn, sync, min_seconds=min_seconds)  # noqa: E731
    conv_names = [s for s in names if s in CONV_SHAPES]
    dense_names = [s for s in names if s in DENSE_SHAPES]
    total = 3 * len(conv_names) + len(dense_names) + 1
    results, step = [], 0
    with_torch = torch and device == "cpu"
    for name in conv_names:
        shape = CONV_SHAPES[name]
        error = _check_conv(shape, device, dtype)
        if not error <= TOLERANCE[dtype]:
            raise RuntimeError(f"{name}: xpconv disagrees with the float64 reference (relative error {error:.2e})")
        inputs = conv_inputs(shape, device, dtype)
        host_inputs = [to_numpy(a) for a in inputs]
        for op in CONV_OPS:
            step += 1
            log(f"[{step}/{total}] {op} {name} ({shape.describe()}, {dtype}, {device})")
            fn, torch_fn = conv_op(op, shape, *inputs), torch_op(op, shape, *inputs) if with_torch else None
            if torch_fn is None:
                seconds = timed(fn)
            else:
                seconds, torch_seconds = side_by_side(fn, torch_fn, sync, min_seconds=min_seconds)
            flops = PASSES[op] * shape.flops()
            row = Result(op, name, seconds * 1e3, flops / seconds / 1e9, error=error)
            if book:
                book_fn, book_passes = book_op(op, shape, *host_inputs)
                book_seconds = median_time(book_fn, min_repeats=1, min_seconds=0, warmup=0)
                row.book_speedup = (PASSES[op] / seconds) / (book_passes / book_seconds)  # ratio of GFLOP/s
            if torch_fn is not None:
                row.torch_ratio = torch_seconds / seconds
            results.append(row)
    for name in dense_names:
        step += 1
        n, fin, fout = DENSE_SHAPES[name]
        log(f"[{step}/{total}] dense {name} ({n}x{fin}->{fout}, {dtype}, {device})")
        x, w, b, go = dense_inputs(n, fin, fout, device, dtype)
        seconds, bare = side_by_side(dense_step(x, w, b, go), bare_matmuls(x, w, go), sync, min_seconds=min_seconds)
        results.append(Result("dense", name, seconds * 1e3, 3 * 2.0 * n * fin * fout / seconds / 1e9))
        results.append(Result("3 bare matmuls", name, bare * 1e3, 3 * 2.0 * n * fin * fout / bare / 1e9))
    step += 1
    log(f"[{step}/{total}] bias {BIAS_SHAPE}")
    rng = np.random.default_rng(0)
    x = to_device(rng.standard_normal(BIAS_SHAPE).astype(dtype), device)
    b = to_device(rng.standard_normal(BIAS_SHAPE[1]).astype(dtype), device)
    seconds = timed(bias_step(x, b))
    results.append(Result("bias", "x".join(map(str, BIAS_SHAPE)), seconds * 1e3, 2.0 * x.size / seconds / 1e9))
    return results


def format_table(results, ceiling: float) -> str:
    header = f"{'op':<18} {'shape':<10} {'median ms':>10} {'GFLOP/s':>8} {'% ceiling':>9} {'x book':>8} {'vs torch':>9}"
    lines = [header, "-" * len(header)]
    for r in results:
        book = f"{r.book_speedup:8.0f}" if r.book_speedup else f"{'':>8}"
        torch = f"{r.torch_ratio:8.2f}x" if r.torch_ratio else f"{'':>9}"
        lines.append(f"{r.op:<18} {r.shape:<10} {r.median_ms:10.2f} {r.gflops:8.1f} {100 * r.gflops / ceiling:8.0f}% {book} {torch}")
    ratios = [r.torch_ratio for r in results if r.op == "conv2d-train-step" and r.torch_ratio]
    if ratios:
        geo = math.exp(sum(map(math.log, ratios)) / len(ratios))
        lines.append(f"geometric mean vs torch, conv2d-train-step: {geo:.2f}x  (>1: xpconv faster)")
    return "\n".join(lines)


def cpu_threads() -> int:
    """Worker threads xpconv's CPU kernels use here."""
    return workers_for(np)


def as_json(results, ceiling, device, dtype) -> dict:
    import platform

    return {
        "device": device, "dtype": dtype, "machine": platform.processor() or platform.machine(),
        "cpu_worker_threads": cpu_threads(), "matmul_ceiling_gflops": ceiling, "numpy": np.__version__,
        "date": time.strftime("%Y-%m-%d"), "results": [asdict(r) for r in results],
    }
