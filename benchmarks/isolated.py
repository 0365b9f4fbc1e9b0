"""xpconv / PyTorch ratios measured with each library alone in a fresh process: the yardstick
for ``xpconv bench``'s "vs torch" column.

Each round starts one process that times only xpconv and then one that times only PyTorch (the
order flips every round), each timing one block per row exactly as the bench does
(:func:`xpconv.tools.timing.block_times`, same inputs from the same seed).  Neither library is
ever loaded in the other's process.  With ``--compare FILE`` (from ``xpconv bench --json``), the
bench's ratio is printed beside each isolated ratio, with the difference.

Usage::

    python benchmarks/isolated.py --shapes mnist,cifar,resnet --rounds 3 --compare bench.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

from xpconv.tools.bench import CONV_SHAPES, conv_inputs, conv_op
from xpconv.tools.timing import block_times


def worker(library: str, shapes: list[str], min_seconds: float) -> dict[str, float]:
    """Median seconds of one block per (op, shape), timing ``library`` only."""
    medians = {}
    for name in shapes:
        shape = CONV_SHAPES[name]
        inputs = conv_inputs(shape)
        for op in shape.ops:
            if library == "torch":
                from xpconv.tools.rival import torch_op

                fn = torch_op(op, shape, *inputs)
            else:
                fn = conv_op(op, shape, *inputs)
            medians[f"{op} {name}"] = statistics.median(block_times(fn, min_seconds=min_seconds))
    return medians


def measure(shapes: list[str], rounds: int, min_seconds: float) -> dict[str, list[tuple[float, float]]]:
    """Per row, (xpconv seconds, PyTorch seconds) of each round."""
    times: dict[str, list[tuple[float, float]]] = {}
    for k in range(rounds):
        runs = {}
        for library in ("xpconv", "torch") if k % 2 == 0 else ("torch", "xpconv"):
            argv = [sys.executable, __file__, "--worker", library, "--shapes", ",".join(shapes),
                    "--min-seconds", str(min_seconds)]  # fmt: skip
            runs[library] = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
            print(f"round {k + 1}: {library} done", file=sys.stderr, flush=True)
        for row, seconds in runs["xpconv"].items():
            times.setdefault(row, []).append((seconds, runs["torch"][row]))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="mnist,cifar,resnet")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=0.5 / 3, help="timed seconds per block")
    parser.add_argument("--compare", metavar="FILE", help="an xpconv bench --json file to compare with")
    parser.add_argument("--worker", choices=["xpconv", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    shapes = args.shapes.split(",")
    if args.worker:
        print(json.dumps(worker(args.worker, shapes, args.min_seconds)))
        return
    times = measure(shapes, args.rounds, args.min_seconds)
    bench = {}
    if args.compare:
        for r in json.loads(Path(args.compare).read_text())["results"]:
            if r.get("torch_ratio"):
                bench[f"{r['op']} {r['shape']}"] = r["torch_ratio"]
    print(f"PyTorch time / xpconv time, each library alone in its own process, {args.rounds} rounds")
    print(
        f"{'row':<32} {'xpconv ms':>9} {'torch ms':>9} {'isolated':>9} {'(range)':>11} {'bench':>7} {'bench/isolated':>14}"
    )
    gaps = []
    for row, pairs in times.items():
        values = [t / s for s, t in pairs]
        iso = statistics.median(values)
        own, other = (1e3 * statistics.median(p[i] for p in pairs) for i in (0, 1))
        cells = f"{row:<32} {own:9.2f} {other:9.2f} {iso:8.2f}x {min(values):5.2f}-{max(values):<5.2f}"
        if row in bench:
            gaps.append(bench[row] / iso)
            cells += f" {bench[row]:6.2f}x {bench[row] / iso:13.2f}"
        print(cells)
    if gaps:
        worst = max(gaps, key=lambda g: abs(math.log(g)))
        print(f"bench/isolated over {len(gaps)} rows: geometric mean {math.exp(statistics.mean(map(math.log, gaps))):.2f}, "
              f"furthest {worst:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
