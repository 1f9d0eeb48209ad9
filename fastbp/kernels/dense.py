"""Dense (fully connected) layer kernels, seed 002 section 7.4.

Forward:   a = f(x W + b)
Backward:  delta = g * f'(z)          (g = dL/da, the upstream gradient)
           dW = x^T delta,  db = sum_i delta_i
           g_in = delta W^T           (dL/dx, skipped for the first layer)

Shapes: x (batch, n_in), W (n_in, n_out), b (n_out,), a and g (batch, n_out).

Every product goes to BLAS through :func:`fastbp.kernels.gemm.matmul`, which
hands it transposed views in place (nothing is copied) and splits large products
into blocks fixed by the shapes.  OpenBLAS's kernels for small matrices beat
hand-written loops at every shape measured here, down to the 10x10x40 layer of
the figure-7.8 network (forward and backward: 1.0 us against 2.1 us; the
sweep is in docs/performance.md), so there is no second path for small products.
"""
from __future__ import annotations

from .._config import jit
from .elementwise import bias_activate, column_sums, scale_by_derivative
from .gemm import forward_product, matmul


@jit
def dense_forward(x, W, b, out, work, act, slope, parallel):
    """out <- f(x W + b).

    x : float (batch, n_in); W : float (n_in, n_out); b : float (n_out,);
    out : float (batch, n_out), written; work : flat work array of
    gemm.forward_work_size(batch, n_out) or more; act : activation code; slope :
    leaky-ReLU slope.
    """
    forward_product(x, W, out, work, parallel)
    bias_activate(out, b, act, slope, parallel)


@jit
def dense_backward(x, a, W, g, dW, db, g_in, act, slope, need_input_grad, parallel):
    """Backward of a = f(x W + b).

    x : (batch, n_in) input; a : (batch, n_out) stored output; W : (n_in, n_out);
    g : (batch, n_out) upstream gradient dL/da, overwritten with delta = dL/dz;
    dW : (n_in, n_out) and db : (n_out,), written; g_in : (batch, n_in), written
    with dL/dx when need_input_grad.
    """
    scale_by_derivative(g, a, act, slope, parallel)
    column_sums(g, db)
    matmul(x.T, g, dW, parallel)
    if need_input_grad:
        matmul(g, W.T, g_in, parallel)
