"""The benchmarks' re-implementation of the book's approach must itself be right."""

import numpy as np
import pytest

from xpconv.tools.book import book_conv2d, book_conv2d_weight_grad

import oracle
from cases import assert_close, random_array


@pytest.mark.parametrize(
    ("n", "c", "h", "w", "o", "k", "s", "p", "g"),
    [
        (3, 2, 7, 5, 4, 3, 1, 1, 1),
        (2, 4, 8, 8, 6, 3, 2, 1, 2),
        (2, 3, 6, 6, 3, 3, 1, 1, 3),
        (2, 5, 4, 4, 3, 1, 1, 0, 1),
        (2, 1, 9, 9, 2, 5, 1, 2, 1),
    ],
)
def test_book_matches_oracle(rng, n, c, h, w, o, k, s, p, g):
    x, wt = random_array(rng, (n, c, h, w)), random_array(rng, (o, c // g, k, k))
    stride, pad = (s, s), (p, p, p, p)
    y = oracle.oracle_conv(x, wt, None, stride, pad, (1, 1), g)
    assert_close(book_conv2d(x, wt, stride=s, padding=p, groups=g), y, np.float64)
    go = random_array(rng, y.shape)
    _, dw, _ = oracle.oracle_conv_grads(go, x, wt, stride, pad, (1, 1), g)
    assert_close(book_conv2d_weight_grad(go, x, wt, stride=s, padding=p, groups=g), dw, np.float64)
