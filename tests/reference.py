"""Plain NumPy reference twins of fastbp's compiled kernels.

Every function here restates, as directly as NumPy allows, what one kernel in
``fastbp.kernels`` is documented to compute.  The twins share no code with
fastbp: activations are named by string, constants are spelled out again, and
all arithmetic is done in float64 (inputs are upcast), so that a twin is a more
accurate answer than the kernel it checks, whatever the kernel's dtype.
Functions return new arrays and never modify their arguments.

Conventions followed (from the kernels' docstrings and PyTorch):

* dense layer: ``a = f(x W + b)`` with ``W`` of shape (n_in, n_out); the backward
  pass takes the upstream gradient ``g = dL/da`` and the *stored output* ``a``.
* losses are means: MSE and binary cross-entropy over all elements, softmax
  cross-entropy over the rows of the batch.
* SGD and Adam/AdamW follow ``torch.optim`` term by term; ``grad_scale``
  multiplies the gradient first (global-norm clipping).
"""
from __future__ import annotations

import numpy as np

ACTIVATIONS = ("identity", "relu", "leaky_relu", "sigmoid", "tanh")


def _f64(a):
    return np.asarray(a, dtype=np.float64)


# -- activations -------------------------------------------------------------------------


def sigmoid(z):
    """Logistic sigmoid, exp taken of -|z| only, so it never overflows."""
    z = _f64(z)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def activate(z, act, slope=0.01):
    """f(z) for ``act`` in ACTIVATIONS (None means identity)."""
    z = _f64(z)
    if act in (None, "identity", "linear"):
        return z.copy()
    if act == "relu":
        return np.maximum(z, 0.0)
    if act == "leaky_relu":
        return np.where(z > 0, z, slope * z)
    if act == "sigmoid":
        return sigmoid(z)
    if act == "tanh":
        return np.tanh(z)
    raise ValueError(f"unknown activation {act!r}")


def derivative_from_output(a, act, slope=0.01):
    """f'(z) written in terms of the output a = f(z)."""
    a = _f64(a)
    if act in (None, "identity", "linear"):
        return np.ones_like(a)
    if act == "relu":
        return (a > 0).astype(np.float64)
    if act == "leaky_relu":
        return np.where(a > 0, 1.0, slope)
    if act == "sigmoid":
        return a * (1.0 - a)
    if act == "tanh":
        return 1.0 - a * a
    raise ValueError(f"unknown activation {act!r}")


# -- dense layer -----------------------------------------------------------------------------


def dense_forward(x, W, b, act, slope=0.01):
    """a = f(x @ W + b).  x (m, n_in), W (n_in, n_out), b (n_out,) -> (m, n_out)."""
    return activate(_f64(x) @ _f64(W) + _f64(b), act, slope)


def dense_forward_bound(x, W, b):
    """|x| @ |W| + |b|: the scale against which the rounding error of x @ W + b is measured."""
    return np.abs(_f64(x)) @ np.abs(_f64(W)) + np.abs(_f64(b))


def dense_backward(x, a, W, g, act, slope=0.01):
    """Backward of a = f(x W + b) from the stored output a and the upstream gradient g.

    Returns (delta, dW, db, g_in): delta = g * f'(a); dW = x^T delta;
    db = sum over rows of delta; g_in = delta W^T.
    """
    delta = _f64(g) * derivative_from_output(a, act, slope)
    x = _f64(x)
    return delta, x.T @ delta, delta.sum(axis=0), delta @ _f64(W).T


def bias_activate(out, b, act, slope=0.01):
    """f(out + b), row by row."""
    return activate(_f64(out) + _f64(b), act, slope)


def scale_by_derivative(g, a, act, slope=0.01):
    """g * f'(z), f' taken from the stored output a."""
    return _f64(g) * derivative_from_output(a, act, slope)


def column_sums(g):
    return _f64(g).sum(axis=0)


# -- losses ----------------------------------------------------------------------------------


def mse(out, y):
    """Mean over all elements of (o - y)^2, and its gradient 2 (o - y) / (m n)."""
    o, y = _f64(out), _f64(y)
    d = o - y
    return float(np.mean(d * d)), 2.0 * d / d.size


def binary_cross_entropy_with_logits(out, y):
    """Mean over all elements of max(o, 0) - o y + log(1 + exp(-|o|)); gradient
    (sigmoid(o) - y) / (m n)."""
    o, y = _f64(out), _f64(y)
    elem = np.maximum(o, 0.0) - o * y + np.log1p(np.exp(-np.abs(o)))
    return float(np.mean(elem)), (sigmoid(o) - y) / o.size


def softmax_cross_entropy(out, labels):
    """Mean over rows of logsumexp(o_i) - o_i[y_i]; gradient (softmax(o_i) - onehot(y_i)) / m."""
    o = _f64(out)
    labels = np.asarray(labels, dtype=np.int64)
    m = o.shape[0]
    mx = o.max(axis=1, keepdims=True)
    e = np.exp(o - mx)
    total = e.sum(axis=1, keepdims=True)
    lse = mx[:, 0] + np.log(total[:, 0])
    rows = np.arange(m)
    loss = float(np.mean(lse - o[rows, labels]))
    grad = e / total
    grad[rows, labels] -= 1.0
    return loss, grad / m


LOSSES = {"mse": mse, "binary_cross_entropy": binary_cross_entropy_with_logits,
          "softmax_cross_entropy": softmax_cross_entropy}


# -- optimizers ------------------------------------------------------------------------------


def sgd_update(p, g, buf, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0,
               step=1, grad_scale=1.0):
    """torch.optim.SGD for one step; ``step`` is 1-based (step 1 starts the buffer at d).

    Returns (p_new, buf_new).
    """
    p, buf = _f64(p), _f64(buf).copy()
    d = _f64(g) * grad_scale
    if weight_decay != 0:
        d = d + weight_decay * p
    if momentum != 0:
        if step == 1:
            buf = d.copy()
        else:
            buf = momentum * buf + (1.0 - dampening) * d
        d = d + momentum * buf if nesterov else buf
    return p - lr * d, buf


def adam_update(p, g, m, v, vmax, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                amsgrad=False, decoupled=False, step=1, grad_scale=1.0):
    """torch.optim.Adam (decoupled=False) / torch.optim.AdamW (decoupled=True), one step.

    Returns (p_new, m_new, v_new, vmax_new).
    """
    p, m, v, vmax = _f64(p), _f64(m), _f64(v), _f64(vmax).copy()
    d = _f64(g) * grad_scale
    if weight_decay != 0:
        if decoupled:
            p = p * (1.0 - lr * weight_decay)
        else:
            d = d + weight_decay * p
    m = beta1 * m + (1.0 - beta1) * d
    v = beta2 * v + (1.0 - beta2) * d * d
    if amsgrad:
        vmax = np.maximum(vmax, v)
        vhat = vmax
    else:
        vhat = v
    bias_correction1 = 1.0 - beta1 ** step
    bias_correction2 = 1.0 - beta2 ** step
    denom = np.sqrt(vhat) / np.sqrt(bias_correction2) + eps
    return p - (lr / bias_correction1) * (m / denom), m, v, vmax


def adagrad_update(p, g, acc, lr, lr_decay=0.0, eps=1e-10, weight_decay=0.0, step=1,
                   grad_scale=1.0):
    """torch.optim.Adagrad, one step.  Returns (p_new, acc_new)."""
    p, acc = _f64(p), _f64(acc)
    d = _f64(g) * grad_scale
    if weight_decay != 0:
        d = d + weight_decay * p
    clr = lr / (1.0 + (step - 1) * lr_decay)
    acc = acc + d * d
    return p - clr * d / (np.sqrt(acc) + eps), acc


def rmsprop_update(p, g, square_avg, buf, grad_avg, lr, alpha=0.99, eps=1e-8, weight_decay=0.0,
                   momentum=0.0, centered=False, grad_scale=1.0):
    """torch.optim.RMSprop, one step.  Returns (p_new, square_avg, momentum_buffer, grad_avg)."""
    p, square_avg, buf, grad_avg = _f64(p), _f64(square_avg), _f64(buf), _f64(grad_avg)
    d = _f64(g) * grad_scale
    if weight_decay != 0:
        d = d + weight_decay * p
    square_avg = alpha * square_avg + (1.0 - alpha) * d * d
    if centered:
        grad_avg = alpha * grad_avg + (1.0 - alpha) * d
        avg = np.sqrt(square_avg - grad_avg * grad_avg) + eps
    else:
        avg = np.sqrt(square_avg) + eps
    if momentum > 0:
        buf = momentum * buf + d / avg
        return p - lr * buf, square_avg, buf, grad_avg
    return p - lr * d / avg, square_avg, buf, grad_avg


def adadelta_update(p, g, square_avg, acc_delta, lr, rho=0.9, eps=1e-6, weight_decay=0.0,
                    grad_scale=1.0):
    """torch.optim.Adadelta, one step.  Returns (p_new, square_avg, acc_delta)."""
    p, square_avg, acc_delta = _f64(p), _f64(square_avg), _f64(acc_delta)
    d = _f64(g) * grad_scale
    if weight_decay != 0:
        d = d + weight_decay * p
    square_avg = rho * square_avg + (1.0 - rho) * d * d
    delta = np.sqrt(acc_delta + eps) / np.sqrt(square_avg + eps) * d
    acc_delta = rho * acc_delta + (1.0 - rho) * delta * delta
    return p - lr * delta, square_avg, acc_delta


def yogi_update(p, g, m, v, lr, beta1=0.9, beta2=0.999, eps=1e-3, weight_decay=0.0,
                grad_scale=1.0):
    """Yogi (Zaheer et al. 2018, algorithm 2, no bias correction), one step.
    Returns (p_new, m_new, v_new)."""
    p, m, v = _f64(p), _f64(m), _f64(v)
    d = _f64(g) * grad_scale
    if weight_decay != 0:
        d = d + weight_decay * p
    m = beta1 * m + (1.0 - beta1) * d
    d2 = d * d
    v = v - (1.0 - beta2) * np.sign(v - d2) * d2
    return p - lr * m / (np.sqrt(v) + eps), m, v


def squared_norm(g):
    g = _f64(g)
    return float(np.dot(g, g))


def clip_scale(sq_norm, clip_norm):
    """torch.nn.utils.clip_grad_norm_'s factor min(1, max_norm / (norm + 1e-6)); 1 when off."""
    if clip_norm <= 0:
        return 1.0
    return min(1.0, clip_norm / (np.sqrt(sq_norm) + 1e-6))


# -- counter-based random numbers and dropout --------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix64(z):
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic)."""
    z = np.asarray(z, dtype=np.uint64)
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def combine_key(seed, step, layer):
    k = _mix64(np.array([seed], dtype=np.uint64) + _GOLDEN)
    k = _mix64(k ^ (np.array([step], dtype=np.uint64) * _GOLDEN))
    return np.uint64(_mix64(k ^ (np.array([layer], dtype=np.uint64) + _M2))[0])


def uniform(key, index):
    """Floats in [0, 1) from (key, index): the top 53 bits of mix64(key + (index + 1) golden)."""
    index = np.asarray(index, dtype=np.uint64)
    shape = index.shape
    index = index.reshape(-1)  # arrays, not scalars: NumPy wraps uint64 arrays silently
    z = _mix64(np.full(index.shape, key, dtype=np.uint64) + (index + np.uint64(1)) * _GOLDEN)
    return ((z >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)).reshape(shape)


def dropout_mask(shape, key, p):
    """Keep mask of inverted dropout: element (i, j) is kept when uniform(key, i n + j) >= p."""
    m, n = shape
    return uniform(key, np.arange(m * n, dtype=np.uint64)).reshape(m, n) >= p


def dropout_apply(x, key, p):
    """x * mask / (1 - p), computed in x's dtype (the scale is rounded to it first)."""
    x = np.asarray(x)
    scale = x.dtype.type(1.0 / (1.0 - p))
    return np.where(dropout_mask(x.shape, key, p), x * scale, x.dtype.type(0))


# -- whole networks (for model-level tests) ------------------------------------------------------


def mlp_forward(x, layers):
    """Forward pass of a stack of (W, b, act, slope) dense layers."""
    h = _f64(x)
    for W, b, act, slope in layers:
        h = dense_forward(h, W, b, act, slope)
    return h
