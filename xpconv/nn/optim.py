"""Stochastic gradient descent with momentum."""

from __future__ import annotations

import math

from .._backend import device_scope
from .._types import Array
from .layers import Parameter


class SGD:
    """Stochastic gradient descent with (heavy-ball) momentum:
    ``v = momentum·v - lr·grad; value += v``."""

    def __init__(self, parameters: list[Parameter], lr: float, momentum: float = 0.0) -> None:
        if not (math.isfinite(lr) and lr > 0):  # NaN fails every comparison, so test for it
            raise ValueError(f"lr must be a positive finite number, got {lr!r}")
        if not 0.0 <= momentum < 1.0:  # NaN included
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.parameters = list(parameters)
        self.lr = lr
        self.momentum = momentum
        self._velocity: list[Array | None] = [None] * len(self.parameters)

    def step(self) -> None:
        for k, p in enumerate(self.parameters):
            if p.grad is None:
                continue
            with device_scope(p.value):
                update = -self.lr * p.grad
                if self.momentum:
                    previous = self._velocity[k]
                    v = update if previous is None else self.momentum * previous + update
                    self._velocity[k] = v
                    update = v
                p.value += update.astype(p.value.dtype, copy=False)
