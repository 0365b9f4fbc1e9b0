"""Saving and loading: layers' and the optimizer's state, checkpoint files (npz and safetensors),
their atomic writes and their refusals, across devices and dtypes."""

import json
import os
import zipfile

import numpy as np
import pytest

import xpconv
from xpconv.nn import SGD, Conv2D, Dense, Flatten, ReLU, Sequential, SoftmaxCrossEntropy, Tanh, lenet5_network
from xpconv.nn.checkpoint import CheckpointError, load, read_metadata, save, write_atomically

import fake_cupy


def _trained(seed=0, dtype="float64", device="cpu", steps=2):
    model = lenet5_network(16, 16, dtype=dtype, seed=seed, device=device)
    optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(seed)
    loss_fn = SoftmaxCrossEntropy()
    for _ in range(steps):
        x = xpconv.to_device(rng.standard_normal((6, 1, 16, 16)).astype(dtype), device)
        loss_fn.forward(model.forward(x), xpconv.to_device(rng.integers(0, 10, 6), device))
        model.backward(loss_fn.backward())
        optimizer.step()
    return model, optimizer


def _host(state):
    return {k: xpconv.to_numpy(v) for k, v in state.items()}


def test_state_dict_keys_are_pytorchs():
    model = lenet5_network(16, 16, seed=0)
    assert list(model.state_dict()) == [
        "0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias", "9.weight", "9.bias", "11.weight", "11.bias",
    ]  # fmt: skip
    assert [p.name for p in model.parameters()] == list(model.state_dict())  # unique paths
    assert len(model) == 12 and isinstance(model[1], ReLU) and list(model)[6].__class__ is Flatten
    assert "(7): Dense(weight 120x64, float32, cpu)" in repr(model)


def test_load_state_dict_checks_keys_shapes_and_dtypes():
    model = lenet5_network(16, 16, seed=0)
    state = _host(lenet5_network(16, 16, seed=1).state_dict())
    before = _host(model.state_dict())
    broken = dict(state)
    broken["0.weight"] = state["0.weight"][:3]
    broken["3.bias"] = state["3.bias"].astype(np.float64)
    del broken["11.bias"]
    broken["12.weight"] = state["0.bias"]
    with pytest.raises(ValueError) as info:
        model.load_state_dict(broken)
    message = str(info.value)
    for part in ("missing 11.bias", "unexpected 12.weight", "0.weight has shape (3, 1, 5, 5)", "3.bias is float64"):
        assert part in message
    for k, v in model.state_dict().items():  # nothing was copied
        np.testing.assert_array_equal(v, before[k])
    model.load_state_dict({"0.bias": state["0.bias"]}, strict=False)
    np.testing.assert_array_equal(model.state_dict()["0.bias"], state["0.bias"])
    with pytest.raises(TypeError, match="mapping"):
        model.load_state_dict([1, 2])


def test_optimizer_state_round_trips():
    model, optimizer = _trained()
    again = SGD(lenet5_network(16, 16, dtype="float64").parameters(), lr=1.0)
    again.load_state_dict(optimizer.state_dict())
    assert (again.lr, again.momentum, again.steps) == (0.05, 0.9, 2)
    for a, b in zip(again.state_dict()["momentum_buffers"], optimizer.state_dict()["momentum_buffers"], strict=True):
        np.testing.assert_array_equal(a, b)
        assert a is not b
    with pytest.raises(ValueError, match="momentum buffers for"):
        again.load_state_dict({**optimizer.state_dict(), "momentum_buffers": []})


def test_save_and_load_npz(tmp_path):
    model, optimizer = _trained()
    path = tmp_path / "model.npz"
    save(path, model, optimizer, epoch=3, note="hello")
    fresh, opt = lenet5_network(16, 16, dtype="float64", seed=9), SGD([], lr=1.0)
    opt = SGD(fresh.parameters(), lr=1.0)
    metadata = load(path, fresh, opt)
    assert metadata["epoch"] == 3 and metadata["note"] == "hello" and metadata["xpconv"] == xpconv.__version__
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(fresh.state_dict()[k], v)
    assert opt.steps == 2
    with np.load(path, allow_pickle=False) as stored:  # plain arrays, no object arrays: no code runs on load
        assert all(stored[k].dtype != object for k in stored.files)
    assert read_metadata(path)["optimizer"] == {"lr": 0.05, "momentum": 0.9, "steps": 2}


def test_a_damaged_or_foreign_file_is_one_clear_error(tmp_path):
    model, _ = _trained()
    good = tmp_path / "good.npz"
    save(good, model)
    raw = good.read_bytes()
    cases = {
        "truncated.npz": raw[: len(raw) // 2],
        "garbage.npz": b"not a zip file at all",
        "empty.npz": b"",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    np.savez(tmp_path / "foreign.npz", weights=np.ones(3))
    with zipfile.ZipFile(tmp_path / "bad-json.npz", "w") as z:
        z.writestr("metadata.npy", b"\x93NUMPY")  # a metadata entry that is not an array
    for name in [*cases, "foreign.npz", "bad-json.npz", "missing.npz"]:
        with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
            load(tmp_path / name, lenet5_network(16, 16, dtype="float64"))


def test_loading_refuses_another_network_or_dtype(tmp_path):
    model, _ = _trained(dtype="float64")
    save(tmp_path / "m.npz", model)
    with pytest.raises(CheckpointError, match="is float64, the layer's is float32"):
        load(tmp_path / "m.npz", lenet5_network(16, 16, dtype="float32"))
    with pytest.raises(CheckpointError, match="unexpected 3.weight, 3.bias"):
        load(tmp_path / "m.npz", Sequential(Conv2D(1, 6, 5, padding=2, dtype="float64"), Tanh()))
    with pytest.raises(CheckpointError, match="holds no optimizer state"):
        fresh = lenet5_network(16, 16, dtype="float64")
        load(tmp_path / "m.npz", fresh, SGD(fresh.parameters(), lr=0.1))


def test_writes_are_atomic(tmp_path):
    """A write that fails midway leaves the old file whole, and no temporary file behind."""
    path = tmp_path / "state.npz"
    model, _ = _trained()
    save(path, model, epoch=1)

    def fail(f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # a kill, as far as the writer knows

    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, fail)
    assert read_metadata(path)["epoch"] == 1
    assert sorted(os.listdir(tmp_path)) == ["state.npz"]
    with pytest.raises(TypeError, match="JSON"):
        save(path, model, epoch=np.float32(1))


def test_save_and_load_across_devices(fake_cupy_module, tmp_path):
    """A model trained on the CPU loads onto cuda:1 and back, bit for bit; arrays land on each
    parameter's device."""
    model, optimizer = _trained()
    save(tmp_path / "cpu.npz", model, optimizer)
    on_gpu = lenet5_network(16, 16, dtype="float64", device="cuda:1")
    opt = SGD(on_gpu.parameters(), lr=1.0)
    load(tmp_path / "cpu.npz", on_gpu, opt)
    for k, v in on_gpu.state_dict().items():
        assert isinstance(v, fake_cupy.ndarray) and v.device.id == 1
        np.testing.assert_array_equal(xpconv.to_numpy(v), model.state_dict()[k])
    assert all(b.device.id == 1 for b in opt.state_dict()["momentum_buffers"])
    save(tmp_path / "gpu.npz", on_gpu, opt)
    back = lenet5_network(16, 16, dtype="float64")
    load(tmp_path / "gpu.npz", back)
    for k, v in back.state_dict().items():
        np.testing.assert_array_equal(v, model.state_dict()[k])
    on_gpu.load_state_dict(model.state_dict())  # host arrays straight into device parameters


def test_safetensors_holds_the_weights_alone(tmp_path):
    pytest.importorskip("safetensors")
    from safetensors.numpy import load_file

    model, optimizer = _trained()
    save(tmp_path / "m.safetensors", model, network="lenet5")
    tensors = load_file(tmp_path / "m.safetensors")
    assert sorted(tensors) == sorted(model.state_dict())
    fresh = lenet5_network(16, 16, dtype="float64", seed=3)
    assert load(tmp_path / "m.safetensors", fresh)["network"] == "lenet5"
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(fresh.state_dict()[k], v)
    with pytest.raises(ValueError, match="parameters alone"):
        save(tmp_path / "m.safetensors", model, optimizer)
    (tmp_path / "torn.safetensors").write_bytes((tmp_path / "m.safetensors").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="torn.safetensors"):
        load(tmp_path / "torn.safetensors", fresh)


def test_a_lenet5_saved_here_loads_into_pytorchs(tmp_path):
    """A LeNet-5 trained here, saved as .safetensors, loaded with safetensors.torch into PyTorch's
    LeNet-5 by load_state_dict(strict=True): the same outputs (float64, to 1e-12)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    from safetensors.torch import load_file

    model, _ = _trained(steps=3)
    save(tmp_path / "lenet5.safetensors", model)
    nn = torch.nn
    reference = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    ).double()  # fmt: skip
    reference.load_state_dict(load_file(tmp_path / "lenet5.safetensors"), strict=True)
    x = np.random.default_rng(1).standard_normal((5, 1, 16, 16))
    model.eval()
    with torch.no_grad():
        expected = reference(torch.tensor(x)).numpy()
    np.testing.assert_allclose(model.forward(x), expected, rtol=0, atol=1e-12 * np.abs(expected).max())


def test_layers_keep_no_batch_in_eval_mode_or_after_backward():
    model = Sequential(Conv2D(1, 2, 3, seed=0), ReLU(), Flatten(), Dense(2 * 4 * 4, 3, seed=1))
    x = np.ones((2, 1, 6, 6), np.float32)
    model.eval()
    model.forward(x)
    held = [v for layer in model for k, v in vars(layer).items() if k in ("_x", "_mask", "_y") and v is not None]
    assert held == []
    with pytest.raises(RuntimeError, match="needs a forward in training mode"):
        model.backward(np.ones((2, 3), np.float32))
    model.train()
    model.backward_ready = model.forward(x)
    model.backward(np.ones((2, 3), np.float32))
    held = [v for layer in model for k, v in vars(layer).items() if k in ("_x", "_mask", "_y") and v is not None]
    assert held == []


def test_sequential_takes_layers_not_a_list():
    with pytest.raises(TypeError, match=r"Sequential takes layers, got a list at position 0 \(pass the layers"):
        Sequential([Tanh()])


def test_metadata_is_json(tmp_path):
    model, _ = _trained()
    save(tmp_path / "m.npz", model, history=[{"epoch": 1, "loss": 0.5}])
    with np.load(tmp_path / "m.npz", allow_pickle=False) as stored:
        assert json.loads(stored["metadata"].tobytes())["history"] == [{"epoch": 1, "loss": 0.5}]
