"""The sizes of one convolution, from shapes and hyperparameters, checked once.

Notation: input ``(N, C, H, W)``, weight ``(O, C/groups, kh, kw)``, output ``(N, O, oh, ow)``;
per spatial axis, with ``pad`` the padding added before + after,

    oh = (H + pad - dilation·(kh - 1) - 1) // stride + 1

:func:`conv_geometry` is the only place that turns user arguments into a :class:`ConvGeometry`;
everything after it (patches, GEMMs, benchmarks' FLOP counts) reads sizes from there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._checks import as_pair, as_positive_int
from ._types import IntPair, Padding

__all__ = ["ConvGeometry", "conv_geometry", "resolve_padding", "transposed_geometry"]


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
    g = ConvGeometry(n, c, h, w, o, kh, kw, groups, stride, dilation, pad)
    hp, wp = g.padded
    span = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
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
