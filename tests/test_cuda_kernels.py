"""xpconv's CUDA C kernels (``xpconv/_cuda``): the very sources compile for the GPUs users have
and run on the CPU under the stand-in, which checks every launch as the GPU would read it.

* **Compiled for sm_80, sm_90 and the newest architecture** the compiler knows, by ``nvcc`` and by
  NVRTC (CuPy's compiler, from the ``cuda12`` extra's libraries), every module in every dtype.
  Without a compiler these tests skip, saying which; CI sets ``XPCONV_REQUIRE_CUDA_COMPILERS=1``,
  under which a missing compiler fails instead.
* **Run on the CPU**: the stand-in's ``RawModule`` compiles the same text with the system C++
  compiler (``cuda_host.py``); the kernels' results are checked against the oracle in
  ``test_cuda_devices.py`` and below.
* **Launches checked**: planted wrong calls (a Python ``int`` or an ``int64`` where the kernel
  declares ``int``, a ``double`` for a ``float``, an array of another dtype, a non-contiguous or
  host array for a pointer, an overlapping output, a wrong count, grid or block out of CUDA's
  limits) are each refused, as the GPU would misread them.
"""

import ctypes
import os
import re
import shutil
import subprocess
from pathlib import Path

import cuda_host
import numpy as np
import pytest

from xpconv import _cuda
from xpconv._geometry import conv_geometry

import fake_cupy
from cases import random_array

DTYPES = ["float16", "float32", "float64"]
ARCHS = ("80", "90")
REQUIRED = os.environ.get("XPCONV_REQUIRE_CUDA_COMPILERS") == "1"


def _missing(reason: str):
    if REQUIRED:
        pytest.fail(f"{reason} (XPCONV_REQUIRE_CUDA_COMPILERS=1: CI must compile the kernels for the GPUs)")
    pytest.skip(reason)


def _nvcc() -> str:
    found = shutil.which("nvcc") or next(iter(sorted(Path("/usr/local").glob("cuda*/bin/nvcc"))), None)
    if found is None:
        _missing("nvcc not found (the CUDA toolkit is not installed)")
    return str(found)


def _newest_arch(nvcc: str) -> str:
    listed = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True, check=True).stdout
    return str(max(int(a) for a in re.findall(r"compute_(\d+)", listed)))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("module", _cuda.MODULES)
def test_sources_compile_with_nvcc_for_sm80_sm90_and_newest(tmp_path, module, dtype):
    nvcc = _nvcc()
    archs = (*ARCHS, _newest_arch(nvcc))
    source = tmp_path / f"{module}.cu"
    source.write_text(_cuda.source(module, dtype))
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    cmd = [nvcc, "-fatbin", *gencode, *_cuda.OPTIONS, str(source), "-o", str(tmp_path / "out.fatbin")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr.lower(), done.stderr
    assert (tmp_path / "out.fatbin").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("module", _cuda.MODULES)
@pytest.mark.parametrize("arch", ARCHS)
def test_sources_compile_with_nvrtc(module, dtype, arch):
    """NVRTC, the compiler CuPy's ``RawModule`` uses, with the options CuPy adds for a module:
    the CUDA headers' folder and ``--device-as-default-execution-space``."""
    try:
        from cuda.pathfinder import find_nvidia_header_directory
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
    except Exception as exc:  # not installed, or no libnvrtc: the cuda12 extra brings both
        _missing(f'NVRTC is not available ({type(exc).__name__}: {exc}); pip install "xpconv[cuda12]" brings it')
    include = find_nvidia_header_directory("cudart")
    if include is None:
        _missing("the CUDA runtime headers (cuda_fp16.h) are not installed")
    program = nvrtc.createProgram(_cuda.source(module, dtype), f"{module}.cu", (), ())
    options = (*_cuda.OPTIONS, f"-I{include}", "--device-as-default-execution-space", f"-arch=sm_{arch}")
    try:
        nvrtc.compileProgram(program, options)
    except nvrtc.NVRTCError as exc:
        pytest.fail(f"{exc}\n{nvrtc.getProgramLog(program)}")
    assert len(nvrtc.getCUBIN(program)) > 0
    nvrtc.destroyProgram(program)


def test_geometry_struct_matches_its_numpy_dtype(tmp_path):
    """The ``Geometry`` struct the kernels read and the NumPy structured dtype that CuPy passes
    as its bytes have the same size and field offsets (compiled by the system C++ compiler; the
    CUDA compilers check the size by a static_assert in common.cuh)."""
    fields = list(_cuda.GEOMETRY.names)
    probe = _cuda.PREAMBLES["float32"] + (Path(_cuda.__file__).with_name("common.cuh")).read_text()
    probe += "#include <cstddef>\n"
    probe += 'extern "C" __global__ void geometry_layout(long long* out) {\n'
    probe += "    out[0] = sizeof(Geometry);\n"
    probe += "".join(f"    out[{k + 1}] = offsetof(Geometry, {name});\n" for k, name in enumerate(fields))
    probe += "}\n"
    kernel = cuda_host.build(probe)["geometry_layout"]
    out = np.zeros(len(fields) + 1, np.int64)
    pointer = ctypes.c_void_p(out.ctypes.data)
    kernel.launch((1, 1, 1), (1, 1, 1), [ctypes.addressof(pointer)])
    assert out[0] == _cuda.GEOMETRY.itemsize
    assert list(out[1:]) == [_cuda.GEOMETRY.fields[name][1] for name in fields]


@pytest.mark.parametrize("forbidden", ["atomicAdd(y, 1.0f);", "__syncthreads();", "__shared__ float s[32]; s[0] = 1;"])
def test_the_cpu_harness_refuses_what_it_cannot_run_faithfully(forbidden):
    source = f'extern "C" __global__ void k(float* y) {{ {forbidden} }}'
    with pytest.raises(cuda_host.CompileError):
        cuda_host.build(source)


def test_kernel_sources_use_no_atomics_shared_memory_or_barriers():
    for module in _cuda.MODULES:
        text = re.sub(r"//.*", "", _cuda.source(module, "float32"))  # the code, not its comments
        assert not re.search(r"atomic\w*\(|__shared__|__syncthreads", text), module


# --- the stand-in checks every launch ---------------------------------------------------------

PLANTED = """
struct Pair { long long a; int b; };
extern "C" __global__ void axpy(const float* x, float* y, int n, float a, Pair p) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) y[i] = a * x[i] + p.b;
}
"""
PAIR = np.dtype([("a", np.int64), ("b", np.int32)], align=True)


def _pair(b):
    pair = np.zeros((), PAIR)
    pair["b"] = b
    return pair[()]


def test_stand_in_runs_a_raw_kernel(fake_cupy_module):
    cp = fake_cupy_module
    x, y = cp.asarray(np.arange(100, dtype=np.float32)), cp.empty(100, dtype=np.float32)
    kernel = cp.RawModule(code=PLANTED).get_function("axpy")
    fake_cupy.reset_counters()
    kernel((3,), (16,), (x, y, np.int32(100), np.float32(2), _pair(5)))  # 48 threads, a grid-stride loop
    np.testing.assert_array_equal(y.get(), 2 * np.arange(100) + 5)
    assert fake_cupy.counters["raw_launches"] == 1 and fake_cupy.counters["bytes_written"] == 400


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda a: {2: 100}, TypeError, r"passes 100 as int64 \(8 bytes\).*int"),  # a Python int: 64 bits
        (lambda a: {2: np.int64(100)}, TypeError, r"as int64.*int"),
        (lambda a: {3: 2.0}, TypeError, r"as float64.*float"),  # a Python float: a double
        (lambda a: {0: a["x"].astype(np.float64)}, TypeError, "float64"),
        (lambda a: {0: a["wide"][:, 0]}, ValueError, "C-contiguous"),
        (lambda a: {0: np.zeros(100, np.float32)}, TypeError, "numpy.ndarray"),
        (lambda a: {1: a["x"]}, ValueError, "overlaps"),
        (lambda a: {4: np.int64(5)}, TypeError, "struct of 16 bytes"),
        (lambda a: {5: np.int32(1)}, TypeError, "takes 5 arguments, 6 given"),
        (lambda a: {0: a["other"]}, ValueError, "different from the current device"),
    ],
)
def test_stand_in_refuses_wrong_launches(fake_cupy_module, change, error, message):
    cp = fake_cupy_module
    arrays = {"x": cp.asarray(np.ones(100, np.float32)), "wide": cp.asarray(np.ones((100, 2), np.float32))}
    with cp.cuda.Device(1):
        arrays["other"] = cp.asarray(np.ones(100, np.float32))
    args = [arrays["x"], cp.empty(100, dtype=np.float32), np.int32(100), np.float32(2), _pair(5)]
    for k, value in change(arrays).items():
        args[k:k + 1] = [value]  # fmt: skip
    with pytest.raises(error, match=message):
        cp.RawModule(code=PLANTED).get_function("axpy")((1,), (128,), tuple(args))


def test_stand_in_checks_grid_and_block(fake_cupy_module):
    cp = fake_cupy_module
    kernel = cp.RawModule(code=PLANTED).get_function("axpy")
    args = (cp.asarray(np.ones(4, np.float32)), cp.empty(4, dtype=np.float32), np.int32(4), np.float32(1), _pair(0))
    with pytest.raises(TypeError, match="expected tuple"):
        kernel([1], (32,), args)
    for grid, block in [((1,), (2048,)), ((1,), (64, 32)), ((1, 70000), (32,)), ((1,), (1, 1, 128))]:
        with pytest.raises(fake_cupy.CUDADriverError, match="INVALID_VALUE"):
            kernel(grid, block, args)
    with pytest.raises(fake_cupy.CUDADriverError, match="NOT_FOUND"):
        cp.RawModule(code=PLANTED).get_function("saxpy")


def test_xpconv_launches_pass_every_argument_as_declared(fake_cupy_module, rng):
    """Planted mistakes in a real kernel's launch: the image count as a Python ``int`` where the
    kernel reads a ``long long`` is what CuPy passes (64 bits), but as an ``int32`` it is refused;
    the geometry struct must be the struct."""
    cp = fake_cupy_module
    x = cp.asarray(random_array(rng, (2, 3, 5, 5), np.float32))
    g = conv_geometry(x.shape, (4, 3, 3, 3), None, padding=1)
    out = cp.empty(150, dtype=np.float32)
    _cuda.launch(cp, "patches", "to_channel_major", np.float32, 150, x, out, 2, np.int64(3), np.int64(25))
    np.testing.assert_array_equal(out.get().reshape(3, 2, 25), x.get().reshape(2, 3, 25).transpose(1, 0, 2))
    args = (x, out, np.int32(2), np.int64(3), np.int64(25))
    with pytest.raises(TypeError, match=r"as int32 \(4 bytes\).*long long"):
        _cuda.launch(cp, "patches", "to_channel_major", np.float32, 150, *args)
    cols = cp.empty((3 * 9, 2 * 25), dtype=np.float32)
    with pytest.raises(TypeError, match="struct of 112 bytes"):
        _cuda.launch(cp, "patches", "im2col", np.float32, cols.size, x, cols, np.int64(2))
    with pytest.raises(TypeError, match="float64"):
        _cuda.launch(cp, "patches", "im2col", np.float32, cols.size, x, cols.astype(np.float64), _cuda.geometry(g))
