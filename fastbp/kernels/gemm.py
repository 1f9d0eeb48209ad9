"""Large matrix products through BLAS, split into blocks fixed by the shapes alone.

OpenBLAS gives different last bits for the same product at different thread
counts (its edge kernels run on different rows when the work is split
differently).  fastbp therefore runs SciPy's BLAS on one thread and splits each
product itself into blocks of the output that depend only on the shapes; the
blocks run in parallel, so the numbers are the same for any number of threads.

The output ``out (m, n)`` of a product of at least ``MIN_SPLIT_WORK``
multiply-adds is cut along its longer side into up to ``GEMM_BLOCKS`` blocks of
at least ``MIN_BLOCK`` rows or columns (multiples of 16).  Every block is a
whole product over the inner dimension, so no partial sums are added afterwards:

* forward      out = x W        rows of x, or columns of W;
* input grad   g_in = g W^T     rows of g, or rows of W;
* weight grad  dW = x^T g       columns of x, or columns of g.

The blocks are strided views handed to BLAS with their leading dimensions
(:mod:`fastbp.kernels.blas`), so nothing is copied or allocated.
"""
from __future__ import annotations

from numba import prange

from .._config import GEMM_BLOCKS, MIN_BLOCK, MIN_SPLIT_WORK, jit, jit_parallel
from .blas import gemm


@jit
def block_size(length):
    """Rows (or columns) per block when a side of ``length`` is split: up to
    GEMM_BLOCKS blocks of at least MIN_BLOCK, each a multiple of 16 (``length``
    itself when too short to split)."""
    blocks = min(GEMM_BLOCKS, length // MIN_BLOCK)
    if blocks <= 1:
        return length
    size = (length + blocks - 1) // blocks
    return (size + 15) // 16 * 16


@jit
def _block(A, B, out, by_rows, size, b):
    # Block b of out <- A B: rows (or columns) b*size up to (b+1)*size.
    if by_rows:
        i0 = b * size
        i1 = min(out.shape[0], i0 + size)
        gemm(A[i0:i1], B, out[i0:i1], 0.0)
    else:
        j0 = b * size
        j1 = min(out.shape[1], j0 + size)
        gemm(A, B[:, j0:j1], out[:, j0:j1], 0.0)


@jit_parallel
def matmul(A, B, out, parallel):
    """out <- A B in fixed blocks.  A : (m, k); B : (k, n); out : (m, n), C order.
    A and B may be transposed views (``x.T``, ``W.T``)."""
    m, n = out.shape
    by_rows = m >= n
    side = m if by_rows else n
    size = block_size(side) if m * n * A.shape[1] >= MIN_SPLIT_WORK else side
    nb = (side + size - 1) // max(size, 1)
    if parallel and nb > 1:
        for b in prange(nb):
            _block(A, B, out, by_rows, size, b)
    else:
        for b in range(nb):
            _block(A, B, out, by_rows, size, b)
