"""CUDA C kernels run on the CPU: the tests' GPU.

:func:`build` compiles a kernel module's very source (the text CuPy's ``RawModule`` would hand to
NVRTC) with the system C++ compiler under ``cuda_host/cuda_host.h``, which turns every launch into
loops over its blocks and threads.  For each ``__global__`` function it adds two C entry points:
one that reports the C type of every parameter, read from the compiled function's own signature,
and one that launches it from an array of pointers to the arguments' bytes, which is how
``cuLaunchKernel`` takes them.  The fake CuPy's ``RawModule`` marshals arguments as CuPy does and
calls these; nothing here knows xpconv.

Built libraries are cached on disk by a hash of the source, the header and the compiler's flags
(``$XPCONV_HOST_KERNEL_CACHE``, default ``~/.cache/xpconv/host-kernels``), as CuPy caches its
kernels, so that each source compiles once per machine.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

HEADER_DIR = Path(__file__).with_name("cuda_host")
CXX = os.environ.get("CXX", "g++")
FLAGS = ("-std=c++17", "-O2", "-fPIC", "-shared", "-Wall", "-Werror", "-Wno-unknown-pragmas")
KERNEL_RE = re.compile(r"__global__\s+void\s+(\w+)\s*\(")


class CompileError(RuntimeError):
    """The C++ compiler refused a kernel source; the message holds its output."""


@dataclass(frozen=True)
class Param:
    """One kernel parameter's C type, as the compiled kernel declares it."""

    pointer: bool
    constant: bool  # for a pointer: to const
    kind: str  # 'f', 'i', 'u', 'b' or 'V' (a struct), of the value or the pointee
    size: int  # bytes of the value or the pointee


class _CParam(ctypes.Structure):
    _fields_ = [("pointer", ctypes.c_int), ("constant", ctypes.c_int), ("kind", ctypes.c_char), ("size", ctypes.c_int)]


@dataclass
class HostKernel:
    """One ``__global__`` function of a built library."""

    name: str
    params: tuple[Param, ...]
    _entry: ctypes._CFuncPtr

    def launch(self, grid: tuple[int, int, int], block: tuple[int, int, int], addresses: list[int]) -> None:
        """Run every thread of the launch; ``addresses`` point at each argument's bytes."""
        args = (ctypes.c_void_p * max(1, len(addresses)))(*addresses)
        self._entry((ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*block), args)


def kernel_names(source: str) -> list[str]:
    """The ``__global__`` functions a source defines, in order."""
    return KERNEL_RE.findall(source)


def _entry_points(names: list[str]) -> str:
    lines = ["", "// --- entry points added by the test harness ---"]
    for name in names:
        lines.append(
            f'extern "C" int xpconv_params_{name}(XpconvParam* out) {{ return xpconv_describe(&{name}, out); }}'
        )
        lines.append(
            f'extern "C" void xpconv_launch_{name}(const unsigned* grid, const unsigned* block, void** args) '
            f"{{ xpconv_launch(&{name}, grid, block, args); }}"
        )
    return "\n".join(lines) + "\n"


def _cache_dir() -> Path:
    root = os.environ.get("XPCONV_HOST_KERNEL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "xpconv")
    return Path(root) / "host-kernels"


_libraries: dict[str, dict[str, HostKernel]] = {}
_lock = threading.Lock()


def build(source: str) -> dict[str, HostKernel]:
    """Compile ``source`` (once per machine, then from the disk cache) and return its kernels by name."""
    names = kernel_names(source)
    text = source + _entry_points(names)
    header = (HEADER_DIR / "cuda_host.h").read_bytes()
    key = hashlib.sha256(b"\0".join([text.encode(), header, " ".join((CXX, *FLAGS)).encode()])).hexdigest()[:32]
    with _lock:
        if key in _libraries:
            return _libraries[key]
        library = _cache_dir() / f"{key}.so"
        if not library.exists():
            _compile(text, library)
        lib = ctypes.CDLL(str(library))
        kernels = {}
        for name in names:
            describe = getattr(lib, f"xpconv_params_{name}")
            out = (_CParam * 64)()
            count = describe(out)
            params = tuple(Param(bool(p.pointer), bool(p.constant), p.kind.decode(), p.size) for p in out[:count])
            entry = getattr(lib, f"xpconv_launch_{name}")
            entry.restype = None
            kernels[name] = HostKernel(name, params, entry)
        _libraries[key] = kernels
        return kernels


def _compile(text: str, library: Path) -> None:
    compiler = shutil.which(CXX)
    if compiler is None:
        raise CompileError(f"no C++ compiler: {CXX!r} is not on the PATH (set $CXX)")
    library.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        src = Path(work) / "kernels.cpp"
        src.write_text(text)
        out = Path(work) / "kernels.so"
        cmd = [
            compiler,
            *FLAGS,
            "-include",
            str(HEADER_DIR / "cuda_host.h"),
            "-I",
            str(HEADER_DIR),
            str(src),
            "-o",
            str(out),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise CompileError(f"{' '.join(cmd)} failed:\n{done.stderr}")
        # another process may build the same library at once: each writes its own file, then renames
        fd, tmp = tempfile.mkstemp(dir=library.parent, suffix=".so")
        os.close(fd)
        shutil.copyfile(out, tmp)
        os.replace(tmp, library)
