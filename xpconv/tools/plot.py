"""``xpconv bench --plot FILE.png``: a bar chart of GFLOP/s per shape (matplotlib, optional)."""

from __future__ import annotations

import importlib

from .bench import Result


def require_matplotlib() -> None:
    """Raise ``ModuleNotFoundError`` with the extra to install when matplotlib is missing."""
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        raise ModuleNotFoundError('--plot needs matplotlib: pip install "xpconv[plot]"') from None


def plot_gflops(results: list[Result], path: str, ceiling: float, title: str) -> None:
    """Grouped bars of the conv2d train step's GFLOP/s per shape (the forward's when no train step was
    timed): xpconv, PyTorch, the book; the title names the op."""
    import matplotlib  # pyright: ignore[reportMissingImports]  (an optional extra)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pyright: ignore[reportMissingImports]  (an optional extra)

    rows = [r for r in results if r.op == "conv2d-train-step"] or [r for r in results if r.op == "conv2d-forward"]
    shapes = [r.shape for r in rows]
    series = {"xpconv": [r.gflops for r in rows]}
    if any(r.torch_gflops for r in rows):
        series["PyTorch"] = [r.torch_gflops or 0.0 for r in rows]
    if any(r.book_gflops for r in rows):
        series["the book's approach"] = [r.book_gflops or 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(shapes) + 2), 4.5))
    width = 0.8 / len(series)
    for k, (label, values) in enumerate(series.items()):
        ax.bar([i + (k - (len(series) - 1) / 2) * width for i in range(len(shapes))], values, width, label=label)
    ax.axhline(ceiling, color="gray", linestyle="--", linewidth=1, label=f"matmul ceiling {ceiling:.0f} GFLOP/s")
    ax.set_xticks(range(len(shapes)), shapes)
    ax.set_ylabel("GFLOP/s (direct-convolution FLOPs)")
    ax.set_title(f"{title}: {rows[0].op if rows else 'no conv'} rows")  # which op the bars are
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
