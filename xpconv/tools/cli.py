"""Command line: ``xpconv info``, ``xpconv check``, ``xpconv bench``, ``xpconv train``,
``xpconv evaluate``.

Every misuse ends in one line on stderr and exit status 2, before any long work starts.
``xpconv train`` exits 1 when the loss turns NaN or infinite, and 130 or 143 when SIGINT or
SIGTERM stopped it (after writing its ``--checkpoint``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import platform
import signal
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


def _network(name: str, h: int, w: int, device: str, dtype: str, seed: int, rank: int = 0):
    """``(model, description)`` of ``--model name`` for h×w images."""
    from ..nn.fit import book_network, lenet5_network

    if name == "lenet5":
        model = lenet5_network(h, w, device=device, dtype=dtype, seed=seed)
        return model, (
            "LeNet-5: Conv2D(1->6, 5x5, padding 2) -> ReLU -> MaxPool2D(2) -> Conv2D(6->16, 5x5) -> ReLU -> "
            f"MaxPool2D(2) -> Flatten -> Dense({16 * ((h // 2 - 4) // 2) * ((w // 2 - 4) // 2)}->120) -> ReLU -> "
            "Dense(120->84) -> ReLU -> Dense(84->10)"
        )
    model = book_network(h, w, device=device, dtype=dtype, seed=seed, dropout_seed=seed + 1 + 1000 * rank)
    return model, f"Conv2D(1->16, 5x5, same) -> Tanh -> Dropout(0.2) -> Flatten -> Dense({16 * h * w}->10)"


class _StopOnSignals:
    """While active, SIGINT and SIGTERM only ask the training loop to stop (it then writes its
    checkpoint and raises ``Interrupted``); a second signal of the same kind stops at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _StopOnSignals:
        for number in self.SIGNALS:
            self.previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, frame: Any) -> None:
        if self.received == number:  # asked twice: stop now
            signal.signal(number, self.previous[number])
            signal.raise_signal(number)
        self.received = number

    def __exit__(self, *exc: Any) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)

    def __call__(self) -> int | None:
        return self.received


def cmd_train(args: argparse.Namespace) -> int:
    from ..nn.checkpoint import CheckpointError
    from ..nn.data import load_mnist, load_sklearn_digits
    from ..nn.fit import Checkpointing, Interrupted, NonFiniteLoss, ResumeMismatch, fit

    if args.resume and not args.checkpoint:
        raise ValueError("--resume continues from --checkpoint PATH: give the path")
    if args.checkpoint_every and not args.checkpoint:
        raise ValueError("--checkpoint-every N needs --checkpoint PATH")
    _check_output_path(args.checkpoint, "--checkpoint")
    communicator = None
    if args.distributed:
        from ..nn.distributed import Communicator

        communicator = Communicator(timeout=args.timeout)  # without mpi4py: one line naming the extra, exit 2
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
        model, network = _network(args.model, h, w, device, args.dtype, args.seed, rank)
        error = None
    except (DeviceUnavailableError, ValueError, OSError, ModuleNotFoundError) as exc:
        error = exc
    if communicator is not None:
        reports = communicator.allgather(None if error is None else str(error), "the start")
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
    say(
        f"network: {network} on {device}, {args.dtype}; SGD lr={args.lr} momentum={args.momentum}, "
        f"batch {args.batch_size}{ranks}"
    )
    from ..nn.distributed import ConfigurationMismatch, abort_on_error

    stop = _StopOnSignals()
    checkpoint = None
    if args.checkpoint:
        identity = {"network": args.model, "train_count": args.train_count if args.data else None}
        checkpoint = Checkpointing(args.checkpoint, args.checkpoint_every, args.resume, stop, identity)
        if args.resume:
            say(f"resuming from {args.checkpoint}")
    together = (NonFiniteLoss, Interrupted, ResumeMismatch)  # every rank raises these at the same step
    try:
        with abort_on_error(communicator, together=together), stop if checkpoint else contextlib.nullcontext():
            history = fit(model, data, device=device, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                momentum=args.momentum, seed=args.seed, progress=not args.quiet and rank == 0,
                log=say, communicator=communicator, checkpoint=checkpoint)  # fmt: skip
    except (ConfigurationMismatch, ResumeMismatch, CheckpointError) as exc:  # rank 0 says it
        say(f"xpconv train: {exc}", file=sys.stderr)
        return 2
    except NonFiniteLoss as exc:
        say(f"xpconv train: {exc}", file=sys.stderr)
        return 1
    except Interrupted as exc:
        say(f"xpconv train: {exc}", file=sys.stderr)
        return 128 + exc.signal_number
    if checkpoint is not None:
        say(f"wrote {args.checkpoint}")
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


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..nn.checkpoint import load, read_metadata
    from ..nn.data import load_mnist, load_sklearn_digits
    from ..nn.fit import evaluate

    metadata = read_metadata(args.checkpoint)
    run, preprocessing = metadata.get("run"), metadata.get("preprocessing")
    if run is None or preprocessing is None:
        raise ValueError(f"{args.checkpoint}: not a checkpoint of xpconv train (it names no network and preprocessing)")
    device = resolve_device(args.device)
    namespace_for(device)
    scale = (preprocessing["mean"], preprocessing["std"])
    if args.data:
        count = args.train_count if args.train_count is not None else run.get("train_count") or 8000
        data = load_mnist(args.data, count, count_name="--train-count", preprocessing=scale)
    else:
        data = load_sklearn_digits(seed=run["seed"])
    _, _, h, w = data.test_images.shape
    model, network = _network(run["network"], h, w, device, run["dtype"], 0)
    load(args.checkpoint, model)
    accuracy = evaluate(model, data.test_images, data.test_labels, device)
    print(f"{args.checkpoint}: {run['network']} ({run['dtype']}), test accuracy {100 * accuracy:.2f}% "
          f"on {len(data.test_labels)} images ({data.description})")  # fmt: skip
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
        say('PyTorch is not installed, so there is no "vs torch" column: pip install "xpconv[bench]" adds it')
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
    parser = argparse.ArgumentParser(
        prog="xpconv",
        description="Convolution (and its transpose), max and average pooling, dense and bias kernels, forward "
        "and backward, for NumPy and CuPy",
    )
    parser.add_argument("--version", action="version", version=f"xpconv {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    info_help = "versions, cores, BLAS, worker threads and visible GPUs"
    sub.add_parser("info", help=info_help, description=f"Print the {info_help}.").set_defaults(func=cmd_info)
    check = sub.add_parser(
        "check",
        help="run every kernel against the float64 reference",
        description="Run every kernel and gradient (conv2d by im2col, Winograd and, on CUDA, the direct kernels; "
        "conv_transpose2d; max and average pooling; dense; bias) on small random inputs "
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
    train.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                       help="dtype of the parameters and of the images (default float32)")  # fmt: skip
    train.add_argument("--checkpoint", metavar="PATH",
                       help="write the whole training state to PATH (.npz) at the end of each epoch, on SIGINT or "
                            "SIGTERM, and at the end (PATH is then the trained model)")  # fmt: skip
    train.add_argument("--checkpoint-every", metavar="N", type=_positive_int, default=0,
                       help="also write the checkpoint every N steps (default 0: only at the ends of epochs)")  # fmt: skip
    train.add_argument("--resume", action="store_true",
                       help="continue from --checkpoint PATH, with the arguments that wrote it; ends bit for bit as "
                            "the uninterrupted run")  # fmt: skip
    train.add_argument("--timeout", metavar="S", type=_positive_float, default=300,
                       help="with --distributed: a rank that waits longer than S seconds for the others in a "
                            "collective ends the job (default 300)")  # fmt: skip
    train.set_defaults(func=cmd_train)
    evaluate = sub.add_parser(
        "evaluate",
        help="a saved model's test accuracy",
        description="Load a checkpoint written by xpconv train --checkpoint and print its test accuracy on "
        "the data (standardised as its training images were).",
    )
    evaluate.add_argument("--checkpoint", metavar="PATH", required=True, help="a checkpoint of xpconv train")
    evaluate.add_argument("--data", help="folder with MNIST IDX files (default: scikit-learn's digits)")
    evaluate.add_argument(
        "--device", type=_device, default=None, help="cpu, cuda or cuda:N (default $XPCONV_DEVICE or cpu)"
    )
    evaluate.add_argument("--train-count", type=_positive_int, default=None,
                          help="with only the t10k-* files: how many of them trained (default: the checkpoint's)")  # fmt: skip
    evaluate.set_defaults(func=cmd_evaluate)
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
        status = args.func(args)
        sys.stdout.flush()
        return status
    except BrokenPipeError:  # the reader left (xpconv info | head -1): end quietly, as other tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing more to flush at exit
        return 128 + signal.SIGPIPE
    except (DeviceUnavailableError, ValueError, OSError, ModuleNotFoundError) as exc:
        print(f"xpconv {args.command}: {exc}", file=sys.stderr)
        return 2
