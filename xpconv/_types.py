"""Type aliases and the gradients tuple shared by the kernels.

``Array`` is a ``numpy.ndarray`` or a ``cupy.ndarray`` (CuPy is never imported to say so);
``Device`` is a device string: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, TypeAlias

Array: TypeAlias = Any  # numpy.ndarray | cupy.ndarray
Device: TypeAlias = str  # "cpu", "cuda" or "cuda:N"


class Gradients(NamedTuple):
    """Gradients of a loss with respect to a layer's input, weight and bias (``None`` if no bias)."""

    input: Array
    weight: Array
    bias: Optional[Array]
