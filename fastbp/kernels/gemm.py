"""Large matrix products through BLAS, split into blocks fixed by the shapes alone.

OpenBLAS gives different last bits for the same product at different thread
counts (its edge kernels run on different rows when the work is split
differently).  fastbp therefore runs SciPy's BLAS on one thread and splits each
product itself into blocks of the output that depend only on the shapes; the
blocks run in parallel, so the numbers are the same for any number of threads.

The output ``out (m, n)`` of a product of at least ``MIN_SPLIT_WORK``
multiply-adds is cut along its longer side into up to ``GEMM_BLOCKS`` blocks of
at least ``MIN_BLOCK`` rows or columns.  Every block but the last is the
multiple of 16 nearest to an equal share; the last takes the rest (a side of 200
splits 96 + 104: 43 us for a 64x250x200 product on two threads, against 46 us
for 112 + 88).  Every block is a whole product over the inner dimension, so no
partial sums are added afterwards:

* forward      out = x W        rows of x, or columns of W;
* input grad   g_in = g W^T     rows of g, or rows of W;
* weight grad  dW = x^T g       columns of x, or columns of g.

A layer's forward product ``x W`` is the exception (:func:`forward_product`): when
its backward splits dW by rows and g_in by columns (both along the layer's inputs),
the forward is cut along the inputs too, each block a partial product
``x[:, r0:r1] W[r0:r1]``, and the partial products are added in block order.  Then
a core reads and writes the same rows of W in all three products, and the
optimizer's thread for those rows finds them in its cache.

The blocks are strided views handed to BLAS with their leading dimensions
(:mod:`fastbp.kernels.blas`), so nothing is copied or allocated.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from .._config import (GEMM_BLOCKS, MIN_BLOCK, MIN_SPLIT_WORK, PARALLEL_MIN_WORK, jit,
                       jit_always_inline, jit_parallel)
from .blas import any_layout, gemm


@jit
def n_blocks(length):
    """How many blocks a side of ``length`` is cut into (1: not split)."""
    return max(1, min(GEMM_BLOCKS, length // MIN_BLOCK))


@jit
def block_size(length):
    """Rows (or columns) of every block but the last when a side of ``length`` is
    split: the multiple of 16 nearest to length / n_blocks(length) (``length``
    itself when too short to split)."""
    blocks = n_blocks(length)
    if blocks == 1:
        return length
    return (2 * length + 16 * blocks) // (32 * blocks) * 16


@jit
def _block(A, B, out, by_rows, size, b, last):
    # Block b of out <- A B: rows (or columns) b*size up to (b+1)*size, or to the end.
    if by_rows:
        i0 = b * size
        i1 = out.shape[0] if last else i0 + size
        gemm(A[i0:i1], B, any_layout(out[i0:i1]), 0.0)
    else:
        j0 = b * size
        j1 = out.shape[1] if last else j0 + size
        gemm(A, B[:, j0:j1], any_layout(out[:, j0:j1]), 0.0)


@jit
def worth_splitting(A, out):
    """Whether the product into ``out`` is large enough to run on more than one thread."""
    return out.shape[0] * out.shape[1] * A.shape[1] >= MIN_SPLIT_WORK


@jit_always_inline
def matmul(A, B, out, parallel):
    """out <- A B in fixed blocks.  A : (m, k); B : (k, n); out : (m, n), C order.
    A and B may be transposed views (``x.T``, ``W.T``).  The operands reach the
    compiled product typed as any-layout views, so one compiled function serves
    every combination of slices and transposes (numba compiles a function once per
    layout of each argument: three times for a dense layer's products)."""
    _matmul(any_layout(A), any_layout(B), out, parallel)


@jit_parallel
def _matmul(A, B, out, parallel):
    m, n = out.shape
    by_rows = m >= n
    side = m if by_rows else n
    nb = n_blocks(side) if worth_splitting(A, out) else 1
    size = block_size(side) if nb > 1 else side
    if parallel and nb > 1:
        for b in prange(nb):
            _block(A, B, out, by_rows, size, np.int64(b), b == nb - 1)  # prange's b is uint64
    else:
        for b in range(nb):
            _block(A, B, out, by_rows, size, b, b == nb - 1)


@jit
def splits_inputs(x, W, out):
    """Whether a layer's forward product out = x W is cut along the inputs: it is
    large enough, and its backward cuts dW (k, n) by rows (k >= n) and g_in (m, k)
    by columns (k > m)."""
    m, k = x.shape
    n = W.shape[1]
    return n_blocks(k) > 1 and worth_splitting(x, out) and k >= n and k > m


@jit
def _input_block(x, W, out, partial, size, b, last):
    # Block b of the inputs: x[:, r0:r1] W[r0:r1], into out (b = 0) or partial[b - 1].
    r0 = b * size
    r1 = W.shape[0] if last else r0 + size
    gemm(x[:, r0:r1], W[r0:r1], any_layout(out if b == 0 else partial[b - 1]), 0.0)


@jit
def _add_partials_row(row, partial, i):
    for p in range(partial.shape[0]):
        src = partial[p, i]
        for j in range(row.shape[0]):
            row[j] += src[j]


def forward_work_size(m, n):
    """Length of the work array forward_product needs for an (m, n) output."""
    return (GEMM_BLOCKS - 1) * m * n


@jit_always_inline
def forward_product(x, W, out, work, parallel):
    """See :func:`_forward_product` (the operands as any-layout views, as in matmul)."""
    _forward_product(any_layout(x), any_layout(W), out, work, parallel)


@jit_parallel
def _forward_product(x, W, out, work, parallel):
    """out <- x W, a layer's forward product.  x : (m, k); W : (k, n); out : (m, n);
    work : flat, at least forward_work_size(m, n) elements of out's dtype.

    Cut along the inputs when :func:`splits_inputs`, else as :func:`matmul`.  The
    partial products go to ``work`` and are added in block order whatever the
    thread count.  The window model's 64x250x200 layer:
    the Adam update of its weights 30.5 -> 21.2 us and the whole step 258 -> 246 us
    (V = 20k, 2 threads, 12 alternating runs), against splitting the output columns.
    """
    if not splits_inputs(x, W, out):
        _matmul(x, W, out, parallel)
        return
    m = out.shape[0]
    k = x.shape[1]
    nb = n_blocks(k)
    size = block_size(k)
    n = out.shape[1]
    partial = work[:(nb - 1) * m * n].reshape((nb - 1, m, n))
    if parallel:
        for b in prange(nb):
            _input_block(x, W, out, partial, size, np.int64(b), b == nb - 1)
    else:
        for b in range(nb):
            _input_block(x, W, out, partial, size, b, b == nb - 1)
    if parallel and out.size >= PARALLEL_MIN_WORK:
        for i in prange(m):
            _add_partials_row(out[i], partial, i)
    else:
        for i in range(m):
            _add_partials_row(out[i], partial, i)
