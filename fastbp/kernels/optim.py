"""Optimizer update kernels over the flat parameter buffer.

Each kernel reads every parameter, its gradient and its state once and writes
them once, in fixed chunks of ``REDUCE_CHUNK`` elements run in parallel
(elementwise work: any partition gives the same numbers).  ``grad_scale``
folds global-norm clipping in: the gradient used is ``grad_scale * g``.

The update rules follow ``torch.optim`` term by term (see the classes in
``fastbp.optim`` for the equations).
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from .._config import PARALLEL_MIN_WORK, REDUCE_CHUNK, jit, jit_parallel

SGD = 0
ADAM = 1
ADAGRAD = 2
RMSPROP = 3
ADADELTA = 4
YOGI = 5

# Positions of the hyperparameters in the float64 array ``hp`` handed to the kernels.
SGD_MOMENTUM, SGD_DAMPENING, SGD_NESTEROV, SGD_WEIGHT_DECAY = 0, 1, 2, 3
ADAM_BETA1, ADAM_BETA2, ADAM_EPS, ADAM_WEIGHT_DECAY, ADAM_AMSGRAD, ADAM_DECOUPLED = 0, 1, 2, 3, 4, 5
ADAGRAD_LR_DECAY, ADAGRAD_EPS, ADAGRAD_WEIGHT_DECAY = 0, 1, 2
RMSPROP_ALPHA, RMSPROP_EPS, RMSPROP_WEIGHT_DECAY, RMSPROP_MOMENTUM, RMSPROP_CENTERED = 0, 1, 2, 3, 4
ADADELTA_RHO, ADADELTA_EPS, ADADELTA_WEIGHT_DECAY = 0, 1, 2
YOGI_BETA1, YOGI_BETA2, YOGI_EPS, YOGI_WEIGHT_DECAY = 0, 1, 2, 3


@jit
def _sgd_chunk(p, g, buf, start, stop, lr, momentum, dampening, nesterov, weight_decay,
               first_step, grad_scale):
    for i in range(start, stop):
        d = g[i] * grad_scale
        if weight_decay != 0:
            d = d + weight_decay * p[i]
        if momentum != 0:
            if first_step:
                b = d
            else:
                b = momentum * buf[i] + (1 - dampening) * d
            buf[i] = b
            if nesterov:
                d = d + momentum * b
            else:
                d = b
        p[i] = p[i] - lr * d


@jit
def _adam_chunk(p, g, m, v, vmax, start, stop, lr, beta1, beta2, eps, weight_decay, amsgrad,
                decoupled, step_size, bias_correction2_sqrt, grad_scale):
    one_minus_beta1 = 1 - beta1
    one_minus_beta2 = 1 - beta2
    for i in range(start, stop):
        d = g[i] * grad_scale
        if weight_decay != 0:
            if decoupled:
                p[i] = p[i] * (1 - lr * weight_decay)
            else:
                d = d + weight_decay * p[i]
        # torch's lerp with weight < 0.5: m + w (d - m)
        mi = m[i] + one_minus_beta1 * (d - m[i])
        vi = v[i] * beta2 + one_minus_beta2 * d * d
        m[i] = mi
        v[i] = vi
        if amsgrad:
            if vi > vmax[i]:
                vmax[i] = vi
            vi = vmax[i]
        denom = math.sqrt(vi) / bias_correction2_sqrt + eps
        p[i] = p[i] - step_size * (mi / denom)


@jit
def _adagrad_chunk(p, g, acc, start, stop, clr, eps, weight_decay, grad_scale):
    for i in range(start, stop):
        d = g[i] * grad_scale
        if weight_decay != 0:
            d = d + weight_decay * p[i]
        a = acc[i] + d * d
        acc[i] = a
        p[i] = p[i] - clr * (d / (math.sqrt(a) + eps))


@jit
def _rmsprop_chunk(p, g, sq, buf, gavg, start, stop, lr, alpha, eps, weight_decay, momentum,
                   centered, grad_scale):
    for i in range(start, stop):
        d = g[i] * grad_scale
        if weight_decay != 0:
            d = d + weight_decay * p[i]
        s = sq[i] * alpha + (1 - alpha) * d * d
        sq[i] = s
        if centered:
            ga = gavg[i] + (1 - alpha) * (d - gavg[i])
            gavg[i] = ga
            avg = math.sqrt(s - ga * ga) + eps
        else:
            avg = math.sqrt(s) + eps
        if momentum > 0:
            b = buf[i] * momentum + d / avg
            buf[i] = b
            p[i] = p[i] - lr * b
        else:
            p[i] = p[i] - lr * (d / avg)


@jit
def _adadelta_chunk(p, g, sq, acc_delta, start, stop, lr, rho, eps, weight_decay, grad_scale):
    for i in range(start, stop):
        d = g[i] * grad_scale
        if weight_decay != 0:
            d = d + weight_decay * p[i]
        s = sq[i] * rho + (1 - rho) * d * d
        sq[i] = s
        delta = math.sqrt(acc_delta[i] + eps) / math.sqrt(s + eps) * d
        acc_delta[i] = acc_delta[i] * rho + (1 - rho) * delta * delta
        p[i] = p[i] - lr * delta


@jit
def _yogi_chunk(p, g, m, v, start, stop, lr, beta1, beta2, eps, weight_decay, grad_scale):
    for i in range(start, stop):
        d = g[i] * grad_scale
        if weight_decay != 0:
            d = d + weight_decay * p[i]
        mi = beta1 * m[i] + (1 - beta1) * d
        d2 = d * d
        diff = v[i] - d2
        sign = 1.0 if diff > 0 else (-1.0 if diff < 0 else 0.0)
        vi = v[i] - (1 - beta2) * sign * d2
        m[i] = mi
        v[i] = vi
        p[i] = p[i] - lr * mi / (math.sqrt(vi) + eps)


@jit
def update_span(code, p, g, s0, s1, s2, start, stop, hp, lr, step, grad_scale, sparse_adam):
    """One optimizer step on p[start:stop] (and the same span of g and of the state
    vectors s0, s1, s2; unused ones may be any array).  ``step`` is the 1-based count
    of this update.  With ``sparse_adam`` Adam puts eps outside the bias correction,
    as torch.optim.SparseAdam does: denominator sqrt(v) + eps, step size
    lr sqrt(1 - beta2^t) / (1 - beta1^t)."""
    if code == SGD:
        _sgd_chunk(p, g, s0, start, stop, lr, hp[SGD_MOMENTUM], hp[SGD_DAMPENING],
                   hp[SGD_NESTEROV] != 0, hp[SGD_WEIGHT_DECAY], step == 1, grad_scale)
    elif code == ADAM:
        beta1 = hp[ADAM_BETA1]
        beta2 = hp[ADAM_BETA2]
        bc2_sqrt = math.sqrt(1 - beta2 ** step)
        eps = hp[ADAM_EPS] / bc2_sqrt if sparse_adam else hp[ADAM_EPS]
        _adam_chunk(p, g, s0, s1, s2, start, stop, lr, beta1, beta2, eps,
                    hp[ADAM_WEIGHT_DECAY], hp[ADAM_AMSGRAD] != 0, hp[ADAM_DECOUPLED] != 0,
                    lr / (1 - beta1 ** step), bc2_sqrt, grad_scale)
    elif code == ADAGRAD:
        _adagrad_chunk(p, g, s0, start, stop, lr / (1 + (step - 1) * hp[ADAGRAD_LR_DECAY]),
                       hp[ADAGRAD_EPS], hp[ADAGRAD_WEIGHT_DECAY], grad_scale)
    elif code == RMSPROP:
        _rmsprop_chunk(p, g, s0, s1, s2, start, stop, lr, hp[RMSPROP_ALPHA], hp[RMSPROP_EPS],
                       hp[RMSPROP_WEIGHT_DECAY], hp[RMSPROP_MOMENTUM], hp[RMSPROP_CENTERED] != 0,
                       grad_scale)
    elif code == ADADELTA:
        _adadelta_chunk(p, g, s0, s1, start, stop, lr, hp[ADADELTA_RHO], hp[ADADELTA_EPS],
                        hp[ADADELTA_WEIGHT_DECAY], grad_scale)
    elif code == YOGI:
        _yogi_chunk(p, g, s0, s1, start, stop, lr, hp[YOGI_BETA1], hp[YOGI_BETA2], hp[YOGI_EPS],
                    hp[YOGI_WEIGHT_DECAY], grad_scale)


@jit
def _state_row(state, k):
    # Optimizers with fewer state vectors get row 0 in the unused places.
    return state[k] if k < state.shape[0] else state[0]


@jit_parallel
def apply_update(code, p, g, state, hp, lr, step, grad_scale, parallel):
    """One optimizer step over the whole flat buffer, in fixed chunks.

    p, g : float (n,); state : float (k, n) the optimizer's state vectors;
    hp : float64 hyperparameters (layouts above); step : 1-based update count.
    """
    n = p.shape[0]
    s0 = _state_row(state, 0)
    s1 = _state_row(state, 1)
    s2 = _state_row(state, 2)
    nchunks = (n + REDUCE_CHUNK - 1) // REDUCE_CHUNK
    if parallel and n >= PARALLEL_MIN_WORK:
        for c in prange(nchunks):
            update_span(code, p, g, s0, s1, s2, c * REDUCE_CHUNK, min(n, (c + 1) * REDUCE_CHUNK),
                        hp, lr, step, grad_scale, False)
    else:
        update_span(code, p, g, s0, s1, s2, 0, n, hp, lr, step, grad_scale, False)


@jit_parallel
def apply_sparse_update(code, E, G, rows, n_rows, state, hp, lr, step, grad_scale, parallel):
    """Lazy row-wise step: only the rows ``rows[:n_rows]`` of the table E are read
    and written, with their gradients ``G[:n_rows]``.

    E : float (V, d); G : float (>= n_rows, d); rows : int64 distinct row ids;
    state : float (k, V, d).  Adam follows torch.optim.SparseAdam.
    """
    d = E.shape[1]
    k = state.shape[0]
    if parallel and n_rows * d >= PARALLEL_MIN_WORK:
        for u in prange(n_rows):
            r = rows[u]
            update_span(code, E[r], G[u], state[0, r], state[min(1, k - 1), r],
                        state[min(2, k - 1), r], 0, d, hp, lr, step, grad_scale, True)
    else:
        for u in range(n_rows):
            r = rows[u]
            update_span(code, E[r], G[u], state[0, r], state[min(1, k - 1), r],
                        state[min(2, k - 1), r], 0, d, hp, lr, step, grad_scale, True)


@jit
def _chunk_squares(g, start, stop):
    s = 0.0
    for i in range(start, stop):
        v = float(g[i])
        s += v * v
    return s


@jit_parallel
def squared_norm(g, parallel):
    """sum g_i^2 in float64, by fixed chunks added in order (thread-count independent)."""
    n = g.shape[0]
    nchunks = (n + REDUCE_CHUNK - 1) // REDUCE_CHUNK
    total = 0.0
    if parallel and n >= PARALLEL_MIN_WORK:
        partial = np.empty(nchunks)
        for c in prange(nchunks):
            partial[c] = _chunk_squares(g, c * REDUCE_CHUNK, min(n, (c + 1) * REDUCE_CHUNK))
        for c in range(nchunks):
            total += partial[c]
    else:
        for c in range(nchunks):
            total += _chunk_squares(g, c * REDUCE_CHUNK, min(n, (c + 1) * REDUCE_CHUNK))
    return total


@jit
def clip_scale(sq_norm, clip_norm):
    """torch.nn.utils.clip_grad_norm_'s factor: min(1, max_norm / (norm + 1e-6)); 1 when off."""
    if clip_norm <= 0:
        return 1.0
    coef = clip_norm / (math.sqrt(sq_norm) + 1e-6)
    return coef if coef < 1.0 else 1.0
