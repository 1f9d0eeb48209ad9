"""Inverted dropout (seed 003): keep each unit with probability 1 - p and scale
kept units by 1 / (1 - p), so that evaluation needs no rescaling.

The mask is regenerated from the counter-based generator in backward.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from .._config import PARALLEL_MIN_WORK, jit, jit_parallel
from .random import uniform


@jit
def _dropout_row(x_row, out_row, key, base, p, keep_scale):
    n = x_row.shape[0]
    for j in range(n):
        if uniform(key, base + j) >= p:
            out_row[j] = x_row[j] * keep_scale
        else:
            out_row[j] = 0


@jit_parallel
def dropout_apply(x, out, key, p, parallel):
    """out <- x * mask / (1 - p); x, out : float (batch, n).  The backward pass calls
    this same function with the upstream gradient as x (the mask is the same)."""
    m, n = x.shape
    key = np.uint64(key)  # a key passed from Python may arrive typed as int64
    keep_scale = x.dtype.type(1.0 / (1.0 - p))
    if parallel and x.size >= PARALLEL_MIN_WORK:
        for i in prange(m):
            _dropout_row(x[i], out[i], key, i * n, p, keep_scale)
    else:
        for i in range(m):
            _dropout_row(x[i], out[i], key, i * n, p, keep_scale)
