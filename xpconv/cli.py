"""Command line: ``xpconv info``, ``xpconv check``, ``xpconv bench``, ``xpconv train``."""

from __future__ import annotations

import argparse
import platform
import sys

import numpy as np

from . import __version__
from ._backend import DeviceUnavailableError


def _blas() -> str:
    try:
        deps = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{deps.get('name', '?')} {deps.get('version', '')}".strip()
    except Exception:  # older NumPy without mode="dicts"
        return "unknown"


def _gpus() -> tuple[str, list[str]]:
    try:
        import cupy
    except ImportError:
        return "not installed", []
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        names = [cupy.cuda.runtime.getDeviceProperties(i)["name"] for i in range(count)]
        return cupy.__version__, [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    except Exception as exc:
        return f"{cupy.__version__} (no device: {exc})", []


def cmd_info(args) -> int:
    cupy_version, gpus = _gpus()
    print(f"xpconv   {__version__}")
    print(f"python   {platform.python_version()} ({platform.machine()})")
    print(f"numpy    {np.__version__} (BLAS: {_blas()})")
    print(f"cupy     {cupy_version}")
    from ._parallel import cpu_workers, workers_for

    threads = workers_for(np)
    how = "threadpoolctl found" if threads > 1 else (
        "one worker: pip install xpconv[fast] for threadpoolctl" if cpu_workers() > 1 else "one core")
    print(f"threads  {threads} CPU worker(s) for conv2d ({how})")
    print(f"backends cpu{', cuda' if gpus else ''}")
    for i, name in enumerate(gpus):
        print(f"gpu      cuda:{i} {name}")
    if not gpus:
        print("gpu      none visible")
    return 0


def cmd_check(args) -> int:
    from .check import format_rows, run_check

    dtypes = args.dtype or ["float32", "float64"]
    rows = run_check(args.device, dtypes)
    print(f"xpconv check --device {args.device}: every kernel against the float64 reference")
    print(format_rows(rows))
    failed = [r for r in rows if not r.ok]
    print(f"{len(rows) - len(failed)} of {len(rows)} checks within tolerance")
    return 1 if failed else 0


def cmd_train(args) -> int:
    from .data import load_mnist, load_sklearn_digits
    from .layers import default_device
    from .train import book_network, fit

    device = args.device or default_device()
    data = load_mnist(args.data, args.train_count) if args.data else load_sklearn_digits(seed=args.seed)
    print(data.description)
    _, _, h, w = data.train_images.shape
    model = book_network(h, w, device=device, seed=args.seed)
    print(f"network: Conv2D(1->16, 5x5, same) -> Tanh -> Dropout(0.2) -> Flatten -> Dense({16 * h * w}->10) "
          f"on {device}; SGD lr={args.lr} momentum={args.momentum}, batch {args.batch_size}")
    fit(model, data, device=device, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        momentum=args.momentum, seed=args.seed, progress=not args.quiet)
    return 0


def cmd_bench(args) -> int:
    import json

    from . import bench

    shapes = [s.strip() for s in args.shapes.split(",")] if args.shapes else None
    print(f"xpconv bench --device {args.device} --dtype {args.dtype}: median of repeats; "
          "'x book' = throughput over the book's per-pixel loop, 'vs torch' = PyTorch time / xpconv time")
    ceiling = bench.matmul_ceiling(args.device, args.dtype)
    print(f"ceiling: a 2048x2048 {args.dtype} matmul runs at {ceiling:.0f} GFLOP/s on this machine; "
          f"xpconv uses {bench.cpu_threads()} CPU worker thread(s)")
    results = bench.run(args.device, args.dtype, shapes, book=not args.no_book, min_seconds=args.min_seconds)
    print(bench.format_table(results, ceiling))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(bench.as_json(results, ceiling, args.device, args.dtype), f, indent=2)
        print(f"wrote {args.json}")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xpconv", description="Conv2D/dense/bias kernels for NumPy and CuPy")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, backend, BLAS and visible GPUs").set_defaults(func=cmd_info)
    check = sub.add_parser("check", help="run every kernel against the float64 reference")
    check.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    check.add_argument("--dtype", action="append", choices=["float16", "float32", "float64"],
                       help="dtype to check (repeatable; default float32 and float64)")
    check.set_defaults(func=cmd_check)
    bench = sub.add_parser("bench", help="time the kernels on the standard shapes against the book and PyTorch")
    bench.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    bench.add_argument("--dtype", default="float32", choices=["float16", "float32", "float64"])
    bench.add_argument("--shapes", help="comma-separated: mnist,cifar,resnet,stride2,depthwise,pointwise,dense-784,dense-4096")
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    bench.add_argument("--no-book", action="store_true", help="skip the (slow) book baseline")
    bench.add_argument("--min-seconds", type=float, default=0.5, help="time each op for at least this long")
    bench.set_defaults(func=cmd_bench)
    train = sub.add_parser("train", help="train the book's CNN on MNIST-format data or scikit-learn's digits")
    train.add_argument("--data", help="folder with MNIST IDX files (train-*/t10k-*, raw or .gz)")
    train.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default $XPCONV_DEVICE or cpu)")
    train.add_argument("--epochs", type=_positive_int, default=1)
    train.add_argument("--batch-size", type=_positive_int, default=60)
    train.add_argument("--lr", type=float, default=0.1)
    train.add_argument("--momentum", type=float, default=0.9)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--train-count", type=_positive_int, default=8000,
                       help="with only the t10k-* files: how many of them train (default 8000); the rest test")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DeviceUnavailableError, ValueError, FileNotFoundError, ModuleNotFoundError) as exc:
        print(f"xpconv {args.command}: {exc}", file=sys.stderr)
        return 2
