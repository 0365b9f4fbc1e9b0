"""How ``xpconv bench`` times (issue 19, items 1 and 3): blocks whose first call is dropped,
contenders alternated block by block, PyTorch in a process of its own, spreads and ratio
ranges reported, rows checked against each other, a float16 run's ceiling measured in float32,
and one duration estimate printed everywhere.  Nothing here asserts a speed."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from xpconv.tools import bench, timing
from xpconv.tools.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def test_a_block_drops_its_first_call(monkeypatch):
    monkeypatch.setattr(timing, "PAUSE_S", 0.0)
    calls = []
    times = timing.block_times(lambda: calls.append(1), min_seconds=0.0, min_repeats=4)
    assert len(times) == 4 and len(calls) == 5


def test_contenders_alternate_block_by_block_and_flip_each_round():
    order = []

    def contender(name, seconds):
        def block(min_seconds, min_repeats):
            order.append(name)
            return [seconds, seconds * 3, seconds * 2]  # median: 2·seconds

        return block

    own, other = timing.side_by_side(contender("a", 1.0), contender("b", 5.0), rounds=4)
    assert order == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert own.rounds == (2.0,) * 4 and other.median == 10.0
    assert timing.Ratio.of(own, other).median == 5.0


def test_ratio_is_taken_round_by_round():
    own, other = timing.Timing((1.0, 2.0, 4.0)), timing.Timing((2.0, 2.0, 2.0))
    ratio = timing.Ratio.of(own, other)
    assert ratio.rounds == (2.0, 1.0, 0.5)
    assert (ratio.low, ratio.median, ratio.high) == (0.5, 1.0, 2.0)


def test_a_row_carries_its_spread_and_its_ratio_range():
    row = bench.Result.timed(
        "conv2d-forward", "mnist", 2e9, timing.Timing((1.0, 2.0, 3.0)), timing.Timing((3.0, 3.0, 3.0))
    )
    assert (row.median_ms, row.low_ms, row.high_ms) == (2000.0, 1000.0, 3000.0)
    assert (row.torch_ratio, row.torch_ratio_low, row.torch_ratio_high) == (1.5, 1.0, 3.0)
    assert row.gflops == 1.0 and row.torch_gflops == pytest.approx(2 / 3)
    table = bench.format_table([row], ceiling=10.0)
    assert "1000.00-3000.00" in table and "1.50x" in table and "1.00-3.00" in table


def _row(op, ms, torch_ms=None, shape="mnist"):
    spread = timing.Timing((ms * 0.95, ms, ms * 1.05))
    other = None if torch_ms is None else timing.Timing((torch_ms * 0.95, torch_ms, torch_ms * 1.05))
    return bench.Result.timed(op, shape, 1e9, spread, other)


def test_a_part_slower_than_its_whole_is_flagged():
    rows = [_row("conv2d-forward", 1.0, 1.0), _row("conv2d-backward", 9.0, 9.0), _row("conv2d-train-step", 6.0, 12.0)]
    lines = bench.consistency(rows)
    assert len(lines) == 1
    assert lines[0].startswith("inconsistent: xpconv's conv2d-backward on mnist")
    rows[1] = _row("conv2d-backward", 5.0, 9.0)
    assert bench.consistency(rows) == []


def test_dense_is_explained_beside_its_bare_matmuls():
    rows = [_row("dense", 4.2, shape="dense-784"), _row("3 bare matmuls", 4.0, shape="dense-784")]
    (line,) = bench.consistency(rows)
    assert line.startswith("dense dense-784: 1.05x the time of its 3 bare matmuls (consistent)")
    assert "bias add and a bias gradient" in line
    rows[0] = _row("dense", 2.0, shape="dense-784")
    assert "inconsistent" in bench.consistency(rows)[0]


def test_a_float16_run_on_the_cpu_has_a_float32_ceiling():
    assert bench.ceiling_dtype("cpu", "float16") == "float32"
    assert bench.ceiling_dtype("cpu", "float32") == "float32"
    assert bench.ceiling_dtype("cuda", "float16") == "float16"
    text = bench.Ceiling("float32", [100.0, 90.0, 110.0]).describe("float16")
    assert "2048x2048 float32 matmul (instead of float16, which NumPy multiplies without BLAS)" in text


@pytest.mark.slow
def test_float16_bench_on_the_cpu_finishes_quickly(capsys):
    """The float16 bench measured its ceiling with NumPy's BLAS-less float16 matmul: minutes of
    silence.  With the float32 ceiling, a float16 mnist run ends in seconds (bounded generously)."""
    import time

    start = time.perf_counter()
    run = bench.run("cpu", "float16", ["mnist"], book="none", torch=False, min_seconds=0, log=lambda m: None)
    assert time.perf_counter() - start < 60
    assert run.ceiling.dtype == "float32" and run.ceiling.median > 1.0
    assert [r.op for r in run.results] == list(bench.CONV_OPS)


def test_one_duration_estimate_in_help_program_and_readme():
    quick = bench.describe_seconds(bench.expected_seconds(bench.QUICK_SHAPES, 0.5, True, "smallest"))
    full = bench.describe_seconds(bench.expected_seconds(bench.ALL_SHAPES, 0.5, True, "all"))
    bench_help = build_parser()._subparsers._group_actions[0].choices["bench"].format_help()  # type: ignore[union-attr]
    assert quick in " ".join(bench_help.split()) and full in " ".join(bench_help.split())
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"(quick set, with PyTorch: {quick}" in readme and f"with the book on each ({full} with PyTorch)" in readme
    assert not re.search(r"under 20 s|about a minute|2–3 minutes|several minutes", readme + bench_help)


@pytest.mark.slow
def test_the_bench_process_never_imports_torch():
    pytest.importorskip("torch")
    code = (
        "import sys\n"
        "from xpconv.tools import bench\n"
        "run = bench.run(shapes=['mnist'], book='none', min_seconds=0, log=lambda m: None)\n"
        "assert all(r.torch_ratio for r in run.results), run.results\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_pytorch_rows_run_last_in_the_benchmark_suite():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", str(ROOT / "benchmarks")],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    ids = [line for line in result.stdout.splitlines() if "::" in line]
    torch_rows = [i for i, line in enumerate(ids) if "::test_torch[" in line]
    assert torch_rows and torch_rows == list(range(len(ids) - len(torch_rows), len(ids)))
