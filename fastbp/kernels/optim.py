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


@jit_parallel
def sgd_update(p, g, buf, lr, momentum, dampening, nesterov, weight_decay, step, grad_scale,
               parallel):
    """SGD with momentum, dampening, Nesterov and L2 weight decay (torch.optim.SGD).

    p, g, buf : float (n,) parameters, gradients, momentum buffer; step : the
    1-based count of this update (step 1 copies the gradient into the buffer).
    """
    n = p.shape[0]
    nchunks = (n + REDUCE_CHUNK - 1) // REDUCE_CHUNK
    first = step == 1
    if parallel and n >= PARALLEL_MIN_WORK:
        for c in prange(nchunks):
            _sgd_chunk(p, g, buf, c * REDUCE_CHUNK, min(n, (c + 1) * REDUCE_CHUNK), lr, momentum,
                       dampening, nesterov, weight_decay, first, grad_scale)
    else:
        _sgd_chunk(p, g, buf, 0, n, lr, momentum, dampening, nesterov, weight_decay, first,
                   grad_scale)


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


@jit_parallel
def adam_update(p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, amsgrad, decoupled, step,
                grad_scale, parallel):
    """Adam / AdamW (torch.optim.Adam, torch.optim.AdamW), optionally AMSGrad.

    p, g, m, v, vmax : float (n,); step : the 1-based count of this update.
    """
    n = p.shape[0]
    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    step_size = lr / bias_correction1
    bc2_sqrt = math.sqrt(bias_correction2)
    nchunks = (n + REDUCE_CHUNK - 1) // REDUCE_CHUNK
    if parallel and n >= PARALLEL_MIN_WORK:
        for c in prange(nchunks):
            _adam_chunk(p, g, m, v, vmax, c * REDUCE_CHUNK, min(n, (c + 1) * REDUCE_CHUNK), lr,
                        beta1, beta2, eps, weight_decay, amsgrad, decoupled, step_size, bc2_sqrt,
                        grad_scale)
    else:
        _adam_chunk(p, g, m, v, vmax, 0, n, lr, beta1, beta2, eps, weight_decay, amsgrad,
                    decoupled, step_size, bc2_sqrt, grad_scale)


@jit
def _adagrad_chunk(p, g, acc, start, stop, clr, eps, weight_decay, grad_scale):
    for i in range(start, stop):
        d = g[i] * grad_scale
        if weight_decay != 0:
            d = d + weight_decay * p[i]
        a = acc[i] + d * d
        acc[i] = a
        p[i] = p[i] - clr * (d / (math.sqrt(a) + eps))


@jit_parallel
def adagrad_update(p, g, acc, lr, lr_decay, eps, weight_decay, step, grad_scale, parallel):
    """AdaGrad (torch.optim.Adagrad).  acc : float (n,) the running sum of squares."""
    n = p.shape[0]
    clr = lr / (1 + (step - 1) * lr_decay)
    nchunks = (n + REDUCE_CHUNK - 1) // REDUCE_CHUNK
    if parallel and n >= PARALLEL_MIN_WORK:
        for c in prange(nchunks):
            _adagrad_chunk(p, g, acc, c * REDUCE_CHUNK, min(n, (c + 1) * REDUCE_CHUNK), clr, eps,
                           weight_decay, grad_scale)
    else:
        _adagrad_chunk(p, g, acc, 0, n, clr, eps, weight_decay, grad_scale)


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


@jit_parallel
def rmsprop_update(p, g, sq, buf, gavg, lr, alpha, eps, weight_decay, momentum, centered,
                   grad_scale, parallel):
    """RMSProp (torch.optim.RMSprop), optionally centred and with momentum."""
    n = p.shape[0]
    nchunks = (n + REDUCE_CHUNK - 1) // REDUCE_CHUNK
    if parallel and n >= PARALLEL_MIN_WORK:
        for c in prange(nchunks):
            _rmsprop_chunk(p, g, sq, buf, gavg, c * REDUCE_CHUNK, min(n, (c + 1) * REDUCE_CHUNK),
                           lr, alpha, eps, weight_decay, momentum, centered, grad_scale)
    else:
        _rmsprop_chunk(p, g, sq, buf, gavg, 0, n, lr, alpha, eps, weight_decay, momentum,
                       centered, grad_scale)


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


@jit_parallel
def adadelta_update(p, g, sq, acc_delta, lr, rho, eps, weight_decay, grad_scale, parallel):
    """Adadelta (torch.optim.Adadelta)."""
    n = p.shape[0]
    nchunks = (n + REDUCE_CHUNK - 1) // REDUCE_CHUNK
    if parallel and n >= PARALLEL_MIN_WORK:
        for c in prange(nchunks):
            _adadelta_chunk(p, g, sq, acc_delta, c * REDUCE_CHUNK, min(n, (c + 1) * REDUCE_CHUNK),
                            lr, rho, eps, weight_decay, grad_scale)
    else:
        _adadelta_chunk(p, g, sq, acc_delta, 0, n, lr, rho, eps, weight_decay, grad_scale)


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


@jit_parallel
def yogi_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, grad_scale, parallel):
    """Yogi (Zaheer et al. 2018, algorithm 2), without bias correction as in the paper."""
    n = p.shape[0]
    nchunks = (n + REDUCE_CHUNK - 1) // REDUCE_CHUNK
    if parallel and n >= PARALLEL_MIN_WORK:
        for c in prange(nchunks):
            _yogi_chunk(p, g, m, v, c * REDUCE_CHUNK, min(n, (c + 1) * REDUCE_CHUNK), lr, beta1,
                        beta2, eps, weight_decay, grad_scale)
    else:
        _yogi_chunk(p, g, m, v, 0, n, lr, beta1, beta2, eps, weight_decay, grad_scale)


@jit
def apply_update(code, p, g, state, hp, lr, step, grad_scale, parallel):
    """Dispatch one optimizer step.  state : float (k, n) rows of optimizer state;
    hp : float64 hyperparameters, laid out as the constants above."""
    if code == SGD:
        sgd_update(p, g, state[0], lr, hp[SGD_MOMENTUM], hp[SGD_DAMPENING],
                   hp[SGD_NESTEROV] != 0, hp[SGD_WEIGHT_DECAY], step, grad_scale, parallel)
    elif code == ADAM:
        adam_update(p, g, state[0], state[1], state[2], lr, hp[ADAM_BETA1], hp[ADAM_BETA2],
                    hp[ADAM_EPS], hp[ADAM_WEIGHT_DECAY], hp[ADAM_AMSGRAD] != 0,
                    hp[ADAM_DECOUPLED] != 0, step, grad_scale, parallel)
    elif code == ADAGRAD:
        adagrad_update(p, g, state[0], lr, hp[ADAGRAD_LR_DECAY], hp[ADAGRAD_EPS],
                       hp[ADAGRAD_WEIGHT_DECAY], step, grad_scale, parallel)
    elif code == RMSPROP:
        rmsprop_update(p, g, state[0], state[1], state[2], lr, hp[RMSPROP_ALPHA], hp[RMSPROP_EPS],
                       hp[RMSPROP_WEIGHT_DECAY], hp[RMSPROP_MOMENTUM], hp[RMSPROP_CENTERED] != 0,
                       grad_scale, parallel)
    elif code == ADADELTA:
        adadelta_update(p, g, state[0], state[1], lr, hp[ADADELTA_RHO], hp[ADADELTA_EPS],
                        hp[ADADELTA_WEIGHT_DECAY], grad_scale, parallel)
    elif code == YOGI:
        yogi_update(p, g, state[0], state[1], lr, hp[YOGI_BETA1], hp[YOGI_BETA2], hp[YOGI_EPS],
                    hp[YOGI_WEIGHT_DECAY], grad_scale, parallel)


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
