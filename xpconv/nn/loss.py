"""Softmax cross-entropy of integer class labels."""

from __future__ import annotations

from .._backend import array_namespace, device_scope
from .._types import Array


class SoftmaxCrossEntropy:
    """Mean cross-entropy of integer class labels under a softmax of the logits.

    ``forward(logits, labels)`` returns the mean loss as a Python float (stable
    log-softmax: the row maximum is subtracted first); ``backward()`` returns the logits'
    gradient ``(softmax - onehot) / N``.
    """

    def forward(self, logits: Array, labels: Array) -> float:
        xp = array_namespace(logits, labels)
        if logits.ndim != 2 or labels.shape != (logits.shape[0],):
            raise ValueError(
                f"logits must be (N, classes) and labels (N,), got {tuple(logits.shape)} and {tuple(labels.shape)}"
            )
        if labels.dtype.kind not in "iu":
            raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")
        classes = logits.shape[1]
        with device_scope(logits):
            # one reduction, on the device; the comparison's result comes to the host once
            if labels.size and bool(((labels < 0) | (labels >= classes)).any()):
                raise ValueError(
                    f"labels must be class indices in [0, {classes}) for logits with {classes} classes, "
                    f"got values from {int(labels.min())} to {int(labels.max())}"
                )
            shifted = logits - logits.max(axis=1, keepdims=True)
            log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
            rows = xp.arange(logits.shape[0])
            self._probs = xp.exp(log_probs)
            self._labels = labels
            return float(-log_probs[rows, labels].mean())

    def backward(self) -> Array:
        xp = array_namespace(self._probs)
        with device_scope(self._probs):
            grad = self._probs.copy()
            grad[xp.arange(grad.shape[0]), self._labels] -= 1
            return grad / grad.dtype.type(grad.shape[0])
