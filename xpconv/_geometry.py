"""The sizes of one convolution (or pooling, or transposed convolution), from shapes and
hyperparameters, checked once.

Notation: input ``(N, C, H, W)``, weight ``(O, C/groups, kh, kw)``, output ``(N, O, oh, ow)``;
per spatial axis, with ``pad`` the padding added before + after,

    oh = (H + pad - dilation·(kh - 1) - 1) // stride + 1

:func:`conv_geometry` is the only place that turns user arguments into a :class:`ConvGeometry`;
everything after it (patches, GEMMs, benchmarks' FLOP counts) reads sizes from there.
Pooling and transposed convolution are described by the same :class:`ConvGeometry`
(:func:`pool_geometry`, :func:`conv_transpose_geometry`), so they run on the same patch code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._checks import as_bool, as_pair, as_positive_int
from ._types import IntPair, Padding

__all__ = [
    "ConvGeometry",
    "conv_geometry",
    "conv_transpose_geometry",
    "pool_geometry",
    "pooled_size",
    "resolve_padding",
    "transposed_geometry",
]


@dataclass(frozen=True)
class ConvGeometry:
    """Every size of one convolution, computed once from the shapes and hyperparameters."""

    n: int
    c: int
    h: int
    w: int
    o: int
    kh: int
    kw: int
    groups: int
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pad: tuple[int, int, int, int]  # (top, bottom, left, right)

    @property
    def padded(self) -> tuple[int, int]:
        top, bottom, left, right = self.pad
        return self.h + top + bottom, self.w + left + right

    @property
    def out(self) -> tuple[int, int]:
        """Output size: ``(H + pad - dilation·(k - 1) - 1) // stride + 1`` per axis."""
        hp, wp = self.padded
        oh = (hp - self.dilation[0] * (self.kh - 1) - 1) // self.stride[0] + 1
        ow = (wp - self.dilation[1] * (self.kw - 1) - 1) // self.stride[1] + 1
        return oh, ow

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.o, *self.out)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.o, self.c // self.groups, self.kh, self.kw)

    @property
    def flops(self) -> float:
        """Multiply-adds ×2 of one pass of the direct convolution: ``2·N·O·oh·ow·(C/groups)·kh·kw``."""
        oh, ow = self.out
        return 2.0 * self.n * self.o * oh * ow * (self.c // self.groups) * self.kh * self.kw

    @property
    def is_pointwise(self) -> bool:
        """A 1×1 kernel, stride 1, no padding: the patches are the input itself."""
        return (self.kh, self.kw, self.stride) == (1, 1, (1, 1)) and not any(self.pad)

    def window(self, i: int, j: int) -> tuple[slice, slice]:
        """Rows and columns of the padded input that kernel offset ``(i, j)`` touches."""
        (oh, ow), (sh, sw), (dh, dw) = self.out, self.stride, self.dilation
        return (
            slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
            slice(j * dw, j * dw + sw * (ow - 1) + 1, sw),
        )


def resolve_padding(
    padding: Padding, kernel: tuple[int, int], dilation: tuple[int, int], stride: tuple[int, int]
) -> tuple[int, int, int, int]:
    """``int | pair | "valid" | "same"`` -> ``(top, bottom, left, right)``."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding != "same":
            raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
        if stride != (1, 1):
            raise ValueError(f"padding='same' needs stride 1, got stride={stride}")
        pads = []
        for k, d in zip(kernel, dilation, strict=True):
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]  # the odd extra row/column goes bottom/right
        return (pads[0], pads[1], pads[2], pads[3])
    ph, pw = as_pair(padding, "padding", minimum=0)
    return (ph, ph, pw, pw)


def conv_geometry(
    x_shape: Sequence[int],
    weight_shape: Sequence[int],
    bias_shape: Sequence[int] | None,
    *,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> ConvGeometry:
    """Check the shapes (``bias_shape`` may be ``None``) and hyperparameters of a convolution
    against each other and return its :class:`ConvGeometry`."""
    stride = as_pair(stride, "stride", minimum=1)
    dilation = as_pair(dilation, "dilation", minimum=1)
    groups = as_positive_int(groups, "groups")
    n, c, h, w = x_shape
    o, cg, kh, kw = weight_shape
    if min(o, cg, kh, kw) < 1:
        raise ValueError(
            f"weight must have non-empty dimensions (O, C/groups, kh, kw), got shape {tuple(weight_shape)}"
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
    pad = resolve_padding(padding, (kh, kw), dilation, stride)
    span = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
    limit = (max(h, span[0]), max(w, span[1]))  # beyond this, the output would be mostly padding
    if max(pad[:2]) > limit[0] or max(pad[2:]) > limit[1]:
        raise ValueError(
            f"padding {padding!r} is larger than the input ({h}x{w}) and the kernel's span ({span[0]}x{span[1]}): "
            f"the output would be mostly padding; at most {limit[0]} rows and {limit[1]} columns a side"
        )
    g = ConvGeometry(n, c, h, w, o, kh, kw, groups, stride, dilation, pad)
    hp, wp = g.padded
    if span[0] > hp or span[1] > wp:
        raise ValueError(
            f"kernel {kh}x{kw} with dilation {dilation} spans {span[0]}x{span[1]} pixels, "
            f"larger than the padded input {hp}x{wp} (x shape {tuple(x_shape)}, padding {pad})"
        )
    return g


def transposed_geometry(g: ConvGeometry) -> ConvGeometry | None:
    """For stride 1, the input gradient is itself a stride-1 convolution: of ``grad_output``
    padded by ``dilation·(k - 1) - pad`` with the flipped, transposed kernel ``(C, O/groups, kh, kw)``.
    ``None`` where that does not apply (stride > 1, or padding beyond the kernel's reach)."""
    (dh, dw), (top, bottom, left, right) = g.dilation, g.pad
    full_h, full_w = dh * (g.kh - 1), dw * (g.kw - 1)
    if g.stride != (1, 1) or max(top, bottom) > full_h or max(left, right) > full_w:
        return None
    oh, ow = g.out
    pad = (full_h - top, full_h - bottom, full_w - left, full_w - right)
    return ConvGeometry(g.n, g.o, oh, ow, g.c, g.kh, g.kw, g.groups, (1, 1), g.dilation, pad)


def pooled_size(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size along one axis: ``(size + 2·pad - dilation·(kernel - 1) - 1) / stride + 1``
    rounded down, or up with ``ceil_mode`` — where the last window must then start inside the
    input or its left padding (else it is dropped)."""
    span = dilation * (kernel - 1) + 1
    out = (size + 2 * pad - span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def pool_geometry(
    x_shape: Sequence[int],
    kernel_size: IntPair,
    stride: IntPair | None,
    padding: IntPair,
    dilation: IntPair,
    ceil_mode: bool,
) -> ConvGeometry:
    """Check a pooling's arguments against ``x_shape`` and return the geometry of its windows:
    a depthwise (``groups = C``) geometry whose bottom/right padding reaches the end of the last
    window (beyond the requested padding where ``ceil_mode`` adds a window)."""
    kh, kw = as_pair(kernel_size, "kernel_size", minimum=1)
    stride = (kh, kw) if stride is None else as_pair(stride, "stride", minimum=1)
    ph, pw = as_pair(padding, "padding", minimum=0)
    dilation = as_pair(dilation, "dilation", minimum=1)
    ceil_mode = as_bool(ceil_mode, "ceil_mode")
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(
            f"padding must be at most half of kernel_size, as in PyTorch: got padding=({ph}, {pw}) "
            f"for kernel_size=({kh}, {kw})"
        )
    n, c, h, w = x_shape
    oh = pooled_size(h, kh, stride[0], ph, dilation[0], ceil_mode)
    ow = pooled_size(w, kw, stride[1], pw, dilation[1], ceil_mode)
    if oh < 1 or ow < 1:
        raise ValueError(
            f"x of shape {tuple(x_shape)} is too small for kernel_size=({kh}, {kw}) with padding=({ph}, {pw}) "
            f"and dilation={dilation}: the output would be {oh}x{ow}"
        )
    end_h = (oh - 1) * stride[0] + dilation[0] * (kh - 1) + 1  # padded rows the windows reach
    end_w = (ow - 1) * stride[1] + dilation[1] * (kw - 1) + 1
    pad = (ph, max(ph, end_h - h - ph), pw, max(pw, end_w - w - pw))
    return ConvGeometry(n, c, h, w, c, kh, kw, c, stride, dilation, pad)


def conv_transpose_geometry(
    x_shape: Sequence[int],
    weight_shape: Sequence[int],
    bias_shape: Sequence[int] | None,
    *,
    stride: IntPair = 1,
    padding: IntPair = 0,
    output_padding: IntPair = 0,
    groups: int = 1,
    dilation: IntPair = 1,
) -> tuple[ConvGeometry, tuple[int, int]]:
    """Check a transposed convolution's shapes and hyperparameters; return the geometry of the
    convolution it is the adjoint of, and the transposed convolution's output size.

    With ``x`` ``(N, C_in, H, W)`` and ``weight`` ``(C_in, C_out/groups, kh, kw)``, per axis

        H_out = (H - 1)·stride - 2·padding + dilation·(kh - 1) + output_padding + 1

    and the convolution maps ``(N, C_out, H_out, W_out)`` to ``x``'s shape with the same weight
    read as ``(O, C/groups, kh, kw)``.  Where ``output_padding`` reaches a whole stride (it may,
    when smaller than the dilation), the last rows of the output are read by no window; the
    convolution's geometry then covers the first ``H_out`` minus those rows, which stay zero.
    """
    stride = as_pair(stride, "stride", minimum=1)
    dilation = as_pair(dilation, "dilation", minimum=1)
    ph, pw = as_pair(padding, "padding", minimum=0)
    output_padding = as_pair(output_padding, "output_padding", minimum=0)
    groups = as_positive_int(groups, "groups")
    n, c_in, h, w = x_shape
    ci, cog, kh, kw = weight_shape
    if min(ci, cog, kh, kw) < 1:
        raise ValueError(
            f"weight must have non-empty dimensions (C_in, C_out/groups, kh, kw), got shape {tuple(weight_shape)}"
        )
    if ci != c_in:
        raise ValueError(
            f"weight has {ci} input channels in its first dimension (C_in, C_out/groups, kh, kw) but x has {c_in}"
        )
    if c_in % groups:
        raise ValueError(f"groups={groups} must divide the input channels, but x has {c_in}")
    c_out = cog * groups
    if bias_shape is not None and tuple(bias_shape) != (c_out,):
        raise ValueError(
            f"bias must have shape ({c_out},) to match weight {tuple(weight_shape)} with groups={groups}, "
            f"got {tuple(bias_shape)}"
        )
    for axis in (0, 1):
        if output_padding[axis] >= max(stride[axis], dilation[axis]):
            raise ValueError(
                f"output_padding must be smaller than either stride or dilation, as in PyTorch: got "
                f"output_padding={output_padding}, stride={stride}, dilation={dilation}"
            )
    sizes, pads, used = [], [], []
    for size, k, s, p, d, op in zip((h, w), (kh, kw), stride, (ph, pw), dilation, output_padding, strict=True):
        full = (size - 1) * s - 2 * p + d * (k - 1) + op + 1
        end = p - s * (op // s)  # the far padding that gives exactly `size` windows (negative: unread rows)
        sizes.append(full)
        used.append(full - max(0, -end))
        pads += [p, max(0, end)]
    if min(sizes) < 1:
        raise ValueError(
            f"the transposed convolution's output would be {sizes[0]}x{sizes[1]} for x of shape {tuple(x_shape)}, "
            f"kernel {kh}x{kw}, stride {stride}, padding ({ph}, {pw}), dilation {dilation}, "
            f"output_padding {output_padding}"
        )
    g = ConvGeometry(
        n, c_out, used[0], used[1], c_in, kh, kw, groups, stride, dilation, (pads[0], pads[1], pads[2], pads[3])
    )
    return g, (sizes[0], sizes[1])
