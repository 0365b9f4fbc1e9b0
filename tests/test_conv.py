"""conv2d / conv2d_backward against the plain-loop oracle and finite differences."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import xpconv

import oracle
from cases import (
    CONFIGS,
    assert_close,
    check_against_oracle,
    check_finite_differences,
    conv_configs,
    make_case,
    random_array,
    resolve,
)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("cfg", CONFIGS)
def test_conv2d_matches_oracle(rng, cfg, dtype):
    check_against_oracle(rng, cfg, dtype)


@pytest.mark.parametrize("cfg", CONFIGS[:4] + CONFIGS[7:9])
def test_conv2d_finite_differences(rng, cfg):
    check_finite_differences(rng, cfg)


@given(cfg=conv_configs(), seed=st.integers(0, 2**32 - 1), folded_max_pixels=st.sampled_from([0, 100]))
def test_conv2d_property_matches_oracle(cfg, seed, folded_max_pixels):
    """Random configurations, by either CPU layout (a GEMM per image forced, or folded where small)."""
    from xpconv import _plan

    saved, _plan.FOLDED_MAX_PIXELS = _plan.FOLDED_MAX_PIXELS, folded_max_pixels
    try:
        check_against_oracle(np.random.default_rng(seed), cfg, np.float64)
    finally:
        _plan.FOLDED_MAX_PIXELS = saved


def test_matches_torch_layout_example():
    """A hand-computed case: a 2x2 kernel slides without flipping (cross-correlation)."""
    x = np.arange(9, dtype=np.float64).reshape(1, 1, 3, 3)
    w = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    y = xpconv.conv2d(x, w)
    # top-left window [[0, 1], [3, 4]] . [[1, 2], [3, 4]] = 0 + 2 + 9 + 16 = 27
    np.testing.assert_array_equal(y[0, 0], [[27.0, 37.0], [57.0, 67.0]])


@pytest.mark.parametrize("workspace", [1, 3000, 10**9])
def test_workspace_chunking_gives_same_result(rng, workspace):
    cfg = (7, 3, 6, 5, 4, 3, 3, 1, 1, 1, 1)
    x, wt, b, kw = make_case(rng, cfg, np.float64)
    stride, pad, dilation = resolve(cfg)
    go = random_array(rng, (7, 4, 6, 5))
    y = xpconv.conv2d(x, wt, b, workspace_bytes=workspace, **kw)
    assert_close(y, oracle.oracle_conv(x, wt, b, stride, pad, dilation, 1), np.float64)
    grads = xpconv.conv2d_backward(go, x, wt, workspace_bytes=workspace, **kw)
    dx, dw, db = oracle.oracle_conv_grads(go, x, wt, stride, pad, dilation, 1)
    assert_close(grads.input, dx, np.float64)
    assert_close(grads.weight, dw, np.float64)


def test_empty_batch(rng):
    x = np.empty((0, 3, 6, 6), np.float32)
    wt = random_array(rng, (4, 3, 3, 3), np.float32)
    b = random_array(rng, (4,), np.float32)
    y = xpconv.conv2d(x, wt, b, padding=1)
    assert y.shape == (0, 4, 6, 6) and y.dtype == np.float32
    grads = xpconv.conv2d_backward(np.empty((0, 4, 6, 6), np.float32), x, wt, padding=1)
    assert grads.input.shape == (0, 3, 6, 6)
    np.testing.assert_array_equal(grads.weight, np.zeros((4, 3, 3, 3), np.float32))
    np.testing.assert_array_equal(grads.bias, np.zeros(4, np.float32))
    assert grads.weight.dtype == grads.bias.dtype == np.float32


def test_nan_stays_in_its_sample(rng):
    x = random_array(rng, (3, 2, 6, 6))
    x[1, 0, 2, 3] = np.nan
    wt = random_array(rng, (3, 2, 3, 3))
    y = xpconv.conv2d(x, wt, padding=1)
    assert np.isnan(y[1]).any()
    assert np.isfinite(y[[0, 2]]).all()
    go = random_array(rng, y.shape)
    go[2, 1, 0, 0] = np.nan
    grads = xpconv.conv2d_backward(go, np.nan_to_num(x), wt, padding=1)
    assert np.isnan(grads.input[2]).any()
    assert np.isfinite(grads.input[[0, 1]]).all()


def test_inputs_are_not_modified(rng):
    x, wt, b, kw = make_case(rng, (2, 2, 5, 5, 2, 3, 3, 1, 1, 1, 1), np.float32)
    go = random_array(rng, (2, 2, 5, 5), np.float32)
    copies = [a.copy() for a in (x, wt, b, go)]
    xpconv.conv2d(x, wt, b, **kw)
    xpconv.conv2d_backward(go, x, wt, **kw)
    for before, after in zip(copies, (x, wt, b, go), strict=True):
        np.testing.assert_array_equal(before, after)


def test_non_contiguous_inputs(rng):
    x = random_array(rng, (5, 6, 4, 3)).transpose(0, 3, 2, 1)  # (5, 3, 4, 6), strided
    wt = random_array(rng, (2, 3, 2, 2))[:, :, ::-1, ::-1]  # negative strides
    go = random_array(rng, (5, 2, 3, 5)).transpose(0, 1, 2, 3)[:, :, :, ::-1]
    pads = (0, 0, 0, 0)
    ref = oracle.oracle_conv(x, wt, None, (1, 1), pads, (1, 1), 1)
    assert_close(xpconv.conv2d(x, wt), ref, np.float64)
    dx, dw, db = oracle.oracle_conv_grads(go, x, wt, (1, 1), pads, (1, 1), 1)
    grads = xpconv.conv2d_backward(go, x, wt)
    assert_close(grads.input, dx, np.float64)
    assert_close(grads.weight, dw, np.float64)
    assert_close(grads.bias, db, np.float64)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_dtype_is_preserved(rng, dtype):
    x, wt, b, kw = make_case(rng, (2, 2, 5, 5, 3, 3, 3, 1, 1, 1, 1), dtype)
    y = xpconv.conv2d(x, wt, b, **kw)
    grads = xpconv.conv2d_backward(random_array(rng, y.shape, dtype), x, wt, **kw)
    assert y.dtype == dtype
    assert {a.dtype for a in grads} == {np.dtype(dtype)}


def test_with_bias_false(rng):
    x, wt, _, kw = make_case(rng, (1, 2, 4, 4, 2, 3, 3, 1, 0, 1, 1), np.float64)
    grads = xpconv.conv2d_backward(random_array(rng, (1, 2, 2, 2)), x, wt, with_bias=False, **kw)
    assert grads.bias is None
    assert isinstance(grads, xpconv.Gradients)


def test_the_cpu_folds_small_outputs_into_one_gemm():
    """On the CPU im2col folds a chunk's images into one GEMM for grouped convolutions and outputs
    of at most FOLDED_MAX_PIXELS pixels (LeNet's second layer), one GEMM per image elsewhere; the
    oracle tests run configurations of both kinds."""
    from xpconv._geometry import conv_geometry
    from xpconv._plan import FOLDED_MAX_PIXELS, conv_plan

    def layout(x_shape, w_shape, **kw):
        return conv_plan(np, conv_geometry(x_shape, w_shape, None, **kw), "im2col").layout

    assert layout((60, 6, 14, 14), (16, 6, 5, 5)) == "folded"  # 10x10 out
    assert layout((64, 1, 28, 28), (16, 1, 5, 5), padding=2) == "per-sample"
    assert layout((8, 4, 20, 20), (4, 1, 3, 3), groups=4) == "folded"
    assert layout((32, 8, 12, 12), (8, 8, 3, 3), padding=1) == "per-sample"  # 144 pixels out
    assert FOLDED_MAX_PIXELS == 100


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("cfg", CONFIGS)
def test_one_gemm_per_image_matches_oracle(monkeypatch, rng, cfg, dtype):
    """The oracle's configurations are small (their outputs fold on the CPU): the same with every
    ungrouped one forced to a GEMM per image, the large layers' layout."""
    monkeypatch.setattr("xpconv._plan.FOLDED_MAX_PIXELS", 0)
    check_against_oracle(rng, cfg, dtype, algorithm="im2col")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("x_shape", "w_shape"),
    [
        pytest.param((6, 6, 14, 14), (16, 6, 5, 5), id="lenet-second-layer"),  # 16 rows < 150: taken as cols·goᵀ
        pytest.param((5, 2, 6, 6), (7, 2, 1, 1), id="more-outputs-than-taps"),  # 7 rows >= 2: goᵀ·cols as written
    ],
)
def test_folded_weight_gradient_in_either_orientation(rng, x_shape, w_shape, dtype):
    """The folded backward's weight gradient, go · colsᵀ, is taken on the CPU with the operand of
    more rows on the left (and its small result transposed): both orientations against the oracle."""
    x, wt = random_array(rng, x_shape, dtype), random_array(rng, w_shape, dtype)
    go = random_array(rng, xpconv.conv2d(x, wt).shape, dtype)
    grads = xpconv.conv2d_backward(go, x, wt)
    dx, dw, db = oracle.oracle_conv_grads(go, x, wt, (1, 1), (0, 0, 0, 0), (1, 1), 1)
    assert_close(grads.weight, dw, dtype, "weight")
    assert_close(grads.input, dx, dtype, "input")
    assert_close(grads.bias, db, dtype, "bias")


@pytest.mark.parametrize("folded_max_pixels", [0, 100])
@pytest.mark.parametrize(
    "cfg",
    [
        pytest.param((2, 3, 9, 11, 4, 3, 4, (1, 2), (1, 2), (2, 1), 1), id="stride-1x2-dilated"),
        pytest.param((3, 2, 7, 8, 5, 2, 3, 1, 0, (1, 2), 1), id="no-padding"),
        pytest.param((2, 4, 8, 6, 4, 3, 3, (1, 3), 1, 1, 2), id="groups-stride-1x3"),
    ],
)
def test_col2im_by_strips_matches_oracle(cfg, folded_max_pixels):
    """col2im sums the leading axes' taps into strips first where those axes have stride 1 (any
    stride and dilation along the last axis) and the folded layout puts the images last: the
    input gradient against the oracle, there and, with a GEMM per image forced, tap by tap."""
    from xpconv import _patches, _plan
    from xpconv._geometry import conv_geometry

    x_shape, w_shape = (cfg[0], cfg[1], cfg[2], cfg[3]), (cfg[4], cfg[1] // cfg[10], cfg[5], cfg[6])
    g = conv_geometry(x_shape, w_shape, None, stride=cfg[7], padding=cfg[8], dilation=cfg[9], groups=cfg[10])
    assert _patches.strip_size(g) and not (g.stride == (1, 1) and g.o <= g.c)  # strips, and col2im's route
    saved, _plan.FOLDED_MAX_PIXELS = _plan.FOLDED_MAX_PIXELS, folded_max_pixels
    try:
        check_against_oracle(np.random.default_rng(7), cfg, np.float64, algorithm="im2col")
    finally:
        _plan.FOLDED_MAX_PIXELS = saved
