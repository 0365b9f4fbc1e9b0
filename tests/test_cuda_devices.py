"""Every kernel, layer and command on ``cuda`` and ``cuda:1`` of the strict CuPy stand-in, which
runs xpconv's CUDA C kernels on the CPU: every configuration of the CPU tests against the oracle
(and the property test over random ones), results equal to the CPU's within the dtype
tolerances, outputs on the inputs' device, no host synchronisation inside the kernels, one random
generator per Dropout layer, and each call's launches, bytes written and memory held."""

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xpconv
from xpconv._chunking import workspace_limit
from xpconv._plan import conv_plan, winograd_applies
from xpconv.tools.cli import main

import fake_cupy
from cases import (
    AVG_CASES,
    CONFIGS,
    MAX_CASES,
    TRANSPOSE_CASES,
    assert_close,
    check_against_oracle,
    check_avg_pool,
    check_conv_transpose,
    check_max_pool,
    check_max_pool_indices,
    check_max_unpool,
    conv_configs,
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
@pytest.mark.parametrize(("device", "workspace"), [("cuda", None), ("cuda:1", 1)])  # 1 byte: a sample a chunk
@pytest.mark.parametrize("algorithm", ["auto", "im2col", "direct"])
@pytest.mark.parametrize("cfg", CONFIGS)
def test_conv2d_on_device_matches_oracle(fake_cupy_module, rng, cfg, algorithm, device, dtype, workspace):
    """Every configuration of the CPU's oracle test, by each CUDA algorithm (the kernels' very
    sources run on the CPU), unchunked on one device and a sample a chunk on the other."""
    check_against_oracle(rng, cfg, dtype, to=_on(device), algorithm=algorithm, workspace_bytes=workspace)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cfg", CONFIGS[::3])
@pytest.mark.parametrize("workspace", [None, 1])  # 1 byte: one sample per chunk
def test_conv2d_on_device_equals_cpu(fake_cupy_module, rng, cfg, device, dtype, workspace):
    x, wt, b, kw = make_case(rng, cfg, dtype)
    _check_conv_on_device(rng, x, wt, b, device, dtype, **kw, workspace_bytes=workspace)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the stand-in is stateless between examples
@given(cfg=conv_configs(), seed=st.integers(0, 2**32 - 1), algorithm=st.sampled_from(["im2col", "direct", "auto"]))
def test_conv2d_property_on_device_matches_oracle(fake_cupy_module, cfg, seed, algorithm):
    check_against_oracle(np.random.default_rng(seed), cfg, np.float64, to=_on("cuda"), algorithm=algorithm)


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


def test_dropout_masks_are_the_same_on_every_device(fake_cupy_module, rng):
    """Dropout draws its masks on the host (a generator whose state a checkpoint keeps) and
    copies them over: no device generator, the same masks on the CPU and on each GPU."""
    from xpconv.nn import Dropout

    x = random_array(rng, (4, 5))
    expected = Dropout(0.3, seed=0).forward(x)
    for device in ("cuda:1", "cuda:0"):
        layer = Dropout(0.3, seed=0)
        fake_cupy.reset_counters()
        y = layer.forward(xpconv.to_device(x, device))
        _assert_on([y, layer.backward(y)], device)
        assert fake_cupy.counters["rng_constructions"] == 0
        np.testing.assert_array_equal(xpconv.to_numpy(y), expected)


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
@pytest.mark.parametrize("cfg", MAX_CASES)
def test_max_pool_indices_on_device_match_oracle_and_cpu(fake_cupy_module, rng, cfg, device, dtype):
    seed = int(rng.integers(2**32))
    on_device = check_max_pool_indices(np.random.default_rng(seed), cfg, dtype, to=_on(device))
    np.testing.assert_array_equal(on_device, check_max_pool_indices(np.random.default_rng(seed), cfg, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cfg", MAX_CASES)
def test_max_unpool_on_device_matches_oracle(fake_cupy_module, rng, cfg, device, dtype):
    fake_cupy.reset_counters()
    check_max_unpool(rng, cfg, dtype, to=_on(device))
    assert fake_cupy.counters["raw_launches"] == 1  # the unpooling: one gather kernel


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cfg", TRANSPOSE_CASES)
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


def _counted(call) -> tuple[int, int]:
    """(launches, bytes written) of a call after a first one (which loads kernels and constants)."""
    call()
    fake_cupy.reset_counters()
    call()
    return fake_cupy.counters["launches"], fake_cupy.counters["bytes_written"]


BENCH_CONVS = ("mnist", "cifar", "resnet", "stride2", "depthwise", "pointwise", "stride2-deep")
# Kernels per call on CUDA, forward and backward: the budgets for float32 and float64;
# float16 adds a cast of the weight in and of the weight and bias gradients out (im2col).
CONV_BUDGET = {np.float16: (4, 10), np.float32: (4, 8), np.float64: (4, 8)}
DIRECT_BUDGET = (1, 3)  # depthwise and the other small layers


def _algorithms(shape) -> list[str]:
    """ "auto" (the direct kernels for mnist and depthwise), and each other algorithm that applies
    (direct kernels forced on the large layers would only spend the stand-in's CPU time)."""
    g = shape.geometry()
    return ["auto", "im2col"] + (["winograd"] if winograd_applies(g) else [])


def _must_write(shape, algorithm: str, n: int, dtype) -> tuple[int, int]:
    """Bytes the algorithm must materialise, forward and backward: the patch matrix (and the
    output gradient laid out as a GEMM operand), its gradient, each GEMM's product, Winograd's
    transforms and products, the direct kernels' partial sums, and the outputs."""
    from xpconv._cuda.direct import segments
    from xpconv._winograd import TILE, tiles

    g = shape.geometry(n)
    d = np.dtype(dtype).itemsize
    a = 4 if d == 2 else d  # the compute dtype
    p, k, cg = g.pixels, g.taps, g.c // g.groups
    x, y, w = n * g.c * int(np.prod(g.size)) * d, n * g.o * p * d, (g.o * cg * k + g.o) * d  # inputs', outputs' sizes
    if algorithm == "direct":
        return y, x + w + g.o * (cg * k + 1) * segments(g) * a
    if algorithm == "winograd":
        t, a2 = n * tiles(g.out[0], TILE) * tiles(g.out[1], TILE), (TILE + 2) ** 2
        forward = (a2 * g.o * g.c + a2 * g.c * t + a2 * g.o * t) * a + y
        return forward, (2 * a2 * g.o * g.c + 2 * a2 * (g.c + g.o) * t) * a + x + w
    patches, products = g.c * k * n * p * a, g.o * n * p * a
    cast = 0 if a == d else w // d * a  # float16: the weight in the GEMMs' dtype, their gradients before the cast
    return patches + products + y + cast, 2 * patches + products + x + w + 2 * cast


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_launch_and_byte_budgets(fake_cupy_module, dtype):
    """On CUDA the batch runs as one chunk (the default workspace is a quarter of the device's
    free memory), so a convolution launches no more kernels for many images than for one (the
    bench's 64 for mnist; 8 for the larger shapes, to keep the stand-in's host arithmetic short), on every
    bench shape by every algorithm: at most 4 forward and 8 backward in float32 and float64; 1
    and 3 by the direct kernels; and it writes at most 1.2 times what its algorithm must
    materialise (:func:`_must_write`): no padded copies, zero fills, gather slots or temporaries.
    The stand-in counts what CuPy launches around a matmul too (copies of non-contiguous
    operands, pointer arrays, casts)."""
    from xpconv.tools.bench import CONV_SHAPES, conv_inputs, conv_op

    for name in BENCH_CONVS:
        shape = CONV_SHAPES[name]
        for algorithm in _algorithms(shape):
            counts = []
            for n in (1, 64 if name == "mnist" else 8):
                inputs = conv_inputs(shape, "cuda", np.dtype(dtype).name, n=n)
                forward, backward, _ = (conv_op(op, shape, *inputs, algorithm=algorithm) for op in shape.ops)
                (fwd, fwd_bytes), (bwd, bwd_bytes) = _counted(forward), _counted(backward)
                counts.append((fwd, bwd))
                chosen = conv_plan(fake_cupy_module, shape.geometry(n), algorithm).algorithm
                must_fwd, must_bwd = _must_write(shape, chosen, n, dtype)
                assert fwd_bytes <= 1.2 * must_fwd, (name, algorithm, n, fwd_bytes / must_fwd)
                assert bwd_bytes <= 1.2 * must_bwd, (name, algorithm, n, bwd_bytes / must_bwd)
            # one chunk whatever the batch (a batch of one may skip the weight's repetition over images)
            (fwd, bwd) = counts[-1]
            assert counts[0][0] <= fwd and counts[0][1] <= bwd, (name, algorithm, counts)
            budget = DIRECT_BUDGET if chosen == "direct" else CONV_BUDGET[dtype]
            assert fwd <= budget[0] and bwd <= budget[1], (name, algorithm, fwd, bwd)


def test_depthwise_and_small_layers_take_the_direct_kernels(fake_cupy_module):
    from xpconv.tools.bench import CONV_SHAPES

    chosen = {name: conv_plan(fake_cupy_module, CONV_SHAPES[name].geometry(), "auto").algorithm for name in BENCH_CONVS}
    assert chosen == {
        "mnist": "direct",  # 25 products an output
        "cifar": "winograd",
        "resnet": "winograd",
        "stride2": "im2col",
        "depthwise": "direct",  # 9
        "pointwise": "im2col",
        "stride2-deep": "im2col",
    }
    assert (
        conv_plan(np, CONV_SHAPES["depthwise"].geometry(), "auto").algorithm == "im2col"
    )  # the CPU has no direct kernel
    with pytest.raises(ValueError, match="algorithm='direct' runs on CUDA only"):
        xpconv.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), algorithm="direct")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [1, 32])
def test_pooling_launches_one_kernel_each_way(fake_cupy_module, rng, batch, dtype):
    """On CUDA a pooling is one kernel forward and one backward, whatever its window and batch;
    the max pooling's gradient without the forward's indices finds them first (a second kernel)."""
    to = _on("cuda")
    x = to(random_array(rng, (batch, 8, 16, 16), dtype))
    for k, s, p in [(2, 2, 1), (3, 2, 1), (4, 2, 2), (3, 1, 1), (5, 1, 2)]:
        y, indices = xpconv.max_pool2d(x, k, s, p, return_indices=True)
        go = to(random_array(rng, tuple(y.shape), dtype))
        calls = [
            (functools.partial(xpconv.max_pool2d, x, k, s, p), 1),
            (functools.partial(xpconv.max_pool2d, x, k, s, p, return_indices=True), 1),
            (functools.partial(xpconv.max_pool2d_backward, go, x, k, s, p, indices=indices), 1),
            (functools.partial(xpconv.max_pool2d_backward, go, x, k, s, p), 2),
            (functools.partial(xpconv.avg_pool2d, x, k, s, p), 1),
            (functools.partial(xpconv.avg_pool2d_backward, go, x, k, s, p), 1),
        ]
        for call, expected in calls:
            launches, written = _counted(call)
            assert launches == expected, (k, s, p, call)
            outputs = call()
            assert (
                written
                == sum(a.nbytes for a in (outputs if isinstance(outputs, tuple) else (outputs,)))
                + (expected - 1) * y.size * 8
            )  # only the outputs (and the searched indices)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_and_bias_launch_budgets(fake_cupy_module, rng, dtype):
    """dense at most 4 kernels each way (float16: casts of x and the weight in, and of the
    three gradients out); bias at most 2."""
    half = dtype == np.float16
    for n in (1, 512):
        x, w, b, go = (
            xpconv.to_device(random_array(rng, s, dtype), "cuda") for s in [(n, 64), (32, 64), (32,), (n, 32)]
        )
        assert _launches(functools.partial(xpconv.dense, x, w, b)) <= 4
        assert _launches(functools.partial(xpconv.dense_backward, go, x, w)) <= 4 + 5 * half
        assert _launches(functools.partial(xpconv.bias_add, go, b)) <= 2
        assert _launches(functools.partial(xpconv.bias_backward, go)) <= 2 + half


def test_transposed_convolution_launches(fake_cupy_module, rng):
    to = _on("cuda")
    for batch in (1, 32):
        x = to(random_array(rng, (batch, 8, 16, 16), np.float32))
        w = to(random_array(rng, (8, 4, 4, 4), np.float32))
        b = to(random_array(rng, (4,), np.float32))
        go = to(random_array(rng, (batch, 4, 32, 32), np.float32))
        # forward: conv2d's input gradient (the output gradient's layout pass, a GEMM, col2im with the bias)
        forward = functools.partial(xpconv.conv_transpose2d, x, w, b, stride=2, padding=1, algorithm="im2col")
        backward = functools.partial(xpconv.conv_transpose2d_backward, go, x, w, stride=2, padding=1)
        assert _counted(forward)[0] == 3 and _counted(backward)[0] <= 8


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


@pytest.mark.slow
@pytest.mark.parametrize("workspace", [None, 24 * 2**20])
def test_device_memory_stays_within_workspace_and_outputs(fake_cupy_module, workspace):
    """The device memory a call holds at once beyond its inputs — the stand-in's peak of live
    arrays — is at most the workspace plus the outputs, on every bench convolution by every
    algorithm (batch 16: with 24 MiB the larger shapes run in several chunks); "auto" takes the
    direct kernels for mnist and depthwise, whose only scratch is their partial sums."""
    from xpconv.tools.bench import CONV_SHAPES, conv_inputs

    for name in ("mnist", "cifar", "resnet", "stride2", "depthwise", "pointwise", "stride2-deep"):
        shape = CONV_SHAPES[name]
        x, w, b, go = conv_inputs(shape, "cuda", "float32", n=16)
        limit = workspace_limit(workspace, x)
        for algorithm in _algorithms(shape):
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
