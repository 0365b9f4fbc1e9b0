"""Command line: ``xpconv info``, ``xpconv check``, ``xpconv bench``, ``xpconv train``.

Every misuse ends in one line on stderr and exit status 2, before any long work starts.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import __version__
from .._backend import DeviceUnavailableError, gpu_report, namespace_for, parse_device, resolve_device


def _blas() -> str:
    try:
        deps = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{deps.get('name', '?')} {deps.get('version', '')}".strip()
    except Exception:  # older NumPy without mode="dicts"
        return "unknown"


def cmd_info(args: argparse.Namespace) -> int:
    from .._parallel import available_cores, thread_report

    cupy_version, gpus = gpu_report()
    print(f"xpconv   {__version__}")
    print(f"python   {platform.python_version()} ({platform.machine()}, {available_cores()} cores)")
    print(f"numpy    {np.__version__} (BLAS: {_blas()})")
    print(f"cupy     {cupy_version}")
    print(f"threads  {thread_report()}")
    print(f"backends cpu{', cuda' if gpus else ''}")
    for i, name in enumerate(gpus):
        print(f"gpu      cuda:{i} {name}")
    if not gpus:
        print("gpu      none visible")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .check import format_rows, run_check, summary

    dtypes = args.dtype or ["float32", "float64"]
    rows = run_check(args.device, dtypes)
    print(f"xpconv check --device {args.device}: every kernel against the float64 reference")
    print(format_rows(rows))
    print(summary(rows))
    return 0 if all(r.ok for r in rows) else 1


def cmd_train(args: argparse.Namespace) -> int:
    from ..nn.data import load_mnist, load_sklearn_digits
    from ..nn.fit import book_network, fit, lenet5_network

    communicator = None
    if args.distributed:
        from ..nn.distributed import Communicator

        communicator = Communicator()  # without mpi4py: one line naming the extra, exit 2
    rank = 0 if communicator is None else communicator.rank
    say = print if rank == 0 else (lambda *a, **k: None)
    device = resolve_device(args.device)
    try:  # set-up errors on any rank are gathered, so that every rank stops with one line
        namespace_for(device)  # a missing GPU is one line, before the data is read
        if args.data:
            data = load_mnist(args.data, args.train_count, count_name="--train-count")
        else:
            data = load_sklearn_digits(seed=args.seed)
        _, _, h, w = data.train_images.shape
        if args.model == "lenet5":
            model = lenet5_network(h, w, device=device, seed=args.seed)
            network = (
                "LeNet-5: Conv2D(1->6, 5x5, padding 2) -> ReLU -> MaxPool2D(2) -> Conv2D(6->16, 5x5) -> ReLU -> "
                f"MaxPool2D(2) -> Flatten -> Dense({16 * ((h // 2 - 4) // 2) * ((w // 2 - 4) // 2)}->120) -> ReLU -> "
                "Dense(120->84) -> ReLU -> Dense(84->10)"
            )
        else:
            model = book_network(h, w, device=device, seed=args.seed, dropout_seed=args.seed + 1 + 1000 * rank)
            network = f"Conv2D(1->16, 5x5, same) -> Tanh -> Dropout(0.2) -> Flatten -> Dense({16 * h * w}->10)"
        error = None
    except (DeviceUnavailableError, ValueError, OSError, ModuleNotFoundError) as exc:
        error = exc
    if communicator is not None:
        reports = communicator.comm.allgather(None if error is None else str(error))
        failed = [(r, e) for r, e in enumerate(reports) if e is not None]
        if failed:
            r, e = failed[0]
            say(f"xpconv train: rank {r} of {communicator.size}: {e}", file=sys.stderr)
            return 2
    elif error is not None:
        raise error
    say(data.description)
    if communicator is not None:
        say(communicator.share_cores())  # every rank takes part; rank 0 prints each rank's line
    ranks = (
        ""
        if communicator is None
        else f"; {_count(communicator.size, 'process', 'processes')}, global batch {args.batch_size}"
    )
    say(f"network: {network} on {device}; SGD lr={args.lr} momentum={args.momentum}, batch {args.batch_size}{ranks}")
    from ..nn.distributed import ConfigurationMismatch, abort_on_error

    try:
        with abort_on_error(communicator):
            history = fit(model, data, device=device, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                momentum=args.momentum, seed=args.seed, progress=not args.quiet and rank == 0,
                log=say, communicator=communicator)  # fmt: skip
    except ConfigurationMismatch as exc:  # found by every rank together: rank 0 says it
        say(f"xpconv train: {exc}", file=sys.stderr)
        return 2
    if history and history[-1].loss > math.log(10):
        say(
            f"note: the loss ended at {history[-1].loss:.2f}, above {math.log(10):.2f}, that of an even guess over "
            f"10 classes: the steps overshoot. Try a smaller --lr (now {args.lr}; --lr 0.01 trains both networks "
            "smoothly on MNIST)"
        )
    if communicator is not None and rank == 0 and communicator.size > 1:
        steps = communicator.allreduce_calls
        share = communicator.allreduce_seconds
        say(f"all-reduce: {share:.2f} s over {steps} steps on rank 0 ({1e3 * share / max(steps, 1):.2f} ms a step)")
    return 0


def _check_output_path(path: str | None, option: str) -> None:
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{option} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"{option} {path}: folder {folder} is not writable")


def cmd_bench(args: argparse.Namespace) -> int:
    import json

    from . import bench

    say = functools.partial(print, flush=True)  # line by line, also into a file or a pipe
    # Everything that can be wrong with the arguments is found before anything is timed.
    names = bench.parse_shapes(args.shapes, args.full)
    _check_output_path(args.json, "--json")
    _check_output_path(args.plot, "--plot")
    if args.plot:
        from .plot import require_matplotlib

        require_matplotlib()
    namespace_for(args.device)
    book = "none" if args.no_book else ("all" if args.full else "smallest")
    with_torch = bench.torch_available()
    if args.tf32 is not None and parse_device(args.device)[0] == "cpu":
        raise ValueError("--tf32 applies to PyTorch's cuDNN on CUDA only; drop it or pass --device cuda")
    seconds = bench.expected_seconds(names, args.min_seconds, with_torch, book, args.dtype)
    if args.shapes:
        what = "the shapes asked for"
    else:
        what = "every standard shape (--full)" if args.full else "the quick set (--full: every shape)"
    say(f"xpconv bench --device {args.device} --dtype {args.dtype}: {what}: {', '.join(names)}")
    say(f"expected duration: {bench.describe_seconds(seconds)} on 2 cores; progress on stderr")
    if not with_torch:
        say('PyTorch is not installed, so there is no "vs torch" column: pip install -e ".[bench]" adds it')
    else:
        tf32 = {"on": "on", "off": "off", None: "PyTorch's default"}[args.tf32]
        where = "on the CPU" if parse_device(args.device)[0] == "cpu" else f"with cuDNN on the same GPU (TF32 {tf32})"
        say(f"PyTorch runs {where}, in a process of its own, in blocks alternating with xpconv's")
    say(f"xpconv uses {bench.cpu_threads()} CPU worker thread(s)")
    start = time.perf_counter()
    run = bench.run(args.device, args.dtype, names, book=book, min_seconds=args.min_seconds,
                    tf32=None if args.tf32 is None else args.tf32 == "on",
                    on_check=lambda line: say(f"check {line}"))  # fmt: skip
    say(run.ceiling.describe(args.dtype))
    say(
        "GFLOP/s count the direct convolution's multiply-adds x2 per pass (backward = 2 passes, train step = 3), "
        "whatever the algorithm: winograd rows do 4x fewer multiplications, so they may exceed 100% of the "
        "ceiling; algorithm = what algorithm='auto' chose; times are medians over "
        f"{bench.ROUNDS} rounds, spread = their lowest-highest; 'vs torch' = PyTorch time / xpconv time "
        "(> 1: xpconv faster), median and range of the per-round ratios; 'x book' = over the book's per-pixel loop"
    )
    say(bench.format_table(run.results, run.ceiling.median))
    for note in run.notes:
        say(note)
    say(f"took {time.perf_counter() - start:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(bench.as_json(run, args.device, args.dtype), f, indent=2)
        say(f"wrote {args.json}")
    if args.plot:
        from .plot import plot_gflops

        plot_gflops(run.results, args.plot, run.ceiling.median, f"xpconv bench, {args.device}, {args.dtype}")
        say(f"wrote {args.plot}")
    return 0


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _number(parse: Callable[[str], Any], accept: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    """An argparse ``type``: ``parse(text)`` if ``accept`` takes it (NaN fails every comparison)."""

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    return convert


_positive_int = _number(int, lambda v: v >= 1, "a positive integer")
_non_negative_int = _number(int, lambda v: v >= 0, "a non-negative integer")
_positive_float = _number(float, lambda v: math.isfinite(v) and v > 0, "a positive finite number")
_non_negative_float = _number(float, lambda v: v >= 0, "a non-negative number")
_momentum = _number(float, lambda v: 0.0 <= v < 1.0, "in [0, 1)")


def _device(text: str) -> str:
    try:
        parse_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xpconv", description="Conv2D/dense/bias kernels for NumPy and CuPy")
    parser.add_argument("--version", action="version", version=f"xpconv {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    info_help = "versions, cores, BLAS, worker threads and visible GPUs"
    sub.add_parser("info", help=info_help, description=f"Print the {info_help}.").set_defaults(func=cmd_info)
    check = sub.add_parser(
        "check",
        help="run every kernel against the float64 reference",
        description="Run every kernel and gradient (im2col and Winograd, dense, bias) on small random inputs "
        "against the float64 reference; print the worst relative error of each and exit 1 if any is "
        "beyond the tolerance table.",
    )
    check.add_argument("--device", type=_device, default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    check.add_argument("--dtype", action="append", choices=["float16", "float32", "float64"],
                       help="dtype to check (repeatable; default float32 and float64)")  # fmt: skip
    check.set_defaults(func=cmd_check)
    quick, full = _bench_durations()
    bench = sub.add_parser(
        "bench",
        help=f"time the kernels against PyTorch and the book (quick set: {quick})",
        description="Checks each shape against the float64 reference, then times xpconv beside PyTorch "
        "(when installed; in a process of its own) in alternating rounds of blocks. Without options: a quick "
        f"set of shapes, {quick} on 2 cores with PyTorch; --full: every shape and the book on each, {full}.",
    )
    bench.add_argument("--device", type=_device, default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    bench.add_argument("--dtype", default="float32", choices=["float16", "float32", "float64"],
                       help="dtype of the inputs (default float32)")  # fmt: skip
    bench.add_argument("--shapes", help="comma-separated names from: " + ",".join(_bench_shapes()))
    bench.add_argument("--full", action="store_true", help="every shape, and the book's approach on each")
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    bench.add_argument("--plot", metavar="FILE.png", help="also draw GFLOP/s per shape (needs matplotlib)")
    bench.add_argument("--no-book", action="store_true", help="skip the (slow) book baseline")
    bench.add_argument("--tf32", choices=["on", "off"], help="let PyTorch's cuDNN use TF32 (CUDA only)")
    bench.add_argument("--min-seconds", type=_non_negative_float, default=0.5,
                       help="time each op for at least this long (default 0.5)")  # fmt: skip
    bench.set_defaults(func=cmd_bench)
    train = sub.add_parser(
        "train", help="train the book's CNN or LeNet-5 on MNIST-format data or scikit-learn's digits"
    )
    train.add_argument("--model", choices=["book", "lenet5"], default="book",
                       help="book: the book's network; lenet5: LeNet-5, for images of 12x12 or more such as MNIST (default book)")  # fmt: skip
    train.add_argument("--data", help="folder with MNIST IDX files (train-*/t10k-*, raw or .gz)")
    train.add_argument(
        "--device", type=_device, default=None, help="cpu, cuda or cuda:N (default $XPCONV_DEVICE or cpu)"
    )
    train.add_argument("--epochs", type=_positive_int, default=1, help="passes over the training images (default 1)")
    train.add_argument("--batch-size", type=_positive_int, default=60,
                       help="images per step; with --distributed, over all ranks (default 60)")  # fmt: skip
    train.add_argument("--lr", type=_positive_float, default=0.1, help="SGD learning rate (default 0.1)")
    train.add_argument("--momentum", type=_momentum, default=0.9, help="SGD momentum, in [0, 1) (default 0.9)")
    train.add_argument("--seed", type=_non_negative_int, default=0,
                       help="seed of the initial weights, the shuffling and dropout (default 0)")  # fmt: skip
    train.add_argument("--train-count", type=_positive_int, default=8000,
                       help="with only the t10k-* files: how many of them train (default 8000); the rest test")  # fmt: skip
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--distributed", action="store_true",
                       help="data-parallel over MPI: mpiexec -n K xpconv train --distributed ... (needs the mpi extra)")  # fmt: skip
    train.set_defaults(func=cmd_train)
    return parser


def _bench_durations() -> tuple[str, str]:
    """The quick and the full run's expected durations with PyTorch, from the one estimate."""
    from .bench import ALL_SHAPES, QUICK_SHAPES, describe_seconds, expected_seconds

    quick = expected_seconds(QUICK_SHAPES, 0.5, True, "smallest")
    return describe_seconds(quick), describe_seconds(expected_seconds(ALL_SHAPES, 0.5, True, "all"))


def _bench_shapes() -> tuple[str, ...]:
    from .bench import ALL_SHAPES

    return ALL_SHAPES


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DeviceUnavailableError, ValueError, OSError, ModuleNotFoundError) as exc:
        print(f"xpconv {args.command}: {exc}", file=sys.stderr)
        return 2
