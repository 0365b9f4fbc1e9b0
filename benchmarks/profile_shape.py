"""Where one bench row's time goes: a profile of xpconv's forward and backward on a bench shape.

    python benchmarks/profile_shape.py conv3d [--calls 5] [--top 8]

Runs each of the shape's forward and backward ``--calls`` times under ``cProfile`` (after one
untimed call) in one thread (``XPCONV_NUM_THREADS=1``, so the time is the caller's), and prints,
per op, the functions that take the most time of their own: the patch copies (``im2col``,
``folded_patches``), the GEMMs (``matmul``), col2im and the rest.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats

os.environ["XPCONV_NUM_THREADS"] = "1"

from xpconv.tools.bench import CONV_SHAPES, conv_inputs, conv_op  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shape", choices=sorted(CONV_SHAPES))
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    shape = CONV_SHAPES[args.shape]
    inputs = conv_inputs(shape)
    for op in shape.ops[:2]:
        call = conv_op(op, shape, *inputs)
        call()
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.calls):
            call()
        profile.disable()
        stats = pstats.Stats(profile)
        total = sum(row[2] for row in stats.stats.values()) / args.calls  # type: ignore[attr-defined]
        print(f"{op} {args.shape} ({shape.describe()}): {1e3 * total:.1f} ms a call, one thread")
        rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])[: args.top]  # type: ignore[attr-defined]
        for (filename, line, name), (_, _, own, _, _) in rows:
            where = name if filename == "~" else f"{os.path.basename(filename)}:{line} {name}"
            print(f"  {1e3 * own / args.calls:8.1f} ms  {100 * own / args.calls / total:4.0f}%  {where}")


if __name__ == "__main__":
    main()
