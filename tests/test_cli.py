import subprocess
import sys

import pytest

from xpconv.check import run_check
from xpconv.cli import main


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "numpy" in out and "BLAS" in out and "gpu" in out


def test_check_cpu_passes(capsys):
    assert main(["check", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "conv2d_backward.weight" in out and "FAIL" not in out
    assert "of" in out.splitlines()[-1]


def test_check_reports_failures(monkeypatch, capsys):
    """A wrong kernel must turn the check red (exit status 1)."""
    import xpconv.check as check_module

    real = check_module.conv2d

    def off_by_a_bit(*args, **kwargs):
        return real(*args, **kwargs) * 1.001

    monkeypatch.setattr(check_module, "conv2d", off_by_a_bit)
    assert main(["check", "--device", "cpu", "--dtype", "float64"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_check_cuda_without_cupy(no_cupy, capsys):
    assert main(["check", "--device", "cuda"]) == 2
    assert "pip install xpconv[cuda12]" in capsys.readouterr().err


def test_check_on_fake_cuda(fake_cupy_module):
    rows = run_check("cuda", dtypes=("float32",))
    assert rows and all(r.ok for r in rows)


@pytest.mark.parametrize("args", [["info"], ["check", "--dtype", "float64"]])
def test_python_dash_m(args):
    result = subprocess.run([sys.executable, "-m", "xpconv", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_bench_command_writes_table_and_json(tmp_path, capsys):
    import json

    out_file = tmp_path / "bench.json"
    assert main(["bench", "--shapes", "mnist,dense-784", "--min-seconds", "0", "--json", str(out_file)]) == 0
    captured = capsys.readouterr()
    assert "ceiling" in captured.out and "conv2d-train-step" in captured.out and "3 bare matmuls" in captured.out
    assert "[1/" in captured.err  # progress
    data = json.loads(out_file.read_text())
    assert data["matmul_ceiling_gflops"] > 0
    rows = {(r["op"], r["shape"]): r for r in data["results"]}
    step = rows[("conv2d-train-step", "mnist")]
    assert step["gflops"] > 0 and step["book_speedup"] > 0 and step["error"] < 1e-5


def test_bench_rejects_unknown_shape(capsys):
    assert main(["bench", "--shapes", "mnist,huge", "--no-book"]) == 2
    assert "unknown shapes ['huge']" in capsys.readouterr().err


def test_bench_refuses_wrong_kernels(monkeypatch):
    import xpconv.bench as bench
    import xpconv.check as check_module

    real = check_module.conv2d_backward

    def wrong(*args, **kwargs):
        g = real(*args, **kwargs)
        return g._replace(weight=g.weight * 1.01)

    monkeypatch.setattr(check_module, "conv2d_backward", wrong)  # bench checks through xpconv.check
    with pytest.raises(RuntimeError, match="disagrees with the float64 reference"):
        bench.run(shapes=["mnist"], book=False, torch=False, min_seconds=0, log=lambda m: None)
