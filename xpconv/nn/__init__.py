"""The training client of the kernels: layers, a loss, an optimizer, data loading and ``fit``.

Everything here calls the public kernels of :mod:`xpconv`; nothing here is imported by them.
"""

from .checkpoint import CheckpointError, load, save
from .data import DigitData, load_mnist, load_sklearn_digits, read_idx
from .fit import MODELS, EpochStats, book_network, evaluate, fit, lenet5_network
from .layers import (
    AvgPool2D,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Dropout,
    Flatten,
    Layer,
    MaxPool2D,
    Parameter,
    ReLU,
    Sequential,
    Tanh,
)
from .loss import SoftmaxCrossEntropy
from .optim import SGD

__all__ = [
    "MODELS",
    "SGD",
    "AvgPool2D",
    "CheckpointError",
    "Conv2D",
    "ConvTranspose2D",
    "Dense",
    "DigitData",
    "Dropout",
    "EpochStats",
    "Flatten",
    "Layer",
    "MaxPool2D",
    "Parameter",
    "ReLU",
    "Sequential",
    "SoftmaxCrossEntropy",
    "Tanh",
    "book_network",
    "evaluate",
    "fit",
    "lenet5_network",
    "load",
    "load_mnist",
    "load_sklearn_digits",
    "read_idx",
    "save",
]
