"""Layers on top of the kernels: each has ``forward(x)`` and ``backward(grad_output)``.

``backward`` returns the gradient with respect to the layer's input and stores its
parameters' gradients in ``Parameter.grad`` (overwriting, not accumulating).  Layers call the
public kernels and hold no copy of the math.  Parameters live on one device, chosen by
``device=`` or, when that is omitted, the ``XPCONV_DEVICE`` environment variable (default
``"cpu"``); every layer computes under its input's device.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from .._backend import array_namespace, device_of, device_scope, is_array, resolve_device, to_device
from .._checks import as_pair, as_positive_int
from .._types import Algorithm, Array, Device, DTypeLike, Gradients, IntPair, Padding
from ..conv import ALGORITHMS, conv2d, conv2d_backward
from ..conv_transpose import conv_transpose2d, conv_transpose2d_backward
from ..dense import dense, dense_backward
from ..pool import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward

__all__ = [
    "AvgPool2D",
    "Conv2D",
    "ConvTranspose2D",
    "Dense",
    "Dropout",
    "Flatten",
    "Layer",
    "MaxPool2D",
    "Parameter",
    "ReLU",
    "Sequential",
    "Tanh",
]


def _check_input(layer: Layer, x: object) -> None:
    if not is_array(x):
        raise TypeError(f"{type(layer).__name__}.forward: x must be a NumPy or CuPy array, got {type(x).__name__}")


class Parameter:
    """A trainable array and the gradient the last ``backward`` left for it."""

    def __init__(self, value: Array, name: str) -> None:
        self.value = value
        self.grad: Array | None = None
        self.name = name

    def __repr__(self) -> str:
        return f"Parameter({self.name}, shape={tuple(self.value.shape)}, dtype={self.value.dtype})"


class Layer(ABC):
    """Base class: no parameters, training mode on."""

    training = True

    def parameters(self) -> list[Parameter]:
        return []

    def train(self, mode: bool = True) -> Layer:
        self.training = mode
        return self

    def eval(self) -> Layer:
        return self.train(False)

    @abstractmethod
    def forward(self, x: Array) -> Array:
        """The layer's output for the batch ``x``."""

    @abstractmethod
    def backward(self, grad_output: Array) -> Array:
        """The gradient with respect to the last ``forward``'s input, for ``grad_output``."""

    def __call__(self, x: Array) -> Array:
        return self.forward(x)


class _ParameterLayer(Layer):
    weight: Parameter
    bias: Parameter | None

    def __init__(self, device: Device | None, dtype: DTypeLike, seed: int | None):
        self.device = resolve_device(device)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float16, np.float32, np.float64):
            raise TypeError(f"dtype must be float16, float32 or float64, got {dtype!r}")
        self._rng = np.random.default_rng(seed)
        self._x: Array | None = None

    def _init(self, shape: tuple[int, ...], fan_in: int, fan_out: int, name: str) -> Parameter:
        """Glorot (Xavier) uniform: U(-a, a) with a = sqrt(6 / (fan_in + fan_out))."""
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        host = self._rng.uniform(-limit, limit, size=shape).astype(self.dtype)
        return Parameter(to_device(host, self.device), name)

    def _zeros(self, n: int, name: str) -> Parameter:
        return Parameter(to_device(np.zeros(n, self.dtype), self.device), name)

    def _check_device(self, x: object) -> None:
        _check_input(self, x)
        where = device_of(x)
        if where != self.device:
            raise ValueError(
                f"{type(self).__name__} parameters are on {self.device} but its input is on {where}; "
                f"move the input with xpconv.to_device(x, {self.device!r})"
            )

    def _saved_input(self) -> Array:
        if self._x is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._x

    def parameters(self) -> list[Parameter]:
        return [p for p in (self.weight, self.bias) if p is not None]

    def _keep(self, grads: Gradients) -> Array:
        """Store the parameter gradients of a kernel's ``Gradients``; return the input's."""
        self.weight.grad = grads.weight
        if self.bias is not None:
            self.bias.grad = grads.bias
        return grads.input


def _conv_sizes(in_channels: Any, out_channels: Any, kernel_size: Any, groups: Any, algorithm: Any):
    """A convolution layer's checked sizes: ``(in_channels, out_channels, kh, kw, groups)``."""
    in_channels = as_positive_int(in_channels, "in_channels")
    out_channels = as_positive_int(out_channels, "out_channels")
    kh, kw = as_pair(kernel_size, "kernel_size", minimum=1)
    groups = as_positive_int(groups, "groups")
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(map(repr, ALGORITHMS))}, got {algorithm!r}")
    return in_channels, out_channels, kh, kw, groups


class Conv2D(_ParameterLayer):
    """2-D convolution layer over NCHW batches; see :func:`xpconv.conv2d` for the arguments."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        *,
        stride: IntPair = 1,
        padding: Padding = 0,
        dilation: IntPair = 1,
        groups: int = 1,
        bias: bool = True,
        device: Device | None = None,
        dtype: DTypeLike = "float32",
        seed: int | None = None,
        algorithm: Algorithm = "auto",
    ) -> None:
        super().__init__(device, dtype, seed)
        in_channels, out_channels, kh, kw, groups = _conv_sizes(
            in_channels, out_channels, kernel_size, groups, algorithm
        )
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.algorithm: Algorithm = algorithm
        cg, og = in_channels // groups, out_channels // groups
        self.weight = self._init((out_channels, cg, kh, kw), cg * kh * kw, og * kh * kw, "weight")
        self.bias = self._zeros(out_channels, "bias") if bias else None

    def forward(self, x: Array) -> Array:
        self._check_device(x)
        self._x = x
        bias = None if self.bias is None else self.bias.value
        return conv2d(x, self.weight.value, bias, **self._hyperparameters())

    def backward(self, grad_output: Array) -> Array:
        x, with_bias = self._saved_input(), self.bias is not None
        grads = conv2d_backward(grad_output, x, self.weight.value, with_bias=with_bias, **self._hyperparameters())
        return self._keep(grads)

    def _hyperparameters(self) -> dict[str, Any]:
        return dict(
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            algorithm=self.algorithm,
        )


class ConvTranspose2D(_ParameterLayer):
    """Transposed 2-D convolution layer, weight ``(in_channels, out_channels/groups, kh, kw)`` as in
    PyTorch; see :func:`xpconv.conv_transpose2d` for the arguments."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        *,
        stride: IntPair = 1,
        padding: IntPair = 0,
        output_padding: IntPair = 0,
        groups: int = 1,
        dilation: IntPair = 1,
        bias: bool = True,
        device: Device | None = None,
        dtype: DTypeLike = "float32",
        seed: int | None = None,
        algorithm: Algorithm = "auto",
    ) -> None:
        super().__init__(device, dtype, seed)
        in_channels, out_channels, kh, kw, groups = _conv_sizes(
            in_channels, out_channels, kernel_size, groups, algorithm
        )
        self.hyperparameters: dict[str, Any] = dict(
            stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation,
            algorithm=algorithm,
        )  # fmt: skip
        cg, og = in_channels // groups, out_channels // groups
        # Glorot over the fans of one output pixel: each input channel feeds og·kh·kw weights
        self.weight = self._init((in_channels, og, kh, kw), cg * kh * kw, og * kh * kw, "weight")
        self.bias = self._zeros(out_channels, "bias") if bias else None

    def forward(self, x: Array) -> Array:
        self._check_device(x)
        self._x = x
        bias = None if self.bias is None else self.bias.value
        return conv_transpose2d(x, self.weight.value, bias, **self.hyperparameters)

    def backward(self, grad_output: Array) -> Array:
        x, with_bias = self._saved_input(), self.bias is not None
        grads = conv_transpose2d_backward(
            grad_output, x, self.weight.value, with_bias=with_bias, **self.hyperparameters
        )
        return self._keep(grads)


class _Pool(Layer):
    """A pooling layer: no parameters; keeps its input for the backward pass."""

    def __init__(self, **arguments: Any) -> None:
        self.arguments = arguments
        self._x: Array | None = None

    def _saved_input(self) -> Array:
        if self._x is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._x


class MaxPool2D(_Pool):
    """Max pooling over NCHW batches; see :func:`xpconv.max_pool2d` for the arguments."""

    def __init__(
        self,
        kernel_size: IntPair,
        stride: IntPair | None = None,
        padding: IntPair = 0,
        dilation: IntPair = 1,
        ceil_mode: bool = False,
    ) -> None:
        as_pair(kernel_size, "kernel_size", minimum=1)
        super().__init__(
            kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode
        )

    def forward(self, x: Array) -> Array:
        _check_input(self, x)
        self._x = x
        return max_pool2d(x, **self.arguments)

    def backward(self, grad_output: Array) -> Array:
        return max_pool2d_backward(grad_output, self._saved_input(), **self.arguments)


class AvgPool2D(_Pool):
    """Average pooling over NCHW batches; see :func:`xpconv.avg_pool2d` for the arguments."""

    def __init__(
        self,
        kernel_size: IntPair,
        stride: IntPair | None = None,
        padding: IntPair = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        as_pair(kernel_size, "kernel_size", minimum=1)
        super().__init__(
            kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
            count_include_pad=count_include_pad, divisor_override=divisor_override,
        )  # fmt: skip

    def forward(self, x: Array) -> Array:
        _check_input(self, x)
        self._x = x
        return avg_pool2d(x, **self.arguments)

    def backward(self, grad_output: Array) -> Array:
        return avg_pool2d_backward(grad_output, self._saved_input(), **self.arguments)


class Dense(_ParameterLayer):
    """Fully connected layer, ``y = x @ weight.T + bias`` with ``weight`` of shape (out, in)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        device: Device | None = None,
        dtype: DTypeLike = "float32",
        seed: int | None = None,
    ) -> None:
        super().__init__(device, dtype, seed)
        in_features = as_positive_int(in_features, "in_features")
        out_features = as_positive_int(out_features, "out_features")
        self.weight = self._init((out_features, in_features), in_features, out_features, "weight")
        self.bias = self._zeros(out_features, "bias") if bias else None

    def forward(self, x: Array) -> Array:
        self._check_device(x)
        self._x = x
        return dense(x, self.weight.value, None if self.bias is None else self.bias.value)

    def backward(self, grad_output: Array) -> Array:
        grads = dense_backward(grad_output, self._saved_input(), self.weight.value, with_bias=self.bias is not None)
        return self._keep(grads)


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1·d2·...)."""

    def forward(self, x: Array) -> Array:
        _check_input(self, x)
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)  # (N, C, H, W) -> (N, C·H·W), a view on x's device

    def backward(self, grad_output: Array) -> Array:
        return grad_output.reshape(self._shape)  # (N, C·H·W) -> (N, C, H, W)


class Tanh(Layer):
    def forward(self, x: Array) -> Array:
        _check_input(self, x)
        with device_scope(x):
            self._y = array_namespace(x).tanh(x)
        return self._y

    def backward(self, grad_output: Array) -> Array:
        with device_scope(grad_output):
            return grad_output * (1 - self._y * self._y)


class ReLU(Layer):
    def forward(self, x: Array) -> Array:
        _check_input(self, x)
        with device_scope(x):
            self._mask = x > 0
            return x * self._mask

    def backward(self, grad_output: Array) -> Array:
        with device_scope(grad_output):
            return grad_output * self._mask


class Dropout(Layer):
    """Inverted dropout: in training, zero each entry with probability ``p`` and scale the
    rest by ``1 / (1 - p)``; in evaluation mode, the identity.

    Each layer keeps one random generator per device, built on first use there from ``seed``.
    """

    def __init__(self, p: float = 0.5, *, seed: int | None = None) -> None:
        if not 0.0 <= p < 1.0:
            raise ValueError(f"p must be in [0, 1), got {p!r}")
        self.p = float(p)
        self._seed = seed
        self._rngs: dict[str, Any] = {}  # device -> numpy or cupy random Generator
        self._mask: Array | None = None

    def _generator(self, xp: Any, device: Device) -> Any:
        rng = self._rngs.get(device)
        if rng is None:  # built once per device: on a GPU each one allocates and seeds cuRAND states
            rng = self._rngs[device] = xp.random.default_rng(self._seed)
        return rng

    def forward(self, x: Array) -> Array:
        _check_input(self, x)
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        xp = array_namespace(x)
        with device_scope(x):
            keep = self._generator(xp, device_of(x)).random(x.shape, dtype=np.float32) >= self.p
            self._mask = keep.astype(x.dtype) / x.dtype.type(1.0 - self.p)
            return x * self._mask

    def backward(self, grad_output: Array) -> Array:
        if self._mask is None:
            return grad_output
        with device_scope(grad_output):
            return grad_output * self._mask


class Sequential(Layer):
    def __init__(self, *layers: Layer) -> None:
        self.layers = list(layers)

    def parameters(self) -> list[Parameter]:
        return [p for layer in self.layers for p in layer.parameters()]

    def train(self, mode: bool = True) -> Sequential:
        self.training = mode
        for layer in self.layers:
            layer.train(mode)
        return self

    def forward(self, x: Array) -> Array:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_output: Array) -> Array:
        for layer in reversed(self.layers):
            grad_output = layer.backward(grad_output)
        return grad_output
