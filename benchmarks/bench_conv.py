"""Forward, backward and train step of every bench shape — conv2d, conv_transpose2d, max_pool2d
and avg_pool2d — beside the book's approach (conv2d) and PyTorch's CPU kernels (when torch is
installed)."""

import pytest

from xpconv import array_namespace
from xpconv._plan import conv_plan, winograd_applies
from xpconv.tools.bench import CONV_SHAPES, book_op, conv_inputs, conv_op
from xpconv.tools.rival import torch_op

from support import DEVICE_DTYPES, run

ROWS = [pytest.param(name, op, id=f"{op}-{name}") for name, s in CONV_SHAPES.items() for op in s.ops]
CONV2D_ROWS = [p for p in ROWS if CONV_SHAPES[p.values[0]].kind == "conv2d"]


@pytest.mark.parametrize("algorithm", ["im2col", "winograd"])
@pytest.mark.parametrize(("shape", "op"), ROWS)
@pytest.mark.parametrize(("device", "dtype"), DEVICE_DTYPES)
def test_xpconv(benchmark, op, shape, device, dtype, algorithm):
    """Each algorithm that applies; extra_info says which one algorithm="auto" would choose."""
    s = CONV_SHAPES[shape]
    if s.pooling and algorithm == "winograd":
        pytest.skip("a pooling has no algorithm to choose")
    if algorithm == "winograd" and not winograd_applies(s.geometry()):
        pytest.skip("Winograd needs a 3x3 kernel, stride 1, dilation 1, groups 1")
    benchmark.group = op
    if not s.pooling:
        benchmark.extra_info["algorithm"] = algorithm
    inputs = conv_inputs(s, device, dtype)
    if not s.pooling:
        benchmark.extra_info["auto_chooses"] = conv_plan(array_namespace(inputs[0]), s.geometry(), "auto").algorithm
    fn = conv_op(op, s, *inputs) if s.pooling else conv_op(op, s, *inputs, algorithm=algorithm)
    run(benchmark, fn, device, s.passes(op) * s.flops())


@pytest.mark.parametrize(("shape", "op"), CONV2D_ROWS)
def test_book(benchmark, op, shape):
    """The book's per-position loop (float32, CPU): forward, or forward + weight gradient."""
    benchmark.group = op
    s = CONV_SHAPES[shape]
    fn, passes = book_op(op, s, *conv_inputs(s, "cpu", "float32"))
    run(benchmark, fn, "cpu", passes * s.flops(), once=True)


@pytest.mark.parametrize(("shape", "op"), ROWS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch(benchmark, op, shape, dtype):
    """PyTorch's kernel; conftest.py runs these after every xpconv row, so that no xpconv call
    follows a PyTorch call in this process (PyTorch's threads would take its cores)."""
    pytest.importorskip("torch")
    benchmark.group = op
    s = CONV_SHAPES[shape]
    run(benchmark, torch_op(op, s, *conv_inputs(s, "cpu", dtype)), "cpu", s.passes(op) * s.flops())
