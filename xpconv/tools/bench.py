"""Throughput of the kernels on the standard shapes, side by side with the alternatives.

Used by ``xpconv bench`` and by the pytest-benchmark suite in ``benchmarks/``.  GFLOP/s count
the multiply-adds of the ideal direct convolution (:attr:`ConvGeometry.flops`; the backward is
two passes, input and weight gradients; a train step is three).  On CUDA every timed call ends
with a device synchronize.

How a row is timed (:mod:`xpconv.tools.timing`): blocks of calls, the first of each block
dropped, alternated in rounds with the other contender of the row; PyTorch runs in a process of
its own (:mod:`xpconv.tools.rival`).  Every figure is the median of the per-round medians, and
comes with the lowest and highest of them (its spread); a ratio is the median of the per-round
ratios, with their range.

The ceiling is a large square matmul, measured several times through a run (before each
shape), and reported as the median of those measurements with their spread, so that one
slow moment of a shared machine does not skew every row.
"""

from __future__ import annotations

import contextlib
import functools
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .._backend import array_namespace, namespace_for, parse_device, to_device, to_numpy
from .._geometry import ConvGeometry, conv_geometry, conv_transpose_geometry, pool_geometry
from .._parallel import workers_for
from .._plan import conv_plan
from .._types import Algorithm, Array, Device
from ..bias import bias_add, bias_backward
from ..conv import CONVOLUTIONS
from ..conv_transpose import TRANSPOSED_CONVOLUTIONS
from ..dense import dense, dense_backward
from ..pool import POOLINGS
from .book import book_conv2d, book_conv2d_weight_grad
from .check import TOLERANCE, conv_errors, conv_transpose_errors, pool_errors
from .rival import Rival, torch_available
from .timing import ROUNDS, Ratio, Timing, local, median_time, side_by_side


@dataclass(frozen=True)
class ConvShape:
    """One bench shape of a patch-based kernel: ``kind`` is ``"conv2d"`` (weight ``(o, c/groups, k, k)``),
    ``"conv_transpose2d"`` (weight ``(c, o/groups, k, k)``), ``"max_pool2d"`` or ``"avg_pool2d"``
    (``o`` is ``c``; ``k``, ``stride`` and ``padding`` are the window's), or their 1-D or 3-D
    forms (``conv1d``, ``max_pool3d``, ...: ``size`` has one or three entries, the kernel is ``k``
    on every axis)."""

    n: int
    c: int
    size: tuple[int, ...]
    o: int
    k: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    kind: str = "conv2d"

    @property
    def dims(self) -> int:
        return len(self.size)

    @property
    def family(self) -> str:
        """``kind`` without its dimension: ``"conv"``, ``"conv_transpose"``, ``"max_pool"`` or ``"avg_pool"``."""
        return self.kind[:-2]

    @property
    def pooling(self) -> bool:
        return self.family in ("max_pool", "avg_pool")

    @property
    def kwargs(self) -> dict:
        """The kernel's keyword arguments."""
        if self.pooling:
            return dict(kernel_size=self.k, stride=self.stride, padding=self.padding)
        return dict(stride=self.stride, padding=self.padding, groups=self.groups)

    @property
    def ops(self) -> tuple[str, str, str]:
        """The rows of this shape: forward, backward and train step (forward + backward)."""
        return (f"{self.kind}-forward", f"{self.kind}-backward", f"{self.kind}-train-step")

    def passes(self, op: str) -> int:
        """Passes of :meth:`flops` an op computes: a convolution's backward has two (input and
        weight gradients), a pooling's one."""
        part = op.removeprefix(f"{self.kind}-")
        return {"forward": 1, "backward": 1 if self.pooling else 2, "train-step": 2 if self.pooling else 3}[part]

    def geometry(self, n: int | None = None) -> ConvGeometry:
        """The sizes, for a batch of ``n`` (default: the shape's own); for a transposed convolution,
        those of the convolution it is the adjoint of."""
        x_shape = (self.n if n is None else n, self.c, *self.size)
        kernel = (self.k,) * self.dims
        if self.pooling:
            return pool_geometry(x_shape, self.k, self.stride, self.padding, 1, False)
        if self.family == "conv_transpose":
            return conv_transpose_geometry(x_shape, (self.c, self.o // self.groups, *kernel), None, **self.kwargs)[0]
        return conv_geometry(x_shape, (self.o, self.c // self.groups, *kernel), None, **self.kwargs)

    def flops(self) -> float:
        """Multiply-adds ×2 of one pass (forward, input gradient or weight gradient); for a pooling,
        one operation (a comparison or an addition) per window element."""
        g = self.geometry()
        return g.n * g.c * g.pixels * g.taps if self.pooling else g.flops

    def describe(self) -> str:
        size = "x".join(map(str, (self.n, self.c, *self.size)))
        kernel = "x".join([str(self.k)] * self.dims)
        if self.pooling:
            return f"{size} {self.kind} {kernel} s{self.stride} p{self.padding}"
        g = f" g{self.groups}" if self.groups > 1 else ""
        t = " transposed" if self.family == "conv_transpose" else ""
        return f"{size}->{self.o}{t} {kernel} s{self.stride} p{self.padding}{g}"


CONV_SHAPES = {
    "mnist": ConvShape(64, 1, (28, 28), 16, 5, 1, 2),
    "cifar": ConvShape(64, 32, (32, 32), 64, 3, 1, 1),
    "resnet": ConvShape(32, 64, (56, 56), 64, 3, 1, 1),
    "stride2": ConvShape(32, 64, (56, 56), 128, 3, 2, 1),
    "depthwise": ConvShape(32, 32, (56, 56), 32, 3, 1, 1, 32),
    "pointwise": ConvShape(32, 128, (28, 28), 128, 1, 1, 0),
    "stride2-deep": ConvShape(16, 128, (28, 28), 256, 3, 2, 1),
    "maxpool": ConvShape(32, 64, (56, 56), 64, 2, 2, 0, kind="max_pool2d"),
    "avgpool": ConvShape(32, 64, (56, 56), 64, 3, 1, 1, kind="avg_pool2d"),
    "transposed": ConvShape(64, 128, (28, 28), 64, 4, 2, 1, kind="conv_transpose2d"),
    "conv1d": ConvShape(32, 64, (4096,), 64, 9, 1, 4, kind="conv1d"),
    "conv3d": ConvShape(8, 32, (16, 56, 56), 32, 3, 1, 1, kind="conv3d"),
    "maxpool3d": ConvShape(8, 32, (16, 56, 56), 32, 2, 2, 0, kind="max_pool3d"),
}
DENSE_SHAPES = {"dense-784": (256, 784, 512), "dense-4096": (1024, 4096, 4096)}
BIAS_SHAPE = (32, 64, 56, 56)
ALL_SHAPES = (*CONV_SHAPES, *DENSE_SHAPES, "bias")
QUICK_SHAPES = ("mnist", "cifar", "resnet", "dense-784", "bias")
CONV_OPS = CONV_SHAPES["mnist"].ops  # a convolution's rows
# For the announced duration only: GFLOP/s that the conv rows reach on this project's 2-core
# build machine, seconds of the fixed costs, and the book's seconds per row.  Checked against
# runs on 2026-12-03: quick set with PyTorch 45-46 s (estimate 52), --full 113 s (124).
_NOMINAL_GFLOPS = {"float16": 8.0, "float32": 110.0, "float64": 55.0}
_SHAPE_S = 1.5  # the correctness check and a ceiling measurement
_RIVAL_START_S = 3.0  # starting PyTorch's process
_BOOK_S = 1.0
_OTHER_ROW_S = {"dense-784": 3.0, "dense-4096": 15.0, "bias": 1.5}


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


def expected_seconds(
    names: Iterable[str], min_seconds: float, with_torch: bool, book: str, dtype: str = "float32"
) -> float:
    """About how long :func:`run` takes on 2 cores: the one estimate that the command, its
    ``--help`` and the README print.  Each conv row is timed in :data:`ROUNDS` rounds of one
    block per contender (a pause, a dropped call, then ``min_seconds / ROUNDS`` and at least 5
    calls), a call's length guessed from its FLOPs at a nominal rate."""
    names = list(names)
    contenders = 2 if with_torch else 1
    total = 2.0 + (_RIVAL_START_S if with_torch and any(s in CONV_SHAPES for s in names) else 0.0)
    for name in names:
        if name not in CONV_SHAPES:
            total += _OTHER_ROW_S[name] + 2 * min_seconds
            continue
        total += _SHAPE_S
        shape = CONV_SHAPES[name]
        for op in shape.ops:
            call = shape.passes(op) * shape.flops() / (_NOMINAL_GFLOPS[dtype] * 1e9)
            block = 0.2 + call + max(min_seconds / ROUNDS, 5 * call)
            total += ROUNDS * contenders * block
            total += (
                _BOOK_S
                if shape.kind == "conv2d" and (book == "all" or (book == "smallest" and name == "mnist"))
                else 0.0
            )
    return total


def describe_seconds(seconds: float) -> str:
    """``expected_seconds`` in words: "about 40 s", "about 3 minutes"."""
    return f"about {seconds:.0f} s" if seconds < 100 else f"about {seconds / 60:.0f} minutes"


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


def matmul_gflops(device: Device = "cpu", dtype: str = "float32", size: int = 2048) -> float:
    """GFLOP/s of one large square matmul: the machine's practical ceiling."""
    xp = namespace_for(device)
    a = to_device(np.random.default_rng(0).standard_normal((size, size)).astype(dtype), device)
    with on_device(device):
        return 2.0 * size**3 / median_time(lambda: xp.matmul(a, a), synchronizer(device)) / 1e9


@dataclass
class Ceiling:
    """The matmul ceiling in ``dtype``, measured several times through a run."""

    dtype: str = "float32"
    samples: list[float] = field(default_factory=list)

    def measure(self, device: Device) -> None:
        self.samples.append(matmul_gflops(device, self.dtype))

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    def describe(self, dtype: str) -> str:
        """One line; ``dtype`` is the run's, named when the ceiling is measured in another."""
        lo, hi = min(self.samples), max(self.samples)
        instead = "" if dtype == self.dtype else f" (instead of {dtype}, which NumPy multiplies without BLAS)"
        return (
            f"ceiling: a 2048x2048 {self.dtype} matmul{instead} runs at {self.median:.0f} GFLOP/s on this machine "
            f"(median of {len(self.samples)} measurements through the run, {lo:.0f}-{hi:.0f}); "
            f"a row within that spread of 100% is at the ceiling"
        )


# --- inputs and the callables each benchmark times ------------------------------------------


def conv_inputs(
    shape: ConvShape, device: Device = "cpu", dtype: str = "float32", seed: int = 0, n: int | None = None
) -> list[Array | None]:
    """Random ``x, weight, bias, grad_output`` on ``device`` (standard normal, never zeros); a
    pooling has no weight and bias (``None``)."""
    rng = np.random.default_rng(seed)
    g = shape.geometry(n)
    if shape.pooling:
        x, go = rng.standard_normal(g.input_shape), rng.standard_normal(g.output_shape)
        return [to_device(x.astype(dtype), device), None, None, to_device(go.astype(dtype), device)]
    if shape.family == "conv_transpose":  # g is the adjoint convolution's: x is its output
        host = [
            rng.standard_normal(g.output_shape),
            rng.standard_normal(g.weight_shape) / math.sqrt(g.o // g.groups * g.taps),
            rng.standard_normal(g.c),
            rng.standard_normal(g.input_shape),
        ]
    else:
        host = [
            rng.standard_normal(g.input_shape),
            rng.standard_normal(g.weight_shape) / math.sqrt(g.c // g.groups * g.taps),
            rng.standard_normal(g.o),
            rng.standard_normal(g.output_shape),
        ]
    return [to_device(a.astype(dtype), device) for a in host]


def conv_op(
    op: str, shape: ConvShape, x: Any, w: Any, b: Any, go: Any, algorithm: Algorithm = "auto"
) -> Callable[[], object]:
    """The xpconv call that benchmark ``op`` times (``op`` one of ``shape.ops``)."""
    forward, backward, step = _calls(shape, x, w, b, go, algorithm)
    part = op.removeprefix(f"{shape.kind}-")
    return {"forward": forward, "backward": backward, "train-step": step}[part]


def _calls(
    shape: ConvShape, x: Any, w: Any, b: Any, go: Any, algorithm: Algorithm
) -> tuple[Callable[[], object], Callable[[], object], Callable[[], object]]:
    """The forward, the backward and the train-step calls of ``shape``'s kernel on these inputs.

    A max pooling trains as ``MaxPool2D`` does and as PyTorch's autograd does: its forward keeps
    the indices of the maxima, and its backward scatters through them (the backward row reads
    indices computed once, as PyTorch's backward row reads its graph's)."""
    kw: dict[str, Any] = shape.kwargs
    if shape.family == "max_pool":
        pool, pool_backward = POOLINGS["max", shape.dims]
        _, indices = pool(x, **kw, return_indices=True)

        def step() -> object:
            _, found = pool(x, **kw, return_indices=True)
            return pool_backward(go, x, **kw, indices=found)

        return (lambda: pool(x, **kw)), (lambda: pool_backward(go, x, **kw, indices=indices)), step
    if shape.pooling:
        pool, pool_backward = POOLINGS["avg", shape.dims]
        forward, backward = (lambda: pool(x, **kw)), (lambda: pool_backward(go, x, **kw))
    else:
        kw = {**kw, "algorithm": algorithm}
        conv, conv_backward = (TRANSPOSED_CONVOLUTIONS if shape.family == "conv_transpose" else CONVOLUTIONS)[
            shape.dims
        ]
        forward, backward = (lambda: conv(x, w, b, **kw)), (lambda: conv_backward(go, x, w, **kw))
    return forward, backward, lambda: (forward(), backward())


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
    """One row: xpconv's median time with its spread over rounds, and beside it (when timed)
    PyTorch's, and their ratio (PyTorch time / xpconv time per round; > 1: xpconv faster)."""

    op: str
    shape: str
    median_ms: float
    gflops: float
    low_ms: float = float("nan")
    high_ms: float = float("nan")
    torch_ms: float | None = None
    torch_low_ms: float | None = None
    torch_high_ms: float | None = None
    torch_ratio: float | None = None
    torch_ratio_low: float | None = None
    torch_ratio_high: float | None = None
    book_gflops: float | None = None
    error: float | None = None
    algorithm: str = ""

    @classmethod
    def timed(cls, op: str, shape: str, flops: float, own: Timing, other: Timing | None = None, **kw: Any) -> Result:
        row = cls(op, shape, 1e3 * own.median, flops / own.median / 1e9, 1e3 * own.low, 1e3 * own.high, **kw)
        if other is not None:
            ratio = Ratio.of(own, other)
            row.torch_ms, row.torch_low_ms, row.torch_high_ms = 1e3 * other.median, 1e3 * other.low, 1e3 * other.high
            row.torch_ratio, row.torch_ratio_low, row.torch_ratio_high = ratio.median, ratio.low, ratio.high
        return row

    @property
    def torch_gflops(self) -> float | None:
        return self.gflops * self.median_ms / self.torch_ms if self.torch_ms else None

    @property
    def book_speedup(self) -> float | None:
        return self.gflops / self.book_gflops if self.book_gflops else None


@dataclass
class BenchRun:
    results: list[Result]
    ceiling: Ceiling
    checks: list[str]
    notes: list[str] = field(default_factory=list)


def _check_conv(shape, device, dtype) -> float:
    """Worst relative error of forward and all gradients on 2 samples vs the float64 reference."""
    x, w, b, go = conv_inputs(shape, device, dtype, seed=1, n=2)
    if shape.pooling:
        return max(pool_errors(shape.family.removesuffix("_pool"), x, go, **shape.kwargs).values())
    if shape.family == "conv_transpose":
        return max(conv_transpose_errors(x, w, b, go, **shape.kwargs).values())
    return max(conv_errors(x, w, b, go, **shape.kwargs).values())


def ceiling_dtype(device: Device, dtype: str) -> str:
    """The dtype of the ceiling's matmul: float32 for a float16 run on the CPU, where NumPy's
    float16 matmul has no BLAS (it runs at a fraction of a GFLOP/s and takes minutes)."""
    return "float32" if dtype == "float16" and parse_device(device)[0] == "cpu" else dtype


def run(
    device: Device = "cpu",
    dtype: str = "float32",
    shapes: Sequence[str] | None = None,
    *,
    book: str = "smallest",
    torch: bool = True,
    tf32: bool | None = None,
    min_seconds: float = 0.5,
    log: Callable[[str], None] | None = None,
    on_check: Callable[[str], None] | None = None,
) -> BenchRun:
    """Benchmark every op on ``shapes`` (names from :data:`ALL_SHAPES`; default the quick set).

    ``book``: ``"all"`` times the book's approach on every conv shape, ``"smallest"`` only on
    ``mnist``, ``"none"`` never.  ``torch``: time PyTorch beside xpconv (when installed), in
    its own process, with ``tf32`` passed to its cuDNN.  Each conv shape is first checked
    against the float64 reference (``on_check`` hears each result as it comes); a wrong kernel
    stops the run with ``RuntimeError``.  ``log`` hears the progress (default: stderr).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    names = list(shapes or QUICK_SHAPES)
    parse_shapes(",".join(names))  # unknown names: ValueError before anything is timed
    with contextlib.ExitStack() as stack:
        stack.enter_context(on_device(device))
        rival = None
        if torch and torch_available() and any(s in CONV_SHAPES for s in names):
            rival = stack.enter_context(Rival(device, dtype, tf32))
        return _run(device, dtype, names, book=book, rival=rival, min_seconds=min_seconds, log=log,
                    on_check=on_check or (lambda line: None))  # fmt: skip


def _run(device, dtype, names, *, book, rival, min_seconds, log, on_check) -> BenchRun:
    sync = synchronizer(device)
    conv_names = [s for s in names if s in CONV_SHAPES]
    other_names = [s for s in names if s not in CONV_SHAPES]
    total = 3 * len(conv_names) + len(other_names)
    ceiling = Ceiling(ceiling_dtype(device, dtype))
    ceiling.measure(device)
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
        on_check(run_.checks[-1])
        if step:
            ceiling.measure(device)
        x, w, b, go = conv_inputs(shape, device, dtype)
        algorithm = "" if shape.pooling else conv_plan(array_namespace(x), shape.geometry(), "auto").algorithm
        flops1 = shape.flops()
        for op in shape.ops:
            step += 1
            log(f"[{step}/{total}] {op} {name} ({shape.describe()}, {dtype}, {device})")
            contenders = [local(conv_op(op, shape, x, w, b, go), sync)]
            if rival is not None:
                contenders.append(rival.contender(op, name))
            try:
                timings = side_by_side(*contenders, min_seconds=min_seconds)
            except RuntimeError as exc:  # PyTorch cannot run this row (e.g. float16 on the CPU)
                run_.notes.append(f"{op} {name}: no PyTorch figure ({exc})")
                log(run_.notes[-1])
                timings = side_by_side(contenders[0], min_seconds=min_seconds)
            row = Result.timed(op, name, shape.passes(op) * flops1, *timings, error=error, algorithm=algorithm)
            if shape.kind == "conv2d" and (book == "all" or (book == "smallest" and name == "mnist")):
                log(f"[{step}/{total}] ... and the book's approach")
                book_fn, book_passes = book_op(op, shape, *(to_numpy(a) for a in (x, w, b, go)))
                t0 = time.perf_counter()
                book_fn()  # one call: it is slow enough to be timed once
                row.book_gflops = book_passes * flops1 / (time.perf_counter() - t0) / 1e9
            run_.results.append(row)
    for name in other_names:
        step += 1
        if name == "bias":
            log(f"[{step}/{total}] bias {BIAS_SHAPE} ({dtype}, {device})")
            rng = np.random.default_rng(0)
            x = to_device(rng.standard_normal(BIAS_SHAPE).astype(dtype), device)
            b = to_device(rng.standard_normal(BIAS_SHAPE[1]).astype(dtype), device)
            (timing,) = side_by_side(local(bias_step(x, b), sync), min_seconds=min_seconds)
            run_.results.append(Result.timed("bias", "x".join(map(str, BIAS_SHAPE)), 2.0 * x.size, timing))
            continue
        n, fin, fout = DENSE_SHAPES[name]
        log(f"[{step}/{total}] dense {name} ({n}x{fin}->{fout}, {dtype}, {device})")
        x, w, b, go = dense_inputs(n, fin, fout, device, dtype)
        big = n * fin * fout > 10**9  # dense-4096: each call takes most of a second on 2 cores
        own, bare = side_by_side(
            local(dense_step(x, w, b, go), sync),
            local(bare_matmuls(x, w, go), sync),
            min_seconds=min_seconds,
            min_repeats=2 if big else 5,
            log=functools.partial(_log_row, log, f"[{step}/{total}]"),
        )
        flops = 3 * 2.0 * n * fin * fout
        run_.results.append(Result.timed("dense", name, flops, own))
        run_.results.append(Result.timed("3 bare matmuls", name, flops, bare))
    while len(ceiling.samples) < 3:
        ceiling.measure(device)
    run_.notes.extend(consistency(run_.results))
    return run_


def _log_row(log: Callable[[str], None], prefix: str, msg: str) -> None:
    log(f"{prefix}   {msg}")


def consistency(results: list[Result]) -> list[str]:
    """Whether the rows of one run agree with each other, within their spreads: a part (forward,
    backward) is not slower than its whole (the train step), and ``dense`` is the three bare
    matmuls plus a bias add and a bias gradient, so it is not faster than them.  One line each."""
    lines = []
    rows = {(r.op, r.shape): r for r in results}
    for (op, shape), whole in rows.items():
        if not op.endswith("-train-step"):
            continue
        for part_op in (op.replace("train-step", "forward"), op.replace("train-step", "backward")):
            part = rows.get((part_op, shape))
            if part is None:
                continue
            pairs = [("xpconv", part.low_ms, whole.high_ms)]
            if part.torch_low_ms is not None and whole.torch_high_ms is not None:
                pairs.append(("PyTorch", part.torch_low_ms, whole.torch_high_ms))
            for who, part_low, whole_high in pairs:
                if part_low > whole_high:
                    lines.append(
                        f"inconsistent: {who}'s {part_op} on {shape} (at least {part_low:.2f} ms) is slower than its "
                        f"train step (at most {whole_high:.2f} ms): the machine was disturbed; run again"
                    )
    for (op, shape), bare in rows.items():
        dense_row = rows.get(("dense", shape)) if op == "3 bare matmuls" else None
        if dense_row is None:
            continue
        ratio = dense_row.median_ms / bare.median_ms
        verdict = "consistent" if dense_row.high_ms >= bare.low_ms else "inconsistent (the machine was disturbed)"
        lines.append(
            f"dense {shape}: {ratio:.2f}x the time of its 3 bare matmuls ({verdict}): dense is the same 3 products "
            "plus a bias add and a bias gradient, so it should take a few % more"
        )
    return lines


def format_table(results: list[Result], ceiling: float) -> str:
    """The results as text: each time with its spread over rounds, each ratio with its range; the
    PyTorch and book columns only where some row has a figure for them."""
    wide = max([18, *(len(r.op) + 1 for r in results)])  # the op column
    with_torch = any(r.torch_ms for r in results)
    with_book = any(r.book_speedup for r in results)
    header = (
        f"{'op':<{wide}} {'shape':<12} {'algorithm':<9} {'median ms':>9} {'spread ms':>15} {'GFLOP/s':>7} {'%ceil':>5}"
        + (f" {'torch ms':>8} {'vs torch':>8} {'(range)':>11}" if with_torch else "")
        + (f" {'x book':>6}" if with_book else "")
    )
    lines = [header, "-" * len(header)]
    for r in results:
        pooling = "_pool" in r.op  # GFLOP/s there count window elements: no matmul to compare with
        spread = f"{r.low_ms:.2f}-{r.high_ms:.2f}"
        line = (
            f"{r.op:<{wide}} {r.shape:<12} {r.algorithm:<9} {r.median_ms:9.2f} {spread:>15} {r.gflops:7.1f} "
            f"{'' if pooling else f'{100 * r.gflops / ceiling:4.0f}%':>5}"
        )
        if with_torch:
            torch_ms = f"{r.torch_ms:8.2f}" if r.torch_ms else f"{'':>8}"
            ratio = f"{r.torch_ratio:7.2f}x" if r.torch_ratio else f"{'':>8}"
            ratio_range = f"{r.torch_ratio_low:.2f}-{r.torch_ratio_high:.2f}" if r.torch_ratio else ""
            line += f" {torch_ms} {ratio} {ratio_range:>11}"
        if with_book:
            line += f" {r.book_speedup:6.0f}" if r.book_speedup else f" {'':>6}"
        lines.append(line.rstrip())
    ratios = [r.torch_ratio for r in results if r.op == "conv2d-train-step" and r.torch_ratio]
    if ratios:
        geo = math.exp(sum(map(math.log, ratios)) / len(ratios))
        lines.append(f"geometric mean vs torch, conv2d-train-step: {geo:.2f}x  (>1: xpconv faster)")
    if any("_pool" in r.op for r in results):
        lines.append("pooling rows: GFLOP/s count one comparison or addition per window element")
    return "\n".join(lines)


def cpu_threads() -> int:
    """Worker threads xpconv's CPU kernels use here."""
    return workers_for(np)


def as_json(run_: BenchRun, device: Device, dtype: str) -> dict[str, Any]:
    import platform

    rows = [{**asdict(r), "torch_gflops": r.torch_gflops, "book_speedup": r.book_speedup} for r in run_.results]
    return {
        "device": device,
        "dtype": dtype,
        "machine": platform.processor() or platform.machine(),
        "cpu_worker_threads": cpu_threads(),
        "timing": f"{ROUNDS} alternating rounds of blocks, first call of each block dropped; PyTorch in its own process",
        "matmul_ceiling_dtype": run_.ceiling.dtype,
        "matmul_ceiling_gflops": run_.ceiling.median,
        "matmul_ceiling_samples": run_.ceiling.samples,
        "numpy": np.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "checks": run_.checks,
        "notes": run_.notes,
        "results": rows,
    }
