"""xpconv: convolution (1-D, 2-D, 3-D), pooling, dense and bias kernels, forward and backward,
written once for NumPy and CuPy.

The package has three layers:

* the kernels, here at the top (``conv1d/2d/3d``, ``conv_transpose1d/2d/3d``, ``max_pool1d/2d/3d``,
  ``avg_pool1d/2d/3d``, ``max_unpool1d/2d/3d``, ``dense``, ``bias_add`` and their backward passes,
  and the device shim): stateless functions on NumPy or CuPy arrays;
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
from ._types import Algorithm, Array, Device, DTypeLike, Gradients, IntPair, IntTuple, Padding
from .bias import bias_add, bias_backward
from .conv import conv1d, conv1d_backward, conv2d, conv2d_backward, conv3d, conv3d_backward
from .conv_transpose import (
    conv_transpose1d,
    conv_transpose1d_backward,
    conv_transpose2d,
    conv_transpose2d_backward,
    conv_transpose3d,
    conv_transpose3d_backward,
)
from .dense import dense, dense_backward
from .pool import (
    avg_pool1d,
    avg_pool1d_backward,
    avg_pool2d,
    avg_pool2d_backward,
    avg_pool3d,
    avg_pool3d_backward,
    max_pool1d,
    max_pool1d_backward,
    max_pool2d,
    max_pool2d_backward,
    max_pool3d,
    max_pool3d_backward,
    max_unpool1d,
    max_unpool1d_backward,
    max_unpool2d,
    max_unpool2d_backward,
    max_unpool3d,
    max_unpool3d_backward,
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
    "IntTuple",
    "Padding",
    "array_namespace",
    "avg_pool1d",
    "avg_pool1d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "avg_pool3d",
    "avg_pool3d_backward",
    "bias_add",
    "bias_backward",
    "conv1d",
    "conv1d_backward",
    "conv2d",
    "conv2d_backward",
    "conv3d",
    "conv3d_backward",
    "conv_transpose1d",
    "conv_transpose1d_backward",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "conv_transpose3d",
    "conv_transpose3d_backward",
    "cuda_available",
    "dense",
    "dense_backward",
    "device_of",
    "max_pool1d",
    "max_pool1d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "max_pool3d",
    "max_pool3d_backward",
    "max_unpool1d",
    "max_unpool1d_backward",
    "max_unpool2d",
    "max_unpool2d_backward",
    "max_unpool3d",
    "max_unpool3d_backward",
    "namespace_for",
    "to_device",
    "to_numpy",
]
