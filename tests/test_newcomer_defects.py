"""The defects a newcomer's trial found (issue 19, item 5): each bad input is refused in one clear
line naming the argument or flag; the messages and help say what is true."""

import warnings

import numpy as np
import pytest

import xpconv
from xpconv.nn import SGD, Conv2D, Dense, SoftmaxCrossEntropy
from xpconv.nn.data import load_mnist
from xpconv.tools.cli import build_parser, main

from cases import random_array

RNG = np.random.default_rng(0)
X = random_array(RNG, (2, 3, 6, 6), np.float32)
W = random_array(RNG, (4, 3, 3, 3), np.float32)
GO = random_array(RNG, (2, 4, 4, 4), np.float32)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: xpconv.conv2d(X, None), "weight"),
        (lambda: xpconv.conv2d(None, W), "x"),
        (lambda: xpconv.conv2d_backward(None, X, W), "grad_output"),
        (lambda: xpconv.conv2d_backward(GO, X, None), "weight"),
        (lambda: xpconv.dense(None, W[:, :, 0, 0]), "x"),
        (lambda: xpconv.dense_backward(GO[:, :, 0, 0], X[:, :, 0, 0], None), "weight"),
        (lambda: xpconv.bias_add(None, W[:, 0, 0, 0]), "x"),
        (lambda: xpconv.bias_backward(None), "grad_output"),
    ],
)
def test_none_for_a_required_array_is_a_type_error_naming_it(call, name):
    with pytest.raises(TypeError, match=rf"^{name} must be a NumPy or CuPy array, got NoneType"):
        call()


@pytest.mark.parametrize("value", ["no", 0, 1, None, np.float32(1)])
def test_with_bias_must_be_a_bool(value):
    with pytest.raises(TypeError, match="with_bias must be True or False"):
        xpconv.conv2d_backward(GO, X, W, with_bias=value)
    with pytest.raises(TypeError, match="with_bias must be True or False"):
        xpconv.dense_backward(GO[:, :, 0, 0], X[:, :, 0, 0], W[:, :, 0, 0], with_bias=value)


def test_with_bias_takes_numpy_bools():
    assert xpconv.conv2d_backward(GO, X, W, with_bias=np.bool_(False)).bias is None


@pytest.mark.parametrize(
    ("args", "kwargs", "words"),
    [
        ((1, 16, 0), {}, "kernel_size must be positive"),
        ((0, 16, 5), {}, "in_channels must be positive"),
        ((1, 0, 5), {}, "out_channels must be positive"),
        ((1, 16, (5, -1)), {}, "kernel_size must be positive"),
        ((1.5, 16, 5), {}, "in_channels must be an int"),
        ((2, 4, 3), {"groups": 0}, "groups must be positive"),
    ],
)
def test_conv2d_layer_sizes_are_checked(args, kwargs, words):
    with pytest.raises((ValueError, TypeError), match=words):
        Conv2D(*args, **kwargs)


def test_dense_layer_sizes_are_checked():
    with pytest.raises(ValueError, match="in_features must be positive"):
        Dense(0, 3)
    with pytest.raises(ValueError, match="out_features must be positive"):
        Dense(3, 0)


@pytest.mark.parametrize("lr", [float("nan"), float("inf"), 0.0, -1.0])
def test_sgd_refuses_a_learning_rate_that_is_not_positive_and_finite(lr):
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        SGD([], lr=lr)


def test_sgd_refuses_nan_momentum():
    with pytest.raises(ValueError, match="momentum must be in"):
        SGD([], lr=0.1, momentum=float("nan"))


def test_loss_refuses_labels_out_of_range_and_float_labels():
    logits = random_array(RNG, (3, 10), np.float32)
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 10\).*from 1 to 12"):
        SoftmaxCrossEntropy().forward(logits, np.array([1, 12, 3]))
    with pytest.raises(ValueError, match="from -1 to 3"):
        SoftmaxCrossEntropy().forward(logits, np.array([-1, 2, 3]))
    with pytest.raises(TypeError, match="labels must be integer class indices, got dtype float64"):
        SoftmaxCrossEntropy().forward(logits, np.array([1.0, 2.0, 3.0]))


@pytest.mark.parametrize(
    ("argv", "flag", "words"),
    [
        (["--lr", "nan"], "--lr", "must be a positive finite number"),
        (["--lr", "0"], "--lr", "must be a positive finite number"),
        (["--momentum", "nan"], "--momentum", "must be in [0, 1)"),
        (["--momentum", "1"], "--momentum", "must be in [0, 1)"),
        (["--seed", "-5"], "--seed", "must be a non-negative integer"),
    ],
)
def test_train_flags_are_checked_and_named(capsys, argv, flag, words):
    with pytest.raises(SystemExit) as info:
        main(["train", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: {words}" in err


def test_train_data_that_is_a_file(tmp_path, capsys):
    path = tmp_path / "images.idx"
    path.write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder of MNIST IDX files"):
        load_mnist(path)
    assert main(["train", "--data", str(path), "--quiet"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_every_train_flag_has_help_with_its_default():
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]  # argparse keeps subparsers here
    for action in train._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{action.option_strings[0]} has no help"
            if action.default not in (None, False):
                assert f"default {action.default}" in action.help, f"{action.option_strings[0]} hides its default"


def test_check_and_info_describe_themselves():
    choices = build_parser()._subparsers._group_actions[0].choices
    assert choices["check"].description and "float64 reference" in choices["check"].description
    assert choices["info"].description
    dtype = next(a for a in choices["bench"]._actions if a.dest == "dtype")
    assert dtype.help


def test_tf32_on_the_cpu_is_refused(capsys):
    assert main(["bench", "--tf32", "on", "--shapes", "mnist"]) == 2
    assert "--tf32 applies to PyTorch's cuDNN on CUDA only" in capsys.readouterr().err


def test_check_runs_winograd(capsys):
    assert main(["check", "--device", "cpu", "--dtype", "float32"]) == 0
    out = capsys.readouterr().out
    assert "winograd 3x3" in out and "winograd tiles" in out


def test_too_many_threads_warning_points_at_the_callers_line(monkeypatch):
    from xpconv import _parallel

    monkeypatch.setenv("XPCONV_NUM_THREADS", str(_parallel.available_cores() + 62))
    monkeypatch.setitem(_parallel._state, "warned", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        xpconv.conv2d(X, W)
    mine = [w for w in caught if "XPCONV_NUM_THREADS" in str(w.message)]
    assert len(mine) == 1, [str(w.message) for w in caught]
    assert mine[0].filename == __file__  # this test's line, not a line inside xpconv


def test_conv2d_docstring_states_the_auto_rule_and_float16():
    doc = xpconv.conv2d.__doc__
    assert "choose_algorithm" not in doc
    assert "at least 32" in doc and "float16" in doc


def test_progress_into_a_file_is_whole_flushed_lines():
    import io

    from xpconv.nn.fit import Progress

    stream = io.StringIO()  # not a terminal
    bar = Progress(1000, "epoch 1/1", stream=stream)
    for done in range(0, 1001, 50):
        bar.update(done, "loss 0.5")
    bar.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and len(lines) == 10  # one a tenth of the way
    assert lines[0].startswith("epoch 1/1 100/1000 ") and lines[-1].startswith("epoch 1/1 1000/1000 ")


def test_progress_on_a_terminal_redraws_one_line():
    import io

    from xpconv.nn.fit import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    bar = Progress(100, "epoch 1/1", stream=stream)
    bar.update(50)
    bar.update(100)
    bar.close()
    assert stream.getvalue().count("\r") == 2 and stream.getvalue().endswith("\n")


def test_training_that_overshoots_ends_with_a_hint(monkeypatch, capsys):
    import sys

    fit_module = sys.modules["xpconv.nn.fit"]  # (xpconv.nn.fit the attribute is the function)
    from xpconv.nn.fit import EpochStats

    def overshooting_fit(*args, **kwargs):
        return [EpochStats(1, 41.08, 0.8995, 2.0, 4000.0)]

    monkeypatch.setattr(fit_module, "fit", overshooting_fit)
    pytest.importorskip("sklearn")
    assert main(["train", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "note: the loss ended at 41.08, above 2.30" in out and "Try a smaller --lr (now 0.1" in out


def test_training_that_converges_has_no_hint(monkeypatch, capsys):
    import sys

    fit_module = sys.modules["xpconv.nn.fit"]  # (xpconv.nn.fit the attribute is the function)
    from xpconv.nn.fit import EpochStats

    monkeypatch.setattr(fit_module, "fit", lambda *a, **k: [EpochStats(1, 0.48, 0.92, 2.0, 4000.0)])
    pytest.importorskip("sklearn")
    assert main(["train", "--quiet"]) == 0
    assert "note:" not in capsys.readouterr().out


def test_the_plot_names_the_op_of_its_bars(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.axes

    from xpconv.tools.bench import Result
    from xpconv.tools.plot import plot_gflops

    titles = []
    original = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(
        matplotlib.axes.Axes, "set_title", lambda self, t, *a, **k: titles.append(t) or original(self, t)
    )
    rows = [Result("conv2d-forward", "mnist", 1.0, 5.0), Result("conv2d-train-step", "mnist", 3.0, 5.0)]
    plot_gflops(rows, str(tmp_path / "p.png"), 100.0, "xpconv bench, cpu, float32")
    assert titles == ["xpconv bench, cpu, float32: conv2d-train-step rows"]


def test_bench_output_is_flushed_line_by_line_into_a_pipe():
    """Redirected, the check lines come while the run goes on, not all at the end."""
    import subprocess
    import sys

    argv = [sys.executable, "-m", "xpconv", "bench", "--shapes", "mnist,bias", "--no-book", "--min-seconds", "0"]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert child.stdout is not None
    seen = []
    for line in child.stdout:
        seen.append(line)
        if line.startswith("check mnist"):
            assert child.poll() is None, "the check line came only when the run had ended"
            break
    child.kill()
    child.wait()
    assert any(line.startswith("check mnist") for line in seen)
