"""Row-wise elementwise passes: bias plus activation, and the activation derivative.

The branch on the activation code sits outside each loop so that every loop
body is a straight line that LLVM can vectorise.
"""
from __future__ import annotations

import math

from numba import prange

from .._config import PARALLEL_MIN_WORK, jit, jit_parallel
from .activations import IDENTITY, LEAKY_RELU, RELU, SIGMOID, TANH, sigmoid, tanh32


@jit
def activate_row(row, act, slope):
    """row <- f(row) in place.  row : float array (n,)."""
    n = row.shape[0]
    if act == RELU:
        for j in range(n):
            v = row[j]
            row[j] = v if v > 0 else v * 0
    elif act == LEAKY_RELU:
        s = row.dtype.type(slope)
        for j in range(n):
            v = row[j]
            row[j] = v if v > 0 else v * s
    elif act == SIGMOID:
        for j in range(n):
            row[j] = sigmoid(row[j])
    elif act == TANH:
        if row.itemsize == 4:
            for j in range(n):
                row[j] = tanh32(row[j])
        else:
            for j in range(n):
                row[j] = math.tanh(row[j])


@jit
def bias_activate_row(row, b, act, slope):
    """row <- f(row + b) in place.  row, b : float arrays (n,)."""
    n = row.shape[0]
    for j in range(n):
        row[j] += b[j]
    activate_row(row, act, slope)


@jit
def scale_by_derivative_row(g, a, act, slope):
    """g <- g * f'(z), with f'(z) written from the stored output a.  g, a : (n,)."""
    n = g.shape[0]
    if act == RELU:
        for j in range(n):
            g[j] = g[j] if a[j] > 0 else g[j] * 0
    elif act == LEAKY_RELU:
        s = g.dtype.type(slope)
        for j in range(n):
            g[j] = g[j] if a[j] > 0 else g[j] * s
    elif act == SIGMOID:
        for j in range(n):
            g[j] = g[j] * (a[j] * (1 - a[j]))
    elif act == TANH:
        for j in range(n):
            g[j] = g[j] * (1 - a[j] * a[j])


@jit_parallel
def bias_activate(out, b, act, slope, parallel):
    """out <- f(out + b) row by row.  out : (batch, n); b : (n,)."""
    m = out.shape[0]
    if parallel and out.size >= PARALLEL_MIN_WORK:
        for i in prange(m):
            bias_activate_row(out[i], b, act, slope)
    else:
        for i in range(m):
            bias_activate_row(out[i], b, act, slope)


@jit_parallel
def scale_by_derivative(g, a, act, slope, parallel):
    """g <- g * f'(z) for every row.  g, a : (batch, n)."""
    if act == IDENTITY:
        return
    m = g.shape[0]
    if parallel and g.size >= PARALLEL_MIN_WORK:
        for i in prange(m):
            scale_by_derivative_row(g[i], a[i], act, slope)
    else:
        for i in range(m):
            scale_by_derivative_row(g[i], a[i], act, slope)


@jit
def column_sums(g, out):
    """out[j] <- sum_i g[i, j], rows added in order (the same sum at any thread count)."""
    m, n = g.shape
    for j in range(n):
        out[j] = 0
    for i in range(m):
        row = g[i]
        for j in range(n):
            out[j] += row[j]


@jit
def is_finite_array(a):
    """True when every element of a (any shape) is finite."""
    flat = a.ravel()
    acc = flat.dtype.type(0)
    for i in range(flat.shape[0]):
        acc += flat[i] * 0
    return acc == 0


@jit
def add_into(dst, src):
    """dst += src elementwise; dst, src : float (m, n)."""
    for i in range(dst.shape[0]):
        d = dst[i]
        s = src[i]
        for j in range(d.shape[0]):
            d[j] += s[j]


@jit
def add_flat(dst, src):
    """dst += src; dst, src : float (n,)."""
    for j in range(dst.shape[0]):
        dst[j] += src[j]


@jit
def copy_columns(src, dst, start):
    """dst[:, start:start + n] <- src; src : (m, n), dst : (m, >= start + n)."""
    n = src.shape[1]
    for i in range(src.shape[0]):
        d = dst[i]
        s = src[i]
        for j in range(n):
            d[start + j] = s[j]


@jit
def columns_into(src, start, dst, add):
    """dst <- src[:, start:start + n] (or dst += it, with add); dst : (m, n)."""
    n = dst.shape[1]
    if add:
        for i in range(dst.shape[0]):
            d = dst[i]
            s = src[i]
            for j in range(n):
                d[j] += s[start + j]
    else:
        for i in range(dst.shape[0]):
            d = dst[i]
            s = src[i]
            for j in range(n):
                d[j] = s[start + j]
