"""The IDX loader on files the test writes, `xpconv train`, and the MNIST accuracy check."""

import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xpconv.nn import book_network, fit, load_mnist, read_idx
from xpconv.tools.cli import main

from cases import digit_like, idx_bytes, write_pair

MNIST_DIR = Path(
    os.environ.get("XPCONV_MNIST_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-t10k")
)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_roundtrip(tmp_path, rng, compress):
    images, labels = digit_like(rng, 5)
    write_pair(tmp_path, "t10k", images, labels, compress)
    suffix = ".gz" if compress else ""
    np.testing.assert_array_equal(read_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", "images"), images)
    np.testing.assert_array_equal(read_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", "labels"), labels)


def test_read_idx_errors(tmp_path, rng):
    images, labels = digit_like(rng, 5)
    good = idx_bytes(images)
    (tmp_path / "short").write_bytes(good[:-7])
    with pytest.raises(ValueError, match=r"truncated: 329 bytes, expected 336 for shape \(5, 8, 8\)"):
        read_idx(tmp_path / "short", "images")
    (tmp_path / "header").write_bytes(good[:9])
    with pytest.raises(ValueError, match="truncated IDX header"):
        read_idx(tmp_path / "header", "images")
    with pytest.raises(ValueError, match="wrong magic number 0x00000801 for an IDX images file"):
        (tmp_path / "labels").write_bytes(idx_bytes(labels))
        read_idx(tmp_path / "labels", "images")
    (tmp_path / "bad.gz").write_bytes(gzip.compress(good)[:30])
    with pytest.raises(ValueError, match="bad.gz"):
        read_idx(tmp_path / "bad.gz", "images")
    with pytest.raises(FileNotFoundError, match="IDX file not found"):
        read_idx(tmp_path / "nothing", "images")


def test_load_mnist_folders(tmp_path, rng):
    with pytest.raises(FileNotFoundError, match="data folder not found"):
        load_mnist(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        load_mnist(tmp_path)
    images, labels = digit_like(rng, 50)
    write_pair(tmp_path, "t10k", images, labels, compress=True)
    data = load_mnist(tmp_path, train_count=30)
    assert "only the t10k-* pair" in data.description and "first 30" in data.description
    assert data.train_images.shape == (30, 1, 8, 8) and data.test_images.shape == (20, 1, 8, 8)
    assert data.train_images.dtype == np.float32
    assert abs(float(data.train_images.mean())) < 1e-5
    np.testing.assert_array_equal(data.test_labels, labels[30:])
    with pytest.raises(ValueError, match="train_count must be between 1 and 49"):
        load_mnist(tmp_path, train_count=50)
    write_pair(tmp_path, "train", *digit_like(rng, 40))
    data = load_mnist(tmp_path)
    assert len(data.train_labels) == 40 and len(data.test_labels) == 50
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte"):
        load_mnist(tmp_path)


def test_train_command_on_idx_folder(tmp_path, rng, capsys):
    write_pair(tmp_path, "t10k", *digit_like(rng, 400))
    assert (
        main(["train", "--data", str(tmp_path), "--train-count", "300", "--epochs", "2", "--lr", "0.01", "--quiet"])
        == 0
    )
    out = capsys.readouterr().out
    assert "first 300 images" in out
    lines = [line for line in out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2 and "test accuracy" in lines[-1] and "images/s" in lines[-1]
    accuracy = float(lines[-1].split("test accuracy")[1].split("%")[0])
    assert accuracy > 90.0


def test_train_command_errors(tmp_path, rng, capsys):
    assert main(["train", "--data", str(tmp_path / "nope")]) == 2
    assert "data folder not found" in capsys.readouterr().err
    write_pair(tmp_path, "t10k", *digit_like(rng, 40))
    assert main(["train", "--data", str(tmp_path), "--train-count", "20000"]) == 2
    err = capsys.readouterr().err
    assert "--train-count must be between 1 and 39 for 40 t10k images, got 20000" in err
    with pytest.raises(SystemExit):
        main(["train", "--epochs", "0"])


def test_train_command_on_sklearn_digits(capsys):
    pytest.importorskip("sklearn")
    assert main(["train", "--epochs", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "scikit-learn's 8x8 digits" in out
    accuracy = float(out.split("test accuracy")[1].split("%")[0])
    assert accuracy > 80.0


@pytest.mark.slow
@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"MNIST t10k split not found at {MNIST_DIR}")
def test_book_network_on_real_mnist():
    """One epoch on the first 8,000 t10k images, tested on the last 2,000: at least 85%.

    lr 0.01 (momentum 0.9): the book's lr 0.1 also passes, but its loss overshoots into
    the tens and the accuracy swings between seeds (86-91%).
    """
    data = load_mnist(MNIST_DIR, train_count=8000)
    model = book_network(28, 28, device="cpu", seed=0)
    history = fit(
        model, data, device="cpu", epochs=1, batch_size=60, lr=0.01, momentum=0.9, progress=False, log=lambda s: None
    )
    assert history[0].accuracy >= 0.85, history
    assert history[0].loss < 1.0


@pytest.mark.slow
@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"MNIST t10k split not found at {MNIST_DIR}")
def test_lenet5_on_real_mnist(capsys):
    """``xpconv train --model lenet5 --epochs 1 --lr 0.01`` on the 8,000/2,000 split: at least 93%
    (measured 93.50%, 95.65% and 93.75% for seeds 0, 1 and 2; PyTorch's same network 93.8-95.0%)."""
    assert (
        main(["train", "--model", "lenet5", "--data", str(MNIST_DIR), "--epochs", "1", "--lr", "0.01", "--quiet"]) == 0
    )
    out = capsys.readouterr().out
    assert "LeNet-5" in out and "Dense(400->120)" in out
    accuracy = float(out.split("test accuracy")[1].split("%")[0])
    assert accuracy >= 93.0, out


def test_train_command_lenet5(tmp_path, capsys):
    images, labels = digit_like(np.random.default_rng(1), 200, size=16)
    write_pair(tmp_path, "t10k", images, labels)
    assert main(["train", "--model", "lenet5", "--data", str(tmp_path), "--train-count", "150", "--lr", "0.01",
                 "--quiet"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "network: LeNet-5" in out and "Dense(64->120)" in out and "test accuracy" in out


def test_train_command_lenet5_on_small_images_is_one_line(capsys):
    assert main(["train", "--model", "lenet5", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["xpconv train: LeNet-5 needs images of at least 12x12 pixels, got 8x8"]


@pytest.mark.slow
@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"MNIST t10k split not found at {MNIST_DIR}")
def test_train_ab_script_compares_two_checkouts():
    """``benchmarks/train_ab.sh`` (the README's before/after LeNet figures), one round with this
    checkout on both sides: the same loss and accuracy, and a ratio printed from the two rates."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    argv = ["bash", str(root / "benchmarks" / "train_ab.sh"), str(root), str(root), str(MNIST_DIR), "1"]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    before, after, ratio = result.stdout.splitlines()
    run = r"epoch 1: (loss [0-9.]+  test accuracy [0-9.]+%)  [0-9.]+ s  ([0-9,]+) images/s"
    first, second = re.fullmatch("round 1 before: " + run, before), re.fullmatch("round 1 after:  " + run, after)
    assert first and second, result.stdout
    assert first[1] == second[1]  # the same loss and accuracy
    printed = re.fullmatch(r"round 1: after/before ([0-9.]+)x", ratio)
    assert printed, ratio
    rates = [float(m[2].replace(",", "")) for m in (first, second)]
    assert float(printed[1]) == pytest.approx(rates[1] / rates[0], abs=0.006)
    bad = subprocess.run(["bash", str(root / "benchmarks" / "train_ab.sh"), str(root)], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage: bash benchmarks/train_ab.sh BEFORE AFTER DATA [ROUNDS]" in bad.stderr
