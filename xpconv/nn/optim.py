"""Stochastic gradient descent with momentum."""

from __future__ import annotations

from .._backend import device_scope
from .layers import Parameter


class SGD:
    """Stochastic gradient descent with (heavy-ball) momentum:
    ``v = momentum·v - lr·grad; value += v``."""

    def __init__(self, parameters: list[Parameter], lr: float, momentum: float = 0.0):
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.parameters = list(parameters)
        self.lr = lr
        self.momentum = momentum
        self._velocity = [None] * len(self.parameters)

    def step(self) -> None:
        for k, p in enumerate(self.parameters):
            if p.grad is None:
                continue
            with device_scope(p.value):
                update = -self.lr * p.grad
                if self.momentum:
                    v = update if self._velocity[k] is None else self.momentum * self._velocity[k] + update
                    self._velocity[k] = v
                    update = v
                p.value += update.astype(p.value.dtype, copy=False)
