"""Data-parallel training over MPI (mpi4py): the same command on one core, many processes or many machines.

Every process (rank) holds the whole model.  At the start rank 0's parameters are broadcast and
every rank's configuration is compared with rank 0's; each step, every rank takes its slice of the
same global batch (the same shuffled order on every rank), computes its gradient, and one
``Allreduce`` per dtype sums the gradients, packed into one contiguous buffer, each weighted by its
slice's share of the global batch — so the averaged gradient is the single-process gradient of the
whole batch, up to summation order — and every rank takes the same optimizer step.

CuPy arrays are staged through host memory (correct with any MPI; CUDA-aware MPI or NCCL would
avoid the copies but cannot be proven here without a GPU).

A failure on one rank must never leave the others waiting in a collective: :func:`abort_on_error`
turns an exception on any rank into ``MPI_Abort``, which ends the whole job.  Nor may a rank that
hangs (stopped, swapped out, a dead node that keeps its socket open): every collective of a step
is non-blocking (``Iallreduce``, ``Ibcast``, and ``Iallgather``/``Iallgatherv`` for the few objects),
polled against a deadline, ``timeout`` seconds (default :data:`DEFAULT_TIMEOUT_S`), past which
the waiting rank raises :class:`CollectiveTimeout` naming what it waited for, and so aborts the job.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import IO, Any, cast

import numpy as np

from .._backend import device_of, device_scope, to_device, to_numpy
from .._types import Array
from .layers import Parameter

MPI_HINT = 'pip install "xpconv[mpi]"'
ABORT_GRACE_S = 0.5  # between a failing rank's last line and MPI_Abort
# How long a rank waits for the others in one collective: far above a step of any model this client
# trains (the book's network: milliseconds; a checkpoint written meanwhile by rank 0: well under a
# second), short enough that a hung job ends within minutes.
DEFAULT_TIMEOUT_S = 300.0


def import_mpi() -> Any:
    """mpi4py's ``MPI`` module, or ``ModuleNotFoundError`` naming the extra that brings it."""
    try:
        from mpi4py import MPI  # pyright: ignore[reportMissingImports]  (an optional extra)
    except ImportError:
        raise ModuleNotFoundError(f"--distributed needs mpi4py and an MPI library: {MPI_HINT}") from None
    return MPI


class ConfigurationMismatch(ValueError):
    """Ranks were started with different models, hyperparameters or data."""


class CollectiveTimeout(RuntimeError):
    """A rank waited longer than the communicator's timeout for the others in a collective."""


class Communicator:
    """The ranks of one data-parallel job, on an mpi4py communicator (default ``COMM_WORLD``)."""

    def __init__(self, comm: Any = None, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        mpi = import_mpi()
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.mpi = mpi
        self.comm = mpi.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.timeout = float(timeout)
        self.allreduce_seconds = 0.0  # time spent in gradient all-reduces, this rank
        self.allreduce_calls = 0

    def _wait(self, request: Any, what: str) -> None:
        """Poll a non-blocking collective until it completes, or raise :class:`CollectiveTimeout`
        past the deadline (a rank that never arrives would otherwise keep this one forever)."""
        deadline = time.monotonic() + self.timeout
        pause = 0.0
        while not request.Test():
            if time.monotonic() > deadline:
                raise CollectiveTimeout(
                    f"rank {self.rank} waited {self.timeout:g} s for the other ranks in {what} "
                    "(a rank stopped, hung or lost; --timeout sets the wait)"
                )
            time.sleep(pause)
            pause = min(2 * pause or 1e-5, 1e-3)  # a tight loop first, then at most a millisecond

    def barrier(self, what: str) -> None:
        """Every rank reaches this point (or :class:`CollectiveTimeout`): before a blocking collective."""
        self._wait(self.comm.Ibarrier(), what)

    def allgather(self, value: Any, what: str) -> list[Any]:
        """``value`` from every rank, in rank order, on every rank: pickled as mpi4py's object
        collectives pickle, the sizes and then the bytes exchanged by deadline-bound ``Iallgather``
        and ``Iallgatherv``.  (A barrier before a blocking ``gather`` left a window: a rank stopped
        between the two kept the others in the gather for good, seen once in CI.)"""
        data = np.frombuffer(self.mpi.pickle.dumps(value), dtype=np.uint8)
        sizes = np.empty(self.size, dtype=np.int64)
        self._wait(self.comm.Iallgather(np.array([data.size], dtype=np.int64), sizes), what)
        everything = np.empty(int(sizes.sum()), dtype=np.uint8)
        self._wait(self.comm.Iallgatherv(data, [everything, sizes.tolist()]), what)
        ends = np.cumsum(sizes)
        return [
            self.mpi.pickle.loads(everything[end - size : end].tobytes()) for size, end in zip(sizes, ends, strict=True)
        ]

    def maximum(self, value: int) -> int:
        """The largest ``value`` over the ranks (a stop request: every rank stops at the same step)."""
        buffer = np.array([value], dtype=np.int64)
        self._wait(self.comm.Iallreduce(self.mpi.IN_PLACE, buffer, op=self.mpi.MAX), "a stop request's all-reduce")
        return int(buffer[0])

    # --- setup ----------------------------------------------------------------------------

    def check_consistent(self, description: dict) -> None:
        """Compare ``description`` (hyperparameters, parameter shapes and dtypes, data sizes) with
        rank 0's; on any difference every rank raises :class:`ConfigurationMismatch` with one line
        naming the first rank and key that differ."""
        reference = self.allgather(description, "the start")[0]
        differences = [k for k in sorted(set(reference) | set(description)) if reference.get(k) != description.get(k)]
        mine = None
        if differences:
            key = differences[0]
            mine = f"rank {self.rank} has {key}={description.get(key)!r} but rank 0 has {reference.get(key)!r}"
        reports = [r for r in self.allgather(mine, "the start") if r is not None]
        if reports:
            more = f" (and {len(reports) - 1} more rank(s) differ)" if len(reports) > 1 else ""
            raise ConfigurationMismatch(f"ranks were started differently: {reports[0]}{more}")

    def broadcast_parameters(self, parameters: list[Parameter]) -> None:
        """Every rank takes rank 0's parameter values (one ``Bcast`` per dtype)."""
        for group in _by_dtype(parameters):
            buffer = _pack([p.value for p in group], group[0].value.dtype)
            self._wait(self.comm.Ibcast(buffer, root=0), "the parameters' broadcast")
            _unpack(buffer, group, "value")

    # --- each step ------------------------------------------------------------------------

    def allreduce_gradients(self, parameters: list[Parameter], weight: float, extra: float = 0.0) -> float:
        """Replace every ``p.grad`` by ``Σ_ranks weight_r · grad_r`` (one ``Allreduce`` per dtype,
        gradients packed into one contiguous host buffer); also sum ``weight · extra`` across ranks
        (the loss, carried in the first buffer's last element) and return that sum."""
        total = 0.0
        for k, group in enumerate(_by_dtype(parameters, need_grad=True)):
            dtype = cast(Array, group[0].grad).dtype  # _by_dtype left out parameters without a gradient
            buffer = _pack([p.grad for p in group], dtype, extra_slots=1 if k == 0 else 0)
            buffer *= dtype.type(weight)
            if k == 0:
                buffer[-1] = weight * extra
            start = time.perf_counter()
            self._wait(self.comm.Iallreduce(self.mpi.IN_PLACE, buffer, op=self.mpi.SUM), "the gradients' all-reduce")
            self.allreduce_seconds += time.perf_counter() - start
            self.allreduce_calls += 1
            if k == 0:
                total = float(buffer[-1])
                buffer = buffer[:-1]
            _unpack(buffer, group, "grad")
        return total

    def sum(self, *values: float) -> list[float]:
        """Element-wise sums of a few numbers over the ranks (evaluation counts)."""
        buffer = np.array(values, dtype=np.float64)
        self._wait(self.comm.Iallreduce(self.mpi.IN_PLACE, buffer, op=self.mpi.SUM), "the evaluation's all-reduce")
        return buffer.tolist()

    def shard(self, indices: np.ndarray) -> tuple[np.ndarray, float]:
        """This rank's slice of a global batch (sizes differ by at most one) and its share of it."""
        part = np.array_split(indices, self.size)[self.rank]
        return part, len(part) / max(len(indices), 1)

    def share_cores(self) -> str:
        """Hold this rank to its share of its machine's cores (xpconv's workers and the BLAS; see
        :func:`xpconv._parallel.share_cores`), the ranks on a machine found by MPI itself (a
        shared-memory split of the communicator).  Returns one line for every rank, in rank order,
        of what each uses (gathered: call it on every rank)."""
        from .._parallel import available_cores, share_cores

        self.barrier("the start")
        node = self.comm.Split_type(self.mpi.COMM_TYPE_SHARED, key=self.rank)
        local_rank, local_size = node.Get_rank(), node.Get_size()
        node.Free()
        workers, blas = share_cores(local_size, local_rank)
        blas_text = f"{blas} BLAS thread(s)" if blas is not None else "BLAS threads not limited (no threadpoolctl)"
        mine = (
            f"rank {self.rank}: {workers} xpconv worker(s), {blas_text} "
            f"({local_size} rank(s) share this machine's {available_cores()} core(s))"
        )
        return "\n".join(self.allgather(mine, "the start"))

    def abort(self, code: int = 1) -> None:
        self.comm.Abort(code)


@contextlib.contextmanager
def abort_on_error(
    communicator: Communicator | None,
    code: int = 2,
    stream: IO[str] | None = None,
    together: tuple[type[BaseException], ...] = (),
) -> Iterator[None]:
    """Run the body; if it raises on this rank, print one line and ``MPI_Abort`` the whole job,
    so that no other rank waits forever in a collective.  (Without a communicator, or with one
    rank, or for an exception of the ``together`` kinds, which every rank raises at the same
    point, the exception propagates as usual.)"""
    try:
        yield
    except BaseException as exc:
        every_rank: tuple[type[BaseException], ...] = (SystemExit, ConfigurationMismatch, *together)
        if communicator is None or communicator.size == 1 or isinstance(exc, every_rank):
            raise  # found by every rank together: no rank is left waiting
        out = sys.stderr if stream is None else stream
        out.write(f"xpconv train: rank {communicator.rank} failed, ending the job: {type(exc).__name__}: {exc}\n")
        out.flush()
        # mpiexec forwards a rank's output through its proxy, asynchronously: an immediate abort
        # can end the job before the proxy has passed the line on (seen once in CI: the job ended
        # with status 2 and no message).  A moment's pause lets it through.
        time.sleep(ABORT_GRACE_S)
        communicator.abort(code)
        raise SystemExit(code) from None  # MPI_Abort may return before the process manager kills this rank


def _by_dtype(parameters: list[Parameter], need_grad: bool = False) -> list[list[Parameter]]:
    groups: dict[str, list[Parameter]] = {}
    for p in parameters:
        array = p.grad if need_grad else p.value
        if array is None:
            continue
        groups.setdefault(np.dtype(array.dtype).name, []).append(p)
    return list(groups.values())


def _pack(arrays: list[Array], dtype, extra_slots: int = 0) -> np.ndarray:
    """One contiguous host buffer holding ``arrays`` one after another (device arrays are copied
    to the host: this is the staging of the CuPy path)."""
    sizes = [int(a.size) for a in arrays]
    buffer = np.empty(sum(sizes) + extra_slots, dtype=dtype)
    offset = 0
    for a, size in zip(arrays, sizes, strict=True):
        buffer[offset : offset + size] = to_numpy(a).reshape(-1)  # (...) -> (size,)
        offset += size
    return buffer


def _unpack(buffer: np.ndarray, parameters: list[Parameter], field: str) -> None:
    """Write the packed ``buffer`` back into each parameter's ``value`` or ``grad``, on its device."""
    offset = 0
    for p in parameters:
        target = getattr(p, field)
        size = int(target.size)
        piece = buffer[offset : offset + size].reshape(target.shape)  # (size,) -> parameter's shape
        offset += size
        with device_scope(target):
            target[...] = to_device(piece, device_of(target))  # in place, on the parameter's device
