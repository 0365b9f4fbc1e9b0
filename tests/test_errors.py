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
        (dict(x=X[0]), ValueError, ["x must have 4 dimensions", "(3, 8, 8)"]),
        (dict(weight=W[0]), ValueError, ["weight must have 4 dimensions"]),
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
    with pytest.raises(ValueError, match="grad_output must have 4 dimensions"):
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
