"""Products of a few rows by a weight matrix, as loops rather than BLAS calls.

A recurrence multiplies its state, a handful of rows, by the same recurrent
weights at every step: (n, h) by U (h, G) forward and (n, G) by U^T backward,
n being the samples of a group still active at that step (at most 16 at batch
32, often 1 to 3 near the end of a batch).  OpenBLAS copies (packs) the whole
of U into its own layout on every call.  For 16 x 100 by 100 x 400 that copy
costs as much as the arithmetic, and at n = 3 it is nine tenths of the call.
These loops read the matrix where it lies.  Every output row is a sum of rows of
the right-hand matrix, four rows of A against four of its rows per pass over an
output row (:func:`_four_rows_by`); the backward's A U^T goes through a copy of
U^T that the recurrent backward makes once per call (:mod:`fastbp.kernels.recurrent`).

The loops are compiled without fastmath (:data:`fastbp._config.jit_strict`), so
each output element is a sum in the source's order.  With ``reassoc`` the same
loops gave different last bits in a serial caller (1 thread) and inside a
``prange`` (2 threads) when compiled for another CPU model (``NUMBA_CPU_NAME=skylake``
here; on CI's host without it).  Which loop differed was not isolated; the
likely one is the old A U^T, dot products of rows, whose reductions only
``reassoc`` lets LLVM vectorise.  Rows times rows need no reassociation to
vectorise.  Microseconds per call, one thread, float32, U 100 x 400, AMD EPYC
(Zen 3), medians of 7 runs of 2,000 calls, the mean of two alternating runs
(this host is noisy: up to 20% between them; the OpenBLAS rows are from an
earlier day); "fastmath" is the dot-product A U^T this replaced::

    rows n                    1      3      8     16     32
    A U     OpenBLAS sgemm  37.1   37.7   32.6   41.4   82.4
            here           4.3   10.2   18.3   34.6   63.9
    A U^T   OpenBLAS sgemm  37.5   45.9   42.8   47.3   64.9
            fastmath         4.4   11.3   11.8   26.2   62.2
            here (via U^T)   4.8   12.0   29.3   50.0  104.9

:func:`step_product` hands products of more than SMALL_ROWS rows (a truncated
backward's streams side by side) to :func:`fastbp.kernels.gemm.matmul`, which
may split them across threads.
"""
from __future__ import annotations

from .._config import jit_strict
from .gemm import matmul

#: Products of at most this many rows run as the loops here.
SMALL_ROWS = 32


@jit_strict
def _zero_row(row):
    for j in range(row.shape[0]):
        row[j] = 0


@jit_strict
def _four_rows_by(A, B, out, i):
    """out[i:i+4] <- A[i:i+4] B."""
    k_total = B.shape[0]
    n = B.shape[1]
    o0, o1, o2, o3 = out[i], out[i + 1], out[i + 2], out[i + 3]
    _zero_row(o0)
    _zero_row(o1)
    _zero_row(o2)
    _zero_row(o3)
    k = 0
    while k + 4 <= k_total:
        a0, b0, c0, d0 = A[i, k], A[i, k + 1], A[i, k + 2], A[i, k + 3]
        a1, b1, c1, d1 = A[i + 1, k], A[i + 1, k + 1], A[i + 1, k + 2], A[i + 1, k + 3]
        a2, b2, c2, d2 = A[i + 2, k], A[i + 2, k + 1], A[i + 2, k + 2], A[i + 2, k + 3]
        a3, b3, c3, d3 = A[i + 3, k], A[i + 3, k + 1], A[i + 3, k + 2], A[i + 3, k + 3]
        p, q, r, s = B[k], B[k + 1], B[k + 2], B[k + 3]
        for j in range(n):
            pj, qj, rj, sj = p[j], q[j], r[j], s[j]
            o0[j] += a0 * pj + b0 * qj + c0 * rj + d0 * sj
            o1[j] += a1 * pj + b1 * qj + c1 * rj + d1 * sj
            o2[j] += a2 * pj + b2 * qj + c2 * rj + d2 * sj
            o3[j] += a3 * pj + b3 * qj + c3 * rj + d3 * sj
        k += 4
    while k < k_total:
        a0, a1, a2, a3 = A[i, k], A[i + 1, k], A[i + 2, k], A[i + 3, k]
        p = B[k]
        for j in range(n):
            pj = p[j]
            o0[j] += a0 * pj
            o1[j] += a1 * pj
            o2[j] += a2 * pj
            o3[j] += a3 * pj
        k += 1


@jit_strict
def _one_row_by(A, B, out, i):
    """out[i] <- A[i] B."""
    k_total = B.shape[0]
    n = B.shape[1]
    o = out[i]
    _zero_row(o)
    k = 0
    while k + 4 <= k_total:
        a, b, c, d = A[i, k], A[i, k + 1], A[i, k + 2], A[i, k + 3]
        p, q, r, s = B[k], B[k + 1], B[k + 2], B[k + 3]
        for j in range(n):
            o[j] += a * p[j] + b * q[j] + c * r[j] + d * s[j]
        k += 4
    while k < k_total:
        a = A[i, k]
        p = B[k]
        for j in range(n):
            o[j] += a * p[j]
        k += 1


@jit_strict
def step_product(A, B, out, parallel):
    """out <- A B: a recurrence's per-step product.
    A : (m, k) with contiguous rows; B : (k, n), C order; out : (m, n), C order.
    Up to SMALL_ROWS rows: four rows of A at a time, the rest one by one; more go
    through :func:`fastbp.kernels.gemm.matmul` (``parallel`` its blocks)."""
    m = A.shape[0]
    if m > SMALL_ROWS:
        matmul(A, B, out, parallel)
        return
    i = 0
    while i < m:
        if i + 4 <= m:
            _four_rows_by(A, B, out, i)
            i += 4
        else:
            _one_row_by(A, B, out, i)
            i += 1
