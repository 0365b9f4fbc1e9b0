"""The last table of ``gpu_check.sh``: xpconv / PyTorch throughput per op, shape and run.

Usage: ``python benchmarks/ratio_table.py bench-*.json`` (files written by ``xpconv bench --json``).
"""

import json
import sys
from pathlib import Path


def ratio_table(paths) -> str:
    runs = [(Path(p).stem, json.loads(Path(p).read_text())) for p in paths]
    header = f"{'op':<18} {'shape':<10}" + "".join(f" {name:>22}" for name, _ in runs)
    lines = ["xpconv throughput / PyTorch throughput (> 1: xpconv faster)", header, "-" * len(header)]
    keys = []
    for _, data in runs:
        for r in data["results"]:
            if r.get("torch_ratio") and (r["op"], r["shape"]) not in keys:
                keys.append((r["op"], r["shape"]))
    for op, shape in keys:
        cells = []
        for _, data in runs:
            ratio = next((r["torch_ratio"] for r in data["results"] if (r["op"], r["shape"]) == (op, shape)), None)
            cells.append(f" {ratio:21.2f}x" if ratio else f" {'':>22}")
        lines.append(f"{op:<18} {shape:<10}" + "".join(cells))
    return "\n".join(lines)


if __name__ == "__main__":
    print(ratio_table(sys.argv[1:]))
