"""Layers on top of the kernels: each has ``forward(x)`` and ``backward(grad_output)``.

``backward`` returns the gradient with respect to the layer's input and stores its
parameters' gradients in ``Parameter.grad`` (overwriting, not accumulating).  Layers call the
public kernels and hold no copy of the math.  Parameters live on one device, chosen by
``device=`` or, when that is omitted, the ``XPCONV_DEVICE`` environment variable (default
``"cpu"``); every layer computes under its input's device.

A layer keeps what its backward needs (its input, a mask) only from a forward in training mode
until that backward: in evaluation mode, and after the backward, it holds nothing of the batch.

Parameters are named by their paths, as PyTorch names them: ``"weight"`` and ``"bias"`` in a
layer, ``"3.weight"`` for the fourth layer of a :class:`Sequential` (activations, pooling and
flattening counted, as ``torch.nn.Sequential`` counts its modules), so :meth:`Layer.state_dict`
of a network holds the keys of the same ``torch.nn.Sequential``'s.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from .._backend import array_namespace, device_of, device_scope, is_array, resolve_device, to_device
from .._checks import as_bool, as_positive_int, as_tuple
from .._types import Algorithm, Array, Device, DTypeLike, Gradients, IntTuple, Padding
from ..conv import ALGORITHMS, CONVOLUTIONS
from ..conv_transpose import TRANSPOSED_CONVOLUTIONS
from ..dense import dense, dense_backward
from ..pool import POOLINGS

__all__ = [
    "AvgPool1D",
    "AvgPool2D",
    "AvgPool3D",
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "ConvTranspose1D",
    "ConvTranspose2D",
    "ConvTranspose3D",
    "Dense",
    "Dropout",
    "Flatten",
    "Layer",
    "MaxPool1D",
    "MaxPool2D",
    "MaxPool3D",
    "Parameter",
    "ReLU",
    "Sequential",
    "Tanh",
]


def _check_input(layer: Layer, x: object) -> None:
    if not is_array(x):
        raise TypeError(f"{type(layer).__name__}.forward: x must be a NumPy or CuPy array, got {type(x).__name__}")


def _saved(layer: Layer, value: Any) -> Any:
    """What ``layer``'s backward saved from its forward, or a ``RuntimeError`` saying why there is none."""
    if value is None:
        raise RuntimeError(
            f"{type(layer).__name__}.backward needs a forward in training mode first (a layer keeps nothing "
            "of the batch in evaluation mode, nor after its backward)"
        )
    return value


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

    def named_parameters(self) -> list[tuple[str, Parameter]]:
        """``(path, parameter)`` pairs: ``("weight", ...)`` in a layer, ``("3.weight", ...)`` in a :class:`Sequential`."""
        return []

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def state_dict(self) -> dict[str, Array]:
        """The parameters' values by path (the arrays themselves, on their device), in order."""
        return {name: p.value for name, p in self.named_parameters()}

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> None:
        """Copy ``state``'s arrays (NumPy or CuPy, any device) into the parameters of the same
        paths, onto each parameter's device.  Shapes and dtypes must match; with ``strict``, the
        keys too.  Every mismatch is listed in one ``ValueError``, and nothing is copied then."""
        if not isinstance(state, Mapping):
            raise TypeError(f"state must be a mapping of parameter paths to arrays, got {type(state).__name__}")
        own = dict(self.named_parameters())
        problems = []
        if strict:
            missing = [k for k in own if k not in state]
            unexpected = [k for k in state if k not in own]
            problems += [f"missing {', '.join(missing)}"] * bool(missing)
            problems += [f"unexpected {', '.join(map(str, unexpected))}"] * bool(unexpected)
        for name, p in own.items():
            if name not in state:
                continue
            value = state[name]
            if not is_array(value):
                problems.append(f"{name} is a {type(value).__name__}, not an array")
            elif tuple(value.shape) != tuple(p.value.shape):
                problems.append(f"{name} has shape {tuple(value.shape)}, the layer's {tuple(p.value.shape)}")
            elif value.dtype != p.value.dtype:
                problems.append(f"{name} is {value.dtype}, the layer's is {p.value.dtype}")
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: {'; '.join(problems)}")
        for name, p in own.items():
            if name in state:
                with device_scope(p.value):
                    p.value[...] = to_device(
                        state[name], device_of(p.value)
                    )  # in place: optimizers keep their references

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

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
        self._x = x if self.training else None

    def _saved_input(self) -> Array:
        x, self._x = _saved(self, self._x), None
        return x

    def named_parameters(self) -> list[tuple[str, Parameter]]:
        return [(name, p) for name, p in (("weight", self.weight), ("bias", self.bias)) if p is not None]

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.weight.value.shape))
        bias = "" if self.bias is not None else ", bias=False"
        return f"{type(self).__name__}(weight {shape}{bias}, {self.dtype}, {self.device})"

    @abstractmethod
    def backward(self, grad_output: Array, *, with_input: bool = True) -> Array | None:
        """The gradient with respect to the last ``forward``'s input (``None`` without
        ``with_input``: then not computed), for ``grad_output``; the parameters' gradients go to
        their ``grad``."""

    def _keep(self, grads: Gradients) -> Array | None:
        """Store the parameter gradients of a kernel's ``Gradients``; return the input's."""
        self.weight.grad = grads.weight
        if self.bias is not None:
            self.bias.grad = grads.bias
        return grads.input


def _conv_sizes(in_channels: Any, out_channels: Any, kernel_size: Any, groups: Any, algorithm: Any, dims: int):
    """A convolution layer's checked sizes: ``(in_channels, out_channels, kernel, groups)``."""
    in_channels = as_positive_int(in_channels, "in_channels")
    out_channels = as_positive_int(out_channels, "out_channels")
    kernel = as_tuple(kernel_size, "kernel_size", dims, minimum=1)
    groups = as_positive_int(groups, "groups")
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(map(repr, ALGORITHMS))}, got {algorithm!r}")
    return in_channels, out_channels, kernel, groups


class _Conv(_ParameterLayer):
    """A convolution layer over batches with ``dims`` spatial axes, calling ``kernels``: the
    forward and backward functions."""

    dims: int
    kernels: tuple[Any, Any]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntTuple,
        *,
        stride: IntTuple = 1,
        padding: Padding = 0,
        dilation: IntTuple = 1,
        groups: int = 1,
        bias: bool = True,
        device: Device | None = None,
        dtype: DTypeLike = "float32",
        seed: int | None = None,
        algorithm: Algorithm = "auto",
    ) -> None:
        super().__init__(device, dtype, seed)
        in_channels, out_channels, kernel, groups = _conv_sizes(
            in_channels, out_channels, kernel_size, groups, algorithm, self.dims
        )
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.algorithm: Algorithm = algorithm
        cg, og, taps = in_channels // groups, out_channels // groups, math.prod(kernel)
        self.weight = self._init((out_channels, cg, *kernel), cg * taps, og * taps, "weight")
        self.bias = self._zeros(out_channels, "bias") if bias else None

    def forward(self, x: Array) -> Array:
        self._check_device(x)
        bias = None if self.bias is None else self.bias.value
        return self.kernels[0](x, self.weight.value, bias, **self._hyperparameters())

    def backward(self, grad_output: Array, *, with_input: bool = True) -> Array | None:
        x, with_bias = self._saved_input(), self.bias is not None
        grads = self.kernels[1](grad_output, x, self.weight.value, with_bias=with_bias, with_input=with_input,
                                **self._hyperparameters())  # fmt: skip
        return self._keep(grads)

    def _hyperparameters(self) -> dict[str, Any]:
        return dict(
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            algorithm=self.algorithm,
        )


class Conv1D(_Conv):
    """1-D convolution layer over (N, C, L) batches, as ``torch.nn.Conv1d``; see :func:`xpconv.conv1d`
    for the arguments (each an int or a 1-tuple)."""

    dims, kernels = 1, CONVOLUTIONS[1]


class Conv2D(_Conv):
    """2-D convolution layer over NCHW batches, as ``torch.nn.Conv2d``; see :func:`xpconv.conv2d`
    for the arguments."""

    dims, kernels = 2, CONVOLUTIONS[2]


class Conv3D(_Conv):
    """3-D convolution layer over (N, C, D, H, W) batches, as ``torch.nn.Conv3d``; see
    :func:`xpconv.conv3d` for the arguments."""

    dims, kernels = 3, CONVOLUTIONS[3]


class _ConvTranspose(_ParameterLayer):
    """A transposed convolution layer over batches with ``dims`` spatial axes, weight
    ``(in_channels, out_channels/groups, *kernel)`` as in PyTorch, calling ``kernels``."""

    dims: int
    kernels: tuple[Any, Any]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntTuple,
        *,
        stride: IntTuple = 1,
        padding: IntTuple = 0,
        output_padding: IntTuple = 0,
        groups: int = 1,
        dilation: IntTuple = 1,
        bias: bool = True,
        device: Device | None = None,
        dtype: DTypeLike = "float32",
        seed: int | None = None,
        algorithm: Algorithm = "auto",
    ) -> None:
        super().__init__(device, dtype, seed)
        in_channels, out_channels, kernel, groups = _conv_sizes(
            in_channels, out_channels, kernel_size, groups, algorithm, self.dims
        )
        self.hyperparameters: dict[str, Any] = dict(
            stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation,
            algorithm=algorithm,
        )  # fmt: skip
        cg, og, taps = in_channels // groups, out_channels // groups, math.prod(kernel)
        # Glorot over the fans of one output pixel: each input channel feeds og·taps weights
        self.weight = self._init((in_channels, og, *kernel), cg * taps, og * taps, "weight")
        self.bias = self._zeros(out_channels, "bias") if bias else None

    def forward(self, x: Array) -> Array:
        self._check_device(x)
        bias = None if self.bias is None else self.bias.value
        return self.kernels[0](x, self.weight.value, bias, **self.hyperparameters)

    def backward(self, grad_output: Array, *, with_input: bool = True) -> Array | None:
        x, with_bias = self._saved_input(), self.bias is not None
        grads = self.kernels[1](
            grad_output, x, self.weight.value, with_bias=with_bias, with_input=with_input, **self.hyperparameters
        )
        return self._keep(grads)


class ConvTranspose1D(_ConvTranspose):
    """Transposed 1-D convolution layer, as ``torch.nn.ConvTranspose1d``; see :func:`xpconv.conv_transpose1d`."""

    dims, kernels = 1, TRANSPOSED_CONVOLUTIONS[1]


class ConvTranspose2D(_ConvTranspose):
    """Transposed 2-D convolution layer, weight ``(in_channels, out_channels/groups, kh, kw)`` as in
    PyTorch; see :func:`xpconv.conv_transpose2d` for the arguments."""

    dims, kernels = 2, TRANSPOSED_CONVOLUTIONS[2]


class ConvTranspose3D(_ConvTranspose):
    """Transposed 3-D convolution layer, as ``torch.nn.ConvTranspose3d``; see :func:`xpconv.conv_transpose3d`."""

    dims, kernels = 3, TRANSPOSED_CONVOLUTIONS[3]


class _Pool(Layer):
    """A pooling layer: no parameters; keeps its input for the backward pass (in training)."""

    dims: int
    kernels: tuple[Any, Any]

    def __init__(self, **arguments: Any) -> None:
        as_tuple(arguments["kernel_size"], "kernel_size", self.dims, minimum=1)
        self.arguments = arguments
        self._x: Array | None = None

    def _keep_input(self, x: Array) -> None:
        _check_input(self, x)
        self._x = x if self.training else None

    def _saved_input(self) -> Array:
        x, self._x = _saved(self, self._x), None
        return x

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.arguments.items())})"


class _MaxPool(_Pool):
    """Max pooling; a forward in training mode keeps where each maximum was (``return_indices``),
    and the backward routes the gradient through them rather than search the windows again."""

    def __init__(
        self,
        kernel_size: IntTuple,
        stride: IntTuple | None = None,
        padding: IntTuple = 0,
        dilation: IntTuple = 1,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__(
            kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode
        )
        self._indices: Array | None = None

    def forward(self, x: Array) -> Array:
        _check_input(self, x)
        if not self.training:
            self._x = self._indices = None
            return self.kernels[0](x, **self.arguments)
        self._x = x  # for its shape, dtype and device
        y, self._indices = self.kernels[0](x, **self.arguments, return_indices=True)
        return y

    def backward(self, grad_output: Array) -> Array:
        x, indices, self._indices = self._saved_input(), self._indices, None
        return self.kernels[1](grad_output, x, **self.arguments, indices=indices)


class MaxPool1D(_MaxPool):
    """Max pooling over (N, C, L) batches, as ``torch.nn.MaxPool1d``; see :func:`xpconv.max_pool1d`."""

    dims, kernels = 1, POOLINGS["max", 1]


class MaxPool2D(_MaxPool):
    """Max pooling over NCHW batches; see :func:`xpconv.max_pool2d` for the arguments.  A forward
    in training mode keeps where each maximum was (``return_indices``), and the backward routes
    the gradient through them rather than search the windows again."""

    dims, kernels = 2, POOLINGS["max", 2]


class MaxPool3D(_MaxPool):
    """Max pooling over (N, C, D, H, W) batches, as ``torch.nn.MaxPool3d``; see :func:`xpconv.max_pool3d`."""

    dims, kernels = 3, POOLINGS["max", 3]


class _AvgPool(_Pool):
    """Average pooling (``divisor_override`` only in 2-D and 3-D, as in PyTorch)."""

    def forward(self, x: Array) -> Array:
        self._keep_input(x)
        return self.kernels[0](x, **self.arguments)

    def backward(self, grad_output: Array) -> Array:
        return self.kernels[1](grad_output, self._saved_input(), **self.arguments)


class AvgPool1D(_AvgPool):
    """Average pooling over (N, C, L) batches, as ``torch.nn.AvgPool1d``; see :func:`xpconv.avg_pool1d`."""

    dims, kernels = 1, POOLINGS["avg", 1]

    def __init__(
        self,
        kernel_size: IntTuple,
        stride: IntTuple | None = None,
        padding: IntTuple = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> None:
        super().__init__(
            kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
            count_include_pad=count_include_pad,
        )  # fmt: skip


class AvgPool2D(_AvgPool):
    """Average pooling over NCHW batches; see :func:`xpconv.avg_pool2d` for the arguments."""

    dims, kernels = 2, POOLINGS["avg", 2]

    def __init__(
        self,
        kernel_size: IntTuple,
        stride: IntTuple | None = None,
        padding: IntTuple = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__(
            kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
            count_include_pad=count_include_pad, divisor_override=divisor_override,
        )  # fmt: skip


class AvgPool3D(AvgPool2D):
    """Average pooling over (N, C, D, H, W) batches, as ``torch.nn.AvgPool3d``; see :func:`xpconv.avg_pool3d`."""

    dims, kernels = 3, POOLINGS["avg", 3]


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
        return dense(x, self.weight.value, None if self.bias is None else self.bias.value)

    def backward(self, grad_output: Array, *, with_input: bool = True) -> Array | None:
        grads = dense_backward(grad_output, self._saved_input(), self.weight.value, with_bias=self.bias is not None,
                               with_input=with_input)  # fmt: skip
        return self._keep(grads)


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1·d2·...)."""

    _shape: tuple[int, ...] | None = None

    def forward(self, x: Array) -> Array:
        _check_input(self, x)
        self._shape = tuple(x.shape)
        return x.reshape(x.shape[0], -1)  # (N, C, H, W) -> (N, C·H·W), a view on x's device

    def backward(self, grad_output: Array) -> Array:
        return grad_output.reshape(_saved(self, self._shape))  # (N, C·H·W) -> (N, C, H, W)


class Tanh(Layer):
    _y: Array | None = None

    def forward(self, x: Array) -> Array:
        _check_input(self, x)
        with device_scope(x):
            y = array_namespace(x).tanh(x)
        self._y = y if self.training else None
        return y

    def backward(self, grad_output: Array) -> Array:
        y, self._y = _saved(self, self._y), None
        with device_scope(grad_output):
            return grad_output * (1 - y * y)


class ReLU(Layer):
    """``max(x, 0)``, as ``torch.nn.ReLU``: NaN stays NaN, −∞ gives 0; the gradient passes where the
    output is not ``<= 0`` (so through a NaN, as PyTorch's), times a mask elsewhere (so an infinite
    gradient there gives NaN, where PyTorch's ``where`` gives 0: NumPy's ``where`` on a random mask
    measured 12 times slower than the product, 1.0 against 0.08 ms on LeNet's first ReLU).  Keeps
    that mask (in training) for the backward."""

    _mask: Array | None = None

    def forward(self, x: Array) -> Array:
        _check_input(self, x)
        xp = array_namespace(x)
        with device_scope(x):
            y = xp.maximum(x, 0)
            self._mask = ~(y <= 0) if self.training else None
            return y

    def backward(self, grad_output: Array) -> Array:
        mask, self._mask = _saved(self, self._mask), None
        array_namespace(grad_output, mask)  # one device
        with device_scope(grad_output):
            return grad_output * mask


class Dropout(Layer):
    """Inverted dropout: in training, zero each entry with probability ``p`` and scale the
    rest by ``1 / (1 - p)``; in evaluation mode, the identity.

    The masks come from one NumPy generator (PCG64) seeded by ``seed``, drawn on the host and
    copied to the input's device: the same masks on every device, and a state that a checkpoint
    can keep (:meth:`rng_state`; CuPy's cuRAND generators have no public way to save theirs).
    """

    def __init__(self, p: float = 0.5, *, seed: int | None = None) -> None:
        if not 0.0 <= p < 1.0:
            raise ValueError(f"p must be in [0, 1), got {p!r}")
        self.p = float(p)
        self._rng = np.random.default_rng(seed)
        self._mask: Array | None = None

    def rng_state(self) -> dict[str, Any]:
        """The masks' generator state (JSON-serialisable)."""
        return dict(self._rng.bit_generator.state)

    def set_rng_state(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`rng_state`: the next masks are those that followed it."""
        self._rng.bit_generator.state = state

    def forward(self, x: Array) -> Array:
        _check_input(self, x)
        self._mask = None
        if not self.training or self.p == 0.0:
            return x
        keep = self._rng.random(x.shape, dtype=np.float32) >= self.p
        mask = to_device((keep / np.float32(1.0 - self.p)).astype(x.dtype), device_of(x))
        self._mask = mask
        with device_scope(x):
            return x * mask

    def backward(self, grad_output: Array) -> Array:
        if not self.training or self.p == 0.0:
            return grad_output
        mask, self._mask = _saved(self, self._mask), None
        with device_scope(grad_output):
            return grad_output * mask

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"


class Sequential(Layer):
    """Layers applied in order; ``len``, iteration and indexing give the layers.

    Its ``backward`` computes the gradient with respect to its own input only with
    ``input_gradient=True``: by default nothing upstream needs it (the images of a network), so
    its first layer with parameters computes only their gradients, the layers before it nothing,
    and ``backward`` returns ``None``.  A ``Sequential`` nested after another layer's parameters
    computes its input gradient, which the layer before it needs."""

    def __init__(self, *layers: Layer, input_gradient: bool = False) -> None:
        for k, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                hint = " (pass the layers themselves: Sequential(*layers))" if isinstance(layer, list | tuple) else ""
                raise TypeError(f"Sequential takes layers, got a {type(layer).__name__} at position {k}{hint}")
        self.layers = list(layers)
        self.input_gradient = as_bool(input_gradient, "input_gradient")
        first = self._first_with_parameters()
        for k, layer in enumerate(self.layers):
            if isinstance(layer, Sequential) and k > first:
                layer.input_gradient = True  # the layers before it need its input gradient
        for name, p in self.named_parameters():
            p.name = name  # its path, unique in the network

    def _first_with_parameters(self) -> int:
        return next((k for k, layer in enumerate(self.layers) if layer.parameters()), len(self.layers))

    def named_parameters(self) -> list[tuple[str, Parameter]]:
        return [(f"{k}.{name}", p) for k, layer in enumerate(self.layers) for name, p in layer.named_parameters()]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __getitem__(self, index: int) -> Layer:
        return self.layers[index]

    def __repr__(self) -> str:
        lines = "".join(f"\n  ({k}): {layer!r}" for k, layer in enumerate(self.layers))
        return f"Sequential({lines}\n)"

    def train(self, mode: bool = True) -> Sequential:
        self.training = mode
        for layer in self.layers:
            layer.train(mode)
        return self

    def forward(self, x: Array) -> Array:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_output: Array) -> Array | None:
        first = 0 if self.input_gradient else self._first_with_parameters()
        for k in reversed(range(first, len(self.layers))):
            layer = self.layers[k]
            if k == first and not self.input_gradient and isinstance(layer, _ParameterLayer):
                return layer.backward(grad_output, with_input=False)  # None: no one upstream needs it
            if k == first and not self.input_gradient and isinstance(layer, Sequential):
                layer.backward(grad_output)  # its own first layer skips its input gradient
                return None
            grad_output = layer.backward(grad_output)
        return grad_output if self.input_gradient else None
