"""``benchmarks/gpu_check.sh`` runs end to end on the CPU (PyTorch's CPU conv in place of cuDNN),
so that its plumbing is proven before a GPU ever sees it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils' timeout")
def test_gpu_check_script_runs_on_cpu(tmp_path):
    env = {
        **os.environ,
        "OUT": str(tmp_path),
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
    }
    env.pop("XPCONV_DEVICE", None)
    argv = [
        "bash",
        str(ROOT / "benchmarks" / "gpu_check.sh"),
        "--device",
        "cpu",
        "--shapes",
        "mnist",
        "--min-seconds",
        "0",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = (tmp_path / "gpu_check.log").read_text()
    assert "== done; failed steps: 0" in log
    from xpconv.tools.check import run_check

    total = len(run_check("cpu", ("float16", "float32", "float64")))  # every row of xpconv check, three dtypes
    assert f"{total} of {total} checks within tolerance" in log
    assert (tmp_path / "bench-float32-tf32off.json").exists()
    assert "== ratios:" in log and "xpconv throughput / PyTorch throughput" in log
    assert "== model h200:" in log and "conv2d-backward mnist" in log.split("== model h200:")[1]


def test_gpu_check_script_rejects_unknown_options(tmp_path):
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--nope"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "unknown option --nope" in result.stderr


def test_gpu_model_estimates_from_stand_in_counts():
    """``benchmarks/gpu_model.py`` runs rows on the CuPy stand-in and prints its estimate, labelled
    as one, with each row's launches and the ratio to a one-launch cuDNN."""
    argv = [
        sys.executable,
        str(ROOT / "benchmarks" / "gpu_model.py"),
        "--batch",
        "2",
        "--shapes",
        "mnist,maxpool,dense-784",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("ESTIMATE, not a measurement: model (round figures: 8 us a launch, 4 TB/s")
    rows = {line.split()[0] + " " + line.split()[1]: line.split() for line in out.splitlines()[3:9]}
    assert set(rows) == {
        "conv2d-forward mnist", "conv2d-backward mnist", "max_pool2d-forward maxpool",
        "max_pool2d-backward maxpool", "dense dense-784", "dense_backward dense-784",
    }  # fmt: skip
    assert int(rows["conv2d-forward mnist"][2]) <= 8 and int(rows["conv2d-backward mnist"][2]) <= 16
    assert "geometric mean cuDNN/xpconv, every row (6):" in out
