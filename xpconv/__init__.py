"""xpconv: Conv2D, dense and bias kernels, forward and backward, written once for NumPy and CuPy."""

from ._backend import (
    DeviceUnavailableError,
    array_namespace,
    cuda_available,
    device_of,
    get_namespace,
    to_device,
    to_numpy,
)
from ._grads import Gradients
from .bias import bias_add, bias_backward
from .conv import conv2d, conv2d_backward
from .dense import dense, dense_backward

__version__ = "0.1.0"

__all__ = [
    "DeviceUnavailableError",
    "Gradients",
    "array_namespace",
    "bias_add",
    "bias_backward",
    "conv2d",
    "conv2d_backward",
    "cuda_available",
    "dense",
    "dense_backward",
    "device_of",
    "get_namespace",
    "to_device",
    "to_numpy",
]
