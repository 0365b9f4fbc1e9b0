"""conv2d forward, backward and train step on the standard shapes, beside the book's
approach and PyTorch's CPU conv2d (when torch is installed)."""

import pytest

from xpconv.conv import choose_algorithm, winograd_applies
from xpconv.tools.bench import CONV_SHAPES, PASSES, book_op, conv_inputs, conv_op
from xpconv.tools.rival import torch_op

from support import DEVICE_DTYPES, run

OPS = list(PASSES)


@pytest.mark.parametrize("algorithm", ["im2col", "winograd"])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape", list(CONV_SHAPES))
@pytest.mark.parametrize(("device", "dtype"), DEVICE_DTYPES)
def test_xpconv(benchmark, op, shape, device, dtype, algorithm):
    """Each algorithm that applies; extra_info says which one algorithm="auto" would choose."""
    s = CONV_SHAPES[shape]
    if algorithm == "winograd" and not winograd_applies(s.geometry()):
        pytest.skip("Winograd needs a 3x3 kernel, stride 1, dilation 1, groups 1")
    benchmark.group = op
    benchmark.extra_info["algorithm"] = algorithm
    benchmark.extra_info["auto_chooses"] = choose_algorithm("auto", s.geometry())
    run(benchmark, conv_op(op, s, *conv_inputs(s, device, dtype), algorithm=algorithm), device, PASSES[op] * s.flops())


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
    """PyTorch's conv2d; conftest.py runs these after every xpconv row, so that no xpconv call
    follows a PyTorch call in this process (PyTorch's threads would take its cores)."""
    pytest.importorskip("torch")
    benchmark.group = op
    s = CONV_SHAPES[shape]
    run(benchmark, torch_op(op, s, *conv_inputs(s, "cpu", dtype)), "cpu", PASSES[op] * s.flops())
