"""The training client of the kernels: layers, a loss, an optimizer, data loading and ``fit``.

Everything here calls the public kernels of :mod:`xpconv`; nothing here is imported by them.
"""

from .checkpoint import CheckpointError, load, save
from .data import DigitData, load_mnist, load_sklearn_digits, read_idx
from .fit import MODELS, EpochStats, book_network, evaluate, fit, lenet5_network
from .layers import (
    AvgPool1D,
    AvgPool2D,
    AvgPool3D,
    Conv1D,
    Conv2D,
    Conv3D,
    ConvTranspose1D,
    ConvTranspose2D,
    ConvTranspose3D,
    Dense,
    Dropout,
    Flatten,
    Layer,
    MaxPool1D,
    MaxPool2D,
    MaxPool3D,
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
    "AvgPool1D",
    "AvgPool2D",
    "AvgPool3D",
    "CheckpointError",
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "ConvTranspose1D",
    "ConvTranspose2D",
    "ConvTranspose3D",
    "Dense",
    "DigitData",
    "Dropout",
    "EpochStats",
    "Flatten",
    "Layer",
    "MaxPool1D",
    "MaxPool2D",
    "MaxPool3D",
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
