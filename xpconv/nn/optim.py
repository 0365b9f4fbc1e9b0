"""Stochastic gradient descent with momentum."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .._backend import device_of, device_scope, is_array, to_device
from .._types import Array
from .layers import Parameter


def _check_hyperparameters(lr: Any, momentum: Any) -> None:
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):  # NaN fails every comparison
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if not (isinstance(momentum, int | float) and 0.0 <= momentum < 1.0):  # NaN included
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")


class SGD:
    """Stochastic gradient descent with (heavy-ball) momentum:
    ``v = momentum·v - lr·grad; value += v``."""

    def __init__(self, parameters: list[Parameter], lr: float, momentum: float = 0.0) -> None:
        _check_hyperparameters(lr, momentum)
        self.parameters = list(parameters)
        self.lr = lr
        self.momentum = momentum
        self.steps = 0  # steps taken
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
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        """``lr``, ``momentum``, ``steps`` and ``momentum_buffers``: each parameter's velocity (an
        array on its device, or ``None`` before its first step), in the order of the parameters."""
        return {"lr": self.lr, "momentum": self.momentum, "steps": self.steps, "momentum_buffers": list(self._velocity)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` (its buffers may be on any device: each goes to its
        parameter's); a ``ValueError`` lists what does not fit these parameters."""
        missing = [k for k in ("lr", "momentum", "steps", "momentum_buffers") if k not in state]
        if missing:
            raise ValueError(f"SGD.load_state_dict: missing {', '.join(missing)}")
        _check_hyperparameters(state["lr"], state["momentum"])
        buffers = list(state["momentum_buffers"])
        if len(buffers) != len(self.parameters):
            raise ValueError(
                f"SGD.load_state_dict: {len(buffers)} momentum buffers for {len(self.parameters)} parameters"
            )
        problems = []
        for p, v in zip(self.parameters, buffers, strict=True):
            if v is None:
                continue
            if not is_array(v):
                problems.append(f"the buffer of {p.name} is a {type(v).__name__}, not an array")
            elif tuple(v.shape) != tuple(p.value.shape) or v.dtype != p.value.dtype:
                problems.append(f"the buffer of {p.name} is {v.dtype} {tuple(v.shape)}, expected "
                                f"{p.value.dtype} {tuple(p.value.shape)}")  # fmt: skip
        if problems:
            raise ValueError(f"SGD.load_state_dict: {'; '.join(problems)}")
        self.lr, self.momentum, self.steps = state["lr"], state["momentum"], int(state["steps"])
        self._velocity = [
            None if v is None else _copy_to(v, p.value) for p, v in zip(self.parameters, buffers, strict=True)
        ]


def _copy_to(v: Array, like: Array) -> Array:
    """A copy of ``v`` on ``like``'s device (never a view of the caller's array)."""
    with device_scope(like):  # CuPy copies onto the current device
        return to_device(v, device_of(like)).copy()
