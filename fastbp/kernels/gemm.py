"""Large matrix products through BLAS, split into blocks fixed by the shapes alone.

OpenBLAS gives different last bits for the same product at different thread
counts (its edge kernels run on different rows when the work is split
differently).  fastbp therefore runs SciPy's BLAS (the one ``np.dot`` inside
``@njit`` calls) on one thread and splits each product itself, into blocks that
depend only on the shapes; the blocks run in parallel, so the numbers are the
same for any number of threads.

* ``x W`` and ``g W^T`` are split by rows of the output (up to ``ROW_BLOCKS``
  blocks, each a multiple of 16 rows, none below ``MIN_BLOCK_ROWS``).
* ``x^T g`` (a weight gradient) sums over the batch, so it is split into two
  halves of the batch whose products are added in a fixed order: dW = x_1^T g_1
  + x_2^T g_2, the second half going through a workspace.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from .._config import MIN_BLOCK_ROWS, ROW_BLOCKS, jit, jit_parallel


@jit
def block_rows(m):
    """Rows per block for an m-row product: up to ROW_BLOCKS blocks of at least
    MIN_BLOCK_ROWS rows, each a multiple of 16 rows (m itself when too small)."""
    blocks = min(ROW_BLOCKS, m // MIN_BLOCK_ROWS)
    if blocks <= 1:
        return m
    rows = (m + blocks - 1) // blocks
    return (rows + 15) // 16 * 16


@jit_parallel
def matmul_rows(A, B, out, parallel):
    """out <- A B by fixed row blocks.  A : (m, k); B : (k, n) (C or F order); out : (m, n)."""
    m = A.shape[0]
    rows = block_rows(m)
    nb = (m + rows - 1) // rows
    if parallel and nb > 1:
        for b in prange(nb):
            i0 = b * rows
            i1 = min(m, i0 + rows)
            np.dot(A[i0:i1], B, out[i0:i1])
    else:
        for b in range(nb):
            i0 = b * rows
            i1 = min(m, i0 + rows)
            np.dot(A[i0:i1], B, out[i0:i1])


@jit
def _half(m):
    if m < 2 * MIN_BLOCK_ROWS:
        return m
    return (m // 2 + 15) // 16 * 16


@jit
def _half_product(x, g, out, second, h, b):
    # b = 0: out <- x[:h]^T g[:h];  b = 1: second <- x[h:]^T g[h:]
    if b == 0:
        np.dot(x[:h].T, g[:h], out)
    else:
        np.dot(x[h:].T, g[h:], second)


@jit
def _add_row(row, add):
    for j in range(row.shape[0]):
        row[j] += add[j]


@jit_parallel
def matmul_tn(x, g, out, work, parallel):
    """out <- x^T g, the batch split in two fixed halves.

    x : (m, k); g : (m, n); out : (k, n); work : (>= k n,) workspace.
    """
    m = x.shape[0]
    h = _half(m)
    if h == m:
        np.dot(x.T, g, out)
        return
    k, n = out.shape
    second = work[:k * n].reshape((k, n))
    if parallel:
        for b in prange(2):
            _half_product(x, g, out, second, h, b)
        for i in prange(k):
            _add_row(out[i], second[i])
    else:
        for b in range(2):
            _half_product(x, g, out, second, h, b)
        for i in range(k):
            _add_row(out[i], second[i])
