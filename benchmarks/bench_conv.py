"""conv2d forward, backward and train step on the standard shapes, beside the book's
approach and PyTorch's CPU conv2d (when torch is installed)."""

import pytest

from xpconv.tools.bench import CONV_SHAPES, PASSES, book_op, conv_inputs, conv_op, torch_op

from support import DEVICE_DTYPES, run

OPS = list(PASSES)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape", list(CONV_SHAPES))
@pytest.mark.parametrize(("device", "dtype"), DEVICE_DTYPES)
def test_xpconv(benchmark, op, shape, device, dtype):
    benchmark.group = op
    s = CONV_SHAPES[shape]
    run(benchmark, conv_op(op, s, *conv_inputs(s, device, dtype)), device, PASSES[op] * s.flops())


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape", list(CONV_SHAPES))
def test_book(benchmark, op, shape):
    """The book's per-position loop (float32, CPU): forward, or forward + weight gradient."""
    benchmark.group = op
    s = CONV_SHAPES[shape]
    fn, passes = book_op(op, s, *conv_inputs(s, "cpu", "float32"))
    run(benchmark, fn, "cpu", passes * s.flops(), once=True)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape", list(CONV_SHAPES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch(benchmark, op, shape, dtype):
    pytest.importorskip("torch")
    benchmark.group = op
    s = CONV_SHAPES[shape]
    run(benchmark, torch_op(op, s, *conv_inputs(s, "cpu", dtype)), "cpu", PASSES[op] * s.flops())
