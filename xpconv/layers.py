"""A tiny training stack on top of the kernels: layers, a loss and an optimizer.

Each layer has ``forward(x)`` and ``backward(grad_output)``; ``backward`` returns the
gradient with respect to the layer's input and stores its parameters' gradients in
``Parameter.grad`` (overwriting, not accumulating).  Layers call the public kernels and
hold no copy of the math.  Parameters live on one device, chosen by ``device=`` or,
when that is omitted, the ``XPCONV_DEVICE`` environment variable (default ``"cpu"``).
"""

from __future__ import annotations

import math
import os

import numpy as np

from ._backend import array_namespace, device_of, parse_device, to_device
from .conv import conv2d, conv2d_backward
from .dense import dense, dense_backward

__all__ = [
    "Conv2D", "Dense", "Dropout", "Flatten", "Layer", "Parameter", "ReLU", "SGD",
    "Sequential", "SoftmaxCrossEntropy", "Tanh", "default_device",
]


def default_device() -> str:
    """``$XPCONV_DEVICE`` if set, else ``"cpu"``."""
    return os.environ.get("XPCONV_DEVICE", "cpu")


def _device(device: str | None) -> str:
    device = default_device() if device is None else device
    kind, index = parse_device(device)
    return "cpu" if kind == "cpu" else f"cuda:{index}"


class Parameter:
    """A trainable array and the gradient the last ``backward`` left for it."""

    def __init__(self, value, name: str):
        self.value = value
        self.grad = None
        self.name = name

    def __repr__(self):
        return f"Parameter({self.name}, shape={tuple(self.value.shape)}, dtype={self.value.dtype})"


class Layer:
    """Base class: no parameters, training mode on."""

    training = True

    def parameters(self) -> list[Parameter]:
        return []

    def train(self, mode: bool = True):
        self.training = mode
        return self

    def eval(self):
        return self.train(False)

    def __call__(self, x):
        return self.forward(x)


class _ParameterLayer(Layer):
    def __init__(self, device, dtype, seed):
        self.device = _device(device)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float16, np.float32, np.float64):
            raise TypeError(f"dtype must be float16, float32 or float64, got {dtype!r}")
        self._rng = np.random.default_rng(seed)
        self._x = None

    def _init(self, shape, fan_in, fan_out, name):
        """Glorot (Xavier) uniform: U(-a, a) with a = sqrt(6 / (fan_in + fan_out))."""
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        host = self._rng.uniform(-limit, limit, size=shape).astype(self.dtype)
        return Parameter(to_device(host, self.device), name)

    def _zeros(self, n, name):
        return Parameter(to_device(np.zeros(n, self.dtype), self.device), name)

    def _check_device(self, x):
        where = device_of(x)
        if where != self.device:
            raise ValueError(
                f"{type(self).__name__} parameters are on {self.device} but its input is on {where}; "
                f"move the input with xpconv.to_device(x, {self.device!r})"
            )

    def _saved_input(self):
        if self._x is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._x

    def parameters(self):
        return [p for p in (self.weight, self.bias) if p is not None]

    def _keep(self, grads):
        """Store the parameter gradients of a kernel's ``Gradients``; return the input's."""
        self.weight.grad = grads.weight
        if self.bias is not None:
            self.bias.grad = grads.bias
        return grads.input


class Conv2D(_ParameterLayer):
    """2-D convolution layer over NCHW batches; see :func:`xpconv.conv2d` for the arguments."""

    def __init__(self, in_channels, out_channels, kernel_size, *, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, device=None, dtype="float32", seed=None):
        super().__init__(device, dtype, seed)
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        self.hyper = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        cg, og = in_channels // groups, out_channels // groups
        self.weight = self._init((out_channels, cg, kh, kw), cg * kh * kw, og * kh * kw, "weight")
        self.bias = self._zeros(out_channels, "bias") if bias else None

    def forward(self, x):
        self._check_device(x)
        self._x = x
        return conv2d(x, self.weight.value, None if self.bias is None else self.bias.value, **self.hyper)

    def backward(self, grad_output):
        return self._keep(conv2d_backward(grad_output, self._saved_input(), self.weight.value,
                                          with_bias=self.bias is not None, **self.hyper))


class Dense(_ParameterLayer):
    """Fully connected layer, ``y = x @ weight.T + bias`` with ``weight`` of shape (out, in)."""

    def __init__(self, in_features, out_features, *, bias=True, device=None, dtype="float32", seed=None):
        super().__init__(device, dtype, seed)
        self.weight = self._init((out_features, in_features), in_features, out_features, "weight")
        self.bias = self._zeros(out_features, "bias") if bias else None

    def forward(self, x):
        self._check_device(x)
        self._x = x
        return dense(x, self.weight.value, None if self.bias is None else self.bias.value)

    def backward(self, grad_output):
        return self._keep(dense_backward(grad_output, self._saved_input(), self.weight.value,
                                         with_bias=self.bias is not None))


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1·d2·...)."""

    def forward(self, x):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)  # (N, C, H, W) -> (N, C·H·W)

    def backward(self, grad_output):
        return grad_output.reshape(self._shape)  # (N, C·H·W) -> (N, C, H, W)


class Tanh(Layer):
    def forward(self, x):
        self._y = array_namespace(x).tanh(x)
        return self._y

    def backward(self, grad_output):
        return grad_output * (1 - self._y * self._y)


class ReLU(Layer):
    def forward(self, x):
        self._mask = x > 0
        return x * self._mask

    def backward(self, grad_output):
        return grad_output * self._mask


class Dropout(Layer):
    """Inverted dropout: in training, zero each entry with probability ``p`` and scale the
    rest by ``1 / (1 - p)``; in evaluation mode, the identity."""

    def __init__(self, p: float = 0.5, *, seed=None):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"p must be in [0, 1), got {p!r}")
        self.p = float(p)
        self._seed = seed
        self._rngs = {}
        self._mask = None

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        xp = array_namespace(x)
        rng = self._rngs.setdefault(xp.__name__, xp.random.default_rng(self._seed))
        keep = rng.random(x.shape, dtype=np.float32) >= self.p
        self._mask = keep.astype(x.dtype) / x.dtype.type(1.0 - self.p)
        return x * self._mask

    def backward(self, grad_output):
        return grad_output if self._mask is None else grad_output * self._mask


class Sequential(Layer):
    def __init__(self, *layers: Layer):
        self.layers = list(layers)

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]

    def train(self, mode: bool = True):
        self.training = mode
        for layer in self.layers:
            layer.train(mode)
        return self

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_output):
        for layer in reversed(self.layers):
            grad_output = layer.backward(grad_output)
        return grad_output


class SoftmaxCrossEntropy:
    """Mean cross-entropy of integer class labels under a softmax of the logits.

    ``forward(logits, labels)`` returns the mean loss as a Python float (stable
    log-softmax: the row maximum is subtracted first); ``backward()`` returns the logits'
    gradient ``(softmax - onehot) / N``.
    """

    def forward(self, logits, labels):
        xp = array_namespace(logits, labels)
        if logits.ndim != 2 or labels.shape != (logits.shape[0],):
            raise ValueError(f"logits must be (N, classes) and labels (N,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        rows = xp.arange(logits.shape[0])
        self._probs = xp.exp(log_probs)
        self._labels = labels
        return float(-log_probs[rows, labels].mean())

    def backward(self):
        xp = array_namespace(self._probs)
        grad = self._probs.copy()
        grad[xp.arange(grad.shape[0]), self._labels] -= 1
        return grad / grad.dtype.type(grad.shape[0])


class SGD:
    """Stochastic gradient descent with (heavy-ball) momentum:
    ``v = momentum·v - lr·grad; value += v``."""

    def __init__(self, parameters, lr: float, momentum: float = 0.0):
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.parameters = list(parameters)
        self.lr = lr
        self.momentum = momentum
        self._velocity = [None] * len(self.parameters)

    def step(self):
        for k, p in enumerate(self.parameters):
            if p.grad is None:
                continue
            update = -self.lr * p.grad
            if self.momentum:
                v = update if self._velocity[k] is None else self.momentum * self._velocity[k] + update
                self._velocity[k] = v
                update = v
            p.value += update.astype(p.value.dtype, copy=False)
