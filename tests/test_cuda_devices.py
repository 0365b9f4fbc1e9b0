"""Every kernel, layer and command on ``cuda`` and ``cuda:1`` of the strict CuPy stand-in:
results equal to the CPU's within the dtype tolerances, outputs on the inputs' device, no host
synchronisation inside the kernels, one random generator per Dropout layer."""

import functools

import numpy as np
import pytest

import xpconv
from xpconv._chunking import workspace_limit
from xpconv.conv import winograd_applies
from xpconv.tools.cli import main

import fake_cupy
from cases import (
    AVG_CASES,
    CONFIGS,
    MAX_CASES,
    TRANSPOSE_CASES,
    assert_close,
    check_avg_pool,
    check_conv_transpose,
    check_max_pool,
    digit_like,
    make_case,
    make_transpose_case,
    random_array,
    write_pair,
)

DEVICES = ["cuda", "cuda:1"]
DTYPES = [np.float16, np.float32, np.float64]


def _on(device):
    return lambda a: xpconv.to_device(a, device)


def _assert_on(arrays, device):
    expected = xpconv.to_device(np.zeros(1), device).device.id
    for a in arrays:
        if a is not None:
            assert isinstance(a, fake_cupy.ndarray) and a.device.id == expected, (a.device, device)


def _same_as_cpu(actual, cpu, dtype, what):
    assert_close(actual, cpu.astype(np.float64), dtype, what)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cfg", CONFIGS[::3])
@pytest.mark.parametrize("workspace", [None, 1])  # 1 byte: one sample per chunk
def test_conv2d_on_device_equals_cpu(fake_cupy_module, rng, cfg, device, dtype, workspace):
    x, wt, b, kw = make_case(rng, cfg, dtype)
    _check_conv_on_device(rng, x, wt, b, device, dtype, **kw, workspace_bytes=workspace)


def _check_conv_on_device(rng, x, wt, b, device, dtype, **kw):
    """conv2d and its gradients on ``device`` equal the CPU's, land there, and never sync the host."""
    to = _on(device)
    y_cpu = xpconv.conv2d(x, wt, b, **kw)
    go = random_array(rng, y_cpu.shape, dtype)
    g_cpu = xpconv.conv2d_backward(go, x, wt, **kw)
    xd, wd, bd, god = map(to, (x, wt, b, go))
    fake_cupy.reset_counters()
    y = xpconv.conv2d(xd, wd, bd, **kw)
    grads = xpconv.conv2d_backward(god, xd, wd, **kw)
    assert fake_cupy.counters["host_syncs"] == 0
    _assert_on([y, *grads], device)
    _same_as_cpu(y, y_cpu, dtype, "forward")
    for part in ("input", "weight", "bias"):
        _same_as_cpu(getattr(grads, part), getattr(g_cpu, part), dtype, part)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("padding", [1, 0, (2, 0), 3])  # 3: the input gradient falls back to col2im
@pytest.mark.parametrize("workspace", [None, 1])
def test_winograd_on_device_equals_cpu(fake_cupy_module, rng, device, dtype, padding, workspace):
    x, wt, b = (random_array(rng, shape, dtype) for shape in [(3, 4, 9, 7), (5, 4, 3, 3), (5,)])
    _check_conv_on_device(
        rng, x, wt, b, device, dtype, padding=padding, algorithm="winograd", workspace_bytes=workspace
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", DEVICES)
def test_dense_and_bias_on_device_equal_cpu(fake_cupy_module, rng, device, dtype):
    to = _on(device)
    x, w, b, go = (random_array(rng, s, dtype) for s in [(6, 9), (4, 9), (4,), (6, 4)])
    x4 = random_array(rng, (3, 4, 5, 2), dtype)
    fake_cupy.reset_counters()
    y = xpconv.dense(to(x), to(w), to(b))
    grads = xpconv.dense_backward(to(go), to(x), to(w))
    added = xpconv.bias_add(to(x4), to(b))
    summed = xpconv.bias_backward(to(x4))
    assert fake_cupy.counters["host_syncs"] == 0
    _assert_on([y, *grads, added, summed], device)
    _same_as_cpu(y, xpconv.dense(x, w, b), dtype, "dense")
    for part in ("input", "weight", "bias"):
        _same_as_cpu(getattr(grads, part), getattr(xpconv.dense_backward(go, x, w), part), dtype, part)
    _same_as_cpu(added, xpconv.bias_add(x4, b), dtype, "bias_add")
    _same_as_cpu(summed, xpconv.bias_backward(x4), dtype, "bias_backward")


def test_operands_on_two_devices_are_refused(fake_cupy_module, rng):
    x = xpconv.to_device(random_array(rng, (1, 2, 5, 5)), "cuda:1")
    w = xpconv.to_device(random_array(rng, (3, 2, 3, 3)), "cuda:0")
    with pytest.raises(ValueError, match=r"different devices \['cuda:0', 'cuda:1'\]"):
        xpconv.conv2d(x, w)


def _book_losses(device, steps=3):
    from xpconv.nn import SGD, SoftmaxCrossEntropy, book_network

    rng = np.random.default_rng(5)
    images = rng.standard_normal((12, 1, 10, 10)).astype(np.float64)
    labels = rng.integers(0, 10, size=12)
    model = book_network(10, 10, device=device, dtype="float64", seed=3, dropout=0.0)
    loss_fn, opt = SoftmaxCrossEntropy(), SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = xpconv.to_device(images, device), xpconv.to_device(labels, device)
    losses = []
    for _ in range(steps):
        losses.append(loss_fn.forward(model.forward(x), y))
        model.backward(loss_fn.backward())
        opt.step()
    if device != "cpu":
        _assert_on([p.value for p in model.parameters()], device)
    return losses


def test_training_steps_on_cuda_1_give_the_cpu_losses(fake_cupy_module):
    np.testing.assert_allclose(_book_losses("cuda:1"), _book_losses("cpu"), rtol=1e-12)


def test_dropout_builds_one_generator_per_device(fake_cupy_module, rng):
    from xpconv.nn import Dropout

    layer = Dropout(0.3, seed=0)
    fake_cupy.reset_counters()
    for device in ("cuda:1", "cuda:1", "cuda:1", "cuda:0", "cuda:0"):
        y = layer.forward(xpconv.to_device(random_array(rng, (4, 5)), device))
        _assert_on([y, layer.backward(y)], device)
    assert fake_cupy.counters["rng_constructions"] == 2


def test_check_command_on_cuda_1(fake_cupy_module, capsys):
    assert main(["check", "--device", "cuda:1", "--dtype", "float32"]) == 0
    assert "FAIL" not in capsys.readouterr().out


@pytest.mark.slow
def test_bench_command_on_cuda_1(fake_cupy_module, capsys):
    assert main(["bench", "--device", "cuda:1", "--shapes", "mnist", "--min-seconds", "0", "--no-book"]) == 0
    out = capsys.readouterr().out
    assert "conv2d-train-step  mnist" in out


def test_train_command_on_cuda_1(fake_cupy_module, tmp_path, capsys):
    write_pair(tmp_path, "t10k", *digit_like(np.random.default_rng(0), 120))
    argv = ["train", "--data", str(tmp_path), "--train-count", "90", "--device", "cuda:1", "--lr", "0.01", "--quiet"]
    assert main(argv) == 0
    assert "on cuda:1" in capsys.readouterr().out


@pytest.mark.parametrize("command", [["check"], ["bench", "--shapes", "mnist"], ["train"]])
def test_missing_gpu_is_one_line(fake_cupy_module, capsys, command):
    assert main([*command, "--device", "cuda:5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'cuda:5' does not exist: 2 CUDA device(s) visible" in err[0]


def _on_device_without_syncs(device):
    """``after_kernels`` for the checks: the outputs are on ``device`` and no kernel synced the host."""

    def after_kernels(outputs):
        assert fake_cupy.counters["host_syncs"] == 0
        _assert_on(outputs, device)

    return after_kernels


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("workspace", [None, 1])
def test_pooling_on_device_matches_oracle_and_cpu(fake_cupy_module, rng, device, dtype, workspace):
    """On the stand-in the pooling reduces in one step per reduction (CuPy's way) on NumPy's data:
    both ways are checked against the oracle, and the device's result against the CPU's."""
    to, extra = _on(device), dict(workspace_bytes=workspace, after_kernels=_on_device_without_syncs(device))
    for cfg in MAX_CASES:
        fake_cupy.reset_counters()
        check_max_pool(rng, cfg.values[0], dtype, ties=True, to=to, **extra)
    for cfg in AVG_CASES:
        fake_cupy.reset_counters()
        check_avg_pool(rng, cfg.values[0], dtype, to=to, **extra)
    x = random_array(rng, (2, 3, 7, 6), dtype)
    x[0, 1, :2, :2] = np.nan
    go = random_array(rng, (2, 3, 4, 4), dtype)
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    np.testing.assert_array_equal(xpconv.to_numpy(xpconv.max_pool2d(to(x), **kw)), xpconv.max_pool2d(x, **kw))
    cpu = xpconv.max_pool2d_backward(go, x, **kw)
    _same_as_cpu(xpconv.max_pool2d_backward(to(go), to(x), **kw), cpu, dtype, "max_pool2d_backward")
    _same_as_cpu(xpconv.avg_pool2d(to(x[1:]), **kw), xpconv.avg_pool2d(x[1:], **kw), dtype, "avg_pool2d")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cfg", TRANSPOSE_CASES[::2])
def test_conv_transpose_on_device_matches_oracle_and_cpu(fake_cupy_module, rng, cfg, device, dtype):
    fake_cupy.reset_counters()
    check_conv_transpose(rng, cfg, dtype, to=_on(device), after_kernels=_on_device_without_syncs(device))
    x, wt, b, kw = make_transpose_case(rng, cfg, dtype)
    _same_as_cpu(
        xpconv.conv_transpose2d(*map(_on(device), (x, wt, b)), **kw), xpconv.conv_transpose2d(x, wt, b, **kw), dtype,
        "forward",
    )  # fmt: skip


def _launches(call):
    fake_cupy.reset_counters()
    call()
    return fake_cupy.counters["launches"]


@pytest.mark.parametrize("batch", [1, 32])
def test_pooling_and_transposed_launch_a_handful_of_kernels(fake_cupy_module, rng, batch):
    """On CUDA a pooling launches the same few kernels whatever its window (one reduction over the
    windows view; one gather and one sum per row phase of the stride for the gradient), and
    whatever the batch that fits."""
    to = _on("cuda")
    x = to(random_array(rng, (batch, 8, 16, 16), np.float32))
    counts: dict[int, set] = {1: set(), 2: set()}
    for k, s, p in [(2, 2, 1), (3, 2, 1), (4, 2, 2), (3, 1, 1), (5, 1, 2)]:
        go = to(random_array(rng, tuple(xpconv.max_pool2d(x, k, s, p).shape), np.float32))
        xpconv.max_pool2d_backward(go, x, k, s, p)  # device constants are copied on first use
        xpconv.avg_pool2d_backward(go, x, k, s, p)
        calls = [
            functools.partial(xpconv.max_pool2d, x, k, s, p),
            functools.partial(xpconv.max_pool2d_backward, go, x, k, s, p),
            functools.partial(xpconv.avg_pool2d, x, k, s, p),
            functools.partial(xpconv.avg_pool2d_backward, go, x, k, s, p),
        ]
        counts[s].add(tuple(_launches(call) for call in calls))
    assert all(len(c) == 1 for c in counts.values()), counts  # the same for every window at a stride
    (one,), (two,) = counts[1], counts[2]
    assert two == (one[0], one[1] + 2, one[2], one[3] + 2), counts  # stride 2: one more take and sum
    max_fwd, max_bwd, avg_fwd, avg_bwd = two
    assert max(max_fwd, avg_fwd) <= 5 and max(max_bwd, avg_bwd) <= 24, two
    w = to(random_array(rng, (8, 4, 4, 4), np.float32))
    go = to(random_array(rng, (batch, 4, 32, 32), np.float32))
    # the forward is conv2d's input gradient: at stride 2 two row phases, a take and a sum each
    assert _launches(lambda: xpconv.conv_transpose2d(x, w, stride=2, padding=1)) <= 12
    assert _launches(lambda: xpconv.conv_transpose2d_backward(go, x, w, stride=2, padding=1)) <= 16


# Kernels per call on CUDA: conv2d forward, backward; float16 adds one cast per converted operand
# (weight, bias, each output; Winograd's inputs too, since CuPy's take needs matching dtypes).
CONV_BUDGET = {np.float16: (12, 24), np.float32: (8, 16), np.float64: (8, 16)}


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_dense_and_bias_launch_budgets(fake_cupy_module, dtype):
    """On CUDA the batch runs as one chunk (the default workspace is a quarter of the device's
    free memory), so a convolution launches the same few kernels for 1 image as for many (512
    for mnist; 8 for the larger shapes, to keep the stand-in's host arithmetic short), on every
    bench shape and by both algorithms: at most 8 forward and 16 backward (float16: the casts
    above); dense at most 4 each way; bias at most 2.  The stand-in counts what CuPy launches
    around a matmul too (copies of non-contiguous operands, pointer arrays, casts)."""
    from xpconv.tools.bench import CONV_SHAPES, conv_inputs, conv_op

    budget = CONV_BUDGET[dtype]
    for name in ("mnist", "cifar", "resnet", "stride2", "depthwise", "pointwise", "stride2-deep"):
        shape = CONV_SHAPES[name]
        algorithms = ["im2col", "winograd"] if winograd_applies(shape.geometry()) else ["im2col"]
        for algorithm in algorithms:
            counts = set()
            for n in (1, 512 if name == "mnist" else 8):
                inputs = conv_inputs(shape, "cuda", np.dtype(dtype).name, n=n)
                forward, backward, _ = (conv_op(op, shape, *inputs, algorithm=algorithm) for op in shape.ops)
                forward(), backward()  # device constants are copied on first use
                counts.add((_launches(forward), _launches(backward)))
            assert len(counts) == 1, (name, algorithm, counts)  # whatever the batch
            ((fwd, bwd),) = counts
            assert fwd <= budget[0] and bwd <= budget[1], (name, algorithm, fwd, bwd)
    rng = np.random.default_rng(0)
    half = dtype == np.float16  # casts: x and the weight in; grad_output, x, the weight in and 3 gradients out
    for n in (1, 512):
        x, w, b, go = (
            xpconv.to_device(random_array(rng, s, dtype), "cuda") for s in [(n, 64), (32, 64), (32,), (n, 32)]
        )
        assert _launches(functools.partial(xpconv.dense, x, w, b)) <= 4
        assert _launches(functools.partial(xpconv.dense_backward, go, x, w)) <= 4 + 5 * half
        assert _launches(functools.partial(xpconv.bias_add, go, b)) <= 2
        assert _launches(functools.partial(xpconv.bias_backward, go)) <= 2 + half


def test_cuda_workspace_is_a_quarter_of_free_memory(fake_cupy_module):
    from xpconv._chunking import DEFAULT_WORKSPACE_BYTES, MAX_DEVICE_WORKSPACE_BYTES, workspace_limit

    x = xpconv.to_device(np.zeros((1, 1, 4, 4)), "cuda:1")
    fake_cupy.set_memory(8 * 2**30)
    assert workspace_limit(None, x) == 2 * 2**30
    fake_cupy.set_memory(100 * 2**20)  # little free memory: the CPU's default still
    assert workspace_limit(None, x) == DEFAULT_WORKSPACE_BYTES
    fake_cupy.set_memory(200 * 2**30)
    assert workspace_limit(None, x) == MAX_DEVICE_WORKSPACE_BYTES
    assert workspace_limit(3000, x) == 3000  # an explicit bound still holds
    assert workspace_limit(None, np.zeros(1)) == DEFAULT_WORKSPACE_BYTES


@pytest.mark.parametrize("workspace", [None, 24 * 2**20])
def test_device_memory_stays_within_workspace_and_outputs(fake_cupy_module, workspace):
    """The device memory a call holds at once beyond its inputs — the stand-in's peak of live
    arrays — is at most the workspace plus the outputs, on every bench convolution by both
    algorithms (batch 16: with 24 MiB the larger shapes run in several chunks)."""
    from xpconv.tools.bench import CONV_SHAPES, conv_inputs

    for name in ("mnist", "cifar", "resnet", "stride2", "depthwise", "pointwise", "stride2-deep"):
        shape = CONV_SHAPES[name]
        x, w, b, go = conv_inputs(shape, "cuda", "float32", n=16)
        limit = workspace_limit(workspace, x)
        algorithms = ["im2col", "winograd"] if winograd_applies(shape.geometry(16)) else ["im2col"]
        for algorithm in algorithms:
            kw = dict(shape.kwargs, workspace_bytes=workspace, algorithm=algorithm)
            calls = [
                functools.partial(xpconv.conv2d, x, w, b, **kw),
                functools.partial(xpconv.conv2d_backward, go, x, w, **kw),
            ]
            for call in calls:
                call()  # device constants are made on first use
                before = fake_cupy.live_bytes()
                fake_cupy.reset_counters()
                result = call()
                outputs = sum(a.nbytes for a in (result if isinstance(result, tuple) else (result,)) if a is not None)
                held = fake_cupy.counters["peak_bytes"] - before
                assert held <= limit + outputs, (name, algorithm, held, limit, outputs)
                del result


def test_device_constants_are_copied_once_and_bounded(fake_cupy_module, monkeypatch):
    """A constant is copied to each device once; past the byte bound the cache starts again."""
    import functools as ft

    from xpconv import _constants

    @ft.cache
    def ramp(n):
        return np.arange(n, dtype=np.float64)

    first = _constants.constant(fake_cupy_module, ramp, 100)
    assert _constants.constant(fake_cupy_module, ramp, 100) is first  # kept, not copied again
    with fake_cupy.Device(1):
        assert _constants.constant(fake_cupy_module, ramp, 100) is not first  # one copy per device
    monkeypatch.setattr(_constants, "MAX_DEVICE_CONSTANT_BYTES", 2000)
    _constants.constant(fake_cupy_module, ramp, 200)  # 1,600 bytes more than the bound allows
    assert _constants.constant(fake_cupy_module, ramp, 100) is not first  # the cache started again
