"""Type aliases and the gradients tuple shared by the kernels.

``Array`` is a ``numpy.ndarray`` or a ``cupy.ndarray`` (CuPy is never imported to say so);
``Device`` is a device string: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.  ``IntPair`` (2-D),
``IntTuple`` (1-D, 3-D), ``Padding``, ``Algorithm`` and ``DTypeLike`` type the hyperparameters of
the kernels and layers.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple, Optional, TypeAlias, Union

import numpy as np

Array: TypeAlias = Any  # numpy.ndarray | cupy.ndarray
ArrayLike: TypeAlias = Any  # an Array, or anything numpy.asarray takes (nested lists, scalars)
Device: TypeAlias = str  # "cpu", "cuda" or "cuda:N"
IntPair: TypeAlias = Union[int, tuple[int, int]]  # one value for both axes, or (height, width)
IntTuple: TypeAlias = Union[int, tuple[int, ...]]  # one value for every axis, or one per axis (1-D, 3-D)
Padding: TypeAlias = Union[int, tuple[int, ...], Literal["valid", "same"]]
Algorithm: TypeAlias = Literal["auto", "im2col", "winograd", "direct"]
DTypeLike: TypeAlias = Union[str, type, np.dtype]  # "float32", np.float32, np.dtype("float32")


class Gradients(NamedTuple):
    """Gradients of a loss with respect to a layer's input (``None`` when not asked for), weight
    and bias (``None`` if no bias)."""

    input: Optional[Array]
    weight: Array
    bias: Optional[Array]
