"""The fused training step: forward, loss, backward and optimizer update in one call.

A model is described to the compiled code by two small tables instead of by
generated source, so one compiled function serves every model of a dtype and
the on-disk cache (``cache=True``) holds it across processes:

``table`` : int64 (n_layers, 6), one row per layer:
    KIND (DENSE or DROPOUT), N_IN, N_OUT, W_OFF, B_OFF (offsets of W and b in the
    flat parameter buffer), ACT (activation code).
``ftable`` : float64 (n_layers, 2): SLOPE (leaky ReLU), P (dropout rate).

Workspaces, all allocated once per batch size by the model:
``acts`` : flat (batch * sum of layer widths,) layer outputs, layer after layer;
``gbuf`` : flat (2 * batch * widest layer,) two halves that take turns holding
the gradient flowing down; ``row_loss`` : float64 (batch,).

A window model (a WindowEmbedding layer in front of the table's layers) adds
``ids`` (batch, 2w+1) int64 windows, the table ``E`` (V, d), its lazy optimizer
state ``emb_state`` (k, V, d) and step count ``emb_step`` (1,), the work
buffers ``xwin`` (batch, (2w+1) d), ``emb_grad`` (batch (2w+1), d) and ``emb_rows``
(batch (2w+1) touched rows, then the id hash table of window_row_gradients), and
``emb_cfg`` = int64 [enabled, padding_id, trainable].  Dense models pass
tiny dummies with enabled = 0.

``opt_step`` : int64 (1,) the optimizer's step count; ``rng_step`` : int64 (1,)
the count of training-mode forward passes, which keys the dropout masks.
The step returns ``(loss, status, rows)``: status 0 is a completed step, 1 a
non-finite loss and 2 a non-finite gradient (on 1 and 2 nothing was updated),
3 an update that would have made some weights non-finite (those elements kept
their values, the others were updated).
"""
from __future__ import annotations

import math

from numba import prange

from .._config import PARALLEL_MIN_WORK, jit, jit_parallel
from .dense import dense_backward, dense_forward
from .dropout import dropout_apply
from .embedding import gather_windows, rows_squared_norm, window_row_gradients
from .losses import SOFTMAX_CROSS_ENTROPY, loss_and_grad, loss_sum_and_correct
from .optim import apply_sparse_update, apply_update, clip_scale, count_nonfinite, squared_norm
from .random import combine_key

DENSE = 0
DROPOUT = 1

KIND, N_IN, N_OUT, W_OFF, B_OFF, ACT = 0, 1, 2, 3, 4, 5
SLOPE, P = 0, 1


@jit
def forward(table, ftable, params, x, acts, work, seed, drop_step, training, parallel):
    """Run every layer on x (batch, n_in); returns the last layer's output, a view of acts.
    work : the dense layers' work array (gbuf, which the forward pass does not use)."""
    m = x.shape[0]
    inp = x
    off = 0
    for l in range(table.shape[0]):
        n_in = table[l, N_IN]
        n_out = table[l, N_OUT]
        out = acts[off:off + m * n_out].reshape((m, n_out))
        if table[l, KIND] == DENSE:
            wo = table[l, W_OFF]
            bo = table[l, B_OFF]
            W = params[wo:wo + n_in * n_out].reshape((n_in, n_out))
            dense_forward(inp, W, params[bo:bo + n_out], out, work, table[l, ACT],
                          ftable[l, SLOPE], parallel)
        else:
            p = ftable[l, P]
            if training and p > 0:
                dropout_apply(inp, out, combine_key(seed, drop_step, l), p, parallel)
            else:
                out[:] = inp
        inp = out
        off += m * n_out
    return inp


@jit
def backward(table, ftable, params, grads, x, acts, gbuf, seed, drop_step, training,
             input_grad, parallel):
    """Backpropagate the gradient held in gbuf's first half (dL/d output of the last
    layer) down to every parameter gradient in ``grads``.  With ``input_grad`` the
    gradient is carried down to the input too; returns dL/dx (a view of gbuf)."""
    m = x.shape[0]
    n_layers = table.shape[0]
    first_dense = n_layers
    off = 0
    for l in range(n_layers):
        off += m * table[l, N_OUT]
        if table[l, KIND] == DENSE and l < first_dense:
            first_dense = l
    stop = 0 if input_grad else first_dense
    half = gbuf.shape[0] // 2
    cur = 0
    n_last = table[n_layers - 1, N_OUT]
    g = gbuf[0:m * n_last].reshape((m, n_last))
    for l in range(n_layers - 1, stop - 1, -1):
        n_in = table[l, N_IN]
        n_out = table[l, N_OUT]
        off -= m * n_out
        a = acts[off:off + m * n_out].reshape((m, n_out))
        inp = x if l == 0 else acts[off - m * n_in:off].reshape((m, n_in))
        nxt = half if cur == 0 else 0
        g_in = gbuf[nxt:nxt + m * n_in].reshape((m, n_in))
        if table[l, KIND] == DENSE:
            wo = table[l, W_OFF]
            bo = table[l, B_OFF]
            W = params[wo:wo + n_in * n_out].reshape((n_in, n_out))
            dW = grads[wo:wo + n_in * n_out].reshape((n_in, n_out))
            dense_backward(inp, a, W, g, dW, grads[bo:bo + n_out], g_in, table[l, ACT],
                           ftable[l, SLOPE], l > first_dense or input_grad, parallel)
        else:
            p = ftable[l, P]
            if training and p > 0:
                dropout_apply(g, g_in, combine_key(seed, drop_step, l), p, parallel)
            else:
                g_in[:] = g
        g = g_in
        cur = 1 - cur
    return g


@jit
def train_step(table, ftable, params, grads, x, ids, yf, yi, acts, gbuf, row_loss, xwin,
               E, emb_state, emb_step, emb_rows, emb_grad, emb_cfg, loss_code, opt_code, hp,
               state, opt_step, rng_step, lr, clip_norm, seed, training, update, parallel):
    """One minibatch step.  x : (batch, n_in) features (dense models) or a dummy;
    ids : int64 (batch, 2w+1) windows (window models) or a dummy; yf : float
    targets (batch, n_out) or a dummy; yi : int64 labels (batch,) or a dummy.
    With update False only the gradients are computed (gradcheck, comparisons);
    the window gradient is then left in emb_rows/emb_grad.  Returns
    (loss, status, number of embedding rows touched)."""
    window = emb_cfg[0] != 0
    if window:
        m = ids.shape[0]
        xin = xwin[:m]
        gather_windows(E, ids, xin, parallel)
    else:
        m = x.shape[0]
        xin = x
    drop_step = rng_step[0]
    out = forward(table, ftable, params, xin, acts, gbuf, seed, drop_step, training, parallel)
    n_last = out.shape[1]
    g = gbuf[0:m * n_last].reshape((m, n_last))
    loss = loss_and_grad(loss_code, out, yf, yi, g, row_loss, parallel)
    if not math.isfinite(loss):
        return loss, 1, 0
    fine_tune = window and emb_cfg[2] != 0
    gx = backward(table, ftable, params, grads, xin, acts, gbuf, seed, drop_step,
                  training, fine_tune, parallel)
    n_rows = 0
    if fine_tune:
        P = emb_grad.shape[0]
        n_rows = window_row_gradients(ids, gx, E.shape[1], emb_cfg[1], emb_rows[:P], emb_grad,
                                      emb_rows[P:])
    if clip_norm > 0:
        # Clipping needs the global norm, which also tells whether all are finite.
        sq = squared_norm(grads, parallel)
        if fine_tune:
            sq += rows_squared_norm(emb_grad, n_rows)
        finite = math.isfinite(sq)
    else:
        sq = 0.0
        finite = count_nonfinite(grads) == 0
        if fine_tune:
            finite = finite and count_nonfinite(emb_grad[:n_rows].ravel()) == 0
    if not finite:
        return loss, 2, n_rows
    if training:
        rng_step[0] += 1
    if update:
        scale = clip_scale(sq, clip_norm)
        opt_step[0] += 1
        bad = apply_update(opt_code, params, grads, state, hp, lr, opt_step[0], scale, parallel)
        if fine_tune:
            emb_step[0] += 1
            bad += apply_sparse_update(opt_code, E, emb_grad, emb_rows, n_rows, emb_state, hp,
                                       lr, emb_step[0], scale, parallel)
        if bad != 0:
            return loss, 3, n_rows
    return loss, 0, n_rows


@jit_parallel
def gather_rows(src, idx, start, dst, parallel):
    """dst[i] <- src[idx[start + i]] for i < len(dst); src, dst : (·, n)."""
    m = dst.shape[0]
    if parallel and dst.size >= PARALLEL_MIN_WORK:
        for i in prange(m):
            dst[i] = src[idx[start + i]]
    else:
        for i in range(m):
            dst[i] = src[idx[start + i]]


@jit
def gather_labels(src, idx, start, dst):
    for i in range(dst.shape[0]):
        dst[i] = src[idx[start + i]]


@jit
def train_epoch(table, ftable, params, grads, X, IDS, Yf, Yi, perm, batch_size, lrs, xb, idsb,
                ybf, ybi, acts, gbuf, row_loss, xwin, E, emb_state, emb_step, emb_rows,
                emb_grad, emb_cfg, loss_code, opt_code, hp, state, opt_step, rng_step, clip_norm,
                seed, parallel, losses):
    """All minibatches of one epoch in one call.

    X : (N, n_in) features or a (1, 1) dummy; IDS : int64 (N, 2w+1) windows or a
    (1, 1) dummy; Yf : (N, n_out) float targets or a (1, 1) dummy; Yi : int64 (N,)
    labels or a (1,) dummy; perm : int64 (N,) the sample order; lrs : float64
    (n_batches,) the learning rate of each step; xb, idsb, ybf, ybi : batch
    buffers; losses : float64 (n_batches,), written.  Returns (steps done, status).
    """
    n = perm.shape[0]
    n_batches = (n + batch_size - 1) // batch_size
    use_float_targets = loss_code != SOFTMAX_CROSS_ENTROPY
    window = emb_cfg[0] != 0
    for s in range(n_batches):
        start = s * batch_size
        m = min(batch_size, n - start)
        if window:
            gather_rows(IDS, perm, start, idsb[:m], parallel)
        else:
            gather_rows(X, perm, start, xb[:m], parallel)
        if use_float_targets:
            ym = ybf[:m]
            gather_rows(Yf, perm, start, ym, parallel)
        else:
            ym = ybf
            gather_labels(Yi, perm, start, ybi[:m])
        loss, status, _ = train_step(table, ftable, params, grads, xb[:m], idsb[:m], ym, ybi[:m],
                                     acts, gbuf, row_loss, xwin, E, emb_state, emb_step,
                                     emb_rows, emb_grad, emb_cfg, loss_code, opt_code, hp, state,
                                     opt_step, rng_step, lrs[s], clip_norm, seed, True, True,
                                     parallel)
        losses[s] = loss
        if status != 0:
            return s, status
    return n_batches, 0


@jit
def train_epochs(table, ftable, params, grads, X, IDS, Yf, Yi, perms, batch_size, lrs, xb, idsb,
                 ybf, ybi, acts, gbuf, row_loss, xwin, E, emb_state, emb_step, emb_rows,
                 emb_grad, emb_cfg, loss_code, opt_code, hp, state, opt_step, rng_step,
                 clip_norm, seed, parallel, losses):
    """Several epochs in one call (fit without per-epoch callbacks).

    perms : int64 (epochs, N) the sample order of each epoch; lrs, losses :
    float64 (epochs, n_batches).  Returns (epochs done, steps done in the
    failing epoch, status).
    """
    for e in range(perms.shape[0]):
        done, status = train_epoch(table, ftable, params, grads, X, IDS, Yf, Yi, perms[e],
                                   batch_size, lrs[e], xb, idsb, ybf, ybi, acts, gbuf,
                                   row_loss, xwin, E, emb_state, emb_step, emb_rows, emb_grad,
                                   emb_cfg, loss_code, opt_code, hp, state, opt_step, rng_step,
                                   clip_norm, seed, parallel, losses[e])
        if status != 0:
            return e, done, status
    return perms.shape[0], 0, 0


@jit
def _inputs(X, IDS, start, stop, xwin, E, emb_cfg, parallel):
    # The network's input for rows start:stop: the features, or the gathered windows.
    if emb_cfg[0] != 0:
        xin = xwin[:stop - start]
        gather_windows(E, IDS[start:stop], xin, parallel)
        return xin
    return X[start:stop]


@jit
def predict(table, ftable, params, X, IDS, out, acts, gbuf, xwin, E, emb_cfg, batch_size,
            parallel):
    """out <- the last layer's output for every row of X (or IDS), batch by batch."""
    n = out.shape[0]
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        xin = _inputs(X, IDS, start, stop, xwin, E, emb_cfg, parallel)
        out[start:stop] = forward(table, ftable, params, xin, acts, gbuf, 0, 0, False,
                                  parallel)


@jit
def evaluate(table, ftable, params, X, IDS, Yf, Yi, loss_code, acts, gbuf, xwin, E,
             emb_cfg, batch_size, parallel):
    """(summed loss, number correct) over all rows, batch by batch, in inference mode."""
    if emb_cfg[0] != 0:
        n = IDS.shape[0]
    else:
        n = X.shape[0]
    use_float_targets = loss_code != SOFTMAX_CROSS_ENTROPY
    total = 0.0
    correct = 0
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        m = stop - start
        xin = _inputs(X, IDS, start, stop, xwin, E, emb_cfg, parallel)
        o = forward(table, ftable, params, xin, acts, gbuf, 0, 0, False, parallel)
        k = o.shape[1]
        work = gbuf[0:m * k].reshape((m, k))
        if use_float_targets:
            s, c = loss_sum_and_correct(loss_code, o, Yf[start:stop], Yi, work)
        else:
            s, c = loss_sum_and_correct(loss_code, o, Yf, Yi[start:stop], work)
        total += s
        correct += c
    return total, correct


@jit
def loss_only(table, ftable, params, X, IDS, yf, yi, acts, gbuf, row_loss, xwin, E,
              emb_cfg, loss_code, parallel):
    """The batch-mean loss in inference mode (gradcheck's numeric side)."""
    n = IDS.shape[0] if emb_cfg[0] != 0 else X.shape[0]
    xin = _inputs(X, IDS, 0, n, xwin, E, emb_cfg, parallel)
    out = forward(table, ftable, params, xin, acts, gbuf, 0, 0, False, parallel)
    n_last = out.shape[1]
    g = gbuf[0:n * n_last].reshape((n, n_last))
    return loss_and_grad(loss_code, out, yf, yi, g, row_loss, parallel)
