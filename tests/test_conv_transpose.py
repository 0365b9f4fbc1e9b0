"""conv_transpose2d and its gradients against the plain-loop oracle, finite differences, a property
test and, where installed, PyTorch."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import xpconv

from cases import (
    TRANSPOSE_CASES,
    assert_close,
    assert_gradients_match,
    check_conv_transpose,
    make_transpose_case,
    random_array,
)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("cfg", TRANSPOSE_CASES)
def test_matches_oracle(rng, cfg, dtype):
    check_conv_transpose(rng, cfg, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cfg", TRANSPOSE_CASES)
def test_one_gemm_per_image_matches_oracle(monkeypatch, rng, cfg, dtype):
    """The cases' small outputs fold on the CPU: the same forced to a GEMM per image."""
    monkeypatch.setattr("xpconv._plan.FOLDED_MAX_PIXELS", 0)
    check_conv_transpose(rng, cfg, dtype)


@pytest.mark.parametrize("algorithm", ["im2col", "winograd"])
@pytest.mark.parametrize("workspace", [1, None])
def test_winograd_and_chunks(rng, algorithm, workspace):
    """A 3×3 stride-1 case runs on either algorithm (the forward is Winograd's input gradient)."""
    check_conv_transpose(rng, (3, 4, 6, 5, 5, 3, 3, 1, 1, 0, 1, 1), np.float64, algorithm=algorithm,
                         workspace_bytes=workspace)  # fmt: skip


@pytest.mark.parametrize("cfg", TRANSPOSE_CASES[:5])
def test_finite_differences(rng, cfg):
    x, wt, b, kw = make_transpose_case(rng, cfg, np.float64)
    go = random_array(rng, xpconv.conv_transpose2d(x, wt, b, **kw).shape)
    grads = xpconv.conv_transpose2d_backward(go, x, wt, **kw)
    assert_gradients_match(rng, lambda *a: xpconv.conv_transpose2d(*a, **kw), go, [x, wt, b], list(grads))


@st.composite
def transpose_configs(draw):
    groups = draw(st.integers(1, 2))
    ci, co = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation, strict=True))
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    # padding that leaves at least one output row and column
    padding = tuple(
        draw(st.integers(0, max(0, ((size - 1) * s + d * (k - 1) + op) // 2)))
        for size, s, d, k, op in zip((h, w), stride, dilation, (kh, kw), output_padding, strict=True)
    )
    return (draw(st.integers(1, 2)), ci, h, w, co, kh, kw, stride, padding, output_padding, dilation, groups)


@given(cfg=transpose_configs(), seed=st.integers(0, 2**32 - 1))
def test_property_matches_oracle(cfg, seed):
    check_conv_transpose(np.random.default_rng(seed), cfg, np.float64)


def test_is_the_adjoint_of_conv2d(rng):
    """<conv_transpose2d(x, w), v> = <x, conv2d(v, w)> for the same weight and hyperparameters."""
    x, wt, _, kw = make_transpose_case(rng, (2, 4, 3, 5, 6, 3, 2, 2, 1, 1, 1, 2), np.float64)
    y = xpconv.conv_transpose2d(x, wt, **kw)
    v = random_array(rng, y.shape)
    kw.pop("output_padding")
    lhs, rhs = np.sum(y * v), np.sum(x * xpconv.conv2d(v, wt, **kw))
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


def test_inputs_are_not_modified(rng):
    x, wt, b, kw = make_transpose_case(rng, TRANSPOSE_CASES[1].values[0], np.float32)
    y = xpconv.conv_transpose2d(x, wt, b, **kw)
    go = random_array(rng, y.shape, np.float32)
    copies = [a.copy() for a in (x, wt, b, go)]
    xpconv.conv_transpose2d_backward(go, x, wt, **kw)
    for before, after in zip(copies, (x, wt, b, go), strict=True):
        np.testing.assert_array_equal(before, after)


def test_with_bias_false(rng):
    x, wt, _, kw = make_transpose_case(rng, TRANSPOSE_CASES[0].values[0], np.float64)
    go = random_array(rng, xpconv.conv_transpose2d(x, wt, **kw).shape)
    assert xpconv.conv_transpose2d_backward(go, x, wt, with_bias=False, **kw).bias is None


@pytest.mark.parametrize("cfg", TRANSPOSE_CASES)
def test_matches_torch(rng, cfg):
    torch = pytest.importorskip("torch")
    x, wt, b, kw = make_transpose_case(rng, cfg, np.float64)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, wt, b))
    yt = torch.nn.functional.conv_transpose2d(tx, tw, tb, **kw)
    go = random_array(rng, tuple(yt.shape))
    yt.backward(torch.tensor(go))
    assert_close(xpconv.conv_transpose2d(x, wt, b, **kw), yt.detach().numpy(), np.float64)
    grads = xpconv.conv_transpose2d_backward(go, x, wt, **kw)
    for mine, theirs in zip(grads, (tx, tw, tb), strict=True):
        assert_close(mine, theirs.grad.numpy(), np.float64)
