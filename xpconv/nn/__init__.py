"""The training client of the kernels: layers, a loss, an optimizer, data loading and ``fit``.

Everything here calls the public kernels of :mod:`xpconv`; nothing here is imported by them.
"""

from .data import DigitData, load_mnist, load_sklearn_digits, read_idx
from .fit import EpochStats, book_network, evaluate, fit
from .layers import Conv2D, Dense, Dropout, Flatten, Layer, Parameter, ReLU, Sequential, Tanh
from .loss import SoftmaxCrossEntropy
from .optim import SGD

__all__ = [
    "SGD",
    "Conv2D",
    "Dense",
    "DigitData",
    "Dropout",
    "EpochStats",
    "Flatten",
    "Layer",
    "Parameter",
    "ReLU",
    "Sequential",
    "SoftmaxCrossEntropy",
    "Tanh",
    "book_network",
    "evaluate",
    "fit",
    "load_mnist",
    "load_sklearn_digits",
    "read_idx",
]
