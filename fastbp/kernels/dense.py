"""Dense (fully connected) layer kernels, seed 002 section 7.4.

Forward:   a = f(x W + b)
Backward:  delta = g * f'(z)          (g = dL/da, the upstream gradient)
           dW = x^T delta,  db = sum_i delta_i
           g_in = delta W^T           (dL/dx, skipped for the first layer)

Shapes: x (batch, n_in), W (n_in, n_out), b (n_out,), a and g (batch, n_out).

Three ways to multiply, chosen by shape (measured in benchmarks/bench_kernels):

* large products (``batch * n_in * n_out >= SMALL_GEMM_WORK``) go to BLAS
  in blocks of the output fixed by the shapes (:mod:`fastbp.kernels.gemm`), so
  nothing is copied or allocated and the numbers do not depend on the thread
  count;
* small, wide products (n_out >= NARROW) run as "axpy" loops: two output rows
  are built together as sums of rows of W, four rows of W per pass, so the
  inner loop runs over contiguous memory, LLVM vectorises it, and each row of
  W is loaded once for both outputs;
* small, narrow products (n_out < NARROW, such as a 5- or 10-class output
  layer) would leave those inner loops too short, so the forward product
  works on a transposed copy of W kept in ``scratch``;
* the input gradient of a small product, g W^T, is built like the forward
  product, two rows at a time as sums of rows of W^T (a copy in ``scratch``);
* the weight gradient of a small product is a sum of outer products, four
  samples per pass, which keeps each row of dW in L1; for a narrow layer it is
  built transposed (n_out rows of sums of x's rows) and copied into place.

Every sum is taken in a fixed order, so results do not depend on threads.
"""
from __future__ import annotations

from numba import prange

from .._config import (K_BLOCK, NARROW, ROW_CHUNK, SMALL_GEMM_WORK, SMALL_NARROW_WORK,
                       SMALL_PARALLEL_WORK, jit, jit_parallel)
from .elementwise import activate_row, bias_activate, column_sums, scale_by_derivative
from .gemm import matmul


@jit
def combine_rows(coef, M, out_row, accumulate):
    """out_row (+)= sum_k coef[k] * M[k, :], four rows of M per pass over out_row.

    coef : (K,) float (may be strided); M : (K, n) float; out_row : (n,) float.
    """
    K = coef.shape[0]
    n = out_row.shape[0]
    if not accumulate:
        for j in range(n):
            out_row[j] = 0
    k = 0
    while k + 4 <= K:
        a0 = coef[k]
        a1 = coef[k + 1]
        a2 = coef[k + 2]
        a3 = coef[k + 3]
        m0 = M[k]
        m1 = M[k + 1]
        m2 = M[k + 2]
        m3 = M[k + 3]
        for j in range(n):
            out_row[j] += (a0 * m0[j] + a1 * m1[j]) + (a2 * m2[j] + a3 * m3[j])
        k += 4
    while k < K:
        a0 = coef[k]
        m0 = M[k]
        for j in range(n):
            out_row[j] += a0 * m0[j]
        k += 1


@jit
def combine_rows_pair(c0, c1, M, o0, o1):
    """o0 = sum_k c0[k] M[k, :] and o1 = sum_k c1[k] M[k, :] in one sweep over M's rows,
    four rows per pass, so each row of M is loaded once for both outputs."""
    K = M.shape[0]
    n = M.shape[1]
    for j in range(n):
        o0[j] = 0
        o1[j] = 0
    k = 0
    while k + 4 <= K:
        m0 = M[k]
        m1 = M[k + 1]
        m2 = M[k + 2]
        m3 = M[k + 3]
        a0 = c0[k]
        a1 = c0[k + 1]
        a2 = c0[k + 2]
        a3 = c0[k + 3]
        b0 = c1[k]
        b1 = c1[k + 1]
        b2 = c1[k + 2]
        b3 = c1[k + 3]
        for j in range(n):
            w0 = m0[j]
            w1 = m1[j]
            w2 = m2[j]
            w3 = m3[j]
            o0[j] += (a0 * w0 + a1 * w1) + (a2 * w2 + a3 * w3)
            o1[j] += (b0 * w0 + b1 * w1) + (b2 * w2 + b3 * w3)
        k += 4
    while k < K:
        w = M[k]
        a0 = c0[k]
        b0 = c1[k]
        for j in range(n):
            o0[j] += a0 * w[j]
            o1[j] += b0 * w[j]
        k += 1


@jit
def dot(u, v):
    """sum_k u[k] v[k] for two contiguous rows of equal length (vectorised by LLVM under
    fastmath's reassoc; the same code wherever it runs, see fastbp/_config.py)."""
    s = u.dtype.type(0)
    for k in range(u.shape[0]):
        s += u[k] * v[k]
    return s


@jit
def transpose_into(A, out):
    """out[j, i] <- A[i, j].  A : (r, c); out : (c, r)."""
    r, c = A.shape
    for i in range(r):
        for j in range(c):
            out[j, i] = A[i, j]


@jit
def outer_sum_rows(x, g, dW, k0, k1):
    """dW[k0:k1] <- (x^T g)[k0:k1] = sum_i x[i, k] g_i for k0 <= k < k1, four samples per
    pass over each row of dW.  Each element's sum runs over i in the same order
    whatever the split into k ranges, so parallel and serial results agree."""
    m = x.shape[0]
    n_out = g.shape[1]
    for k in range(k0, k1):
        row = dW[k]
        for j in range(n_out):
            row[j] = 0
    i = 0
    while i + 4 <= m:
        g0 = g[i]
        g1 = g[i + 1]
        g2 = g[i + 2]
        g3 = g[i + 3]
        for k in range(k0, k1):
            a0 = x[i, k]
            a1 = x[i + 1, k]
            a2 = x[i + 2, k]
            a3 = x[i + 3, k]
            row = dW[k]
            for j in range(n_out):
                row[j] += (a0 * g0[j] + a1 * g1[j]) + (a2 * g2[j] + a3 * g3[j])
        i += 4
    while i < m:
        g0 = g[i]
        for k in range(k0, k1):
            a0 = x[i, k]
            row = dW[k]
            for j in range(n_out):
                row[j] += a0 * g0[j]
        i += 1


@jit_parallel
def outer_sum(x, g, dW, parallel):
    """dW <- x^T g = sum_i outer(x_i, g_i).  x : (batch, n_in); g : (batch, n_out);
    dW : (n_in, n_out).  Parallel over fixed blocks of dW's rows."""
    n_in = x.shape[1]
    nb = (n_in + K_BLOCK - 1) // K_BLOCK
    if parallel and nb > 1:
        for b in prange(nb):
            outer_sum_rows(x, g, dW, b * K_BLOCK, min(n_in, (b + 1) * K_BLOCK))
    else:
        outer_sum_rows(x, g, dW, 0, n_in)


@jit
def _forward_pairs(x, W, b, out, act, slope, p0, p1):
    # rows 2 p0 .. 2 p1 - 1 (and the odd last row when 2 p1 > m)
    m = x.shape[0]
    n_out = W.shape[1]
    for p in range(p0, p1):
        i = 2 * p
        if i + 1 < m:
            combine_rows_pair(x[i], x[i + 1], W, out[i], out[i + 1])
            last = i + 2
        else:
            combine_rows(x[i], W, out[i], False)
            last = i + 1
        for r in range(i, last):
            o = out[r]
            for j in range(n_out):
                o[j] += b[j]
            activate_row(o, act, slope)


@jit
def _forward_narrow_rows(x, Wt, b, out, act, slope, i0, i1):
    n_out = Wt.shape[0]
    for i in range(i0, i1):
        xi = x[i]
        oi = out[i]
        for j in range(n_out):
            oi[j] = b[j] + dot(xi, Wt[j])
        activate_row(oi, act, slope)


@jit
def _input_grad_pairs(g, Wt, g_in, p0, p1):
    # rows 2 p0 .. 2 p1 - 1 of g_in = g W^T (and the odd last row when 2 p1 > m), each
    # a sum of rows of Wt = W^T, two rows of g_in per sweep over Wt
    m = g.shape[0]
    for p in range(p0, p1):
        i = 2 * p
        if i + 1 < m:
            combine_rows_pair(g[i], g[i + 1], Wt, g_in[i], g_in[i + 1])
        else:
            combine_rows(g[i], Wt, g_in[i], False)


@jit
def _weight_grad_narrow(x, g, dW, scratch):
    # dW^T = g^T x, row j a sum of x's rows weighted by column j of g (contiguous
    # inner loops over n_in, where dW's own rows are only n_out < NARROW long),
    # built in the second half of scratch and transposed into dW.
    n_in, n_out = dW.shape
    dWt = scratch[n_in * n_out:2 * n_in * n_out].reshape((n_out, n_in))
    for j in range(n_out):
        combine_rows(g[:, j], x, dWt[j], False)
    transpose_into(dWt, dW)


def dense_scratch_size(n_in, n_out):
    """Elements of ``scratch`` the dense kernels may use for an (n_in, n_out) layer:
    W^T and dW^T of a narrow layer, W^T of a layer whose products can be small (any
    batch); a layer that always takes the BLAS path needs none."""
    if n_out < NARROW:
        return 2 * n_in * n_out
    return n_in * n_out if n_in * n_out < SMALL_GEMM_WORK else 1


@jit
def _narrow(n_out, work):
    return n_out < NARROW and work < SMALL_NARROW_WORK


@jit_parallel
def dense_forward(x, W, b, out, act, slope, scratch, parallel):
    """out <- f(x W + b).

    x : float (batch, n_in); W : float (n_in, n_out); b : float (n_out,);
    out : float (batch, n_out), written; act : activation code; slope : leaky-ReLU
    slope; scratch : float (>= dense_scratch_size(n_in, n_out),) workspace.
    """
    m = x.shape[0]
    n_in, n_out = W.shape
    work = m * n_in * n_out
    split = parallel and work >= SMALL_PARALLEL_WORK
    if _narrow(n_out, work):
        Wt = scratch[:n_in * n_out].reshape((n_out, n_in))
        transpose_into(W, Wt)
        if split:
            nb = (m + ROW_CHUNK - 1) // ROW_CHUNK
            for c in prange(nb):
                _forward_narrow_rows(x, Wt, b, out, act, slope, c * ROW_CHUNK,
                                     min(m, (c + 1) * ROW_CHUNK))
        else:
            _forward_narrow_rows(x, Wt, b, out, act, slope, 0, m)
    elif work < SMALL_GEMM_WORK:
        pairs = (m + 1) // 2
        if split:
            chunk = ROW_CHUNK // 2
            nb = (pairs + chunk - 1) // chunk
            for c in prange(nb):
                _forward_pairs(x, W, b, out, act, slope, c * chunk, min(pairs, (c + 1) * chunk))
        else:
            _forward_pairs(x, W, b, out, act, slope, 0, pairs)
    else:
        matmul(x, W, out, parallel)
        bias_activate(out, b, act, slope, parallel)


@jit_parallel
def dense_backward(x, a, W, g, dW, db, g_in, act, slope, need_input_grad, scratch, parallel):
    """Backward of a = f(x W + b).

    x : (batch, n_in) input; a : (batch, n_out) stored output; W : (n_in, n_out);
    g : (batch, n_out) upstream gradient dL/da, overwritten with delta = dL/dz;
    dW : (n_in, n_out) and db : (n_out,), written; g_in : (batch, n_in), written
    with dL/dx when need_input_grad; scratch : float (>= dense_scratch_size(n_in,
    n_out),) workspace.
    """
    m = x.shape[0]
    n_in, n_out = W.shape
    scale_by_derivative(g, a, act, slope, parallel)
    column_sums(g, db)
    work = m * n_in * n_out
    split = parallel and work >= SMALL_PARALLEL_WORK
    if _narrow(n_out, work) or work < SMALL_GEMM_WORK:
        if _narrow(n_out, work):
            _weight_grad_narrow(x, g, dW, scratch)
        else:
            outer_sum(x, g, dW, split)
        if need_input_grad:
            Wt = scratch[:n_in * n_out].reshape((n_out, n_in))
            transpose_into(W, Wt)
            pairs = (m + 1) // 2
            if split:
                chunk = ROW_CHUNK // 2
                for c in prange((pairs + chunk - 1) // chunk):
                    _input_grad_pairs(g, Wt, g_in, c * chunk, min(pairs, (c + 1) * chunk))
            else:
                _input_grad_pairs(g, Wt, g_in, 0, pairs)
    else:
        matmul(x.T, g, dW, parallel)
        if need_input_grad:
            matmul(g, W.T, g_in, parallel)
