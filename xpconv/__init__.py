"""xpconv: Conv2D, dense and bias kernels, forward and backward, written once for NumPy and CuPy.

The package has three layers:

* the kernels, here at the top (``conv2d``, ``conv_transpose2d``, ``max_pool2d``, ``avg_pool2d``,
  ``dense``, ``bias_add`` and their backward passes, and the device shim): stateless functions
  on NumPy or CuPy arrays;
* :mod:`xpconv.nn`, a small training client of them: layers, loss, optimizer, data, ``fit``;
* :mod:`xpconv.tools`, the tools around them: the float64 reference, the book's method,
  ``xpconv check``, ``xpconv bench`` and the command line.

Imports point one way: the client and the tools use the kernels, never the reverse.
"""

from ._backend import (
    DeviceUnavailableError,
    array_namespace,
    cuda_available,
    device_of,
    namespace_for,
    to_device,
    to_numpy,
)
from ._types import Algorithm, Array, Device, DTypeLike, Gradients, IntPair, Padding
from .bias import bias_add, bias_backward
from .conv import conv2d, conv2d_backward
from .conv_transpose import conv_transpose2d, conv_transpose2d_backward
from .dense import dense, dense_backward
from .pool import (
    avg_pool2d,
    avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
    max_unpool2d,
    max_unpool2d_backward,
)

__version__ = "0.3.0"

__all__ = [
    "Algorithm",
    "Array",
    "DTypeLike",
    "Device",
    "DeviceUnavailableError",
    "Gradients",
    "IntPair",
    "Padding",
    "array_namespace",
    "avg_pool2d",
    "avg_pool2d_backward",
    "bias_add",
    "bias_backward",
    "conv2d",
    "conv2d_backward",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "cuda_available",
    "dense",
    "dense_backward",
    "device_of",
    "max_pool2d",
    "max_pool2d_backward",
    "max_unpool2d",
    "max_unpool2d_backward",
    "namespace_for",
    "to_device",
    "to_numpy",
]
