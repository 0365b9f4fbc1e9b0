"""PyTorch's side of ``xpconv bench``, timed in a process of its own.

PyTorch in the process that times xpconv disturbs it: its OpenMP threads spin after each call
and take the cores, and its libraries and allocator stay loaded.  So ``xpconv bench`` never
imports torch: it starts ``python -m xpconv.tools.rival``, which builds the same inputs from
the same seed (:func:`xpconv.tools.bench.conv_inputs`) and, on request, times one block of
PyTorch calls (:func:`xpconv.tools.timing.block_times`), one request at a time, while the
bench's own process waits.  Requests and replies are JSON lines on the child's stdin/stdout.

The pytest-benchmark suite keeps PyTorch's rows in the same process but runs them after every
xpconv row (``benchmarks/conftest.py``), so that no xpconv call ever follows a PyTorch call.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import IO, Any

from .._backend import parse_device, to_numpy
from .._types import Device


def torch_available() -> bool:
    """Whether PyTorch is installed (found without importing it)."""
    return importlib.util.find_spec("torch") is not None


def torch_op(op: str, shape: Any, x: Any, w: Any, b: Any, go: Any, device: Device = "cpu") -> Callable[[], object]:
    """PyTorch's kernel for benchmark ``op`` of a bench shape (autograd's own backward kernels; cuDNN
    on CUDA) on copies of the same inputs on the same device.  Imports torch: call it in PyTorch's
    process (or after every xpconv timing)."""
    import torch  # pyright: ignore[reportMissingImports]  (an optional extra)

    kind, index = parse_device(device)
    where = "cpu" if kind == "cpu" else f"cuda:{index}"
    tx, tw, tb, tgo = (None if a is None else torch.from_numpy(to_numpy(a)).to(where) for a in (x, w, b, go))
    F = torch.nn.functional
    kw = shape.kwargs
    present = [t for t in (tx, tw, tb) if t is not None]  # a pooling has only x

    function = getattr(F, shape.kind)  # F.conv2d, F.max_pool3d, ...

    def call(*t: Any) -> Any:
        return function(*t, **kw)

    def forward():
        with torch.no_grad():
            return call(*present)

    def train_step():
        call(*(t.detach().requires_grad_() for t in present)).backward(tgo)

    s, p, g, d = shape.stride, shape.padding, shape.groups, shape.dims
    leaves = [t.detach().requires_grad_() for t in present]
    graph = None if shape.family == "conv" else call(*leaves)  # built once: the backward row times autograd's

    def backward():
        if graph is not None:
            return torch.autograd.grad(graph, leaves, tgo, retain_graph=True)
        # a convolution: the input, weight and bias gradients in one call, as conv2d_backward
        return torch.ops.aten.convolution_backward(
            tgo, tx, tw, [shape.o], [s] * d, [p] * d, [1] * d, False, [0] * d, g, [True, True, True]
        )

    part = op.removeprefix(f"{shape.kind}-")
    return {"forward": forward, "backward": backward, "train-step": train_step}[part]


def set_torch_tf32(enabled: bool) -> None:
    """Let PyTorch's cuDNN convolutions and matmuls use TF32 tensor cores (Ampere and newer), or not."""
    import torch  # pyright: ignore[reportMissingImports]  (an optional extra)

    torch.backends.cudnn.allow_tf32 = enabled
    torch.backends.cuda.matmul.allow_tf32 = enabled


def torch_synchronizer(device: Device) -> Callable[[], None]:
    import torch  # pyright: ignore[reportMissingImports]  (an optional extra)

    kind, index = parse_device(device)
    return (lambda: None) if kind == "cpu" else (lambda: torch.cuda.synchronize(index))


class Rival:
    """The PyTorch process, seen from the bench: ``contender(op, shape, ...)`` is a
    :data:`~xpconv.tools.timing.Contender` whose blocks run there.  Use as a context manager."""

    def __init__(self, device: Device, dtype: str, tf32: bool | None = None) -> None:
        self.device, self.dtype, self.tf32 = device, dtype, tf32
        self._child: subprocess.Popen[str] | None = None

    def __enter__(self) -> Rival:
        self._child = subprocess.Popen(
            [sys.executable, "-m", "xpconv.tools.rival"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._child is not None:
            assert self._child.stdin is not None
            self._child.stdin.close()  # end of requests: the child exits
            self._child.wait(timeout=60)
            self._child = None

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        child = self._child
        if child is None or child.stdin is None or child.stdout is None:
            raise RuntimeError("the PyTorch process is not running (use Rival as a context manager)")
        child.stdin.write(json.dumps(request) + "\n")
        child.stdin.flush()
        line = child.stdout.readline()
        if not line:
            raise RuntimeError(f"the PyTorch process ended (exit status {child.wait()}); its stderr is above")
        return json.loads(line)

    def contender(self, op: str, shape: str) -> Callable[[float, int], Sequence[float]]:
        """Blocks of PyTorch's ``op`` on bench shape ``shape`` (raises ``RuntimeError`` with PyTorch's
        message when PyTorch cannot run it, e.g. a dtype it lacks on this device)."""

        def block(min_seconds: float, min_repeats: int) -> Sequence[float]:
            request = dict(op=op, shape=shape, device=self.device, dtype=self.dtype, tf32=self.tf32,
                           min_seconds=min_seconds, min_repeats=min_repeats)  # fmt: skip
            reply = self._ask(request)
            if "error" in reply:
                raise RuntimeError(f"PyTorch cannot run {op} on {shape}: {reply['error']}")
            return reply["times"]

        return block


def serve(requests: IO[str], replies: IO[str]) -> None:
    """The child's loop: one JSON request per line in, one JSON reply per line out."""
    from .bench import CONV_SHAPES, conv_inputs
    from .timing import block_times

    calls: dict[tuple[str, str, str, str], Callable[[], object]] = {}  # the current row's, built once
    for line in requests:
        r = json.loads(line)
        try:
            if r["tf32"] is not None:
                set_torch_tf32(r["tf32"])
            key = (r["op"], r["shape"], r["device"], r["dtype"])
            if key not in calls:  # a new row: its inputs copied to torch once, not once per round
                shape = CONV_SHAPES[r["shape"]]
                x, w, b, go = conv_inputs(shape, "cpu", r["dtype"])  # host arrays; torch moves them
                calls = {key: torch_op(r["op"], shape, x, w, b, go, device=r["device"])}
            fn = calls[key]
            times = block_times(fn, torch_synchronizer(r["device"]), min_seconds=r["min_seconds"],
                                min_repeats=r["min_repeats"])  # fmt: skip
            reply: dict[str, Any] = {"times": times}
        except Exception as exc:  # reported to the bench, which leaves the row's torch column empty
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
