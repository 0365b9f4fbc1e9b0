"""1-D and 3-D convolution, transposed convolution, pooling and unpooling, and their layers:
every kernel against the independent plain-loop oracle (the same loops as 2-D, over index tuples),
by finite differences, on the CPU and on both devices of the CuPy stand-in (the CUDA C kernels'
very sources, with their launch counts), and the errors of a wrong rank or tuple length."""

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xpconv
from xpconv.nn import (
    SGD,
    AvgPool1D,
    AvgPool3D,
    Conv1D,
    Conv3D,
    ConvTranspose1D,
    ConvTranspose3D,
    Dense,
    Flatten,
    MaxPool1D,
    MaxPool3D,
    ReLU,
    Sequential,
    SoftmaxCrossEntropy,
)

import fake_cupy
import oracle
from cases import (
    ND_AVG_POOLS,
    ND_CONVS,
    ND_MAX_POOLS,
    ND_TRANSPOSES,
    assert_close,
    assert_gradients_match,
    check_avg_pool_nd,
    check_conv_nd,
    check_conv_transpose_nd,
    check_max_pool_nd,
    conv_case_nd,
    conv_functions,
    max_pool_functions,
    random_array,
    to_host,
    transpose_case_nd,
    transpose_functions,
)

DTYPES = [np.float16, np.float32, np.float64]


def _on(device):
    return lambda a: xpconv.to_device(a, device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", ND_CONVS)
def test_conv_matches_oracle(rng, cfg, dtype):
    check_conv_nd(rng, cfg, dtype)


@pytest.mark.parametrize("cfg", ND_CONVS)
def test_conv_one_gemm_per_image_matches_oracle(monkeypatch, rng, cfg):
    """The cases' small outputs fold on the CPU: the same forced to a GEMM per image."""
    monkeypatch.setattr("xpconv._plan.FOLDED_MAX_PIXELS", 0)
    check_conv_nd(rng, cfg, np.float64, algorithm="im2col")


@pytest.mark.parametrize("cfg", ND_CONVS[::2])
def test_conv_one_sample_a_chunk_matches_oracle(rng, cfg):
    check_conv_nd(rng, cfg, np.float64, workspace_bytes=1)


@pytest.mark.parametrize("cfg", ND_CONVS)
def test_conv_finite_differences(rng, cfg):
    x, wt, b, kw, _ = conv_case_nd(rng, cfg, np.float64)
    forward, backward = conv_functions(x.ndim - 2)
    go = random_array(rng, forward(x, wt, b, **kw).shape)
    grads = backward(go, x, wt, **kw)
    assert_gradients_match(rng, lambda *a: forward(*a, **kw), go, [x, wt, b], list(grads))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("device", "workspace"), [("cuda", None), ("cuda:1", 1)])
@pytest.mark.parametrize("algorithm", ["auto", "im2col", "direct"])
@pytest.mark.parametrize("cfg", ND_CONVS)
def test_conv_on_device_matches_oracle(fake_cupy_module, rng, cfg, algorithm, device, dtype, workspace):
    check_conv_nd(rng, cfg, dtype, to=_on(device), algorithm=algorithm, workspace_bytes=workspace)


@st.composite
def conv_nd_configs(draw):
    """A random 1-D or 3-D convolution, as in :data:`ND_CONVS`."""
    dims = draw(st.sampled_from([1, 3]))
    groups = draw(st.integers(1, 2))
    c, o = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kernel = [draw(st.integers(1, 3)) for _ in range(dims)]
    dilation = [draw(st.integers(1, 2)) for _ in range(dims)]
    padding = draw(st.one_of(st.integers(0, 2), st.tuples(*[st.integers(0, 2)] * dims), st.just("same")))
    stride = 1 if padding == "same" else tuple(draw(st.integers(1, 3)) for _ in range(dims))
    # at least the kernel's span, and the padding (PyTorch's bound)
    size = [
        draw(st.integers(max(2, d * (k - 1) + 1), 9 if dims == 1 else 5)) for k, d in zip(kernel, dilation, strict=True)
    ]
    n = draw(st.integers(1, 2))
    return ((n, c, *size), (o, c // groups, *kernel), stride, padding, tuple(dilation), groups)


@given(cfg=conv_nd_configs(), seed=st.integers(0, 2**32 - 1))
def test_conv_property_matches_oracle(cfg, seed):
    check_conv_nd(np.random.default_rng(seed), cfg, np.float64)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=20)
@given(cfg=conv_nd_configs(), seed=st.integers(0, 2**32 - 1), algorithm=st.sampled_from(["im2col", "direct"]))
def test_conv_property_on_device_matches_oracle(fake_cupy_module, cfg, seed, algorithm):
    check_conv_nd(np.random.default_rng(seed), cfg, np.float64, to=_on("cuda"), algorithm=algorithm)


# --- transposed convolution ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", ND_TRANSPOSES)
def test_conv_transpose_matches_oracle(rng, cfg, dtype):
    check_conv_transpose_nd(rng, cfg, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
@pytest.mark.parametrize("cfg", ND_TRANSPOSES)
def test_conv_transpose_on_device_matches_oracle(fake_cupy_module, rng, cfg, device, dtype):
    check_conv_transpose_nd(rng, cfg, dtype, to=_on(device))


@pytest.mark.parametrize("cfg", ND_TRANSPOSES)
def test_conv_transpose_is_the_adjoint_of_conv(rng, cfg):
    """<conv_transpose(x, w), y> = <x, conv(y, w)>: the same weight, read as the convolution's."""
    x, wt, _, kw = transpose_case_nd(rng, cfg, np.float64)
    transpose, _ = transpose_functions(x.ndim - 2)
    conv, _ = conv_functions(x.ndim - 2)
    up = transpose(x, wt, **kw)
    y = random_array(rng, up.shape)
    down = conv(y, wt, stride=kw["stride"], padding=kw["padding"], dilation=kw["dilation"], groups=kw["groups"])
    assert down.shape == x.shape
    np.testing.assert_allclose(np.sum(up * y), np.sum(x * down), rtol=1e-12)


@pytest.mark.parametrize("cfg", ND_TRANSPOSES)
def test_conv_transpose_finite_differences(rng, cfg):
    x, wt, b, kw = transpose_case_nd(rng, cfg, np.float64)
    forward, backward = transpose_functions(x.ndim - 2)
    go = random_array(rng, forward(x, wt, b, **kw).shape)
    grads = backward(go, x, wt, **kw)
    assert_gradients_match(rng, lambda *a: forward(*a, **kw), go, [x, wt, b], list(grads))


# --- pooling ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", ND_MAX_POOLS)
def test_max_pool_matches_oracle(rng, cfg, dtype):
    check_max_pool_nd(rng, cfg, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", ND_AVG_POOLS)
def test_avg_pool_matches_oracle(rng, cfg, dtype):
    check_avg_pool_nd(rng, cfg, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_pooling_on_device_matches_oracle(fake_cupy_module, rng, device, dtype):
    for cfg in ND_MAX_POOLS:
        check_max_pool_nd(rng, cfg.values[0], dtype, to=_on(device))
    for cfg in ND_AVG_POOLS:
        check_avg_pool_nd(rng, cfg.values[0], dtype, to=_on(device))


@pytest.mark.parametrize("cfg", ND_AVG_POOLS)
def test_avg_pool_finite_differences(rng, cfg):
    shape, k, s, p, ceil, include, divisor = cfg
    dims = len(shape) - 2
    kw = dict(kernel_size=k, stride=s, padding=p, ceil_mode=ceil, count_include_pad=include)
    if divisor is not None:
        kw["divisor_override"] = divisor
    pool, backward = getattr(xpconv, f"avg_pool{dims}d"), getattr(xpconv, f"avg_pool{dims}d_backward")
    x = random_array(rng, shape)
    go = random_array(rng, pool(x, **kw).shape)
    assert_gradients_match(rng, lambda a: pool(a, **kw), go, [x], [backward(go, x, **kw)])


@pytest.mark.parametrize("cfg", [c for c in ND_MAX_POOLS if c.values[0][3] == 0])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_max_unpool_matches_oracle(fake_cupy_module, rng, cfg, device):
    """max_unpool1d/3d of a pooling's indices, and its gradient, against the oracle's scatter."""
    shape, k, s, _, _, _ = cfg
    dims = len(shape) - 2
    pool, _ = max_pool_functions(dims)
    y, indices = pool(random_array(rng, shape), k, s, return_indices=True)
    unpool = getattr(xpconv, f"max_unpool{dims}d")
    unpool_backward = getattr(xpconv, f"max_unpool{dims}d_backward")
    to = _on(device)
    values = random_array(rng, y.shape)
    out = unpool(to(values), to(indices), k, s, output_size=shape[2:])
    go = random_array(rng, tuple(out.shape))
    grad = unpool_backward(to(go), to(indices), k, s)
    ref, ref_grad = oracle.oracle_max_unpool(values, indices, shape[2:], go)
    np.testing.assert_array_equal(to_host(out), ref)
    np.testing.assert_array_equal(to_host(grad), ref_grad)


@pytest.mark.parametrize("dtype", DTYPES)
def test_launches_on_cuda(fake_cupy_module, rng, dtype):
    """On CUDA a 1-D or 3-D layer takes the 2-D path's launches: a pooling one kernel each way
    (two for a max pooling's gradient without indices), a convolution within the 2-D budgets (im2col
    at most 4 forward and 8 (float16 10) backward, the direct kernels 1 and 3)."""
    to = _on("cuda")

    def launches(call):
        call()
        fake_cupy.reset_counters()
        call()
        return fake_cupy.counters["launches"]

    for size in [(12,), (4, 6, 5)]:
        dims = len(size)
        x = to(random_array(rng, (3, 4, *size), dtype))
        max_pool, max_backward = max_pool_functions(dims)
        y, indices = max_pool(x, 2, return_indices=True)
        go = to(random_array(rng, tuple(y.shape), dtype))
        assert launches(functools.partial(max_pool, x, 2)) == 1
        assert launches(functools.partial(max_backward, go, x, 2, indices=indices)) == 1
        assert launches(functools.partial(max_backward, go, x, 2)) == 2
        avg_pool, avg_backward = getattr(xpconv, f"avg_pool{dims}d"), getattr(xpconv, f"avg_pool{dims}d_backward")
        assert launches(functools.partial(avg_pool, x, 2)) == launches(functools.partial(avg_backward, go, x, 2)) == 1
        conv, conv_backward = conv_functions(dims)
        w, b = to(random_array(rng, (8, 4, *[3] * dims), dtype)), to(random_array(rng, (8,), dtype))
        go = to(random_array(rng, (3, 8, *size), dtype))
        for algorithm, budget in [("im2col", (4, 10 if dtype == np.float16 else 8)), ("direct", (1, 3))]:
            fwd = launches(functools.partial(conv, x, w, b, padding=1, algorithm=algorithm))
            bwd = launches(functools.partial(conv_backward, go, x, w, padding=1, algorithm=algorithm))
            assert fwd <= budget[0] and bwd <= budget[1], (dims, algorithm, fwd, bwd)


# --- layers -------------------------------------------------------------------------------------


def test_layers_call_their_kernels(rng):
    """Each 1-D and 3-D layer's forward and backward are its kernel's, its parameters PyTorch's shapes."""
    for dims, conv, transpose, max_pool, avg_pool in [
        (1, Conv1D, ConvTranspose1D, MaxPool1D, AvgPool1D),
        (3, Conv3D, ConvTranspose3D, MaxPool3D, AvgPool3D),
    ]:
        x = random_array(rng, (2, 4, *[6] * dims))
        layer = conv(4, 6, 3, padding=1, groups=2, dtype="float64", seed=0)
        assert layer.weight.value.shape == (6, 2, *[3] * dims)
        y = layer.forward(x)
        np.testing.assert_array_equal(
            y, conv_functions(dims)[0](x, layer.weight.value, layer.bias.value, padding=1, groups=2)
        )
        go = random_array(rng, y.shape)
        grad_x = layer.backward(go)
        grads = conv_functions(dims)[1](go, x, layer.weight.value, padding=1, groups=2)
        np.testing.assert_array_equal(grad_x, grads.input)
        np.testing.assert_array_equal(layer.weight.grad, grads.weight)
        up = transpose(4, 3, 2, stride=2, dtype="float64", seed=0)
        assert up.weight.value.shape == (4, 3, *[2] * dims)
        assert up.forward(x).shape == (2, 3, *[12] * dims)
        for pool in (max_pool(2), avg_pool(2)):
            pooled = pool.forward(x)
            assert pooled.shape == (2, 4, *[3] * dims)
            assert pool.backward(np.ones_like(pooled)).shape == x.shape


def test_a_1d_network_learns(rng):
    """Conv1D → ReLU → MaxPool1D → Flatten → Dense on signals whose class is where a bump is:
    twenty SGD steps lower the loss, and the state dict has PyTorch's keys."""
    labels = rng.integers(0, 3, size=48)
    x = 0.3 * rng.standard_normal((48, 1, 24))
    for k, label in enumerate(labels):
        x[k, 0, 8 * label : 8 * label + 8] += 1.0
    model = Sequential(
        Conv1D(1, 4, 5, padding=2, dtype="float64", seed=1),
        ReLU(),
        MaxPool1D(2),
        Flatten(),
        Dense(48, 3, dtype="float64", seed=2),
    )
    assert list(model.state_dict()) == ["0.weight", "0.bias", "4.weight", "4.bias"]
    loss_fn, opt = SoftmaxCrossEntropy(), SGD(model.parameters(), lr=0.2)
    losses = []
    for _ in range(20):
        losses.append(loss_fn.forward(model.forward(x), labels))
        model.backward(loss_fn.backward())
        opt.step()
    assert losses[-1] < 0.5 * losses[0], losses


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: xpconv.conv1d(np.zeros((1, 2, 5, 5)), np.zeros((1, 2, 3))), ValueError,
         ["conv1d: x must be (N, C, L), got shape (1, 2, 5, 5)"]),
        (lambda: xpconv.conv3d(np.zeros((1, 2, 4, 4, 4)), np.zeros((1, 2, 3, 3))), ValueError,
         ["conv3d: weight must be (O, C/groups, kd, kh, kw), got shape (1, 2, 3, 3)"]),
        (lambda: xpconv.conv3d(np.zeros((1, 2, 4, 4, 4)), np.zeros((1, 2, 3, 3, 3)), stride=(1, 2)), TypeError,
         ["stride must be an int or a tuple of 3 ints, got (1, 2)"]),
        (lambda: xpconv.conv1d(np.zeros((1, 2, 5)), np.zeros((1, 2, 3)), padding=(1, 1)), TypeError,
         ["padding must be an int, got (1, 1)"]),
        (lambda: xpconv.conv1d(np.zeros((1, 2, 5)), np.zeros((1, 2, 3)), algorithm="winograd"), ValueError,
         ["algorithm='winograd' needs a 2-D 3x3 kernel"]),
        (lambda: xpconv.max_pool3d(np.zeros((1, 2, 4, 4)), 2), ValueError,
         ["max_pool3d: x must be (N, C, D, H, W), got shape (1, 2, 4, 4)"]),
        (lambda: xpconv.avg_pool1d(np.zeros((1, 2, 5)), 2, padding=2), ValueError,
         ["padding must be at most half of kernel_size"]),
        (lambda: xpconv.conv_transpose3d(np.zeros((1, 2, 3, 3, 3)), np.zeros((2, 1, 2, 2, 2)), output_padding=1),
         ValueError, ["output_padding must be smaller than either stride or dilation"]),
        (lambda: xpconv.max_unpool3d(np.zeros((1, 1, 2, 2, 2)), np.zeros((1, 1, 2, 2, 2), np.int64), 2,
                                     output_size=(4, 4)), TypeError,
         ["output_size must be the output's 3 spatial sizes or its whole shape (5 ints), got (4, 4)"]),
        (lambda: Conv3D(2, 2, (3, 3)), TypeError, ["kernel_size must be an int or a tuple of 3 ints, got (3, 3)"]),
        (lambda: MaxPool1D((2, 2)), TypeError, ["kernel_size must be an int, got (2, 2)"]),
    ],
)  # fmt: skip
def test_errors_name_the_function_and_the_layout(call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), f"{word!r} not in {info.value!r}"


def test_inputs_are_not_modified(rng):
    x, w = random_array(rng, (2, 3, 4, 5, 4)), random_array(rng, (2, 3, 3, 3, 3))
    copies = x.copy(), w.copy()
    y = xpconv.conv3d(x, w, padding=1)
    xpconv.conv3d_backward(random_array(rng, y.shape), x, w, padding=1)
    pooled = xpconv.max_pool3d(x, 2, ceil_mode=True)
    xpconv.max_pool3d_backward(random_array(rng, pooled.shape), x, 2, ceil_mode=True)
    np.testing.assert_array_equal(x, copies[0])
    np.testing.assert_array_equal(w, copies[1])


# --- held out: PyTorch, where it is installed -------------------------------------------------


@pytest.mark.parametrize("dims", [1, 3])
def test_every_kernel_matches_torch(rng, dims):
    """Each 1-D or 3-D kernel, its gradients and a max pooling's indices against
    ``torch.nn.functional`` (float64), including what the oracle does not model: PyTorch's own rules."""
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    size = (13,) if dims == 1 else (5, 6, 7)

    def both(name, inputs, **kw):
        """xpconv's and PyTorch's results and input gradients of ``name``."""
        leaves = [torch.tensor(a, requires_grad=True) for a in inputs]
        expected = getattr(functional, name)(*leaves, **kw)
        go = random_array(rng, tuple(expected.shape))
        expected.backward(torch.tensor(go))
        return getattr(xpconv, name)(*inputs, **kw), expected.detach().numpy(), go, [t.grad.numpy() for t in leaves]

    for kw in [dict(stride=2, padding=1, dilation=2, groups=2), dict(padding="same")]:
        x, w = random_array(rng, (2, 4, *size)), random_array(rng, (6, 2 if "groups" in kw else 4, *[3] * dims))
        b = random_array(rng, (6,))
        y, expected, go, grads = both(f"conv{dims}d", [x, w, b], **kw)
        assert_close(y, expected, np.float64, "conv")
        ours = getattr(xpconv, f"conv{dims}d_backward")(go, x, w, **kw)
        for part, reference in zip(("input", "weight", "bias"), grads, strict=True):
            assert_close(getattr(ours, part), reference, np.float64, part)
    kw = dict(stride=2, padding=1, output_padding=1, groups=2)
    x, w, b = random_array(rng, (2, 4, *size)), random_array(rng, (4, 3, *[3] * dims)), random_array(rng, (6,))
    y, expected, go, grads = both(f"conv_transpose{dims}d", [x, w, b], **kw)
    assert_close(y, expected, np.float64, "conv_transpose")
    ours = getattr(xpconv, f"conv_transpose{dims}d_backward")(go, x, w, **kw)
    for part, reference in zip(("input", "weight", "bias"), grads, strict=True):
        assert_close(getattr(ours, part), reference, np.float64, part)
    x = rng.integers(-2, 3, size=(2, 3, *size)).astype(np.float64)  # ties
    for kw in [
        dict(kernel_size=2),
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
        dict(kernel_size=2, dilation=2),
    ]:
        y, expected, go, (grad,) = both(f"max_pool{dims}d", [x], **kw)
        np.testing.assert_array_equal(y, expected)
        assert_close(getattr(xpconv, f"max_pool{dims}d_backward")(go, x, **kw), grad, np.float64, "max pool backward")
        _, indices = getattr(xpconv, f"max_pool{dims}d")(x, **kw, return_indices=True)
        _, torch_indices = getattr(functional, f"max_pool{dims}d")(torch.tensor(x), **kw, return_indices=True)
        np.testing.assert_array_equal(indices, torch_indices.numpy())
        if "dilation" not in kw:
            values = random_array(rng, indices.shape)
            unpool = {k: v for k, v in kw.items() if k in ("kernel_size", "stride", "padding")}
            expected = getattr(functional, f"max_unpool{dims}d")(
                torch.tensor(values), torch_indices, **unpool, output_size=size
            )
            ours = getattr(xpconv, f"max_unpool{dims}d")(values, indices, **unpool, output_size=size)
            np.testing.assert_array_equal(ours, expected.numpy())
    x = random_array(rng, (2, 3, *size))
    for kw in [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)]:
        y, expected, go, (grad,) = both(f"avg_pool{dims}d", [x], **kw)
        assert_close(y, expected, np.float64, "avg pool")
        assert_close(getattr(xpconv, f"avg_pool{dims}d_backward")(go, x, **kw), grad, np.float64, "avg pool backward")
