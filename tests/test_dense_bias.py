"""dense / bias kernels against the plain-loop oracle and finite differences."""

import numpy as np
import pytest

import xpconv

import oracle
from cases import assert_close, random_array


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 7, 3), (8, 20, 11)])
def test_dense_matches_oracle(rng, shape, dtype):
    n, fin, fout = shape
    x, w, b = (random_array(rng, s, dtype) for s in [(n, fin), (fout, fin), (fout,)])
    go = random_array(rng, (n, fout), dtype)
    assert_close(xpconv.dense(x, w, b), oracle.oracle_dense(x, w, b), dtype, "dense")
    assert_close(xpconv.dense(x, w), oracle.oracle_dense(x, w, None), dtype, "dense no bias")
    dx, dw, db = oracle.oracle_dense_grads(go, x, w)
    grads = xpconv.dense_backward(go, x, w)
    assert_close(grads.input, dx, dtype, "grad input")
    assert_close(grads.weight, dw, dtype, "grad weight")
    assert_close(grads.bias, db, dtype, "grad bias")
    assert xpconv.dense_backward(go, x, w, with_bias=False).bias is None


def test_dense_finite_differences(rng):
    x, w, b = random_array(rng, (4, 6)), random_array(rng, (3, 6)), random_array(rng, (3,))
    go = random_array(rng, (4, 3))
    grads = xpconv.dense_backward(go, x, w)
    eps = 1e-6
    for k, (arr, grad) in enumerate([(x, grads.input), (w, grads.weight), (b, grads.bias)]):
        for idx in np.ndindex(arr.shape):
            args_p, args_m = [a.copy() for a in (x, w, b)], [a.copy() for a in (x, w, b)]
            args_p[k][idx] += eps
            args_m[k][idx] -= eps
            numeric = (np.sum(go * xpconv.dense(*args_p)) - np.sum(go * xpconv.dense(*args_m))) / (2 * eps)
            assert abs(numeric - grad[idx]) <= 1e-7 * max(1.0, abs(numeric))


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize(("shape", "axis"), [((4, 5), 1), ((3, 4, 2, 5), 1), ((3, 4, 2, 5), -1), ((6, 2), 0)])
def test_bias_add_and_backward(rng, shape, axis, dtype):
    x = random_array(rng, shape, dtype)
    b = random_array(rng, (shape[axis],), dtype)
    expected = np.empty(shape)
    grad = np.zeros(shape[axis])
    ax = axis % len(shape)
    for idx in np.ndindex(shape):
        expected[idx] = float(x[idx]) + float(b[idx[ax]])
        grad[idx[ax]] += float(x[idx])
    assert_close(xpconv.bias_add(x, b, axis=axis), expected, dtype, "bias_add")
    assert_close(xpconv.bias_backward(x, axis=axis), grad, dtype, "bias_backward")


def test_dense_inputs_not_modified(rng):
    x, w, b, go = (random_array(rng, s, np.float32) for s in [(3, 4), (2, 4), (2,), (3, 2)])
    copies = [a.copy() for a in (x, w, b, go)]
    xpconv.dense(x, w, b)
    xpconv.dense_backward(go, x, w)
    xpconv.bias_add(x, random_array(rng, (4,), np.float32))
    for before, after in zip(copies, (x, w, b, go), strict=True):
        np.testing.assert_array_equal(before, after)


def test_dense_empty_batch(rng):
    x = np.empty((0, 4))
    w = random_array(rng, (3, 4))
    assert xpconv.dense(x, w).shape == (0, 3)
    grads = xpconv.dense_backward(np.empty((0, 3)), x, w)
    np.testing.assert_array_equal(grads.weight, np.zeros((3, 4)))
    np.testing.assert_array_equal(grads.bias, np.zeros(3))
