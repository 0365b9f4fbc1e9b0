"""A first-order ESTIMATE of xpconv's CUDA time per bench row, from counts on the CuPy stand-in,
beside an estimate of cuDNN's — not a measurement (no GPU runs here).

Each row's forward and backward run once on ``tests/fake_cupy.py`` (after a first call that
loads the kernels and copies the device constants), which runs xpconv's CUDA C kernels on the
CPU and counts the kernels launched (CuPy's and xpconv's), the bytes they write and the GEMMs'
multiply-adds ×2; rows that the direct kernels run (``algorithm="auto"`` chose them) add the
direct convolution's multiply-adds ×2, which those kernels compute outside any GEMM.  Then, for a
GPU with launch cost ``L``, bandwidth ``BW`` and FP32 peak ``P``:

    xpconv ≈ max(launches · L,  2 · bytes written / BW + FLOPs / P)

(launches are asynchronous: the host issues them while the GPU works, so a call costs the longer
of the two; each written byte is counted twice, for its later read), and cuDNN, taken as one
launch at its roofline,

    cuDNN ≈ max(L,  (inputs read + outputs written) / BW + direct-convolution FLOPs / P)

(no FLOPs for a pooling: it is memory-bound).  The ratio cuDNN / xpconv is what the model says
xpconv reaches of cuDNN's speed.  Usage::

    python benchmarks/gpu_model.py [--gpu model|h100|h200] [--batch N] [--shapes a,b]
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import fake_cupy  # noqa: E402  (the stand-in must be registered before xpconv looks for cupy)

sys.modules["cupy"] = fake_cupy.make_module()

import numpy as np  # noqa: E402

import xpconv  # noqa: E402
from xpconv._plan import conv_plan  # noqa: E402
from xpconv.tools.bench import CONV_SHAPES, DENSE_SHAPES, conv_inputs, conv_op, dense_inputs  # noqa: E402

# name: (launch seconds, bytes/s, FP32 FLOP/s, where the figures come from)
GPUS = {
    "model": (8e-6, 4.0e12, 50e12, "round figures: 8 us a launch, 4 TB/s, 50 TFLOP/s FP32"),
    "h100": (8e-6, 3.35e12, 67e12, "NVIDIA H100 SXM5 datasheet: HBM3 3.35 TB/s, FP32 67 TFLOPS; 8 us a launch"),
    "h200": (8e-6, 4.8e12, 67e12, "NVIDIA H200 SXM datasheet: HBM3e 4.8 TB/s, FP32 67 TFLOPS; 8 us a launch"),
}


def counted(call) -> tuple[int, int, int]:
    """(launches, bytes written, GEMM FLOPs) of one call, after a first call."""
    call()
    fake_cupy.reset_counters()
    call()
    c = fake_cupy.counters
    return c["launches"], c["bytes_written"], c["gemm_flops"]


def rows(names: list[str], batch: int | None):
    """(row name, (launches, bytes, flops), cuDNN's bytes, cuDNN's FLOPs) per op."""
    for name in names:
        if name in DENSE_SHAPES:
            n, fin, fout = DENSE_SHAPES[name]
            n = batch or n
            x, w, b, go = dense_inputs(n, fin, fout, "cuda", "float32")
            size = 4 * (n * fin + fout * fin + fout + n * fout)  # every operand once
            forward = functools.partial(xpconv.dense, x, w, b)
            yield f"dense {name}", counted(forward), size, 2.0 * n * fin * fout
            backward = functools.partial(xpconv.dense_backward, go, x, w)
            yield f"dense_backward {name}", counted(backward), size + 4 * (n * fin + fin * fout), 4.0 * n * fin * fout
            continue
        shape = CONV_SHAPES[name]
        x, w, b, go = conv_inputs(shape, "cuda", "float32", n=batch)
        data = sum(a.nbytes for a in (x, w, b) if a is not None)
        g = shape.geometry(batch)
        direct = not shape.pooling and conv_plan(sys.modules["cupy"], g, "auto").algorithm == "direct"
        for op in shape.ops[:2]:  # forward, backward
            moved = data + go.nbytes + (x.nbytes + (0 if w is None else w.nbytes) if op.endswith("backward") else 0)
            flops = 0.0 if shape.pooling else shape.passes(op) * g.flops
            launches, written, gemm_flops = counted(conv_op(op, shape, x, w, b, go))
            yield f"{op} {name}", (launches, written, gemm_flops + (flops if direct else 0.0)), moved, flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", choices=sorted(GPUS), default="model")
    parser.add_argument("--batch", type=int, help="override every row's batch (default: the bench's)")
    parser.add_argument("--shapes", help="comma-separated bench shapes (default: all conv, pooling and dense rows)")
    args = parser.parse_args()
    names = args.shapes.split(",") if args.shapes else [*CONV_SHAPES, *DENSE_SHAPES]
    launch, bandwidth, peak, source = GPUS[args.gpu]
    print(f"ESTIMATE, not a measurement: {args.gpu} ({source}); counts from the CuPy stand-in, float32")
    header = f"{'row':<36} {'launches':>8} {'MB written':>10} {'GFLOP':>8} {'xpconv us':>9} {'cuDNN us':>8} {'cuDNN/xpconv':>12}"
    print(header)
    print("-" * len(header))
    ratios, labels = [], []
    for label, (launches, written, flops), moved, direct_flops in rows(names, args.batch):
        ours = max(launches * launch, 2 * written / bandwidth + flops / peak)
        theirs = max(launch, moved / bandwidth + direct_flops / peak)
        ratios.append(theirs / ours)
        labels.append(label)
        print(f"{label:<36} {launches:8d} {written / 1e6:10.1f} {flops / 1e9:8.2f} {1e6 * ours:9.1f} "
              f"{1e6 * theirs:8.1f} {theirs / ours:12.2f}")  # fmt: skip
    for label, subset in (
        ("every row", ratios),
        ("conv2d rows", [r for lab, r in zip(labels, ratios, strict=True) if lab.startswith("conv2d-")]),
    ):
        if subset:
            geo = math.exp(float(np.mean(np.log(subset))))
            print(f"geometric mean cuDNN/xpconv, {label} ({len(subset)}): {geo:.2f} (estimate)")


if __name__ == "__main__":
    main()
