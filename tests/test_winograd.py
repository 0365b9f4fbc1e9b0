"""Winograd F(4×4, 3×3): forward and both gradients against the plain-loop oracle, finite
differences, a property test, the documented float32 accuracy up to 512 channels, the choice of
``algorithm="auto"``, and its errors."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import xpconv
from xpconv._winograd import matrices
from xpconv.tools.check import TOLERANCE, relative_error
from xpconv.tools.reference import reference_conv, reference_conv_backward

from cases import assert_close, check_against_oracle, check_finite_differences, random_array

# (N, C, H, W, O, 3, 3, stride 1, padding, dilation 1, groups 1): output sizes that are and are not
# multiples of the 4x4 tile, every padding from none to beyond the kernel, asymmetric padding.
WINOGRAD_CONFIGS = [
    pytest.param((2, 3, 8, 8, 4, 3, 3, 1, 1, 1, 1), id="8x8-pad1"),
    pytest.param((2, 2, 7, 9, 3, 3, 3, 1, 1, 1, 1), id="7x9-pad1-edges"),
    pytest.param((1, 4, 6, 6, 2, 3, 3, 1, 0, 1, 1), id="valid-4x4-out"),
    pytest.param((2, 3, 5, 11, 5, 3, 3, 1, 0, 1, 1), id="valid-3x9-out"),
    pytest.param((2, 2, 3, 3, 3, 3, 3, 1, 0, 1, 1), id="1x1-out"),
    pytest.param((2, 3, 6, 5, 2, 3, 3, 1, 2, 1, 1), id="pad2"),
    pytest.param((1, 2, 9, 7, 3, 3, 3, 1, (0, 2), 1, 1), id="pad-0-2"),
    pytest.param((2, 2, 10, 6, 3, 3, 3, 1, (3, 1), 1, 1), id="pad-beyond-kernel"),
    pytest.param((2, 5, 9, 9, 4, 3, 3, 1, "same", 1, 1), id="same"),
    pytest.param((3, 1, 12, 12, 1, 3, 3, 1, 1, 1, 1), id="one-channel"),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("cfg", WINOGRAD_CONFIGS)
def test_winograd_matches_oracle(rng, cfg, dtype):
    check_against_oracle(rng, cfg, dtype, algorithm="winograd")


@pytest.mark.parametrize("cfg", WINOGRAD_CONFIGS[::2])
def test_winograd_matches_oracle_chunked(rng, cfg):
    check_against_oracle(rng, cfg, np.float64, algorithm="winograd", workspace_bytes=1)


@pytest.mark.parametrize("workspace", [None, 1])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cfg", WINOGRAD_CONFIGS)
def test_winograd_device_strategy_matches_oracle(fake_cupy_module, rng, cfg, dtype, workspace):
    """The CUDA strategy (tiles gathered from the unpadded batch by one take and a zero scatter,
    frequency-major GEMMs, the output taken straight into place) run on the stand-in's NumPy
    data, against the oracle."""
    to = lambda a: None if a is None else xpconv.to_device(a, "cuda")  # noqa: E731
    check_against_oracle(rng, cfg, dtype, to=to, algorithm="winograd", workspace_bytes=workspace)


@pytest.mark.parametrize("algorithm", ["im2col", "winograd"])
@pytest.mark.parametrize("cfg", WINOGRAD_CONFIGS[1::3])
def test_finite_differences_per_algorithm(rng, cfg, algorithm):
    check_finite_differences(rng, cfg, algorithm=algorithm)


@st.composite
def winograd_configs(draw):
    padding = draw(st.one_of(st.integers(0, 3), st.tuples(st.integers(0, 2), st.integers(0, 2)), st.just("same")))
    h, w = draw(st.integers(3, 13)), draw(st.integers(3, 13))
    return (draw(st.integers(1, 3)), draw(st.integers(1, 4)), h, w, draw(st.integers(1, 4)), 3, 3, 1, padding, 1, 1)


@given(cfg=winograd_configs(), seed=st.integers(0, 2**32 - 1))
def test_winograd_property_matches_oracle(cfg, seed):
    check_against_oracle(np.random.default_rng(seed), cfg, np.float64, algorithm="winograd")


@pytest.mark.parametrize("channels", [64, 256, 512])
def test_float32_error_within_tolerance_up_to_512_channels(channels):
    """The documented Winograd float32 error (<= 1e-5 of the largest magnitude) holds at C = 512."""
    rng = np.random.default_rng(channels)
    x = rng.standard_normal((2, channels, 14, 14)).astype(np.float32)
    w = (rng.standard_normal((32, channels, 3, 3)) / np.sqrt(9 * channels)).astype(np.float32)
    go = rng.standard_normal((2, 32, 14, 14)).astype(np.float32)
    x64, w64, go64 = (a.astype(np.float64) for a in (x, w, go))
    hyper = dict(stride=(1, 1), pad=((1, 1), (1, 1)), dilation=(1, 1))
    y = xpconv.conv2d(x, w, padding=1, algorithm="winograd")
    grads = xpconv.conv2d_backward(go, x, w, padding=1, algorithm="winograd")
    ref = reference_conv_backward(go64, x64, w64, **hyper)
    errors = [
        relative_error(y, reference_conv(x64, w64, **hyper)),
        relative_error(grads.input, ref.input),
        relative_error(grads.weight, ref.weight),
    ]
    assert max(errors) <= TOLERANCE["float32"], errors


def test_transform_matrices_compute_a_correlation():
    """Aᵀ[(G g) ⊙ (Bᵀ d)] is the 1-D correlation of d with g, for both tile sizes."""
    rng = np.random.default_rng(0)
    for m in (2, 4):
        mats = matrices(m)
        d, g = rng.standard_normal(m + 2), rng.standard_normal(3)
        expected = [sum(d[i + k] * g[k] for k in range(3)) for i in range(m)]
        np.testing.assert_allclose(mats.AT @ ((mats.G @ g) * (mats.BT @ d)), expected, rtol=0, atol=1e-14)


def test_auto_chooses_by_the_documented_rule(rng):
    from xpconv._geometry import conv_geometry
    from xpconv._plan import conv_plan

    def choice(c, o, hw, k=3, **kw):
        g = conv_geometry((1, c, hw, hw), (o, c, k, k), None, padding=k // 2, **kw)
        return conv_plan(np, g, "auto").algorithm

    assert choice(64, 64, 56) == "winograd"  # resnet
    assert choice(32, 64, 32) == "winograd"  # cifar
    assert choice(16, 16, 28) == "im2col"  # few channels
    assert choice(128, 128, 14) == "winograd"
    assert choice(256, 256, 7) == "im2col"  # small image
    assert choice(64, 64, 56, k=5) == "im2col"
    assert choice(64, 64, 56, stride=2) == "im2col"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (dict(stride=2), ["algorithm='winograd' needs a 2-D 3x3 kernel, stride 1", "stride (2, 2)"]),
        (dict(dilation=2), ["dilation (2, 2)"]),
        (dict(groups=2), ["groups=2"]),
    ],
)
def test_winograd_where_it_does_not_apply(kwargs, words):
    x = np.zeros((1, 4, 9, 9), np.float32)
    w = np.zeros((4, 4 // kwargs.get("groups", 1), 3, 3), np.float32)
    go = np.zeros(xpconv.conv2d(x, w, **kwargs).shape, np.float32)
    for call in (
        lambda: xpconv.conv2d(x, w, algorithm="winograd", **kwargs),
        lambda: xpconv.conv2d_backward(go, x, w, algorithm="winograd", **kwargs),
    ):
        with pytest.raises(ValueError) as info:
            call()
        for word in words:
            assert word in str(info.value)


def test_unknown_algorithm():
    x = np.zeros((1, 1, 5, 5))
    with pytest.raises(ValueError, match="algorithm must be one of 'auto', 'im2col', 'winograd', 'direct', got 'fft'"):
        xpconv.conv2d(x, x[:, :, :3, :3], algorithm="fft")


def test_conv2d_layer_takes_the_algorithm(rng):
    from xpconv.nn import Conv2D

    x = random_array(rng, (2, 3, 9, 9))
    layers = [Conv2D(3, 4, 3, padding=1, dtype="float64", seed=0, algorithm=a) for a in ("im2col", "winograd")]
    outputs = [layer.forward(x) for layer in layers]
    assert_close(outputs[1], outputs[0], np.float64)
    go = random_array(rng, outputs[0].shape)
    assert_close(layers[1].backward(go), layers[0].backward(go), np.float64)
    assert_close(layers[1].weight.grad, layers[0].weight.grad, np.float64)
    with pytest.raises(ValueError, match="algorithm must be one of"):
        Conv2D(3, 4, 3, algorithm="nope")
