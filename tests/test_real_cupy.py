"""With the real CuPy installed and no NVIDIA driver (CI): what a user without a GPU sees.

Each test runs in a fresh interpreter, so that the real ``cupy`` never meets the stand-in.
Skipped where CuPy is not installed, or where a driver is present (a GPU machine).
"""

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("cupy") is None, reason="CuPy is not installed")


def _python(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "XPCONV_DEVICE"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def no_driver():
    result = _python("import cupy; print(cupy.cuda.runtime.driverGetVersion())")
    if result.returncode != 0 or result.stdout.strip() != "0":
        pytest.skip(f"an NVIDIA driver is present here ({result.stdout.strip() or result.stderr.strip()})")


def test_import_xpconv_imports_no_cupy():
    result = _python(
        """
        import sys, numpy as np, xpconv
        xpconv.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2)))
        xpconv.array_namespace(np.ones(2))
        from xpconv import nn, tools
        assert "cupy" not in sys.modules, "cupy was imported"
        """
    )
    assert result.returncode == 0, result.stderr


def test_no_driver_is_said_plainly(no_driver):
    result = _python(
        """
        import xpconv
        assert xpconv.cuda_available() is False
        try:
            xpconv.namespace_for("cuda")
        except xpconv.DeviceUnavailableError as exc:
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "no NVIDIA driver found" in result.stdout and "insufficient" not in result.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "--device", "cuda"],
        ["bench", "--device", "cuda"],
        ["bench", "--device", "cuda:1", "--shapes", "mnist"],
        ["train", "--device", "cuda"],
    ],
)
def test_cli_with_cuda_exits_2_in_one_line(no_driver, argv):
    result = subprocess.run([sys.executable, "-m", "xpconv", *argv], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and "no NVIDIA driver found" in err[0], result.stderr
    assert "Traceback" not in result.stderr


def test_info_prints_the_reason(no_driver):
    result = subprocess.run([sys.executable, "-m", "xpconv", "info"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    cupy_line = next(line for line in result.stdout.splitlines() if line.startswith("cupy"))
    assert "no NVIDIA driver found" in cupy_line
