"""Loss kernels: the batch-mean loss and its gradient with respect to the outputs.

Averaging follows PyTorch's ``reduction="mean"``:

* MSE: mean over all elements, L = sum (o - y)^2 / (batch * n); dL/do = 2 (o - y) / (batch * n).
* Binary cross-entropy from logits, mean over all elements:
  l = max(o, 0) - o y + log(1 + exp(-|o|)); dL/do = (sigmoid(o) - y) / (batch * n).
* Softmax cross-entropy from logits with integer labels, mean over the batch:
  l_i = logsumexp(o_i) - o_i[y_i]; dL/do_i = (softmax(o_i) - onehot(y_i)) / batch.
  A label of -1 (a padded step of a sequence) carries no loss and no gradient, and
  the mean is over the other rows (PyTorch's ``ignore_index=-1``).

Row weights (``fit(sample_weight=..., class_weight=...)``) follow Keras: each row's
loss times its weight w_i, the sum divided by the same count as without weights
(L = sum_i w_i l_i / batch for softmax CE), so dL/do_i is the unweighted row's
gradient times w_i.  An empty weight array means every w_i = 1 (the same bits as
no weights).

Every exponential is taken of a non-positive number (log-sum-exp, -|o|), so no
loss overflows for |o| = 1e4.  Per-row losses are summed in float64, in row order.
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from .._config import PARALLEL_MIN_WORK, jit, jit_parallel
from .activations import exp32, sigmoid

MSE = 0
BINARY_CROSS_ENTROPY = 1
SOFTMAX_CROSS_ENTROPY = 2

#: The loss a build compiles (fastbp.engine.specialize): ANY here, so the kernels as
#: written take the loss's code at run time; a model's build sets its own.
ANY = -1
LOSS = ANY


@jit
def _mse_row(o, y, g, scale):
    s = 0.0
    for j in range(o.shape[0]):
        d = o[j] - y[j]
        s += float(d) * float(d)
        g[j] = 2 * d * scale
    return s


@jit
def _bce_row(o, y, g, scale):
    s = 0.0
    for j in range(o.shape[0]):
        oj = float(o[j])
        yj = float(y[j])
        s += max(oj, 0.0) - oj * yj + math.log1p(math.exp(-abs(oj)))
        g[j] = (sigmoid(oj) - yj) * scale
    return s


@jit
def _softmax_ce_row(o, label, g, scale):
    n = o.shape[0]
    mx = o[0]
    for j in range(1, n):
        if o[j] > mx:
            mx = o[j]
    total = 0.0
    if o.itemsize == 4:
        for j in range(n):
            e = exp32(o[j] - mx)
            g[j] = e
            total += e
    else:
        for j in range(n):
            e = math.exp(o[j] - mx)
            g[j] = e
            total += e
    inv = 1.0 / total
    for j in range(n):
        g[j] = g[j] * inv * scale
    g[label] -= scale
    return float(mx) + math.log(total) - float(o[label])


@jit
def _row_loss(code, o, yf, yi, i, g, scale):
    if LOSS == MSE or (LOSS == ANY and code == MSE):
        return _mse_row(o, yf[i], g, scale)
    if LOSS == BINARY_CROSS_ENTROPY or (LOSS == ANY and code == BINARY_CROSS_ENTROPY):
        return _bce_row(o, yf[i], g, scale)
    if yi[i] < 0:  # no token here
        g[:] = 0
        return 0.0
    return _softmax_ce_row(o, yi[i], g, scale)


@jit
def loss_count(code, m, n):
    """The number the loss of an (m, n) output is averaged over: m rows for softmax
    cross-entropy, m * n elements for the others."""
    return m if code == SOFTMAX_CROSS_ENTROPY else m * n


@jit
def loss_and_grad(code, out, yf, yi, grad, row_loss, parallel):
    """Batch-mean loss of ``out``; writes dL/dout into ``grad``.

    out, grad : float (batch, n); yf : float (batch, n) targets (MSE, BCE);
    yi : int64 (batch,) labels (softmax CE); row_loss : float64 (>= batch,) workspace.
    Returns the loss as a float64.
    """
    count = loss_count(code, out.shape[0], out.shape[1])
    w = np.empty(0, dtype=np.float64)
    return loss_sum_and_grad(code, out, yf, yi, w, grad, row_loss, count, parallel) / count


@jit_parallel
def loss_sum_and_grad(code, out, yf, yi, w, grad, row_loss, count, parallel):
    """The summed (row-weighted) loss of ``out``'s rows; writes into ``grad`` the
    gradient of that sum divided by ``count`` (the batch's own loss_count for its
    mean; the count of a k-times larger batch when k minibatches accumulate their
    gradients).  w : float64 (batch,) row weights, or empty for none.  Other
    arguments as for :func:`loss_and_grad`."""
    m = out.shape[0]
    scale = 1.0 / count
    weighted = w.shape[0] > 0
    if parallel and out.size >= PARALLEL_MIN_WORK:
        for i in prange(m):
            wi = w[i] if weighted else 1.0
            row_loss[i] = wi * _row_loss(code, out[i], yf, yi, i, grad[i], scale * wi)
    else:
        for i in range(m):
            wi = w[i] if weighted else 1.0
            row_loss[i] = wi * _row_loss(code, out[i], yf, yi, i, grad[i], scale * wi)
    total = 0.0
    for i in range(m):
        total += row_loss[i]
    return total


@jit
def loss_sum_and_correct(code, out, yf, yi, grad_scratch):
    """Summed loss and number of correct predictions over a batch (for evaluate).

    Correct means: argmax equals the label (softmax CE), or the sign of the logit
    matches the 0/1 target element by element (binary CE).  For MSE it is 0.
    grad_scratch : float (batch, n) scratch space.
    """
    m, n = out.shape
    total = 0.0
    correct = 0
    for i in range(m):
        total += _row_loss(code, out[i], yf, yi, i, grad_scratch[i], 1.0)
        if code == SOFTMAX_CROSS_ENTROPY and yi[i] >= 0:
            best = 0
            for j in range(1, n):
                if out[i, j] > out[i, best]:
                    best = j
            if best == yi[i]:
                correct += 1
        elif code == BINARY_CROSS_ENTROPY:
            for j in range(n):
                if (out[i, j] > 0) == (yf[i, j] > 0.5):
                    correct += 1
    return total, correct
