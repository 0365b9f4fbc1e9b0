"""``xpconv train --checkpoint`` on the real command line, in processes of its own: runs killed
(SIGKILL, SIGTERM, SIGINT) at random steps and resumed end bit for bit as the uninterrupted run,
in float32 and float64, in one process and over ``mpiexec -n 2``; torn, truncated and foreign
checkpoints and mismatched resumes are one line and exit 2; a loss that overflows stops with exit
1 and leaves the last good checkpoint; a stopped rank ends the job within ``--timeout``."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from xpconv.nn.checkpoint import read, read_metadata

from cases import MPIEXEC, command_env, digit_like, needs_mpi, write_pair

pytestmark = pytest.mark.slow  # whole commands in processes of their own


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    write_pair(folder, "t10k", *digit_like(np.random.default_rng(0), 380, size=12))
    return folder


def _train(digits: Path, checkpoint: Path, *extra: str, epochs: int = 2, dtype: str = "float64") -> list[str]:
    """The book's network (with Dropout) on 300 12x12 images, batch 10: 30 steps an epoch."""
    return [
        "train", "--data", str(digits), "--train-count", "300", "--batch-size", "10", "--epochs", str(epochs),
        "--lr", "0.02", "--dtype", dtype, "--quiet", "--checkpoint", str(checkpoint), *extra,
    ]  # fmt: skip


def _xpconv(args, **kw):
    return subprocess.run([sys.executable, "-m", "xpconv", *args], capture_output=True, text=True,
                          env=command_env(), timeout=300, **kw)  # fmt: skip


def _parameters(path: Path) -> dict[str, np.ndarray]:
    arrays, _ = read(path)
    return {k: v for k, v in arrays.items() if k.startswith(("model/", "optimizer/"))}


def _progress(path: Path) -> int:
    """Steps the checkpoint at ``path`` has taken (0 when there is none yet)."""
    try:
        return read_metadata(path)["optimizer"]["steps"]
    except (ValueError, KeyError):
        return 0


def _run_until(argv: list[str], checkpoint: Path, steps: int, how: int) -> int:
    """Start ``argv``; once its checkpoint has taken ``steps`` steps, send signal ``how`` to its
    whole process group; return its exit status (negative: killed by a signal)."""
    steps = max(steps, _progress(checkpoint) + 1)  # a step of this process's own: it is running by then
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=command_env(),
                               start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if _progress(checkpoint) >= steps:
            os.killpg(process.pid, how)
            break
        time.sleep(0.005)
    try:
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return process.returncode


def _interrupted_until_done(argv: list[str], checkpoint: Path, rng) -> list[int]:
    """Run ``argv``, stopped at random steps by SIGKILL, SIGTERM and SIGINT and resumed, until it
    completes; return the exit statuses of the stopped runs."""
    statuses = []
    stops = sorted(rng.choice(np.arange(3, 55), size=4, replace=False))
    for k, (steps, how) in enumerate(
        zip(stops, [signal.SIGKILL, signal.SIGTERM, signal.SIGKILL, signal.SIGINT], strict=True)
    ):
        run = argv + (["--resume"] if k else [])
        statuses.append(_run_until(run, checkpoint, int(steps), how))
    done = subprocess.run(argv + ["--resume"], capture_output=True, text=True, env=command_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    return statuses


def _assert_bit_identical(path: Path, reference: Path) -> None:
    got, expected = _parameters(path), _parameters(reference)
    assert sorted(got) == sorted(expected)
    for k, v in expected.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_killed_and_resumed_runs_end_bit_identical(tmp_path, digits, dtype):
    reference = tmp_path / "reference.npz"
    assert _xpconv(_train(digits, reference, dtype=dtype)).returncode == 0
    interrupted = tmp_path / "interrupted.npz"
    argv = [sys.executable, "-m", "xpconv", *_train(digits, interrupted, "--checkpoint-every", "1", dtype=dtype)]
    statuses = _interrupted_until_done(argv, interrupted, np.random.default_rng(1 if dtype == "float64" else 2))
    assert -signal.SIGKILL in statuses and 128 + signal.SIGTERM in statuses, statuses  # really stopped midway
    _assert_bit_identical(interrupted, reference)
    assert read_metadata(interrupted)["training"]["epoch"] == 3  # both epochs done: the trained model


@needs_mpi
def test_killed_and_resumed_distributed_runs_end_bit_identical(tmp_path, digits):
    """Over ``mpiexec -n 2``: rank 0 writes, every rank reads; the dropout generators of both ranks
    are in the file."""
    reference = tmp_path / "reference.npz"
    mpi = [MPIEXEC, "-n", "2", sys.executable, "-m", "xpconv"]
    done = subprocess.run([*mpi, *_train(digits, reference), "--distributed"], capture_output=True, text=True,
                          env=command_env(), timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(read_metadata(reference)["training"]["dropout"]) == 2
    interrupted = tmp_path / "interrupted.npz"
    argv = [*mpi, *_train(digits, interrupted, "--checkpoint-every", "1"), "--distributed"]
    statuses = _interrupted_until_done(argv, interrupted, np.random.default_rng(3))
    assert any(s != 0 for s in statuses), statuses
    _assert_bit_identical(interrupted, reference)


def test_damaged_or_mismatched_checkpoints_are_one_line(tmp_path, digits):
    good = tmp_path / "good.npz"
    assert _xpconv(_train(digits, good, epochs=1)).returncode == 0
    raw = good.read_bytes()
    (tmp_path / "torn.npz").write_bytes(raw[: len(raw) // 3])
    (tmp_path / "foreign.npz").write_bytes(b"PK\x03\x04 this is no checkpoint")
    np.savez(tmp_path / "plain.npz", weight=np.ones(3))
    cases = {
        "torn.npz": [],
        "foreign.npz": [],
        "plain.npz": [],
        "missing.npz": [],
        "good.npz": ["--batch-size", "20"],  # another batch size
    }
    for name, extra in cases.items():
        argv = _train(digits, tmp_path / name, "--resume", epochs=2)
        if extra:
            argv[argv.index("--batch-size") + 1] = extra[1]
        result = _xpconv(argv)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and name in lines[0], (name, result.stderr)
    for option, value in [("--model", "lenet5"), ("--dtype", "float32")]:
        result = _xpconv([*_train(digits, good, "--resume", epochs=2), option, value])
        assert result.returncode == 2 and "was written by a run with" in result.stderr, result.stderr
    other = tmp_path / "other"
    other.mkdir()
    write_pair(other, "t10k", *digit_like(np.random.default_rng(1), 380, size=12))
    result = _xpconv(_train(other, good, "--resume", epochs=2))
    assert result.returncode == 2 and "data=" in result.stderr, result.stderr


def test_an_overflowing_loss_stops_with_the_last_good_checkpoint(tmp_path, digits):
    path = tmp_path / "state.npz"
    argv = _train(digits, path, "--checkpoint-every", "1", dtype="float32")
    argv[argv.index("--lr") + 1] = "1e38"  # the first step's update overflows float32
    result = _xpconv(argv)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert "the loss became" in lines[0] and "smaller --lr" in lines[0], lines
    step = int(lines[0].split("step ")[1].split(":")[0])
    assert read_metadata(path)["optimizer"]["steps"] == step - 1  # the step before the non-finite loss
    assert all(np.isfinite(v).all() for v in _parameters(path).values())


def test_evaluate_prints_a_saved_models_accuracy(tmp_path, digits):
    path = tmp_path / "model.npz"
    trained = _xpconv(_train(digits, path, epochs=1))
    assert trained.returncode == 0, trained.stderr
    accuracy = trained.stdout.split("test accuracy ")[1].split("%")[0]
    result = _xpconv(["evaluate", "--checkpoint", str(path), "--data", str(digits)])
    assert result.returncode == 0, result.stderr
    assert f"test accuracy {accuracy}%" in result.stdout and "on 80 images" in result.stdout


@needs_mpi
def test_a_stopped_rank_ends_the_job_within_the_timeout(tmp_path, digits):
    """SIGSTOP one rank: the other waits ``--timeout`` seconds in its all-reduce, then the job ends
    with one line naming what it waited for, and no process is left behind."""
    path = tmp_path / "state.npz"
    argv = [MPIEXEC, "-n", "2", sys.executable, "-m", "xpconv", *_train(digits, path, "--checkpoint-every", "1",
            epochs=200), "--distributed", "--timeout", "3"]  # fmt: skip
    job = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=command_env(),
                           start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while _progress(path) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        ranks = _ranks_of(job.pid)
        assert len(ranks) == 2, ranks
        stopped_at = time.monotonic()
        os.kill(max(ranks), signal.SIGSTOP)
        _, err = job.communicate(timeout=60)
        elapsed = time.monotonic() - stopped_at
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode != 0 and elapsed < 3 + 20, (job.returncode, elapsed)
    assert "rank 0 failed, ending the job: CollectiveTimeout: rank 0 waited 3 s for the other ranks in" in err, err
    time.sleep(0.5)
    assert not [pid for pid in ranks if _alive(pid)], "a rank was left behind"


def _ranks_of(job: int) -> list[int]:
    """The xpconv processes under ``job`` (mpiexec starts each rank in a session of its own, under
    a proxy of its own: so found by descent)."""
    parents, commands = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])

    def under(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == job:
                return True
        return False

    return [pid for pid, cmd in commands.items() if b"xpconv" in cmd and b"--distributed" in cmd and under(pid)]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
