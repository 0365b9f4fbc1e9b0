"""Throughput of the kernels on the standard shapes, side by side with the alternatives.

Used by ``xpconv bench`` and by the pytest-benchmark suite in ``benchmarks/``.  Every
figure is a median over repeats; GFLOP/s count the multiply-adds of the ideal direct
convolution (:attr:`ConvGeometry.flops`; the backward is two passes, input and weight
gradients; a train step is three).  On CUDA every timed call ends with a device synchronize.

The ceiling is a large square matmul, measured several times through a run (before each
shape), and reported as the median of those measurements with their spread, so that one
slow moment of a shared machine does not skew every row.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .._backend import array_namespace, namespace_for, parse_device, to_device, to_numpy
from .._geometry import ConvGeometry, conv_geometry
from .._parallel import workers_for
from .._types import Algorithm, Array, Device
from ..bias import bias_add, bias_backward
from ..conv import choose_algorithm, conv2d, conv2d_backward
from ..dense import dense, dense_backward
from .book import book_conv2d, book_conv2d_weight_grad
from .check import TOLERANCE, conv_errors


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
    def kwargs(self) -> dict:
        return dict(stride=self.stride, padding=self.padding, groups=self.groups)

    def geometry(self, n: int | None = None) -> ConvGeometry:
        """The convolution's sizes, for a batch of ``n`` (default: the shape's own)."""
        x_shape = (self.n if n is None else n, self.c, self.h, self.w)
        return conv_geometry(x_shape, (self.o, self.c // self.groups, self.k, self.k), None, **self.kwargs)

    def flops(self) -> float:
        """Multiply-adds ×2 of one pass (forward, input gradient or weight gradient)."""
        return self.geometry().flops

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
ALL_SHAPES = (*CONV_SHAPES, *DENSE_SHAPES, "bias")
QUICK_SHAPES = ("mnist", "cifar", "resnet", "dense-784", "bias")
CONV_OPS = ("conv2d-forward", "conv2d-backward", "conv2d-train-step")
PASSES = {"conv2d-forward": 1, "conv2d-backward": 2, "conv2d-train-step": 3}
# Seconds one timed row takes here (2 cores), beyond --min-seconds per library timed: the
# warm-up calls and the pauses between rounds.  Used only to announce a run's duration.
_ROW_OVERHEAD_S = {"conv": 3.0, "dense-784": 1.5, "dense-4096": 20.0, "bias": 0.5}


def parse_shapes(text: str | None, full: bool = False) -> list[str]:
    """``--shapes`` as a list of names (``None``: the quick set, or every shape with ``full``).

    Empty entries (``"mnist,"``) are ignored; no name at all, or an unknown name, is a ValueError.
    """
    if text is None:
        return list(ALL_SHAPES if full else QUICK_SHAPES)
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise ValueError(f"--shapes names no shape (got {text!r}); choose from {','.join(ALL_SHAPES)}")
    unknown = [s for s in names if s not in ALL_SHAPES]
    if unknown:
        raise ValueError(f"unknown shapes {unknown}; choose from {','.join(ALL_SHAPES)}")
    return list(dict.fromkeys(names))


def expected_seconds(names: Iterable[str], min_seconds: float, with_torch: bool, book: str) -> float:
    """A rough duration of :func:`run` on 2 cores, announced before it starts."""
    total = 2.0  # imports and the first ceiling
    for name in names:
        if name in CONV_SHAPES:
            # side by side with PyTorch: 3 rounds each with pauses and warm-ups; alone: one timing
            per_row = (_ROW_OVERHEAD_S["conv"] if with_torch else 0.7) + min_seconds * (2 if with_torch else 1)
            total += 3 * per_row + 1.5  # + the correctness check and the ceiling
            total += 3.0 if book == "all" or (book == "smallest" and name == "mnist") else 0.0
        else:
            total += _ROW_OVERHEAD_S[name] + 2 * min_seconds
    return total


def on_device(device: Device) -> contextlib.AbstractContextManager[Any]:
    """A context in which ``device`` is current (CuPy launches kernels on the current device)."""
    kind, index = parse_device(device)
    if kind == "cpu":
        return contextlib.nullcontext()
    return namespace_for(device).cuda.Device(index)


def synchronizer(device: Device) -> Callable[[], None]:
    """A function that waits for the device to finish (a no-op on the CPU)."""
    kind, index = parse_device(device)
    if kind == "cpu":
        return lambda: None
    return namespace_for(device).cuda.Device(index).synchronize


def median_time(
    fn: Callable[[], object],
    sync: Callable[[], None] = lambda: None,
    *,
    min_repeats: int = 5,
    min_seconds: float = 0.5,
    max_repeats: int = 200,
    warmup: int = 1,
) -> float:
    """Median wall time of ``fn()`` in seconds, after ``warmup`` untimed calls.

    A short pause first lets the BLAS/OpenMP worker threads of the previous measurement
    (NumPy's OpenBLAS or PyTorch's OpenMP spin for a while) go idle, so that two libraries
    timed side by side do not steal each other's cores.
    """
    time.sleep(0.2)
    for _ in range(warmup):
        fn()
        sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeats or (time.perf_counter() - start < min_seconds and len(times) < max_repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def side_by_side(
    *fns: Callable[[], object],
    sync: Callable[[], None] = lambda: None,
    rounds: int = 3,
    min_seconds: float = 0.5,
    min_repeats: int = 5,
    log: Callable[[str], None] | None = None,
) -> list[float]:
    """Median times of ``fns`` measured in alternating rounds, so that a slow spell of this
    shared machine hits them all; each is the median of its per-round medians.  ``log``, when
    given, hears of every round that took more than 2 s (so that a long row shows progress)."""
    times: list[list[float]] = [[] for _ in fns]
    for k in range(rounds):
        start = time.perf_counter()
        for fn, bucket in zip(fns, times, strict=True):
            bucket.append(median_time(fn, sync, min_seconds=min_seconds / rounds, min_repeats=min_repeats))
        if log is not None and time.perf_counter() - start > 2.0:
            log(f"round {k + 1} of {rounds} done ({time.perf_counter() - start:.0f} s)")
    return [statistics.median(t) for t in times]


def matmul_gflops(device: Device = "cpu", dtype: str = "float32", size: int = 2048) -> float:
    """GFLOP/s of one large square matmul: the machine's practical ceiling."""
    xp = namespace_for(device)
    a = to_device(np.random.default_rng(0).standard_normal((size, size)).astype(dtype), device)
    with on_device(device):
        return 2.0 * size**3 / median_time(lambda: xp.matmul(a, a), synchronizer(device)) / 1e9


@dataclass
class Ceiling:
    """The matmul ceiling, measured several times through a run."""

    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    def describe(self, dtype: str) -> str:
        lo, hi = min(self.samples), max(self.samples)
        return (
            f"ceiling: a 2048x2048 {dtype} matmul runs at {self.median:.0f} GFLOP/s on this machine "
            f"(median of {len(self.samples)} measurements through the run, {lo:.0f}-{hi:.0f})"
        )


# --- inputs and the callables each benchmark times ------------------------------------------


def conv_inputs(
    shape: ConvShape, device: Device = "cpu", dtype: str = "float32", seed: int = 0, n: int | None = None
) -> list[Array]:
    """Random ``x, weight, bias, grad_output`` on ``device`` (standard normal, never zeros)."""
    rng = np.random.default_rng(seed)
    g = shape.geometry(n)
    host = [
        rng.standard_normal((g.n, g.c, g.h, g.w)),
        rng.standard_normal(g.weight_shape) / math.sqrt(g.c // g.groups * g.kh * g.kw),
        rng.standard_normal(g.o),
        rng.standard_normal(g.output_shape),
    ]
    return [to_device(a.astype(dtype), device) for a in host]


def conv_op(
    op: str, shape: ConvShape, x: Array, w: Array, b: Array, go: Array, algorithm: Algorithm = "auto"
) -> Callable[[], object]:
    """The xpconv call that benchmark ``op`` times."""
    kw = {**shape.kwargs, "algorithm": algorithm}
    if op == "conv2d-forward":
        return lambda: conv2d(x, w, b, **kw)
    if op == "conv2d-backward":
        return lambda: conv2d_backward(go, x, w, **kw)
    return lambda: (conv2d(x, w, b, **kw), conv2d_backward(go, x, w, **kw))


def book_op(
    op: str, shape: ConvShape, x: np.ndarray, w: np.ndarray, b: np.ndarray, go: np.ndarray
) -> tuple[Callable[[], object], int]:
    """The book's approach (:mod:`xpconv.tools.book`, a Python loop over output positions): the
    forward, and for the backward rows the weight gradient (all its ``_param_grad`` does;
    it has no correct input gradient).  Returns ``(callable, passes it computes)``."""
    kw = shape.kwargs
    if op == "conv2d-forward":
        return (lambda: book_conv2d(x, w, **kw)), 1
    if op == "conv2d-backward":
        return (lambda: book_conv2d_weight_grad(go, x, w, **kw)), 1
    return (lambda: (book_conv2d(x, w, **kw), book_conv2d_weight_grad(go, x, w, **kw))), 2


def torch_available() -> bool:
    try:
        importlib.import_module("torch")
    except ImportError:
        return False
    return True


def torch_op(
    op: str, shape: ConvShape, x: Array, w: Array, b: Array, go: Array, device: Device = "cpu"
) -> Callable[[], object] | None:
    """PyTorch's conv2d (autograd's own backward kernel; cuDNN on CUDA) on copies of the same
    inputs on the same device, or ``None`` without torch."""
    if not torch_available():
        return None
    import torch  # pyright: ignore[reportMissingImports]  (an optional extra)

    kind, index = parse_device(device)
    where = "cpu" if kind == "cpu" else f"cuda:{index}"
    tx, tw, tb, tgo = (torch.from_numpy(to_numpy(a)).to(where) for a in (x, w, b, go))
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


def set_torch_tf32(enabled: bool) -> None:
    """Let PyTorch's cuDNN convolutions and matmuls use TF32 tensor cores (Ampere and newer), or not."""
    import torch  # pyright: ignore[reportMissingImports]  (an optional extra)

    torch.backends.cudnn.allow_tf32 = enabled
    torch.backends.cuda.matmul.allow_tf32 = enabled


def dense_inputs(
    n: int, fin: int, fout: int, device: Device = "cpu", dtype: str = "float32", seed: int = 0
) -> list[Array]:
    rng = np.random.default_rng(seed)
    host = [
        rng.standard_normal((n, fin)),
        rng.standard_normal((fout, fin)) / math.sqrt(fin),
        rng.standard_normal(fout),
        rng.standard_normal((n, fout)),
    ]
    return [to_device(a.astype(dtype), device) for a in host]


def dense_step(x: Array, w: Array, b: Array, go: Array) -> Callable[[], object]:
    return lambda: (dense(x, w, b), dense_backward(go, x, w))


def bare_matmuls(x: Array, w: Array, go: Array) -> Callable[[], object]:
    """The three products a dense forward + backward needs, and nothing else."""
    xp = array_namespace(x, w, go)
    return lambda: (xp.matmul(x, w.T), xp.matmul(go, w), xp.matmul(go.T, x))


def bias_step(x: Array, b: Array) -> Callable[[], object]:
    return lambda: (bias_add(x, b), bias_backward(x))


# --- the whole run ------------------------------------------------------------------------


@dataclass
class Result:
    op: str
    shape: str
    median_ms: float
    gflops: float
    torch_gflops: float | None = None
    book_gflops: float | None = None
    error: float | None = None
    algorithm: str = ""

    @property
    def torch_ratio(self) -> float | None:
        """xpconv's throughput over PyTorch's (PyTorch time / xpconv time; > 1: xpconv faster)."""
        return self.gflops / self.torch_gflops if self.torch_gflops else None

    @property
    def book_speedup(self) -> float | None:
        return self.gflops / self.book_gflops if self.book_gflops else None


@dataclass
class BenchRun:
    results: list[Result]
    ceiling: Ceiling
    checks: list[str]


def _check_conv(shape, device, dtype) -> float:
    """Worst relative error of forward and all gradients on 2 samples vs the float64 reference."""
    x, w, b, go = conv_inputs(shape, device, dtype, seed=1, n=2)
    return max(conv_errors(x, w, b, go, **shape.kwargs).values())


def run(
    device: Device = "cpu",
    dtype: str = "float32",
    shapes: Sequence[str] | None = None,
    *,
    book: str = "smallest",
    torch: bool = True,
    min_seconds: float = 0.5,
    log: Callable[[str], None] | None = None,
) -> BenchRun:
    """Benchmark every op on ``shapes`` (names from :data:`ALL_SHAPES`; default the quick set).

    ``book``: ``"all"`` times the book's approach on every conv shape, ``"smallest"`` only on
    ``mnist``, ``"none"`` never.  Each conv shape is first checked against the float64
    reference; a wrong kernel stops the run with ``RuntimeError``.
    """
    with on_device(device):
        return _run(device, dtype, shapes, book=book, torch=torch, min_seconds=min_seconds, log=log)


def _run(device, dtype, shapes, *, book, torch, min_seconds, log) -> BenchRun:
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    names = list(shapes or QUICK_SHAPES)
    parse_shapes(",".join(names))  # unknown names: ValueError before anything is timed
    sync = synchronizer(device)
    conv_names = [s for s in names if s in CONV_SHAPES]
    other_names = [s for s in names if s not in CONV_SHAPES]
    total = 3 * len(conv_names) + len(other_names)
    with_torch = torch and torch_available()
    ceiling = Ceiling()
    ceiling.samples.append(matmul_gflops(device, dtype))
    log(f"ceiling measured: {ceiling.samples[-1]:.0f} GFLOP/s")
    run_ = BenchRun([], ceiling, [])
    step = 0
    for name in conv_names:
        shape = CONV_SHAPES[name]
        log(f"checking {name} against the float64 reference ...")
        error = _check_conv(shape, device, dtype)
        if not error <= TOLERANCE[dtype]:
            raise RuntimeError(f"{name}: xpconv disagrees with the float64 reference (relative error {error:.2e})")
        run_.checks.append(f"{name}: worst relative error {error:.1e} (tolerance {TOLERANCE[dtype]:.0e}) ok")
        if step:
            ceiling.samples.append(matmul_gflops(device, dtype))
        inputs = conv_inputs(shape, device, dtype)
        host_inputs = [to_numpy(a) for a in inputs]
        algorithm = choose_algorithm("auto", shape.geometry())
        flops1 = shape.flops()
        for op in CONV_OPS:
            step += 1
            log(f"[{step}/{total}] {op} {name} ({shape.describe()}, {dtype}, {device})")
            flops = PASSES[op] * flops1
            fn = conv_op(op, shape, *inputs)
            torch_fn = torch_op(op, shape, *inputs) if with_torch else None
            if torch_fn is not None:
                seconds, torch_seconds = side_by_side(fn, torch_fn, sync=sync, min_seconds=min_seconds)
            else:
                seconds, torch_seconds = median_time(fn, sync, min_seconds=min_seconds), None
            row = Result(op, name, seconds * 1e3, flops / seconds / 1e9, error=error, algorithm=algorithm)
            if torch_seconds:
                row.torch_gflops = flops / torch_seconds / 1e9
            if book == "all" or (book == "smallest" and name == "mnist"):
                log(f"[{step}/{total}] ... and the book's approach")
                book_fn, book_passes = book_op(op, shape, *host_inputs)
                book_seconds = median_time(book_fn, min_repeats=1, min_seconds=0, warmup=0)
                row.book_gflops = book_passes * flops1 / book_seconds / 1e9
            run_.results.append(row)
    for name in other_names:
        step += 1
        if name == "bias":
            log(f"[{step}/{total}] bias {BIAS_SHAPE} ({dtype}, {device})")
            rng = np.random.default_rng(0)
            x = to_device(rng.standard_normal(BIAS_SHAPE).astype(dtype), device)
            b = to_device(rng.standard_normal(BIAS_SHAPE[1]).astype(dtype), device)
            seconds = median_time(bias_step(x, b), sync, min_seconds=min_seconds)
            shape_name = "x".join(map(str, BIAS_SHAPE))
            run_.results.append(Result("bias", shape_name, seconds * 1e3, 2.0 * x.size / seconds / 1e9))
            continue
        n, fin, fout = DENSE_SHAPES[name]
        log(f"[{step}/{total}] dense {name} ({n}x{fin}->{fout}, {dtype}, {device})")
        x, w, b, go = dense_inputs(n, fin, fout, device, dtype)
        big = n * fin * fout > 10**9  # dense-4096: each call takes most of a second on 2 cores
        seconds, bare = side_by_side(
            dense_step(x, w, b, go),
            bare_matmuls(x, w, go),
            sync=sync,
            min_seconds=min_seconds,
            min_repeats=2 if big else 5,
            log=functools.partial(_log_row, log, f"[{step}/{total}]"),
        )
        flops = 3 * 2.0 * n * fin * fout
        run_.results.append(Result("dense", name, seconds * 1e3, flops / seconds / 1e9))
        run_.results.append(Result("3 bare matmuls", name, bare * 1e3, flops / bare / 1e9))
    if len(ceiling.samples) < 3:
        for _ in range(3 - len(ceiling.samples)):
            ceiling.samples.append(matmul_gflops(device, dtype))
    return run_


def _log_row(log: Callable[[str], None], prefix: str, msg: str) -> None:
    log(f"{prefix}   {msg}")


def format_table(results: list[Result], ceiling: float) -> str:
    header = (
        f"{'op':<18} {'shape':<11} {'algorithm':<9} {'median ms':>10} {'GFLOP/s':>8} {'% ceiling':>9} "
        f"{'torch GF/s':>10} {'vs torch':>9} {'x book':>7}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        torch_gf = f"{r.torch_gflops:10.1f}" if r.torch_gflops else f"{'':>10}"
        torch = f"{r.torch_ratio:8.2f}x" if r.torch_ratio else f"{'':>9}"
        book = f"{r.book_speedup:7.0f}" if r.book_speedup else f"{'':>7}"
        lines.append(
            f"{r.op:<18} {r.shape:<11} {r.algorithm:<9} {r.median_ms:10.2f} {r.gflops:8.1f} {100 * r.gflops / ceiling:8.0f}% "
            f"{torch_gf} {torch} {book}"
        )
    ratios = [r.torch_ratio for r in results if r.op == "conv2d-train-step" and r.torch_ratio]
    if ratios:
        geo = math.exp(sum(map(math.log, ratios)) / len(ratios))
        lines.append(f"geometric mean vs torch, conv2d-train-step: {geo:.2f}x  (>1: xpconv faster)")
    return "\n".join(lines)


def cpu_threads() -> int:
    """Worker threads xpconv's CPU kernels use here."""
    return workers_for(np)


def as_json(run_: BenchRun, device: Device, dtype: str) -> dict[str, Any]:
    import platform

    rows = [{**asdict(r), "torch_ratio": r.torch_ratio, "book_speedup": r.book_speedup} for r in run_.results]
    return {
        "device": device,
        "dtype": dtype,
        "machine": platform.processor() or platform.machine(),
        "cpu_worker_threads": cpu_threads(),
        "matmul_ceiling_gflops": run_.ceiling.median,
        "matmul_ceiling_samples": run_.ceiling.samples,
        "numpy": np.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "checks": run_.checks,
        "results": rows,
    }
