"""dense forward + backward beside the three bare matmuls it needs, and bias add + backward."""

import numpy as np
import pytest

from xpconv import to_device
from xpconv.tools.bench import BIAS_SHAPE, DENSE_SHAPES, bare_matmuls, bias_step, dense_inputs, dense_step

from support import DEVICE_DTYPES, run


@pytest.mark.parametrize("shape", list(DENSE_SHAPES))
@pytest.mark.parametrize(("device", "dtype"), DEVICE_DTYPES)
@pytest.mark.parametrize("impl", ["xpconv", "bare-matmuls"])
def test_dense(benchmark, impl, shape, device, dtype):
    benchmark.group = "dense"
    n, fin, fout = DENSE_SHAPES[shape]
    x, w, b, go = dense_inputs(n, fin, fout, device, dtype)
    fn = dense_step(x, w, b, go) if impl == "xpconv" else bare_matmuls(x, w, go)
    run(benchmark, fn, device, 3 * 2.0 * n * fin * fout)


@pytest.mark.parametrize(("device", "dtype"), DEVICE_DTYPES)
def test_bias(benchmark, device, dtype):
    benchmark.group = "bias"
    rng = np.random.default_rng(0)
    x = to_device(rng.standard_normal(BIAS_SHAPE).astype(dtype), device)
    b = to_device(rng.standard_normal(BIAS_SHAPE[1]).astype(dtype), device)
    run(benchmark, bias_step(x, b), device, 2.0 * x.size)
