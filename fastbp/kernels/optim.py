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

from .._config import (PARALLEL_UPDATE_MIN, REDUCE_CHUNK, jit, jit_parallel,
                       jit_strict)

#: Rows per block of a lazy Adam update run in parallel.
SPARSE_ROW_BLOCK = 32

SGD = 0
ADAM = 1
ADAGRAD = 2
RMSPROP = 3
ADADELTA = 4
YOGI = 5

#: The optimizer a build compiles (fastbp.engine.specialize): ANY here, so the kernels
#: as written take the optimizer's code at run time; a model's build sets its own,
#: and numba drops the other optimizers' branches before compiling (their conditions
#: read ``OPTIMIZER == K or (OPTIMIZER == ANY and code == K)``: constant in a build).
ANY = -1
OPTIMIZER = ANY

# Positions of the hyperparameters in the float64 array ``hp`` handed to the kernels.
SGD_MOMENTUM, SGD_DAMPENING, SGD_NESTEROV, SGD_WEIGHT_DECAY = 0, 1, 2, 3
ADAM_BETA1, ADAM_BETA2, ADAM_EPS, ADAM_WEIGHT_DECAY, ADAM_AMSGRAD, ADAM_DECOUPLED = 0, 1, 2, 3, 4, 5
ADAGRAD_LR_DECAY, ADAGRAD_EPS, ADAGRAD_WEIGHT_DECAY = 0, 1, 2
RMSPROP_ALPHA, RMSPROP_EPS, RMSPROP_WEIGHT_DECAY, RMSPROP_MOMENTUM, RMSPROP_CENTERED = 0, 1, 2, 3, 4
ADADELTA_RHO, ADADELTA_EPS, ADADELTA_WEIGHT_DECAY = 0, 1, 2
YOGI_BETA1, YOGI_BETA2, YOGI_EPS, YOGI_WEIGHT_DECAY = 0, 1, 2, 3


# Each chunk kernel computes an element's new parameter and state in registers and
# stores them only when all are finite (a select, so the loop still vectorises); it
# returns how many elements it refused.  A step whose update would overflow thus
# never writes Inf or NaN into the model.
#
# Two rules keep these loops vectorised (measured: 5-50x on 10M floats):
# - the arrays come in as slices indexed from 0 (see update_span);
# - a loop stores only to the state vectors its configuration uses, unconditionally.
#   A store under a flag (``if amsgrad: vmax[i] = ...``) becomes a masked vector
#   store, and the unused vectors may alias row 0 of the state, which sends LLVM's
#   runtime alias check to the scalar loop.  Options that change which vectors are
#   written therefore select between loops, and the loops share their arithmetic
#   through the small per-element helpers below.


@jit
def _finite(x, big):
    # An ordered comparison is False for NaN and for +-Inf.  ``big`` (the largest
    # finite value of the dtype) is an argument, not a constant, so that no fastmath
    # rewrite can fold the test away (x - x == 0 and math.isfinite were folded).
    return abs(x) <= big


# Scalars are cast to the array's dtype first, so a float32 buffer is updated in
# float32 arithmetic (as torch does) and the loops vectorise at full width; `&`
# instead of `and` keeps the finiteness test free of branches.  Each element's old
# values are read before anything is stored, so keeping one is a choice between two
# values in registers: re-read after the stores (``p[i] = pn if ok else p[i]``), it
# was a load on one branch only, and the loop ran element by element (Adam on 2,285
# float64 elements: 10.7 -> 5.1 us; SGD with momentum, with the change below, 3.6 -> 2.1;
# one thread, AMD EPYC Zen 3).


@jit
def _sgd_chunk(p, g, buf, lr, momentum, dampening, nesterov, weight_decay,
               first_step, grad_scale, big):
    T = p.dtype.type
    big_ = T(big)
    lr_, mu, damp, wd, scale = T(lr), T(momentum), T(1 - dampening), T(weight_decay), T(grad_scale)
    bad = 0
    # d + wd p with wd = 0 adds nothing (p is finite: a non-finite update is refused);
    # an `if weight_decay` inside the loop kept it from vectorising.
    if momentum == 0:
        for i in range(p.shape[0]):
            pi = p[i]
            d = g[i] * scale + wd * pi
            pn = pi - lr_ * d
            ok = _finite(pn, big_)
            p[i] = pn if ok else pi
            bad += 0 if ok else 1
        return bad
    for i in range(p.shape[0]):
        pi, bi = p[i], buf[i]
        d = g[i] * scale + wd * pi
        b = d if first_step else mu * bi + damp * d
        d = d + mu * b if nesterov else b
        pn = pi - lr_ * d
        ok = _finite(pn, big_) & _finite(b, big_)
        buf[i] = b if ok else bi
        p[i] = pn if ok else pi
        bad += 0 if ok else 1
    return bad


@jit
def _adam_moments(d, m, v, w1, b2, w2):
    # torch's lerp with weight < 0.5: m + w (d - m)
    return m + w1 * (d - m), v * b2 + w2 * d * d


@jit
def _adam_element(d, p, m, v, c):
    # One element of a plain Adam step (gradient d already scaled and decayed):
    # (new p, new m, new v, all finite).  c : the step's constants from _adam_scalars.
    # The loops store the results themselves: stores through a helper kept the
    # loops from vectorising (16k elements: 6 -> 290 us).
    w1, b2, w2, step_, inv_bc2, eps_, big_ = c
    mi, vi = _adam_moments(d, m, v, w1, b2, w2)
    pn = p - step_ * (mi / (math.sqrt(vi) * inv_bc2 + eps_))
    return pn, mi, vi, _finite(pn, big_) & _finite(mi, big_) & _finite(vi, big_)


@jit
def _adam_step(hp, lr, bc, sparse_adam):
    # (eps, step size, sqrt(1 - beta2^t)) of an Adam step with bias corrections bc;
    # SparseAdam puts eps outside the bias correction (see update_span).
    bc2_sqrt = math.sqrt(bc[1])
    eps = hp[ADAM_EPS] / bc2_sqrt if sparse_adam else hp[ADAM_EPS]
    return eps, lr / bc[0], bc2_sqrt


@jit
def _adam_scalars(T, beta1, beta2, eps, step_size, bias_correction2_sqrt, big):
    # The constants of an Adam step in the parameters' dtype T, for _adam_element.
    return (T(1 - beta1), T(beta2), T(1 - beta2), T(step_size),
            T(1.0 / bias_correction2_sqrt), T(eps), T(big))


@jit
def _adam_chunk(p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, amsgrad,
                decoupled, step_size, bias_correction2_sqrt, grad_scale, big):
    T = p.dtype.type
    c = _adam_scalars(T, beta1, beta2, eps, step_size, bias_correction2_sqrt, big)
    w1, b2, w2, step_, inv_bc2, eps_, big_ = c
    scale, wd = T(grad_scale), T(weight_decay)
    decay = T(1 - lr * weight_decay)
    use_l2 = weight_decay != 0 and not decoupled
    use_decay = weight_decay != 0 and decoupled
    bad = 0
    if amsgrad:
        for i in range(p.shape[0]):
            p0, m0, v0, x0 = p[i], m[i], v[i], vmax[i]
            d = g[i] * scale
            pi = p0 * decay if use_decay else p0
            d = d + wd * pi if use_l2 else d
            mi, vi = _adam_moments(d, m0, v0, w1, b2, w2)
            # AMSGrad: the denominator uses the running maximum of v.
            vhat = vi if vi > x0 else x0
            pn = pi - step_ * (mi / (math.sqrt(vhat) * inv_bc2 + eps_))
            ok = _finite(pn, big_) & _finite(mi, big_) & _finite(vi, big_)
            vmax[i] = vhat if ok else x0
            m[i] = mi if ok else m0
            v[i] = vi if ok else v0
            p[i] = pn if ok else p0
            bad += 0 if ok else 1
        return bad
    for i in range(p.shape[0]):
        p0, m0, v0 = p[i], m[i], v[i]
        d = g[i] * scale
        pi = p0 * decay if use_decay else p0
        d = d + wd * pi if use_l2 else d
        pn, mi, vi, ok = _adam_element(d, pi, m0, v0, c)
        m[i] = mi if ok else m0
        v[i] = vi if ok else v0
        p[i] = pn if ok else p0
        bad += 0 if ok else 1
    return bad


@jit
def _sparse_adam_rows(E, G, rows, u0, u1, m, v, hp, lr, bc, grad_scale, big):
    """torch.optim.SparseAdam's step (plain Adam, eps outside the bias correction) on
    the rows rows[u0:u1] of E, with gradients G[u0:u1]; m, v : (V, d).  The step's
    constants are worked out once for all the rows: called once per row through
    update_span, the set-up cost three times the arithmetic of a 50-wide row."""
    T = E.dtype.type
    eps, step_size, bc2_sqrt = _adam_step(hp, lr, bc, True)
    c = _adam_scalars(T, hp[ADAM_BETA1], hp[ADAM_BETA2], eps, step_size, bc2_sqrt, big)
    scale = T(grad_scale)
    bad = 0
    for u in range(u0, u1):
        r = rows[u]
        p, g, mr, vr = E[r], G[u], m[r], v[r]
        for i in range(p.shape[0]):
            p0, m0, v0 = p[i], mr[i], vr[i]
            pn, mi, vi, ok = _adam_element(g[i] * scale, p0, m0, v0, c)
            mr[i] = mi if ok else m0
            vr[i] = vi if ok else v0
            p[i] = pn if ok else p0
            bad += 0 if ok else 1
    return bad


@jit
def _adagrad_chunk(p, g, acc, clr, eps, weight_decay, grad_scale, big):
    T = p.dtype.type
    big_ = T(big)
    clr_, eps_, wd, scale = T(clr), T(eps), T(weight_decay), T(grad_scale)
    use_wd = weight_decay != 0
    bad = 0
    for i in range(p.shape[0]):
        p0, a0 = p[i], acc[i]
        d = g[i] * scale
        if use_wd:
            d = d + wd * p0
        a = a0 + d * d
        pn = p0 - clr_ * (d / (math.sqrt(a) + eps_))
        ok = _finite(pn, big_) & _finite(a, big_)
        acc[i] = a if ok else a0
        p[i] = pn if ok else p0
        bad += 0 if ok else 1
    return bad


@jit
def _rmsprop_element(pi, gi, si, bi, gai, scale, wd, use_wd, lr, alpha, w, eps, mu, centered,
                     use_mu, big):
    # One element's step; bi and gai are the momentum buffer and the gradient
    # average (zero where unused).  Returns the new p, square average, buffer and
    # gradient average, and whether all four are finite.
    d = gi * scale + wd * pi if use_wd else gi * scale
    s = si * alpha + w * d * d
    if centered:
        ga = gai + w * (d - gai)
        avg = math.sqrt(s - ga * ga) + eps
    else:
        ga = gai
        avg = math.sqrt(s) + eps
    if use_mu:
        b = bi * mu + d / avg
        pn = pi - lr * b
    else:
        b = bi
        pn = pi - lr * (d / avg)
    ok = _finite(pn, big) & _finite(s, big) & _finite(b, big) & _finite(ga, big)
    return pn, s, b, ga, ok


@jit
def _rmsprop_chunk(p, g, sq, buf, gavg, lr, alpha, eps, weight_decay, momentum,
                   centered, grad_scale, big):
    T = p.dtype.type
    hyper = (T(grad_scale), T(weight_decay), weight_decay != 0, T(lr), T(alpha), T(1 - alpha),
             T(eps), T(momentum))
    big_ = T(big)
    zero = T(0)
    use_mu = momentum > 0
    bad = 0
    # One loop per set of stored vectors (see the note at the top).
    if centered and use_mu:
        for i in range(p.shape[0]):
            p0, s0, b0, ga0 = p[i], sq[i], buf[i], gavg[i]
            pn, s, b, ga, ok = _rmsprop_element(p0, g[i], s0, b0, ga0, *hyper, True, True, big_)
            sq[i] = s if ok else s0
            buf[i] = b if ok else b0
            gavg[i] = ga if ok else ga0
            p[i] = pn if ok else p0
            bad += 0 if ok else 1
    elif centered:
        for i in range(p.shape[0]):
            p0, s0, ga0 = p[i], sq[i], gavg[i]
            pn, s, b, ga, ok = _rmsprop_element(p0, g[i], s0, zero, ga0, *hyper, True, False,
                                                big_)
            sq[i] = s if ok else s0
            gavg[i] = ga if ok else ga0
            p[i] = pn if ok else p0
            bad += 0 if ok else 1
    elif use_mu:
        for i in range(p.shape[0]):
            p0, s0, b0 = p[i], sq[i], buf[i]
            pn, s, b, ga, ok = _rmsprop_element(p0, g[i], s0, b0, zero, *hyper, False, True,
                                                big_)
            sq[i] = s if ok else s0
            buf[i] = b if ok else b0
            p[i] = pn if ok else p0
            bad += 0 if ok else 1
    else:
        for i in range(p.shape[0]):
            p0, s0 = p[i], sq[i]
            pn, s, b, ga, ok = _rmsprop_element(p0, g[i], s0, zero, zero, *hyper, False, False,
                                                big_)
            sq[i] = s if ok else s0
            p[i] = pn if ok else p0
            bad += 0 if ok else 1
    return bad


@jit
def _adadelta_chunk(p, g, sq, acc_delta, lr, rho, eps, weight_decay, grad_scale, big):
    T = p.dtype.type
    big_ = T(big)
    lr_, r, w, eps_, wd, scale = T(lr), T(rho), T(1 - rho), T(eps), T(weight_decay), T(grad_scale)
    use_wd = weight_decay != 0
    bad = 0
    for i in range(p.shape[0]):
        p0, s0, u0 = p[i], sq[i], acc_delta[i]
        d = g[i] * scale
        if use_wd:
            d = d + wd * p0
        s = s0 * r + w * d * d
        delta = math.sqrt(u0 + eps_) / math.sqrt(s + eps_) * d
        u = u0 * r + w * delta * delta
        pn = p0 - lr_ * delta
        ok = _finite(pn, big_) & _finite(s, big_) & _finite(u, big_)
        sq[i] = s if ok else s0
        acc_delta[i] = u if ok else u0
        p[i] = pn if ok else p0
        bad += 0 if ok else 1
    return bad


@jit
def _yogi_chunk(p, g, m, v, lr, beta1, beta2, eps, weight_decay, grad_scale, big):
    T = p.dtype.type
    big_ = T(big)
    lr_, b1, w1, w2 = T(lr), T(beta1), T(1 - beta1), T(1 - beta2)
    eps_, wd, scale = T(eps), T(weight_decay), T(grad_scale)
    one, zero = T(1), T(0)
    use_wd = weight_decay != 0
    bad = 0
    for i in range(p.shape[0]):
        p0, m0, v0 = p[i], m[i], v[i]
        d = g[i] * scale
        if use_wd:
            d = d + wd * p0
        mi = b1 * m0 + w1 * d
        d2 = d * d
        diff = v0 - d2
        sign = one if diff > zero else (-one if diff < zero else zero)
        vi = v0 - w2 * sign * d2
        pn = p0 - lr_ * mi / (math.sqrt(vi) + eps_)
        ok = _finite(pn, big_) & _finite(mi, big_) & _finite(vi, big_)
        m[i] = mi if ok else m0
        v[i] = vi if ok else v0
        p[i] = pn if ok else p0
        bad += 0 if ok else 1
    return bad


@jit
def bias_corrections(code, hp, step):
    """Adam's (1 - beta1^t, 1 - beta2^t) for update ``step`` (1, 1 for the others),
    computed once per step rather than once per chunk or row."""
    if OPTIMIZER == ADAM or (OPTIMIZER == ANY and code == ADAM):
        return 1 - hp[ADAM_BETA1] ** step, 1 - hp[ADAM_BETA2] ** step
    return 1.0, 1.0


@jit
def update_span(code, p, g, s0, s1, s2, start, stop, hp, lr, step, bc, grad_scale, sparse_adam,
                big):
    """One optimizer step on p[start:stop] (and the same span of g and of the state
    vectors s0, s1, s2; unused ones may be any array).  ``step`` is the 1-based count
    of this update and ``bc`` its bias_corrections.  With ``sparse_adam`` Adam puts
    eps outside the bias correction, as torch.optim.SparseAdam does: denominator
    sqrt(v) + eps, step size
    lr sqrt(1 - beta2^t) / (1 - beta1^t).  ``big`` is the dtype's largest finite value
    (see _finite).  Returns the number of elements whose update was refused because
    it was not finite (they keep their old values)."""
    # The chunk kernels index their slices from 0, so that numba can prove every index
    # non-negative and drop its wraparound select: only then do the loops vectorise
    # (with ``range(start, stop)`` they ran scalar, 5-8x slower).
    p = p[start:stop]
    g = g[start:stop]
    s0 = s0[start:stop]
    s1 = s1[start:stop]
    s2 = s2[start:stop]
    if OPTIMIZER == SGD or (OPTIMIZER == ANY and code == SGD):
        return _sgd_chunk(p, g, s0, lr, hp[SGD_MOMENTUM], hp[SGD_DAMPENING],
                   hp[SGD_NESTEROV] != 0, hp[SGD_WEIGHT_DECAY], step == 1, grad_scale, big)
    elif OPTIMIZER == ADAM or (OPTIMIZER == ANY and code == ADAM):
        eps, step_size, bc2_sqrt = _adam_step(hp, lr, bc, sparse_adam)
        return _adam_chunk(p, g, s0, s1, s2, lr, hp[ADAM_BETA1], hp[ADAM_BETA2], eps,
                    hp[ADAM_WEIGHT_DECAY], hp[ADAM_AMSGRAD] != 0, hp[ADAM_DECOUPLED] != 0,
                    step_size, bc2_sqrt, grad_scale, big)
    elif OPTIMIZER == ADAGRAD or (OPTIMIZER == ANY and code == ADAGRAD):
        return _adagrad_chunk(p, g, s0, lr / (1 + (step - 1) * hp[ADAGRAD_LR_DECAY]),
                       hp[ADAGRAD_EPS], hp[ADAGRAD_WEIGHT_DECAY], grad_scale, big)
    elif OPTIMIZER == RMSPROP or (OPTIMIZER == ANY and code == RMSPROP):
        return _rmsprop_chunk(p, g, s0, s1, s2, lr, hp[RMSPROP_ALPHA], hp[RMSPROP_EPS],
                       hp[RMSPROP_WEIGHT_DECAY], hp[RMSPROP_MOMENTUM], hp[RMSPROP_CENTERED] != 0,
                       grad_scale, big)
    elif OPTIMIZER == ADADELTA or (OPTIMIZER == ANY and code == ADADELTA):
        return _adadelta_chunk(p, g, s0, s1, lr, hp[ADADELTA_RHO], hp[ADADELTA_EPS],
                        hp[ADADELTA_WEIGHT_DECAY], grad_scale, big)
    elif OPTIMIZER == YOGI or (OPTIMIZER == ANY and code == YOGI):
        return _yogi_chunk(p, g, s0, s1, lr, hp[YOGI_BETA1], hp[YOGI_BETA2], hp[YOGI_EPS],
                    hp[YOGI_WEIGHT_DECAY], grad_scale, big)
    return 0


@jit
def _state_row(state, k):
    # Optimizers with fewer state vectors get row 0 in the unused places.
    return state[k] if k < state.shape[0] else state[0]


@jit_parallel
def apply_update(code, p, g, state, hp, lr, step, grad_scale, parallel):
    """One optimizer step over the whole flat buffer, in fixed chunks.

    p, g : float (n,); state : float (k, n) the optimizer's state vectors;
    hp : float64 hyperparameters (layouts above); step : 1-based update count.
    The serial and the parallel loop run the same chunks, so the numbers do not
    depend on the thread count.  Returns the number of refused (non-finite)
    elements.
    """
    n = p.shape[0]
    big = np.finfo(p.dtype).max
    s0 = _state_row(state, 0)
    s1 = _state_row(state, 1)
    s2 = _state_row(state, 2)
    nchunks = (n + REDUCE_CHUNK - 1) // REDUCE_CHUNK
    bc = bias_corrections(code, hp, step)
    bad = 0
    if parallel and n >= PARALLEL_UPDATE_MIN:
        # An integer sum, so a prange reduction gives the same count in any order.
        for c in prange(nchunks):
            bad += update_span(code, p, g, s0, s1, s2, c * REDUCE_CHUNK,
                               min(n, (c + 1) * REDUCE_CHUNK), hp, lr, step, bc, grad_scale,
                               False, big)
    else:
        for c in range(nchunks):
            bad += update_span(code, p, g, s0, s1, s2, c * REDUCE_CHUNK,
                               min(n, (c + 1) * REDUCE_CHUNK), hp, lr, step, bc, grad_scale, False,
                               big)
    return bad


@jit_parallel
def apply_sparse_update(code, E, G, rows, n_rows, state, hp, lr, step, grad_scale, parallel):
    """Lazy row-wise step: only the rows ``rows[:n_rows]`` of the table E are read
    and written, with their gradients ``G[:n_rows]``.

    E : float (V, d); G : float (>= n_rows, d); rows : int64 distinct row ids;
    state : float (k, V, d).  Adam follows torch.optim.SparseAdam.  Returns the
    number of refused (non-finite) elements.
    """
    d = E.shape[1]
    k = state.shape[0]
    big = np.finfo(E.dtype).max
    bc = bias_corrections(code, hp, step)
    bad = 0
    split = parallel and n_rows * d >= PARALLEL_UPDATE_MIN // 4
    if ((OPTIMIZER == ADAM or (OPTIMIZER == ANY and code == ADAM))
            and hp[ADAM_AMSGRAD] == 0 and hp[ADAM_WEIGHT_DECAY] == 0):
        # SparseAdam's case, in fixed blocks of rows (the same at any thread count)
        nb = (n_rows + SPARSE_ROW_BLOCK - 1) // SPARSE_ROW_BLOCK
        if split:
            for b in prange(nb):
                bad += _sparse_adam_rows(E, G, rows, b * SPARSE_ROW_BLOCK,
                                         min(n_rows, (b + 1) * SPARSE_ROW_BLOCK),
                                         state[0], state[1], hp, lr, bc, grad_scale, big)
            return bad
        return _sparse_adam_rows(E, G, rows, 0, n_rows, state[0], state[1], hp, lr, bc,
                                 grad_scale, big)
    if split:
        for u in prange(n_rows):
            r = rows[u]
            bad += update_span(code, E[r], G[u], state[0, r], state[min(1, k - 1), r],
                               state[min(2, k - 1), r], 0, d, hp, lr, step, bc, grad_scale, True,
                               big)
    else:
        for u in range(n_rows):
            r = rows[u]
            bad += update_span(code, E[r], G[u], state[0, r], state[min(1, k - 1), r],
                               state[min(2, k - 1), r], 0, d, hp, lr, step, bc, grad_scale, True,
                               big)
    return bad


@jit_strict
def _chunk_squares(g, start, stop):
    # Four float64 partial sums in source order (no fastmath: see _config.jit_strict).
    s0 = s1 = s2 = s3 = 0.0
    i = start
    while i + 4 <= stop:
        v0 = float(g[i])
        v1 = float(g[i + 1])
        v2 = float(g[i + 2])
        v3 = float(g[i + 3])
        s0 += v0 * v0
        s1 += v1 * v1
        s2 += v2 * v2
        s3 += v3 * v3
        i += 4
    while i < stop:
        v = float(g[i])
        s0 += v * v
        i += 1
    return (s0 + s1) + (s2 + s3)


@jit_strict
def _sum_in_order(values):
    total = 0.0
    for c in range(values.shape[0]):
        total += values[c]
    return total


@jit_parallel
def squared_norm(g, parallel):
    """sum g_i^2 in float64, by fixed chunks added in order (thread-count independent)."""
    n = g.shape[0]
    nchunks = (n + REDUCE_CHUNK - 1) // REDUCE_CHUNK
    if parallel and n >= PARALLEL_UPDATE_MIN:
        partial = np.empty(nchunks)
        for c in prange(nchunks):
            partial[c] = _chunk_squares(g, c * REDUCE_CHUNK, min(n, (c + 1) * REDUCE_CHUNK))
        return _sum_in_order(partial)
    return _serial_squares(g, nchunks)


@jit_strict
def _serial_squares(g, nchunks):
    # The same chunk sums added in the same order as _sum_in_order, with no array
    # allocated (the serial form runs on every training step).
    n = g.shape[0]
    total = 0.0
    for c in range(nchunks):
        total += _chunk_squares(g, c * REDUCE_CHUNK, min(n, (c + 1) * REDUCE_CHUNK))
    return total


@jit
def count_nonfinite(g):
    """How many elements of the 1-D array g are NaN or infinite.  An integer count is
    exact in any order, so this vectorises under fastmath and still gives the same
    answer everywhere; the training step uses it instead of the squared norm when
    there is no clipping."""
    big = g.dtype.type(np.finfo(g.dtype).max)
    bad = 0
    for i in range(g.shape[0]):
        bad += 0 if _finite(g[i], big) else 1
    return bad


@jit
def clip_scale(sq_norm, clip_norm):
    """torch.nn.utils.clip_grad_norm_'s factor: min(1, max_norm / (norm + 1e-6)); 1 when off."""
    if clip_norm <= 0:
        return 1.0
    coef = clip_norm / (math.sqrt(sq_norm) + 1e-6)
    return coef if coef < 1.0 else 1.0
