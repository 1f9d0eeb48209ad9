"""Dense (fully connected) layer kernels, seed 002 section 7.4.

Forward:   a = f(x W + b)
Backward:  delta = g * f'(z)          (g = dL/da, the upstream gradient)
           dW = x^T delta,  db = sum_i delta_i
           g_in = delta W^T           (dL/dx, skipped for the first layer)

Shapes: x (batch, n_in), W (n_in, n_out), b (n_out,), a and g (batch, n_out).

Small products run as hand-written loops (vectorised over the output row);
large ones go to BLAS through ``np.dot`` with an ``out`` argument, so
nothing is allocated.  The split is at ``SMALL_GEMM_WORK`` multiply-adds.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from .._config import PARALLEL_MIN_WORK, SMALL_GEMM_WORK, jit, jit_parallel
from .elementwise import activate_row, bias_activate, column_sums, scale_by_derivative


@jit
def _forward_row(x_row, W, b, out_row, act, slope):
    n_in, n_out = W.shape
    for j in range(n_out):
        out_row[j] = b[j]
    for k in range(n_in):
        xk = x_row[k]
        w = W[k]
        for j in range(n_out):
            out_row[j] += xk * w[j]
    activate_row(out_row, act, slope)


@jit
def _input_grad_row(g_row, W, out_row):
    n_in, n_out = W.shape
    for k in range(n_in):
        w = W[k]
        s = g_row.dtype.type(0)
        for j in range(n_out):
            s += g_row[j] * w[j]
        out_row[k] = s


@jit
def _weight_grad_row(x, g, k, dW_row):
    # dW[k, :] = sum_i x[i, k] g[i, :], rows i added in order.
    m, n_out = g.shape
    for j in range(n_out):
        dW_row[j] = 0
    for i in range(m):
        xik = x[i, k]
        gi = g[i]
        for j in range(n_out):
            dW_row[j] += xik * gi[j]


@jit_parallel
def dense_forward(x, W, b, out, act, slope, parallel):
    """out <- f(x W + b).

    x : float (batch, n_in); W : float (n_in, n_out); b : float (n_out,);
    out : float (batch, n_out), written.  act : activation code; slope : leaky-ReLU slope.
    """
    m = x.shape[0]
    work = m * W.shape[0] * W.shape[1]
    if work < SMALL_GEMM_WORK:
        if parallel and work >= PARALLEL_MIN_WORK:
            for i in prange(m):
                _forward_row(x[i], W, b, out[i], act, slope)
        else:
            for i in range(m):
                _forward_row(x[i], W, b, out[i], act, slope)
    else:
        np.dot(x, W, out)
        bias_activate(out, b, act, slope, parallel)


@jit_parallel
def dense_backward(x, a, W, g, dW, db, g_in, act, slope, need_input_grad, parallel):
    """Backward of a = f(x W + b).

    x : (batch, n_in) input; a : (batch, n_out) stored output; W : (n_in, n_out);
    g : (batch, n_out) upstream gradient dL/da, overwritten with delta = dL/dz;
    dW : (n_in, n_out) and db : (n_out,), written; g_in : (batch, n_in), written
    with dL/dx when need_input_grad.
    """
    m = x.shape[0]
    n_in, n_out = W.shape
    scale_by_derivative(g, a, act, slope, parallel)
    column_sums(g, db)
    work = m * n_in * n_out
    if work < SMALL_GEMM_WORK:
        if parallel and work >= PARALLEL_MIN_WORK:
            for k in prange(n_in):
                _weight_grad_row(x, g, k, dW[k])
        else:
            for k in range(n_in):
                _weight_grad_row(x, g, k, dW[k])
        if need_input_grad:
            if parallel and work >= PARALLEL_MIN_WORK:
                for i in prange(m):
                    _input_grad_row(g[i], W, g_in[i])
            else:
                for i in range(m):
                    _input_grad_row(g[i], W, g_in[i])
    else:
        np.dot(x.T, g, dW)
        if need_input_grad:
            np.dot(g, W.T, g_in)
