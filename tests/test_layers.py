"""Layers, loss and optimizer: finite differences, a whole network, training, devices."""

import numpy as np
import pytest

import xpconv
from xpconv.nn import (
    SGD,
    AvgPool2D,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Dropout,
    Flatten,
    MaxPool2D,
    ReLU,
    Sequential,
    SoftmaxCrossEntropy,
    Tanh,
    lenet5_network,
)

from cases import random_array


def numeric_grad(f, arr, rng, count=10, eps=1e-6):
    """Central differences of the scalar ``f()`` at ``count`` random entries of ``arr``."""
    out = []
    for flat in rng.choice(arr.size, size=min(count, arr.size), replace=False):
        idx = np.unravel_index(flat, arr.shape)
        old = arr[idx]
        arr[idx] = old + eps
        up = f()
        arr[idx] = old - eps
        down = f()
        arr[idx] = old
        out.append((idx, (up - down) / (2 * eps)))
    return out


def check_layer(layer, x, rng):
    """L = sum(go * layer(x)): backward's input and parameter gradients vs differences."""
    y = layer.forward(x)
    go = random_array(rng, y.shape)
    grad_x = layer.backward(go)
    assert grad_x.shape == x.shape

    def loss():
        return float(np.sum(go * layer.forward(x)))

    for idx, num in numeric_grad(loss, x, rng):
        assert abs(num - grad_x[idx]) <= 1e-6 * max(1.0, abs(num))
    for p in layer.parameters():
        assert p.grad is not None and p.grad.shape == p.value.shape
        analytic = p.grad.copy()
        for idx, num in numeric_grad(loss, p.value, rng):
            assert abs(num - analytic[idx]) <= 1e-6 * max(1.0, abs(num)), p.name


@pytest.mark.parametrize(
    "make",
    [
        lambda: Conv2D(2, 3, 3, padding=1, dtype="float64", seed=1),
        lambda: Conv2D(4, 4, (2, 3), stride=2, groups=2, bias=False, dtype="float64", seed=2),
        lambda: Conv2D(2, 4, 5, padding="same", dilation=1, dtype="float64", seed=3),
    ],
)
def test_conv_layer_gradients(rng, make):
    layer = make()
    c = layer.weight.value.shape[1] * layer.groups
    check_layer(layer, random_array(rng, (2, c, 6, 7)), rng)


@pytest.mark.parametrize(
    "layer",
    [
        MaxPool2D(2),
        MaxPool2D(3, stride=2, padding=1, ceil_mode=True),
        AvgPool2D(3, 1, 1),
        AvgPool2D((2, 3), ceil_mode=True, count_include_pad=False),
    ],
)
def test_pooling_layer_gradients(rng, layer):
    check_layer(layer, random_array(rng, (2, 3, 6, 7)), rng)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ConvTranspose2D(3, 2, 4, stride=2, padding=1, dtype="float64", seed=1),
        lambda: ConvTranspose2D(4, 6, (3, 2), stride=(2, 1), output_padding=(1, 0), groups=2, dtype="float64", seed=2),
        lambda: ConvTranspose2D(3, 3, 3, padding=1, bias=False, dtype="float64", seed=3),
    ],
)
def test_conv_transpose_layer_gradients(rng, make):
    layer = make()
    check_layer(layer, random_array(rng, (2, layer.weight.value.shape[0], 5, 4)), rng)


def test_lenet5_shapes_and_gradient(rng):
    model = lenet5_network(28, 28, dtype="float64", seed=0)
    assert [tuple(p.value.shape) for p in model.parameters()][::2] == [
        (6, 1, 5, 5), (16, 6, 5, 5), (120, 400), (84, 120), (10, 84),
    ]  # fmt: skip
    network = lenet5_network(16, 12, dtype="float64", seed=1)
    network.input_gradient = True  # the whole network's input gradient, checked by differences
    check_layer(network, random_array(rng, (2, 1, 16, 12)), rng)
    with pytest.raises(ValueError, match="at least 12x12 pixels, got 8x8"):
        lenet5_network(8, 8)


def test_a_network_computes_no_gradient_for_its_images(rng, monkeypatch):
    """By default a Sequential's first layer computes only its parameters' gradients (the images
    need none): the same parameter gradients, no input gradient, and conv2d_backward asked for none."""
    x = random_array(rng, (3, 1, 16, 12))
    grads = {}
    forward, original = xpconv.nn.Conv2D.kernels
    for needed in (True, False):
        model = lenet5_network(16, 12, dtype="float64", seed=1)
        model.input_gradient = needed
        go = np.random.default_rng(0).standard_normal(model.forward(x).shape)
        asked = []

        def spy(*args, asked=asked, **kwargs):
            asked.append(kwargs["with_input"])
            return original(*args, **kwargs)

        monkeypatch.setattr(xpconv.nn.Conv2D, "kernels", (forward, spy))
        result = model.backward(go)
        assert (result is None) != needed and asked == [True, needed]  # conv2, then conv1
        grads[needed] = [p.grad for p in model.parameters()]
    for a, b in zip(grads[True], grads[False], strict=True):
        np.testing.assert_array_equal(a, b)
    inner = Sequential(Dense(4, 3, seed=0), Tanh())
    outer = Sequential(Dense(5, 4, seed=1), inner)
    assert inner.input_gradient  # the layer before it needs its input gradient
    outer.forward(random_array(rng, (2, 5)).astype(np.float32))
    assert outer.backward(np.ones((2, 3), np.float32)) is None


def test_pooling_layer_backward_before_forward():
    with pytest.raises(RuntimeError, match="MaxPool2D.backward needs a forward in training mode first"):
        MaxPool2D(2).backward(np.zeros((1, 1, 1, 1)))


def test_dense_layer_gradients(rng):
    check_layer(Dense(5, 3, dtype="float64", seed=0), random_array(rng, (4, 5)), rng)


@pytest.mark.parametrize("layer", [Tanh(), ReLU(), Flatten()])
def test_parameter_free_layer_gradients(rng, layer):
    check_layer(layer, random_array(rng, (3, 2, 4, 3)), rng)


def test_dropout(rng):
    x = random_array(rng, (200, 50))
    layer = Dropout(0.25, seed=0)
    y = layer.forward(x)
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_allclose(y[kept], x[kept] / 0.75)
    go = random_array(rng, x.shape)
    np.testing.assert_allclose(layer.backward(go), np.where(kept, go / 0.75, 0.0))
    layer.eval()
    assert layer.forward(x) is x
    assert layer.backward(go) is go
    with pytest.raises(ValueError, match="p must be in"):
        Dropout(1.0)


def test_softmax_cross_entropy(rng):
    logits = random_array(rng, (6, 4)) * 3
    labels = rng.integers(0, 4, size=6)
    loss_fn = SoftmaxCrossEntropy()
    loss = loss_fn.forward(logits, labels)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(probs[np.arange(6), labels])), rel=1e-12)
    grad = loss_fn.backward()
    for idx, num in numeric_grad(lambda: SoftmaxCrossEntropy().forward(logits, labels), logits, rng, count=24):
        assert abs(num - grad[idx]) <= 1e-7
    # Stable for huge logits: no overflow, no NaN.
    big = np.array([[1000.0, 0.0, -1000.0]])
    assert SoftmaxCrossEntropy().forward(big, np.array([0])) == pytest.approx(0.0, abs=1e-12)
    assert SoftmaxCrossEntropy().forward(big, np.array([2])) == pytest.approx(2000.0)


def _network(seed=0, dtype="float64"):
    return Sequential(
        Conv2D(1, 3, 3, padding="same", dtype=dtype, seed=seed),
        Tanh(),
        Flatten(),
        Dense(3 * 5 * 4, 4, dtype=dtype, seed=seed + 1),
    )


def test_whole_network_gradient(rng):
    model = _network()
    model.input_gradient = True  # the images' gradient too, checked by differences
    x = random_array(rng, (3, 1, 5, 4))
    labels = rng.integers(0, 4, size=3)
    loss_fn = SoftmaxCrossEntropy()
    loss_fn.forward(model.forward(x), labels)
    grad_x = model.backward(loss_fn.backward())

    def loss():
        return SoftmaxCrossEntropy().forward(model.forward(x), labels)

    for idx, num in numeric_grad(loss, x, rng):
        assert abs(num - grad_x[idx]) <= 1e-7
    for p in model.parameters():
        analytic = p.grad.copy()
        for idx, num in numeric_grad(loss, p.value, rng, count=6):
            assert abs(num - analytic[idx]) <= 1e-7, p


def test_sgd_momentum_matches_formula(rng):
    layer = Dense(3, 2, dtype="float64", seed=0)
    w0 = layer.weight.value.copy()
    g1, g2 = random_array(rng, w0.shape), random_array(rng, w0.shape)
    opt = SGD(layer.parameters(), lr=0.1, momentum=0.5)
    layer.weight.grad = g1
    opt.step()
    layer.weight.grad = g2
    opt.step()
    v1 = -0.1 * g1
    v2 = 0.5 * v1 - 0.1 * g2
    np.testing.assert_allclose(layer.weight.value, w0 + v1 + v2, rtol=1e-12)
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        SGD([], lr=0)


def _pattern_data(rng, n):
    """Four classes of 6x6 images, each a fixed random template plus noise."""
    templates = rng.standard_normal((4, 1, 6, 6))
    labels = rng.integers(0, 4, size=n)
    return (templates[labels] + 0.8 * rng.standard_normal((n, 1, 6, 6))).astype(np.float32), labels


def test_training_reduces_loss():
    rng = np.random.default_rng(0)
    x, labels = _pattern_data(rng, 240)
    model = Sequential(
        Conv2D(1, 4, 3, padding=1, seed=0), ReLU(), Dropout(0.1, seed=0), Flatten(), Dense(4 * 36, 4, seed=1)
    )
    loss_fn, opt = SoftmaxCrossEntropy(), SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(5):
        for start in range(0, 240, 30):
            losses.append(loss_fn.forward(model.forward(x[start : start + 30]), labels[start : start + 30]))
            model.backward(loss_fn.backward())
            opt.step()
    assert np.mean(losses[:4]) > 1.0
    assert np.mean(losses[-8:]) < 0.3 * np.mean(losses[:4])
    model.eval()
    assert (model.forward(x).argmax(axis=1) == labels).mean() > 0.9


def test_parameters_use_dtype_and_seed():
    a, b = Conv2D(2, 3, 3, seed=7), Conv2D(2, 3, 3, seed=7)
    np.testing.assert_array_equal(a.weight.value, b.weight.value)
    assert a.weight.value.dtype == np.float32
    assert not np.array_equal(a.weight.value, Conv2D(2, 3, 3, seed=8).weight.value)
    limit = np.sqrt(6.0 / (2 * 9 + 3 * 9))
    assert np.abs(a.weight.value).max() <= limit
    with pytest.raises(TypeError, match="dtype must be float16, float32 or float64"):
        Dense(2, 2, dtype="int32")


def test_device_mismatch_names_both_devices(fake_cupy_module):
    layer = Conv2D(1, 2, 3, device="cuda")
    assert layer.device == "cuda:0"
    with pytest.raises(ValueError, match=r"Conv2D parameters are on cuda:0 but its input is on cpu"):
        layer.forward(np.zeros((1, 1, 5, 5), np.float32))
    dense = Dense(3, 2, device="cpu")
    with pytest.raises(ValueError, match=r"Dense parameters are on cpu but its input is on cuda:0"):
        dense.forward(xpconv.to_device(np.zeros((1, 3), np.float32), "cuda"))


def test_default_device_from_environment(fake_cupy_module, monkeypatch):
    monkeypatch.setenv("XPCONV_DEVICE", "cuda")
    assert Dense(2, 2).device == "cuda:0"
    monkeypatch.delenv("XPCONV_DEVICE")
    assert Dense(2, 2).device == "cpu"


def test_training_step_on_cuda_namespace(fake_cupy_module):
    cp = fake_cupy_module
    rng = np.random.default_rng(1)
    x, labels = _pattern_data(rng, 30)
    model = Sequential(
        Conv2D(1, 2, 3, padding=1, device="cuda", seed=0),
        Tanh(),
        Dropout(0.2, seed=0),
        Flatten(),
        Dense(72, 4, device="cuda", seed=1),
        input_gradient=True,
    )
    loss_fn, opt = SoftmaxCrossEntropy(), SGD(model.parameters(), lr=0.1)
    xd, yd = xpconv.to_device(x, "cuda"), xpconv.to_device(labels, "cuda")
    first = loss_fn.forward(model.forward(xd), yd)
    grad = model.backward(loss_fn.backward())
    assert isinstance(grad, cp.ndarray)
    opt.step()
    assert all(isinstance(p.value, cp.ndarray) for p in model.parameters())
    model.eval()
    assert loss_fn.forward(model.forward(xd), yd) < first


def test_relu_follows_pytorch_at_zero_nan_and_infinities():
    """max(x, 0): −∞ gives 0 (not NaN), NaN stays NaN; the gradient passes where the output is not
    <= 0, so through NaN and not at 0 (torch.nn.functional.relu's forward and threshold_backward)."""
    x = np.array([-np.inf, -1.0, 0.0, 2.0, np.inf, np.nan])
    layer = ReLU()
    np.testing.assert_array_equal(layer.forward(x), [0.0, 0.0, 0.0, 2.0, np.inf, np.nan])
    np.testing.assert_array_equal(layer.backward(np.full(6, 3.0)), [0.0, 0.0, 0.0, 3.0, 3.0, 3.0])
    half = ReLU()
    assert half.forward(x.astype(np.float16)).dtype == np.float16
    assert half.backward(np.ones(6, np.float16)).dtype == np.float16
