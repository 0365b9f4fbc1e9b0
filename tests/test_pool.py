"""max_pool2d / avg_pool2d and their gradients against the plain-loop oracle, finite differences,
a property test and, where installed, PyTorch."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import xpconv

from cases import (
    AVG_CASES,
    MAX_CASES,
    assert_close,
    assert_gradients_match,
    avg_pool_args,
    check_avg_pool,
    check_max_pool,
    check_max_pool_indices,
    check_max_unpool,
    max_pool_args,
    max_pool_input,
    max_pool_oracle,
    random_array,
)

DTYPES = [np.float64, np.float32, np.float16]


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", MAX_CASES)
def test_max_pool_matches_oracle(rng, cfg, dtype, ties):
    check_max_pool(rng, cfg, dtype, ties)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", MAX_CASES)
def test_max_pool_indices_route_the_oracles_gradient(rng, cfg, dtype):
    check_max_pool_indices(rng, cfg, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", MAX_CASES)
def test_max_unpool_matches_oracle(rng, cfg, dtype):
    check_max_unpool(rng, cfg, dtype)


def test_max_unpool_sizes_and_checks(rng):
    even = random_array(rng, (2, 3, 6, 6))
    assert xpconv.max_unpool2d(*xpconv.max_pool2d(even, 2, return_indices=True), 2).shape == even.shape  # the default
    x = random_array(rng, (2, 3, 7, 7))
    y, indices = xpconv.max_pool2d(x, 2, return_indices=True)  # 3x3: the last row and column unread
    full = xpconv.max_unpool2d(y, indices, 2, output_size=x.shape)
    assert full.shape == x.shape and (full[:, :, 6] == 0).all()
    with pytest.raises(ValueError, match=r"output_size \(9, 9\) must lie within a stride of the default \(6, 6\)"):
        xpconv.max_unpool2d(y, indices, 2, output_size=(9, 9))
    with pytest.raises(ValueError, match="indices must be places in the 6x6 output planes"):
        xpconv.max_unpool2d(y, indices, 2)  # places of a 7x7 plane, beyond a 6x6 one
    with pytest.raises(ValueError, match=r"indices must have x's shape \(2, 3, 3, 3\)"):
        xpconv.max_unpool2d(y, indices[:, :, :2], 2, output_size=x.shape)


def test_max_pool_indices_are_checked(rng):
    x = random_array(rng, (2, 3, 6, 6))
    y, indices = xpconv.max_pool2d(x, 2, return_indices=True)
    go = random_array(rng, y.shape)
    with pytest.raises(TypeError, match="indices must be int64"):
        xpconv.max_pool2d_backward(go, x, 2, indices=indices.astype(np.int32))
    with pytest.raises(ValueError, match=r"indices must have the forward output's shape \(2, 3, 3, 3\)"):
        xpconv.max_pool2d_backward(go, x, 2, indices=indices[:, :, :2])
    with pytest.raises(TypeError, match="return_indices must be True or False"):
        xpconv.max_pool2d(x, 2, return_indices=1)
    wrong = indices.copy()
    wrong[0, 0, 0, 0] = 36  # beyond the 6x6 plane
    with pytest.raises(
        ValueError, match=r"indices must be places in the 6x6 input planes \(0 to 35, or -1.*from 0 to 36"
    ):
        xpconv.max_pool2d_backward(go, x, 2, indices=wrong)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", AVG_CASES)
def test_avg_pool_matches_oracle(rng, cfg, dtype):
    check_avg_pool(rng, cfg, dtype)


@pytest.mark.parametrize("workspace", [1, 500, None])  # 1 byte: one sample per chunk
def test_chunking_gives_the_same_result(rng, workspace):
    check_max_pool(rng, (5, 3, 7, 6, 3, 2, 1, 1, True), np.float64, workspace_bytes=workspace)
    check_avg_pool(rng, (5, 3, 7, 6, 3, 2, 1, True, False, None), np.float64, workspace_bytes=workspace)


@pytest.mark.parametrize("cfg", MAX_CASES[:4])
def test_max_pool_nan_and_infinities_follow_pytorch(rng, cfg):
    """NaN windows give NaN and send their gradient to the window's last NaN; windows of -inf send
    it to their first input pixel, never to the padding."""
    shape, kw = max_pool_args(cfg)
    x = random_array(rng, shape)
    x[0, 0, :2, :3] = np.nan
    x[0, 0, 1, 1] = np.nan
    x[-1, -1] = -np.inf
    x[-1, 0, ::2, ::2] = np.inf
    y = xpconv.max_pool2d(x, **kw)
    go = random_array(rng, y.shape)
    ref_y, ref_dx = max_pool_oracle(x, go, kw)
    np.testing.assert_array_equal(y, ref_y)  # NaN where NaN, exact elsewhere
    assert_close(xpconv.max_pool2d_backward(go, x, **kw), ref_dx, np.float64)  # finite: go goes where chosen


@pytest.mark.parametrize("cfg", MAX_CASES[:4])
def test_max_pool_finite_differences(rng, cfg):
    shape, kw = max_pool_args(cfg)
    x = random_array(rng, shape)  # distinct values: the maximum is differentiable there
    go = random_array(rng, xpconv.max_pool2d(x, **kw).shape)
    grad = xpconv.max_pool2d_backward(go, x, **kw)
    assert_gradients_match(rng, lambda a: xpconv.max_pool2d(a, **kw), go, [x], [grad], count=12)


@pytest.mark.parametrize("cfg", AVG_CASES[:6])
def test_avg_pool_finite_differences(rng, cfg):
    shape, kw = avg_pool_args(cfg)
    x = random_array(rng, shape)
    go = random_array(rng, xpconv.avg_pool2d(x, **kw).shape)
    grad = xpconv.avg_pool2d_backward(go, x, **kw)
    assert_gradients_match(rng, lambda a: xpconv.avg_pool2d(a, **kw), go, [x], [grad], count=12)


@st.composite
def pool_configs(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    ceil = draw(st.booleans())
    h = draw(st.integers(max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0]), 9))
    w = draw(st.integers(max(1, dilation[1] * (kw - 1) + 1 - 2 * padding[1]), 9))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    return (n, c, h, w, (kh, kw), stride, padding, dilation, ceil), draw(st.booleans()), draw(st.booleans())


@given(drawn=pool_configs(), seed=st.integers(0, 2**32 - 1))
def test_pooling_property_matches_oracle(drawn, seed):
    (n, c, h, w, k, s, p, d, ceil), ties, include = drawn
    rng = np.random.default_rng(seed)
    check_max_pool(rng, (n, c, h, w, k, s, p, d, ceil), np.float64, ties)
    check_avg_pool(rng, (n, c, h, w, k, s, p, ceil, include, None), np.float64)


def test_inputs_are_not_modified(rng):
    x = random_array(rng, (2, 3, 6, 6), np.float32)
    go = random_array(rng, (2, 3, 4, 4), np.float32)  # ceil_mode: 4 windows of 3 at stride 2 over 1 + 6 + 1
    copies = x.copy(), go.copy()
    xpconv.max_pool2d(x, 3, 2, 1, ceil_mode=True)
    xpconv.max_pool2d_backward(go, x, 3, 2, 1, ceil_mode=True)
    xpconv.avg_pool2d(x, 3, 2, 1, ceil_mode=True)
    xpconv.avg_pool2d_backward(go, x, 3, 2, 1, ceil_mode=True)
    np.testing.assert_array_equal(copies[0], x)
    np.testing.assert_array_equal(copies[1], go)


def test_hand_computed_example():
    x = np.array([[[[1.0, 5.0, 2.0], [3.0, 4.0, 0.0], [7.0, 1.0, 6.0]]]])
    np.testing.assert_array_equal(xpconv.max_pool2d(x, 2, 1)[0, 0], [[5.0, 5.0], [7.0, 6.0]])
    np.testing.assert_array_equal(xpconv.avg_pool2d(x, 2, 1)[0, 0], [[3.25, 2.75], [3.75, 2.75]])
    # the 5 is the maximum of two windows: it receives both gradients
    grad = xpconv.max_pool2d_backward(np.array([[[[1.0, 2.0], [4.0, 8.0]]]]), x, 2, 1)
    np.testing.assert_array_equal(grad[0, 0], [[0.0, 3.0, 0.0], [0.0, 0.0, 0.0], [4.0, 0.0, 8.0]])


@pytest.mark.parametrize("cfg", MAX_CASES)
def test_max_pool_matches_torch(rng, cfg):
    torch = pytest.importorskip("torch")
    shape, kw = max_pool_args(cfg)
    x = max_pool_input(rng, shape, np.float64, ties=True)
    x[0, 0, 0, :2] = np.nan
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, **kw)
    go = random_array(rng, tuple(yt.shape))
    yt.backward(torch.tensor(go))
    np.testing.assert_array_equal(xpconv.max_pool2d(x, **kw), yt.detach().numpy())
    assert_close(xpconv.max_pool2d_backward(go, x, **kw), xt.grad.numpy(), np.float64)
    y, indices = xpconv.max_pool2d(x, **kw, return_indices=True)
    _, torch_indices = torch.nn.functional.max_pool2d(torch.tensor(x), **kw, return_indices=True)
    np.testing.assert_array_equal(indices, torch_indices.numpy())
    unpool = {k: v for k, v in kw.items() if k in ("kernel_size", "stride", "padding")}
    try:
        expected = torch.nn.functional.max_unpool2d(torch.tensor(y), torch_indices, **unpool, output_size=x.shape[2:])
    except ValueError:  # x's size is beyond a stride of the unpooling's: refused by both
        with pytest.raises(ValueError, match="must lie within a stride of the default"):
            xpconv.max_unpool2d(y, indices, **unpool, output_size=x.shape[2:])
        return
    np.testing.assert_array_equal(xpconv.max_unpool2d(y, indices, **unpool, output_size=x.shape[2:]), expected.numpy())


@pytest.mark.parametrize("cfg", AVG_CASES)
def test_avg_pool_matches_torch(rng, cfg):
    torch = pytest.importorskip("torch")
    shape, kw = avg_pool_args(cfg)
    x = random_array(rng, shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.avg_pool2d(xt, **kw)
    go = random_array(rng, tuple(yt.shape))
    yt.backward(torch.tensor(go))
    assert_close(xpconv.avg_pool2d(x, **kw), yt.detach().numpy(), np.float64)
    assert_close(xpconv.avg_pool2d_backward(go, x, **kw), xt.grad.numpy(), np.float64)
