"""Programs the distributed tests start under ``mpiexec`` (or alone): ``python tests/mpi_worker.py MODE ...``.

* ``train OUT.npz N BATCH``: fit the book's network without dropout (float64, SGD with momentum)
  on N synthetic images in global batches of BATCH, data-parallel over the ranks; rank 0 saves the
  final parameters and the epoch loss.
* ``fail``: every rank joins a collective, then rank 1 raises while rank 0 waits in another one.
* ``stand-in``: one process, the CuPy stand-in on cuda:1 with host staging: prints the losses of a
  few steps with and without the communicator.
"""

import sys

import numpy as np

from cases import synthetic_digits


def train(out, n, batch):
    from xpconv.nn import book_network, fit
    from xpconv.nn.distributed import Communicator

    comm = Communicator()
    data = synthetic_digits(n)
    model = book_network(10, 10, dtype="float64", seed=3, dropout=0.0)
    history = fit(model, data, device="cpu", epochs=2, batch_size=batch, lr=0.05, momentum=0.9, seed=7,
                  progress=False, log=lambda s: None, communicator=comm)  # fmt: skip
    if comm.rank == 0:
        values = {f"p{k}": p.value for k, p in enumerate(model.parameters())}
        np.savez(out, loss=history[-1].loss, accuracy=history[-1].accuracy, **values)


def fail():
    from xpconv.nn.distributed import Communicator, abort_on_error

    comm = Communicator()
    with abort_on_error(comm):
        comm.sum(1.0)
        if comm.rank == 1:
            raise RuntimeError("this rank failed on purpose")
        comm.sum(2.0)  # rank 0 would wait here forever without the abort


def stand_in():
    import fake_cupy

    sys.modules["cupy"] = fake_cupy.make_module()
    from xpconv.nn import book_network, fit
    from xpconv.nn.distributed import Communicator

    data = synthetic_digits(24)
    losses = []
    for comm in (None, Communicator()):
        model = book_network(10, 10, device="cuda:1", dtype="float64", seed=3, dropout=0.0)
        history = fit(model, data, device="cuda:1", epochs=1, batch_size=8, lr=0.05, momentum=0.9,
                      progress=False, log=lambda s: None, communicator=comm)  # fmt: skip
        assert all(p.value.device.id == 1 for p in model.parameters())
        losses.append(history[0].loss)
    print("losses", *losses)


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "train":
        train(args[0], int(args[1]), int(args[2]))
    elif mode == "fail":
        fail()
    else:
        stand_in()
