"""The sizes of one convolution (or pooling, or transposed convolution), in any number of spatial
axes, from shapes and hyperparameters, checked once.

Notation: input ``(N, C, *size)``, weight ``(O, C/groups, *kernel)``, output ``(N, O, *out)``, with
``d = len(size)`` spatial axes (1: ``L``; 2: ``H, W``; 3: ``D, H, W``).  Per spatial axis, with
``before`` and ``after`` the padding on either side,

    out = (size + before + after - dilation·(kernel - 1) - 1) // stride + 1

(:func:`output_size`), and output pixel ``p`` reads with tap ``k`` the padded input pixel
``p·stride + k·dilation`` (:meth:`ConvGeometry.window`).  Everything per axis is written once,
here, and holds for every ``d``: the 2-D functions are the ``d = 2`` case.

:func:`conv_geometry` is the only place that turns user arguments into a :class:`ConvGeometry`;
everything after it (patches, GEMMs, kernels, benchmarks' FLOP counts) reads sizes from there.
Pooling and transposed convolution are described by the same :class:`ConvGeometry`
(:func:`pool_geometry`, :func:`conv_transpose_geometry`), so they run on the same patch code.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from ._checks import KERNEL_AXES, as_bool, as_positive_int, as_tuple
from ._types import IntTuple, Padding

__all__ = [
    "ConvGeometry",
    "conv_geometry",
    "conv_transpose_geometry",
    "output_size",
    "pool_geometry",
    "pooled_size",
    "resolve_padding",
    "transposed_geometry",
]


def _remembered(function):
    """``function`` remembering its result for arguments that are all plain: ``None``, ``bool``,
    ``int``, ``str`` or tuples of ``int`` (a shape, a stride), typed exactly, so that ``True`` is
    never taken for ``1``.  A layer calls with the same shapes and hyperparameters every step, and
    its checks then run once: on LeNet-5's step, 8 geometries, about 0.2 ms of its 6.5.  Other
    arguments (lists, NumPy integers) are checked on every call; errors are never remembered."""

    @functools.lru_cache(maxsize=256)
    def remembered(types: tuple[type, ...], args: tuple, kwargs: tuple):  # the types keep True from 1
        return function(*args, **dict(kwargs))

    @functools.wraps(function)
    def geometry(*args, **kwargs):
        values = (*args, *kwargs.values())
        if all(map(_plain, values)):
            return remembered(tuple(map(type, values)), args, tuple(kwargs.items()))
        return function(*args, **kwargs)

    return geometry


def _plain(value: object) -> bool:
    kind = type(value)
    if kind is tuple:
        return all(type(v) is int for v in value)  # type: ignore[attr-defined]
    return value is None or kind is bool or kind is int or kind is str


def output_size(size: int, kernel: int, stride: int, before: int, after: int, dilation: int) -> int:
    """The output's size along one axis: ``(size + before + after - dilation·(kernel - 1) - 1) // stride + 1``."""
    return (size + before + after - dilation * (kernel - 1) - 1) // stride + 1


def span(kernel: int, dilation: int) -> int:
    """Input pixels one window covers along an axis: ``dilation·(kernel - 1) + 1``."""
    return dilation * (kernel - 1) + 1


def _by(sizes: Sequence[object]) -> str:
    return "x".join(map(str, sizes))


def _kernel_axes(dims: int) -> str:
    return KERNEL_AXES.get(dims, "kernel...")


@dataclass(frozen=True)
class ConvGeometry:
    """Every size of one convolution, computed once from the shapes and hyperparameters; the
    spatial ones are tuples with one entry per axis.  The derived sizes the loops read most
    (``out``, ``padded``, ``taps``, ``pixels``) are computed on first use and kept."""

    n: int
    c: int
    size: tuple[int, ...]  # the input's spatial size
    o: int
    kernel: tuple[int, ...]
    groups: int
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pad: tuple[tuple[int, int], ...]  # (before, after) per axis

    @property
    def dims(self) -> int:
        """Spatial axes."""
        return len(self.size)

    @functools.cached_property
    def padded(self) -> tuple[int, ...]:
        return tuple(s + b + a for s, (b, a) in zip(self.size, self.pad, strict=True))

    @functools.cached_property
    def out(self) -> tuple[int, ...]:
        """Output size per axis (:func:`output_size`)."""
        return tuple(
            output_size(s, k, st, b, a, d)
            for s, k, st, (b, a), d in zip(self.size, self.kernel, self.stride, self.pad, self.dilation, strict=True)
        )

    @functools.cached_property
    def taps(self) -> int:
        """Kernel offsets a window reads: the product of the kernel's sizes."""
        return math.prod(self.kernel)

    @functools.cached_property
    def pixels(self) -> int:
        """Output pixels a plane: the product of the output's sizes."""
        return math.prod(self.out)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.n, self.c, *self.size)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.n, self.o, *self.out)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.o, self.c // self.groups, *self.kernel)

    @property
    def flops(self) -> float:
        """Multiply-adds ×2 of one pass of the direct convolution: ``2·N·O·pixels·(C/groups)·taps``."""
        return 2.0 * self.n * self.o * self.pixels * (self.c // self.groups) * self.taps

    @property
    def is_pointwise(self) -> bool:
        """A kernel of one tap, stride 1, no padding: the patches are the input itself."""
        return self.taps == 1 and all(s == 1 for s in self.stride) and not any(map(any, self.pad))

    @property
    def pad_before(self) -> tuple[int, ...]:
        return tuple(b for b, _ in self.pad)

    def window(self, offset: Sequence[int]) -> tuple[slice, ...]:
        """The padded input's pixels that kernel offset ``offset`` (one tap per axis) reads, per axis."""
        return tuple(
            slice(k * d, k * d + s * (n - 1) + 1, s)
            for k, d, s, n in zip(offset, self.dilation, self.stride, self.out, strict=True)
        )

    def interior(self) -> tuple[slice, ...]:
        """The input's pixels within the padded input, per axis."""
        return tuple(slice(b, b + s) for (b, _), s in zip(self.pad, self.size, strict=True))


def resolve_padding(
    padding: Padding, kernel: tuple[int, ...], dilation: tuple[int, ...], stride: tuple[int, ...]
) -> tuple[tuple[int, int], ...]:
    """``int | tuple | "valid" | "same"`` -> ``(before, after)`` per axis."""
    dims = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * dims
        if padding != "same":
            raise ValueError(f"padding must be an int, a tuple, 'valid' or 'same', got {padding!r}")
        if any(s != 1 for s in stride):
            raise ValueError(f"padding='same' needs stride 1, got stride={stride}")
        pads = []
        for k, d in zip(kernel, dilation, strict=True):
            total = d * (k - 1)
            pads.append((total // 2, total - total // 2))  # the odd extra pixel goes after, as PyTorch
        return tuple(pads)
    return tuple((p, p) for p in as_tuple(padding, "padding", dims, minimum=0))


@_remembered
def conv_geometry(
    x_shape: Sequence[int],
    weight_shape: Sequence[int],
    bias_shape: Sequence[int] | None,
    *,
    stride: IntTuple = 1,
    padding: Padding = 0,
    dilation: IntTuple = 1,
    groups: int = 1,
) -> ConvGeometry:
    """Check the shapes (``bias_shape`` may be ``None``) and hyperparameters of a convolution
    against each other and return its :class:`ConvGeometry`; the spatial axes are ``x_shape``'s
    after the first two."""
    dims = len(x_shape) - 2
    stride = as_tuple(stride, "stride", dims, minimum=1)
    dilation = as_tuple(dilation, "dilation", dims, minimum=1)
    groups = as_positive_int(groups, "groups")
    n, c, *size = x_shape
    o, cg, *kernel = weight_shape
    if len(kernel) != dims:
        raise ValueError(
            f"weight must have {dims + 2} dimensions (O, C/groups, {_kernel_axes(dims)}) for x of shape "
            f"{tuple(x_shape)}, got shape {tuple(weight_shape)}"
        )
    if min(o, cg, *kernel) < 1:
        raise ValueError(
            f"weight must have non-empty dimensions (O, C/groups, {_kernel_axes(dims)}), got shape {tuple(weight_shape)}"
        )
    if c % groups:
        raise ValueError(f"groups={groups} must divide the input channels, but x has {c} channel{'s' * (c != 1)}")
    if o % groups:
        raise ValueError(f"groups={groups} must divide the output channels, but weight has {o}")
    if cg * groups != c:
        raise ValueError(
            f"weight has {cg} input channel{'s' * (cg != 1)} per group but x has {c} channel{'s' * (c != 1)} "
            f"(groups={groups}); expected weight.shape[1] == {c // groups}"
        )
    if bias_shape is not None and tuple(bias_shape) != (o,):
        raise ValueError(f"bias must have shape ({o},) to match weight {tuple(weight_shape)}, got {tuple(bias_shape)}")
    kernel_t, size_t = tuple(kernel), tuple(size)
    pad = resolve_padding(padding, kernel_t, dilation, stride)
    spans = tuple(span(k, d) for k, d in zip(kernel_t, dilation, strict=True))
    limit = tuple(max(s, w) for s, w in zip(size_t, spans, strict=True))  # beyond this, the output is mostly padding
    if any(max(p) > m for p, m in zip(pad, limit, strict=True)):
        raise ValueError(
            f"padding {padding!r} is larger than the input ({_by(size_t)}) and the kernel's span ({_by(spans)}): "
            f"the output would be mostly padding; at most {_by(limit)} a side"
        )
    g = ConvGeometry(n, c, size_t, o, kernel_t, groups, stride, dilation, pad)
    if any(w > p for w, p in zip(spans, g.padded, strict=True)):
        raise ValueError(
            f"kernel {_by(kernel_t)} with dilation {dilation} spans {_by(spans)} pixels, "
            f"larger than the padded input {_by(g.padded)} (x shape {tuple(x_shape)}, padding {pad})"
        )
    return g


@functools.lru_cache(maxsize=256)  # a geometry remembered by _remembered gives the same one
def transposed_geometry(g: ConvGeometry) -> ConvGeometry | None:
    """For stride 1, the input gradient is itself a stride-1 convolution: of ``grad_output``
    padded by ``dilation·(k - 1) - pad`` with the flipped, transposed kernel ``(C, O/groups, *kernel)``.
    ``None`` where that does not apply (stride > 1, or padding beyond the kernel's reach)."""
    fulls = [d * (k - 1) for k, d in zip(g.kernel, g.dilation, strict=True)]
    if any(s != 1 for s in g.stride) or any(max(p) > f for p, f in zip(g.pad, fulls, strict=True)):
        return None
    pad = tuple((f - b, f - a) for f, (b, a) in zip(fulls, g.pad, strict=True))
    return ConvGeometry(g.n, g.o, g.out, g.c, g.kernel, g.groups, (1,) * g.dims, g.dilation, pad)


def pooled_size(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size along one axis: ``(size + 2·pad - dilation·(kernel - 1) - 1) / stride + 1``
    rounded down, or up with ``ceil_mode`` — where the last window must then start inside the
    input or its left padding (else it is dropped)."""
    out = (size + 2 * pad - span(kernel, dilation) + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


@_remembered
def pool_geometry(
    x_shape: Sequence[int],
    kernel_size: IntTuple,
    stride: IntTuple | None,
    padding: IntTuple,
    dilation: IntTuple,
    ceil_mode: bool,
) -> ConvGeometry:
    """Check a pooling's arguments against ``x_shape`` and return the geometry of its windows:
    a depthwise (``groups = C``) geometry whose far padding reaches the end of the last window
    (beyond the requested padding where ``ceil_mode`` adds a window)."""
    dims = len(x_shape) - 2
    kernel = as_tuple(kernel_size, "kernel_size", dims, minimum=1)
    stride = kernel if stride is None else as_tuple(stride, "stride", dims, minimum=1)
    padding = as_tuple(padding, "padding", dims, minimum=0)
    dilation = as_tuple(dilation, "dilation", dims, minimum=1)
    ceil_mode = as_bool(ceil_mode, "ceil_mode")
    if any(p > k // 2 for p, k in zip(padding, kernel, strict=True)):
        raise ValueError(
            f"padding must be at most half of kernel_size, as in PyTorch: got padding={padding} "
            f"for kernel_size={kernel}"
        )
    n, c, *size = x_shape
    out = [
        pooled_size(s, k, st, p, d, ceil_mode)
        for s, k, st, p, d in zip(size, kernel, stride, padding, dilation, strict=True)
    ]
    if min(out) < 1:
        raise ValueError(
            f"x of shape {tuple(x_shape)} is too small for kernel_size={kernel} with padding={padding} "
            f"and dilation={dilation}: the output would be {_by(out)}"
        )
    pad = tuple(
        (p, max(p, (m - 1) * st + span(k, d) - s - p))  # the far padding the windows reach
        for s, k, st, p, d, m in zip(size, kernel, stride, padding, dilation, out, strict=True)
    )
    return ConvGeometry(n, c, tuple(size), c, kernel, c, stride, dilation, pad)


@_remembered
def conv_transpose_geometry(
    x_shape: Sequence[int],
    weight_shape: Sequence[int],
    bias_shape: Sequence[int] | None,
    *,
    stride: IntTuple = 1,
    padding: IntTuple = 0,
    output_padding: IntTuple = 0,
    groups: int = 1,
    dilation: IntTuple = 1,
) -> tuple[ConvGeometry, tuple[int, ...]]:
    """Check a transposed convolution's shapes and hyperparameters; return the geometry of the
    convolution it is the adjoint of, and the transposed convolution's output size.

    With ``x`` ``(N, C_in, *size)`` and ``weight`` ``(C_in, C_out/groups, *kernel)``, per axis

        size_out = (size - 1)·stride - 2·padding + dilation·(kernel - 1) + output_padding + 1

    and the convolution maps ``(N, C_out, *size_out)`` to ``x``'s shape with the same weight
    read as ``(O, C/groups, *kernel)``.  Where ``output_padding`` reaches a whole stride (it may,
    when smaller than the dilation), the last rows of the output are read by no window; the
    convolution's geometry then covers the first ``size_out`` minus those rows, which stay zero.
    """
    dims = len(x_shape) - 2
    stride = as_tuple(stride, "stride", dims, minimum=1)
    dilation = as_tuple(dilation, "dilation", dims, minimum=1)
    padding = as_tuple(padding, "padding", dims, minimum=0)
    output_padding = as_tuple(output_padding, "output_padding", dims, minimum=0)
    groups = as_positive_int(groups, "groups")
    n, c_in, *size = x_shape
    ci, cog, *kernel = weight_shape
    if len(kernel) != dims:
        raise ValueError(
            f"weight must have {dims + 2} dimensions (C_in, C_out/groups, {_kernel_axes(dims)}) for x of shape "
            f"{tuple(x_shape)}, got shape {tuple(weight_shape)}"
        )
    if min(ci, cog, *kernel) < 1:
        raise ValueError(
            f"weight must have non-empty dimensions (C_in, C_out/groups, {_kernel_axes(dims)}), got shape {tuple(weight_shape)}"
        )
    if ci != c_in:
        raise ValueError(
            f"weight has {ci} input channels in its first dimension (C_in, C_out/groups, {_kernel_axes(dims)}) but x has {c_in}"
        )
    if c_in % groups:
        raise ValueError(f"groups={groups} must divide the input channels, but x has {c_in}")
    c_out = cog * groups
    if bias_shape is not None and tuple(bias_shape) != (c_out,):
        raise ValueError(
            f"bias must have shape ({c_out},) to match weight {tuple(weight_shape)} with groups={groups}, "
            f"got {tuple(bias_shape)}"
        )
    if any(op >= max(s, d) for op, s, d in zip(output_padding, stride, dilation, strict=True)):
        raise ValueError(
            f"output_padding must be smaller than either stride or dilation, as in PyTorch: got "
            f"output_padding={output_padding}, stride={stride}, dilation={dilation}"
        )
    sizes, pads, used = [], [], []
    for s, k, st, p, d, op in zip(size, kernel, stride, padding, dilation, output_padding, strict=True):
        full = (s - 1) * st - 2 * p + d * (k - 1) + op + 1
        end = p - st * (op // st)  # the far padding that gives exactly `s` windows (negative: unread rows)
        sizes.append(full)
        used.append(full - max(0, -end))
        pads.append((p, max(0, end)))
    if min(sizes) < 1:
        raise ValueError(
            f"the transposed convolution's output would be {_by(sizes)} for x of shape {tuple(x_shape)}, "
            f"kernel {_by(kernel)}, stride {stride}, padding {padding}, dilation {dilation}, "
            f"output_padding {output_padding}"
        )
    g = ConvGeometry(n, c_out, tuple(used), c_in, tuple(kernel), groups, stride, dilation, tuple(pads))
    return g, tuple(sizes)
