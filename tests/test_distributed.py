"""Data-parallel training over MPI: two processes take the same steps as one, uneven batches
included; a failing rank ends the job; mismatched ranks say so; the CuPy path on the stand-in."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from xpconv.nn import book_network, fit
from xpconv.tools.cli import main

from cases import HERE, MPIEXEC, command_env, digit_like, needs_mpi, run_mpiexec, synthetic_digits, write_pair


def _single_process(n, batch):
    model = book_network(10, 10, dtype="float64", seed=3, dropout=0.0)
    history = fit(model, synthetic_digits(n), device="cpu", epochs=2, batch_size=batch, lr=0.05, momentum=0.9,
                  seed=7, progress=False, log=lambda s: None)  # fmt: skip
    return model, history


@needs_mpi
@pytest.mark.parametrize(("n", "batch"), [(120, 60), (122, 61)])  # 61 = 31 + 30 over 2 ranks
def test_two_processes_take_the_steps_of_one(tmp_path, n, batch):
    out = tmp_path / "two.npz"
    result = run_mpiexec(
        ["-n", "2", sys.executable, str(HERE / "mpi_worker.py"), "train", str(out), str(n), str(batch)]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    two = np.load(out)
    model, history = _single_process(n, batch)
    for k, p in enumerate(model.parameters()):
        np.testing.assert_allclose(two[f"p{k}"], p.value, rtol=1e-12, atol=1e-12 * float(np.abs(p.value).max()))
    assert float(two["loss"]) == pytest.approx(history[-1].loss, rel=1e-12)
    assert float(two["accuracy"]) == history[-1].accuracy


@needs_mpi
def test_a_failing_rank_ends_the_job():
    start = time.perf_counter()
    result = run_mpiexec(["-n", "2", sys.executable, str(HERE / "mpi_worker.py"), "fail"], timeout=60)
    elapsed = time.perf_counter() - start
    assert result.returncode != 0
    assert elapsed < 10, elapsed
    assert "rank 1 failed, ending the job: RuntimeError: this rank failed on purpose" in result.stderr


@needs_mpi
def test_cli_two_processes(tmp_path):
    write_pair(tmp_path, "t10k", *digit_like(np.random.default_rng(0), 200))
    train = [sys.executable, "-m", "xpconv", "train", "--distributed", "--data", str(tmp_path),
             "--train-count", "150", "--lr", "0.01", "--quiet"]  # fmt: skip
    result = run_mpiexec(["-n", "2", *train])
    assert result.returncode == 0, result.stderr[-3000:]
    epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("epoch")]
    assert len(epoch_lines) == 1 and "(2 processes)" in epoch_lines[0]  # rank 0 alone prints
    assert result.stdout.count("first 150 images") == 1
    # XPCONV_NUM_THREADS=1 (from _env) holds both ranks to one worker and one BLAS thread
    assert "rank 0: 1 xpconv worker(s), 1 BLAS thread(s) (2 rank(s) share this machine's" in result.stdout
    assert "rank 1: 1 xpconv worker(s), 1 BLAS thread(s)" in result.stdout


@needs_mpi
def test_ranks_on_one_machine_share_its_cores(tmp_path):
    """Without XPCONV_NUM_THREADS, each of 2 ranks takes half the cores, for its workers and its BLAS."""
    write_pair(tmp_path, "t10k", *digit_like(np.random.default_rng(0), 100))
    train = [sys.executable, "-m", "xpconv", "train", "--distributed", "--data", str(tmp_path),
             "--train-count", "60", "--quiet"]  # fmt: skip
    env = command_env()
    env.pop("XPCONV_NUM_THREADS")
    result = subprocess.run([MPIEXEC, "-n", "2", *train], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    cores = len(os.sched_getaffinity(0))
    for rank in (0, 1):
        share = max(1, cores // 2 + (1 if rank < cores % 2 else 0))
        assert f"rank {rank}: {share} xpconv worker(s), {share} BLAS thread(s) (2 rank(s) share" in result.stdout


@needs_mpi
def test_cli_missing_data_on_one_rank(tmp_path):
    write_pair(tmp_path, "t10k", *digit_like(np.random.default_rng(0), 60))
    common = [sys.executable, "-m", "xpconv", "train", "--distributed", "--train-count", "40", "--quiet"]
    result = run_mpiexec(
        ["-n", "1", *common, "--data", str(tmp_path)], ["-n", "1", *common, "--data", str(tmp_path / "nope")]
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "rank 1 of 2: data folder not found" in lines[0], result.stderr


@needs_mpi
def test_cli_mismatched_ranks(tmp_path):
    write_pair(tmp_path, "t10k", *digit_like(np.random.default_rng(0), 60))
    common = [sys.executable, "-m", "xpconv", "train", "--distributed", "--data", str(tmp_path), "--train-count", "40"]
    result = run_mpiexec(["-n", "1", *common, "--batch-size", "20"], ["-n", "1", *common, "--batch-size", "10"])
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "ranks were started differently: rank 1 has batch_size=10 but rank 0 has 20" in lines[0]


@needs_mpi
def test_without_mpiexec_it_is_one_process(tmp_path):
    write_pair(tmp_path, "t10k", *digit_like(np.random.default_rng(0), 60))
    argv = [
        sys.executable,
        "-m",
        "xpconv",
        "train",
        "--distributed",
        "--data",
        str(tmp_path),
        "--train-count",
        "40",
        "--batch-size",
        "20",
        "--quiet",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, env=command_env(), timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(1 process)" in result.stdout and "; 1 process, global batch 20" in result.stdout


@needs_mpi
def test_cupy_path_on_the_stand_in():
    argv = [sys.executable, str(HERE / "mpi_worker.py"), "stand-in"]
    result = subprocess.run(argv, capture_output=True, text=True, env=command_env(), timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    alone, with_communicator = map(float, result.stdout.split("losses")[1].split())
    assert with_communicator == pytest.approx(alone, rel=1e-12)


def test_distributed_without_mpi4py_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    assert main(["train", "--distributed"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install "xpconv[mpi]"' in err[0]
