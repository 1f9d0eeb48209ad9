"""The engine's two view helpers: ``shaped`` (a flat buffer as a C-ordered block, without
numba's reshape helper) and ``borrowed`` (a bundle's arrays without reference counts)."""
import gc
from collections import namedtuple

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from fastbp.engine.bundles import borrowed
from fastbp.kernels.views import shaped


@njit
def _block(flat, off, shape):
    n = 1
    for d in shape:
        n *= d
    return shaped(flat[off:off + n], shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4), (0, 4), (4, 1)])
def test_shaped_equals_reshape(dtype, shape):
    flat = np.arange(40).astype(dtype)
    n = int(np.prod(shape))
    got = _block(flat, 3, shape)
    want = flat[3:3 + n].reshape(shape)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert got.strides == want.strides and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)


def test_shaped_shares_memory_and_keeps_it_alive():
    flat = np.zeros(12)
    view = _block(flat, 2, (2, 5))
    view[1, 3] = 7.0
    assert flat[2 + 5 + 3] == 7.0  # the same memory
    del flat
    gc.collect()
    other = [np.full(12, -1.0) for _ in range(50)]  # reuse freed memory, if it were freed
    assert view[1, 3] == 7.0 and view.sum() == 7.0
    del other


def test_shaped_refuses_a_size_that_is_not_the_shape():
    @njit
    def wrong(flat):
        return shaped(flat[:6], (2, 4))
    with pytest.raises(ValueError, match="product of the shape"):
        wrong(np.zeros(10))


Pair = namedtuple("Pair", ["a", "b", "k"])


@njit
def _add_through_borrowed(pair, x):
    pair = borrowed(pair)
    for i in range(pair.a.shape[0]):
        pair.a[i] += x * pair.b[i]
    return pair.k + pair.a.sum()


def test_borrowed_writes_to_the_callers_arrays():
    pair = Pair(np.ones(4), np.arange(4.0), 10)
    total = _add_through_borrowed(pair, 2.0)
    np.testing.assert_array_equal(pair.a, [1.0, 3.0, 5.0, 7.0])
    assert total == 10 + 16.0
    np.testing.assert_array_equal(pair.b, np.arange(4.0))


def test_borrowed_takes_tuples_only():
    @njit
    def not_a_tuple(a):
        return borrowed(a)
    with pytest.raises(TypingError):
        not_a_tuple(np.zeros(3))
