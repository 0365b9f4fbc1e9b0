"""PyTorch's LeNet-5, trained as ``xpconv train --model lenet5`` trains xpconv's: the yardstick for
its accuracy and its images per second.

Same network (ReLU, max pooling, 400→120→84→10), Glorot-uniform weights and zero biases, the same
data split read by xpconv's loader, batch 60, SGD with momentum 0.9, one epoch, a shuffled order
from the seed; PyTorch alone in this process.  Needs the ``bench`` extra::

    python benchmarks/lenet_torch.py --data DIR [--seed 0] [--lr 0.01] [--epochs 1]
"""

import argparse
import time

import numpy as np

from xpconv.nn import load_mnist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder with MNIST IDX files, as for xpconv train")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=60)
    args = parser.parse_args()

    import torch
    from torch import nn

    torch.manual_seed(args.seed)
    data = load_mnist(args.data, 8000)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    images = torch.from_numpy(data.train_images.astype(np.float32))
    labels = torch.from_numpy(data.train_labels.astype(np.int64))
    rng = np.random.default_rng(args.seed)
    for epoch in range(1, args.epochs + 1):
        order = torch.from_numpy(rng.permutation(len(labels)))
        start = time.perf_counter()
        for first in range(0, len(labels), args.batch_size):
            batch = order[first : first + args.batch_size]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(images[batch]), labels[batch]).backward()
            optimizer.step()
        seconds = time.perf_counter() - start
        with torch.no_grad():
            test = model(torch.from_numpy(data.test_images.astype(np.float32))).argmax(1).numpy()
        accuracy = 100 * float(np.mean(test == data.test_labels))
        print(f"PyTorch {torch.__version__} LeNet-5, epoch {epoch}: test accuracy {accuracy:.2f}%  "
              f"{seconds:.1f} s  {len(labels) / seconds:,.0f} images/s")  # fmt: skip


if __name__ == "__main__":
    main()
