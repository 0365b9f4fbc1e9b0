"""The command line: info, check, bench (its front door and argument checks) and their messages."""

import json
import subprocess
import sys

import numpy as np
import pytest

from xpconv.tools import bench
from xpconv.tools.check import run_check
from xpconv.tools.cli import main


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "numpy" in out and "BLAS" in out and "gpu" in out and "cores" in out


def test_info_names_the_thread_setting(monkeypatch, capsys):
    """XPCONV_NUM_THREADS=1 is reported as the setting it is, not as 'one core'."""
    pytest.importorskip("threadpoolctl")
    monkeypatch.setenv("XPCONV_NUM_THREADS", "1")
    assert main(["info"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("threads"))
    assert "XPCONV_NUM_THREADS=1" in line and "one core" not in line


def test_too_many_threads_warns(monkeypatch):
    from xpconv._parallel import available_cores, cpu_workers

    monkeypatch.setenv("XPCONV_NUM_THREADS", str(available_cores() + 62))
    with pytest.warns(RuntimeWarning, match=r"XPCONV_NUM_THREADS=\d+ is more than the \d+ core"):
        assert cpu_workers() == available_cores() + 62


def test_check_cpu_passes(capsys):
    assert main(["check", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "conv2d_backward.weight" in out and "FAIL" not in out
    assert "checks within tolerance (float32 worst" in out.splitlines()[-1]


def test_check_reports_failures(monkeypatch, capsys):
    """A wrong kernel must turn the check red (exit status 1)."""
    import xpconv.tools.check as check_module

    real, real_backward = check_module.CONVOLUTIONS[2]

    def off_by_a_bit(*args, **kwargs):
        return real(*args, **kwargs) * 1.001

    monkeypatch.setitem(check_module.CONVOLUTIONS, 2, (off_by_a_bit, real_backward))
    assert main(["check", "--device", "cpu", "--dtype", "float64"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_check_cuda_without_cupy(no_cupy, capsys):
    assert main(["check", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert 'pip install "xpconv[cuda12]"' in err and len(err.strip().splitlines()) == 1


def test_check_on_fake_cuda(fake_cupy_module):
    rows = run_check("cuda", dtypes=("float32",))
    assert rows and all(r.ok for r in rows)


@pytest.mark.parametrize("args", [["info"], ["check", "--dtype", "float64"], ["--version"]])
def test_python_dash_m(args):
    result = subprocess.run([sys.executable, "-m", "xpconv", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_bench_command_writes_table_json_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out_file, png = tmp_path / "bench.json", tmp_path / "bench.png"
    argv = [
        "bench",
        "--shapes",
        "mnist,dense-784,bias",
        "--min-seconds",
        "0",
        "--json",
        str(out_file),
        "--plot",
        str(png),
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "expected duration: about" in out and "check mnist: worst relative error" in out
    assert "median of 3 measurements" in out and "conv2d-train-step" in out and "3 bare matmuls" in out
    assert "bias" in out.split("3 bare matmuls")[-1]
    assert "[1/" in captured.err  # progress
    data = json.loads(out_file.read_text())
    assert data["matmul_ceiling_gflops"] > 0 and len(data["matmul_ceiling_samples"]) >= 3
    rows = {(r["op"], r["shape"]): r for r in data["results"]}
    step = rows[("conv2d-train-step", "mnist")]
    assert step["gflops"] > 0 and step["book_speedup"] > 0 and step["error"] < 1e-5
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_bench_without_torch_says_how_to_add_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)
    assert main(["bench", "--shapes", "bias", "--min-seconds", "0"]) == 0
    assert 'pip install "xpconv[bench]"' in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--shapes", "mnist,huge"], "unknown shapes ['huge']"),
        (["--shapes", ""], "--shapes names no shape"),
        (["--shapes", " , "], "--shapes names no shape"),
        (["--json", "/no/such/dir/out.json"], "--json /no/such/dir/out.json: folder /no/such/dir does not exist"),
        (["--plot", "/no/such/dir/out.png"], "--plot /no/such/dir/out.png: folder /no/such/dir does not exist"),
    ],
)
def test_bench_rejects_bad_options_before_timing(monkeypatch, capsys, argv, words):
    def no_timing(*args, **kwargs):
        raise AssertionError("something was timed before the options were checked")

    monkeypatch.setattr(bench, "matmul_gflops", no_timing)
    monkeypatch.setattr(bench, "median_time", no_timing)
    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]


@pytest.mark.parametrize("argv", [["--device", "gpu"], ["--min-seconds", "-1"], ["--dtype", "int8"]])
def test_bench_argument_errors_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(["bench", *argv])
    assert info.value.code == 2


def test_shape_list_parsing():
    assert bench.parse_shapes("mnist,") == ["mnist"]
    assert bench.parse_shapes(" bias , mnist,mnist") == ["bias", "mnist"]
    assert bench.parse_shapes(None) == list(bench.QUICK_SHAPES)
    assert bench.parse_shapes(None, full=True) == list(bench.ALL_SHAPES)


def test_bench_shapes_use_the_kernels_geometry():
    """One output-size formula: a bench shape's FLOP count comes from ConvGeometry."""
    s = bench.CONV_SHAPES["stride2"]
    g = s.geometry()
    assert g.out == (28, 28) and s.flops() == 2.0 * 32 * 128 * 28 * 28 * 64 * 9


def test_ceiling_is_a_median_of_several():
    ceiling = bench.Ceiling("float32", [100.0, 40.0, 101.0])
    assert ceiling.median == 100.0
    assert "median of 3 measurements through the run, 40-101" in ceiling.describe("float32")


def test_bench_refuses_wrong_kernels(monkeypatch):
    import xpconv.tools.check as check_module

    real_forward, real = check_module.CONVOLUTIONS[2]

    def wrong(*args, **kwargs):
        g = real(*args, **kwargs)
        return g._replace(weight=g.weight * 1.01)

    monkeypatch.setitem(check_module.CONVOLUTIONS, 2, (real_forward, wrong))  # bench checks through xpconv.tools.check
    with pytest.raises(RuntimeError, match="disagrees with the float64 reference"):
        bench.run(shapes=["mnist"], book="none", torch=False, min_seconds=0, log=lambda m: None)


def test_conv2d_layer_names_its_argument():
    from xpconv.nn import Conv2D

    with pytest.raises(TypeError, match="Conv2D.forward: x must be a NumPy or CuPy array, got list"):
        Conv2D(1, 2, 3).forward([[1.0]])


def test_messages_use_singular_for_one():
    import xpconv

    x = np.zeros((1, 1, 5, 5), np.float32)
    with pytest.raises(ValueError, match="weight has 2 input channels per group but x has 1 channel "):
        xpconv.conv2d(x, np.zeros((3, 2, 3, 3), np.float32))
