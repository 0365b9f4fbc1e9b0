from typing import Any, NamedTuple


class Gradients(NamedTuple):
    """Gradients of a loss with respect to a layer's input, weight and bias (``None`` if no bias)."""

    input: Any
    weight: Any
    bias: Any
