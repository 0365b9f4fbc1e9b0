"""Where a LeNet-5 training step goes: each layer's forward and backward, timed one at a time.

    python benchmarks/lenet_profile.py [--steps 300] [--batch 60]

Trains ``lenet5_network(28, 28)`` on random images (float32, SGD with momentum) as ``xpconv train``
does, the first layer computing no input gradient, and prints per layer the median forward and
backward milliseconds over the steps after the first 50, and their sum.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from xpconv.nn import SGD, SoftmaxCrossEntropy, lenet5_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=60)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = rng.standard_normal((args.batch, 1, 28, 28), dtype=np.float32)
    labels = rng.integers(0, 10, size=args.batch)
    model = lenet5_network(28, 28, seed=0)
    loss_fn, optimizer = SoftmaxCrossEntropy(), SGD(model.parameters(), lr=0.01, momentum=0.9)
    layers = list(model)
    forward: list[list[float]] = [[] for _ in layers]
    backward: list[list[float]] = [[] for _ in layers]
    first = next(k for k, layer in enumerate(layers) if layer.parameters())  # no input gradient there
    for _ in range(args.steps):
        h = images
        for k, layer in enumerate(layers):
            start = time.perf_counter()
            h = layer.forward(h)
            forward[k].append(time.perf_counter() - start)
        loss_fn.forward(h, labels)
        g = loss_fn.backward()
        for k in reversed(range(first, len(layers))):
            start = time.perf_counter()
            g = layers[k].backward(g, with_input=False) if k == first else layers[k].backward(g)
            backward[k].append(time.perf_counter() - start)
        optimizer.step()
    skip = min(50, args.steps // 2)
    total = 0.0
    print(f"{'layer':<14} {'forward ms':>10} {'backward ms':>11}")
    for k, layer in enumerate(layers):
        f = 1e3 * statistics.median(forward[k][skip:])
        b = 1e3 * statistics.median(backward[k][skip:]) if backward[k] else 0.0
        total += f + b
        print(f"{k:>2} {type(layer).__name__:<11} {f:10.3f} {b:11.3f}")
    print(f"a step, the sum: {total:.2f} ms")


if __name__ == "__main__":
    main()
