"""Every bad input gets a TypeError or ValueError that names the argument and the values."""

import numpy as np
import pytest

import xpconv

X = np.zeros((2, 3, 8, 8), np.float32) + 0.5
W = np.zeros((4, 3, 3, 3), np.float32) + 0.25
B = np.zeros(4, np.float32)


def conv(**kw):
    args = dict(x=X, weight=W, bias=B)
    args.update(kw)
    return xpconv.conv2d(args.pop("x"), args.pop("weight"), args.pop("bias"), **args)


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        (dict(x=X[0]), ValueError, ["conv2d: x must be (N, C, H, W), got shape (3, 8, 8)"]),
        (dict(weight=W[0]), ValueError, ["conv2d: weight must be (O, C/groups, kh, kw), got shape (3, 3, 3)"]),
        (
            dict(weight=np.zeros((4, 2, 3, 3), np.float32)),
            ValueError,
            ["2 input channels per group", "x has 3 channels", "groups=1"],
        ),
        (dict(groups=2), ValueError, ["groups=2", "divide the input channels", "3 channels"]),
        (
            dict(x=np.zeros((2, 4, 8, 8), np.float32), weight=np.zeros((3, 2, 3, 3), np.float32), bias=None, groups=2),
            ValueError,
            ["groups=2", "output channels", "3"],
        ),
        (dict(stride=0), ValueError, ["stride must be positive", "0"]),
        (dict(stride=(1, -1)), ValueError, ["stride must be positive"]),
        (dict(dilation=0), ValueError, ["dilation must be positive"]),
        (dict(groups=0), ValueError, ["groups must be positive"]),
        (dict(padding=-1), ValueError, ["padding must be non-negative", "-1"]),
        (dict(padding="full"), ValueError, ["padding must be", "'full'"]),
        (dict(padding="same", stride=2), ValueError, ["padding='same' needs stride 1", "(2, 2)"]),
        (
            dict(weight=np.zeros((4, 3, 9, 3), np.float32)),
            ValueError,
            ["kernel 9x3", "larger than the padded input 8x8"],
        ),
        (dict(weight=np.zeros((4, 3, 3, 3), np.float32), dilation=4), ValueError, ["spans 9x9", "8x8"]),
        (dict(bias=np.zeros(5, np.float32)), ValueError, ["bias must have shape (4,)", "(5,)"]),
        (dict(bias=np.zeros((4, 1), np.float32)), ValueError, ["bias must have 1 dimension,"]),
        (dict(x=X.astype(np.int32)), TypeError, ["x must be float16, float32 or float64", "int32"]),
        (dict(x=X.astype(bool)), TypeError, ["x must be float", "bool"]),
        (dict(x=X.tolist()), TypeError, ["x must be a NumPy or CuPy array", "list"]),
        (dict(weight=W.astype(np.float64)), TypeError, ["share one dtype", "x is float32", "weight is float64"]),
        (dict(stride=1.5), TypeError, ["stride must be an int or a pair of ints", "1.5"]),
        (dict(stride=True), TypeError, ["stride must be an int or a pair"]),
        (dict(padding=(1, 2, 3)), TypeError, ["padding must be an int or a pair"]),
        (dict(groups=1.0), TypeError, ["groups must be an int"]),
        (dict(weight=np.zeros((0, 3, 3, 3), np.float32), bias=None), ValueError, ["non-empty", "(0, 3, 3, 3)"]),
        (dict(workspace_bytes=0), ValueError, ["workspace_bytes must be positive"]),
    ],
)
def test_conv2d_bad_input(kwargs, exc, words):
    with pytest.raises(exc) as info:
        conv(**kwargs)
    for word in words:
        assert word in str(info.value), f"{word!r} not in {info.value!r}"


def test_conv2d_backward_wrong_grad_shape():
    with pytest.raises(
        ValueError, match=r"grad_output must have the forward output's shape \(2, 4, 6, 6\), got \(2, 4, 8, 8\)"
    ):
        xpconv.conv2d_backward(np.zeros((2, 4, 8, 8), np.float32), X, W)
    with pytest.raises(ValueError, match="grad_output must have the forward output's shape"):
        xpconv.conv2d_backward(np.zeros((2, 4, 36), np.float32), X, W)
    with pytest.raises(TypeError, match="grad_output is float64"):
        xpconv.conv2d_backward(np.zeros((2, 4, 6, 6)), X, W)
    with pytest.raises(TypeError, match="grad_output must be a NumPy or CuPy array"):
        xpconv.conv2d_backward(3.0, X, W)


@pytest.mark.parametrize(
    ("args", "exc", "words"),
    [
        ((np.zeros((2, 3)), np.zeros((4, 5))), ValueError, ["weight has 5 input features", "x has 3"]),
        ((np.zeros(3), np.zeros((4, 3))), ValueError, ["x must have 2 dimensions", "(3,)"]),
        ((np.zeros((2, 3)), np.zeros((4, 3)), np.zeros(3)), ValueError, ["bias must have shape (4,)", "(3,)"]),
        ((np.zeros((2, 3), np.int64), np.zeros((4, 3))), TypeError, ["x must be float", "int64"]),
        ((np.zeros((2, 3), np.float32), np.zeros((4, 3))), TypeError, ["x is float32", "weight is float64"]),
    ],
)
def test_dense_bad_input(args, exc, words):
    with pytest.raises(exc) as info:
        xpconv.dense(*args)
    for word in words:
        assert word in str(info.value)


def test_dense_backward_wrong_grad_shape():
    with pytest.raises(ValueError, match=r"grad_output must have the forward output's shape \(2, 4\), got \(2, 3\)"):
        xpconv.dense_backward(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((4, 3)))


def test_bias_bad_input():
    with pytest.raises(ValueError, match=r"bias has 3 entries but x has 4 along axis 1"):
        xpconv.bias_add(np.zeros((2, 4)), np.zeros(3))
    with pytest.raises(ValueError, match="axis 2 is out of range for x with 2 dimensions"):
        xpconv.bias_add(np.zeros((2, 4)), np.zeros(4), axis=2)
    with pytest.raises(TypeError, match="axis must be an int"):
        xpconv.bias_backward(np.zeros((2, 4)), axis=1.0)
    with pytest.raises(TypeError, match="grad_output must be float"):
        xpconv.bias_backward(np.zeros((2, 4), np.int8))


# --- pooling and transposed convolution ---------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "exc", "words"),
    [
        (lambda: xpconv.max_pool2d(X, 0), ValueError, ["kernel_size must be positive", "0"]),
        (lambda: xpconv.max_pool2d(X, 2, stride=0), ValueError, ["stride must be positive"]),
        (lambda: xpconv.max_pool2d(X, 2, dilation=(1, 0)), ValueError, ["dilation must be positive"]),
        (lambda: xpconv.max_pool2d(X, 2, padding=-1), ValueError, ["padding must be non-negative"]),
        (lambda: xpconv.max_pool2d(X, 3, padding=2), ValueError, ["padding must be at most half", "(2, 2)", "(3, 3)"]),
        (lambda: xpconv.max_pool2d(X, 9), ValueError, ["too small", "(2, 3, 8, 8)", "0x0"]),
        (lambda: xpconv.max_pool2d(X, 2.0), TypeError, ["kernel_size must be an int or a pair", "2.0"]),
        (lambda: xpconv.max_pool2d(X, 2, ceil_mode="yes"), TypeError, ["ceil_mode must be True or False"]),
        (lambda: xpconv.max_pool2d(X[0], 2), ValueError, ["max_pool2d: x must be (N, C, H, W)"]),
        (lambda: xpconv.max_pool2d(None, 2), TypeError, ["x must be a NumPy or CuPy array", "NoneType"]),
        (lambda: xpconv.max_pool2d(X.astype(int), 2), TypeError, ["x must be float16, float32 or float64"]),
        (lambda: xpconv.max_pool2d(X, 2, workspace_bytes=0), ValueError, ["workspace_bytes must be positive"]),
        (
            lambda: xpconv.max_pool2d_backward(np.zeros((2, 3, 3, 3), np.float32), X, 2),
            ValueError,
            ["grad_output must have the forward output's shape (2, 3, 4, 4)", "(2, 3, 3, 3)"],
        ),
        (
            lambda: xpconv.max_pool2d_backward(np.zeros((2, 3, 4, 4)), X, 2),
            TypeError,
            ["share one dtype", "grad_output is float64", "x is float32"],
        ),
        (lambda: xpconv.avg_pool2d(X, 2, divisor_override=0), ValueError, ["divisor_override must not be zero"]),
        (lambda: xpconv.avg_pool2d(X, 2, divisor_override=1.5), TypeError, ["divisor_override must be an int"]),
        (lambda: xpconv.avg_pool2d(X, 2, count_include_pad=1), TypeError, ["count_include_pad must be True or False"]),
        (lambda: xpconv.avg_pool2d(X, 4, padding=3), ValueError, ["padding must be at most half"]),
        (
            lambda: xpconv.conv_transpose2d(X, np.zeros((4, 2, 3, 3), np.float32)),
            ValueError,
            ["weight has 4 input channels", "(C_in, C_out/groups, kh, kw)", "x has 3"],
        ),
        (
            lambda: xpconv.conv_transpose2d(X, np.zeros((3, 2, 3, 3), np.float32), groups=2),
            ValueError,
            ["groups=2 must divide the input channels", "3"],
        ),
        (
            lambda: xpconv.conv_transpose2d(X, np.zeros((3, 2, 3, 3), np.float32), stride=2, output_padding=2),
            ValueError,
            ["output_padding must be smaller than either stride or dilation", "(2, 2)"],
        ),
        (
            lambda: xpconv.conv_transpose2d(X, np.zeros((3, 2, 3, 3), np.float32), padding=6),
            ValueError,
            ["output would be", "x of shape (2, 3, 8, 8)"],
        ),
        (
            lambda: xpconv.conv_transpose2d(X, np.zeros((3, 2, 3, 3), np.float32), padding="same"),
            TypeError,
            ["padding must be an int or a pair", "'same'"],
        ),
        (
            lambda: xpconv.conv_transpose2d(X, np.zeros((3, 2, 3, 3), np.float32), np.zeros(3, np.float32)),
            ValueError,
            ["bias must have shape (2,)", "(3,)"],
        ),
        (
            lambda: xpconv.conv_transpose2d(X, np.zeros((3, 0, 3, 3), np.float32)),
            ValueError,
            ["weight must have non-empty dimensions"],
        ),
        (
            lambda: xpconv.conv_transpose2d_backward(
                np.zeros((2, 2, 9, 9), np.float32), X, np.zeros((3, 2, 3, 3), np.float32)
            ),
            ValueError,
            ["grad_output must have the forward output's shape (2, 2, 10, 10)", "(2, 2, 9, 9)"],
        ),
        (
            lambda: xpconv.conv_transpose2d_backward(
                np.zeros((2, 2, 10, 10), np.float32), X, np.zeros((3, 2, 3, 3), np.float32), with_bias="no"
            ),
            TypeError,
            ["with_bias must be True or False", "'no'"],
        ),
        (
            lambda: xpconv.conv_transpose2d(X, np.zeros((3, 2, 3, 3), np.float32), stride=2, algorithm="winograd"),
            ValueError,
            ["algorithm='winograd' needs", "stride (2, 2)"],
        ),
    ],
)
def test_pooling_and_transposed_errors(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize(
    ("stride", "exc", "words"),
    [
        (True, TypeError, ["stride must be an int or a pair of ints", "True"]),
        ((1, True), TypeError, ["stride", "True"]),
        (0, ValueError, ["stride must be positive", "0"]),
        ([1, 0], ValueError, ["stride must be positive"]),
    ],
)
def test_remembered_geometries_still_check(stride, exc, words):
    """The geometries are remembered for plain arguments: a call with ``stride=1`` first, and a
    remembered ``1`` is never taken for ``True`` nor a wrong argument for a right one."""
    conv(stride=1)
    conv(stride=1)
    with pytest.raises(exc) as info:
        conv(stride=stride)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    with pytest.raises(exc):
        conv(stride=stride)  # errors are not remembered either
    with pytest.raises(TypeError, match="kernel_size"):
        xpconv.max_pool2d(X, kernel_size=(2, True))
