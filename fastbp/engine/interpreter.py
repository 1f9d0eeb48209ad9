"""The compiled interpreter: walks a model's tape (forward, loss, backward, update).

The model reaches the compiled code as the tables of a :class:`~.bundles.Tape`,
not as generated source, so one cached function serves every model of a dtype
with the same features (below), and the on-disk cache keeps it across
processes.  A training step is two phases:

* **gradients** (:func:`gradients`): the forward pass node by node, the loss
  and its gradient at the output, the backward pass in reverse tape order,
  then the finiteness check (and the squared norm for clipping).  Dense
  gradients land in ``weights.grads``; an embedding table's gradient lands in
  its touched rows (``work.rows``, ``work.row_grads``, ``work.n_rows``);
* **update** (:func:`update`): clipping, the optimizer over the flat buffer,
  and the lazy row updates of every trainable table.

:func:`train_step` and :func:`train_epochs` fuse the two into one call; a
data-parallel or accumulating driver calls them apart.

A value read by several nodes gets the sum of their gradients: the reader
that the backward pass meets first writes it, the others add to it, always in
reverse tape order, so the sum does not depend on the thread count.  The
same holds for a layer called twice (its parameter gradients) and for an
embedding table read by two nodes (its rows).

**Builds.**  A model runs its own build of these functions
(:mod:`fastbp.engine.specialize`), in which the constants ``HAS_TABLES``,
``HAS_DROPOUT``, ``HAS_MERGE`` and ``HAS_SEGMENTS`` say which node kinds and
which backward schedule it uses (and ``OPTIMIZER``, ``LOSS`` in the kernels,
which optimizer and loss).  numba drops a branch on a constant before it types
the code, so the kernels of what a model does not use are never compiled: the
demo's MLP compiles neither the embedding path nor eleven optimizers.  The
functions of this module as written keep every branch.

The phases are inlined (``inline="always"``) into the entry points that Python
calls (``train_epochs``, ``train_step``, ``evaluate``, ...): numba compiles each
compiled function with a copy of everything it calls, so every level of calls
between compiled functions costs a compilation of everything below it.
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from .._config import PARALLEL_MIN_WORK, jit, jit_always_inline, jit_parallel, unliteral
from ..kernels.dense import dense_backward, dense_forward
from ..kernels.dropout import dropout_apply
from ..kernels.elementwise import add_flat, add_into, columns_into, copy_columns
from ..kernels.embedding import add_row_gradients, gather_windows, rows_squared_norm
from ..kernels.losses import (SOFTMAX_CROSS_ENTROPY, loss_count, loss_sum_and_correct,
                              loss_sum_and_grad)
from ..kernels.optim import (apply_sparse_update, apply_update, clip_scale, count_nonfinite,
                             squared_norm)
from ..kernels.random import combine_key
from ..kernels.recurrent import GRU, cache_width, n_gates, recurrent_backward, recurrent_forward
from ..kernels.rows import gather_rows
from ..kernels.views import shaped
from .bundles import borrowed
from .codes import (ACT, ADD, ARG0, CACHE_OFF, CELL, CONCAT, DATA_COL, DENSE, DIM, DROPOUT,
                    E_OFF, GRAD_ACC, GRAD_OFF, HASH_SIZE, INPUT, IS_IDS, KEY, KIND, LAST, N_ARGS,
                    NEEDS_GRAD, NONFINITE_GRADIENT, NONFINITE_LOSS, NONFINITE_UPDATE, OFFSET, OK,
                    OUT, P, PADDING, PARAM_ACC, RECURRENT, REVERSE, ROW_CAP, ROWS_OFF, SEQ,
                    SEQ_COL, SLOPE, STATE_OFF, TABLE, TRAINABLE, TRUNCATE, VALUE, VOCAB, W_OFF,
                    WIDTH, WINDOW)


#: What a build compiles (see the module's docstring): True here, so the functions as
#: written handle every model; a model's build sets what it does not use to False.
HAS_TABLES = True    # WINDOW nodes: embedding tables, id inputs, lazy row updates
HAS_DROPOUT = True   # DROPOUT nodes
HAS_MERGE = True     # CONCAT and ADD nodes
HAS_SEGMENTS = True  # gradient checkpointing (segments recomputed in the backward pass)
HAS_SEQUENCES = True  # sequence values: per-batch steps and lengths, RECURRENT nodes


# -- where things live ------------------------------------------------------------------
@jit_always_inline
def slot(arena, values, v, m, R):
    """Value v at batch size m: the (m, width) block of ``arena`` at m * offset; for a
    sequence whose m samples have R steps in all, the (R, width) block there, packed:
    sample i's step t is row ``work.starts[i] + t``, no padding in between."""
    off = values[v, OFFSET] * m
    w = values[v, WIDTH]
    rows = R if HAS_SEQUENCES and values[v, SEQ] != 0 else m
    return shaped(arena[off:off + rows * w], (rows, w))


@jit_always_inline
def table(emb, tables, t):
    """Embedding table t, (vocab, dim), a view of the flat embedding buffer."""
    off = tables[t, E_OFF]
    V = tables[t, VOCAB]
    d = tables[t, DIM]
    return shaped(emb[off:off + V * d], (V, d))


@jit_always_inline
def table_state(emb_state, tables, t, k):
    """The k state arrays of trainable table t, (k, vocab, dim)."""
    off = tables[t, STATE_OFF]
    V = tables[t, VOCAB]
    d = tables[t, DIM]
    return shaped(emb_state[off:off + k * V * d], (k, V, d))


@jit_always_inline
def row_workspace(work, tables, t):
    """(touched rows, id hash table, row gradients) of table t."""
    cap = tables[t, ROW_CAP]
    ro = tables[t, ROWS_OFF]
    go = tables[t, GRAD_OFF]
    d = tables[t, DIM]
    rows = work.rows[ro:ro + cap]
    hashed = work.rows[ro + cap:ro + cap + tables[t, HASH_SIZE]]
    G = shaped(work.row_grads[go:go + cap * d], (cap, d))
    return rows, hashed, G


@jit_always_inline
def dense_params(arr, nodes, values, operands, n):
    """(W, b) of dense node n as views of ``arr`` (the parameters or the gradients)."""
    n_in = values[operands[nodes[n, ARG0], VALUE], WIDTH]
    n_out = values[nodes[n, OUT], WIDTH]
    wo = nodes[n, W_OFF]
    return (shaped(arr[wo:wo + n_in * n_out], (n_in, n_out)),
            arr[wo + n_in * n_out:wo + n_in * n_out + n_out])


@jit_always_inline
def recurrent_params(arr, o, nodes, values, operands, n):
    """(W, U, b, b_rec) of recurrent node n as views of ``arr`` from offset o (the node's
    W_OFF in the parameters or gradients, 0 in the scratch); b_rec is GRU's own (a
    one-element stand-in for the other cells, which have none)."""
    n_in = values[operands[nodes[n, ARG0], VALUE], WIDTH]
    h = values[nodes[n, OUT], WIDTH]
    G = n_gates(nodes[n, CELL]) * h
    W = shaped(arr[o:o + n_in * G], (n_in, G))
    o += n_in * G
    U = shaped(arr[o:o + h * G], (h, G))
    o += h * G
    b = arr[o:o + G]
    b_rec = arr[o + G:o + 2 * G] if nodes[n, CELL] == GRU else arr[o:o + 1]
    return W, U, b, b_rec


@jit_always_inline
def recurrent_size(nodes, values, operands, n):
    """The parameter count of recurrent node n."""
    n_in = values[operands[nodes[n, ARG0], VALUE], WIDTH]
    h = values[nodes[n, OUT], WIDTH]
    G = n_gates(nodes[n, CELL]) * h
    return n_in * G + h * G + G + (G if nodes[n, CELL] == GRU else 0)


@jit_always_inline
def recurrent_cache(work, nodes, values, n, m, R):
    """(cache, states, state gradients) of recurrent node n: what its kernels keep, then
    (for an output of the last state only) the (R, h) states and their gradients."""
    h = values[nodes[n, OUT], WIDTH]
    cap = work.steps[1]
    off = nodes[n, CACHE_OFF] * m * cap
    kept = cache_width(nodes[n, CELL], h)
    cache = work.cache[off:off + m * cap * kept]
    if nodes[n, LAST] == 0:  # the output slot holds the states
        return cache, work.cache[:0].reshape((0, h)), work.cache[:0].reshape((0, h))
    off += m * cap * kept
    states = shaped(work.cache[off:off + R * h], (R, h))
    off += m * cap * h
    grads = shaped(work.cache[off:off + R * h], (R, h))
    return cache, states, grads


@jit_always_inline
def last_step(lengths, starts, i, reverse):
    """The row of sample i's state after the last step its direction reads."""
    return starts[i] + (0 if reverse else lengths[i] - 1)


# -- inputs -------------------------------------------------------------------------------------
@jit
def _copy_steps(src, col, row, L, dst, r0):
    # dst[r0 .. r0 + L - 1] <- the first L steps of src[row] from column col
    w = dst.shape[1]
    for t in range(L):
        dst[r0 + t] = src[row, col + t * w:col + (t + 1) * w]


@jit_parallel
def _gather_steps(src, col, idx, start, m, lengths, starts, dst, parallel):
    # packed rows of dst: sample i's steps at starts[i] .. <- row idx[start + i] of src,
    # whose steps lie side by side from column col
    if parallel and dst.size >= PARALLEL_MIN_WORK:
        for i0 in prange(m):
            i = np.int64(i0)  # prange's index is unsigned
            _copy_steps(src, col, idx[start + i], lengths[i], dst, starts[i])
    else:
        for i in range(m):
            _copy_steps(src, col, idx[start + i], lengths[i], dst, starts[i])


@jit_always_inline
def load_inputs(tape, work, data, idx, start, m, parallel):
    """Every input node's slot <- rows idx[start:start + m] of its columns of the data.
    With sequences, the minibatch's lengths go to ``work.lengths``, the row of each
    sample's first step to ``work.starts`` and its longest and its rows in all to
    ``work.steps``: a sequence value holds the batch's real steps only, packed sample
    after sample, so a batch costs its own tokens, not the array's T."""
    nodes, values = tape.nodes, tape.values
    R = m
    if HAS_SEQUENCES:
        T = 1
        R = 0
        for i in range(m):
            L = data.lengths[idx[start + i]]
            work.lengths[i] = L
            work.starts[i] = R
            R += L
            T = max(T, L)
        work.starts[m] = R
        work.steps[0] = T
        work.steps[2] = R
    for n in range(nodes.shape[0]):
        if nodes[n, KIND] != INPUT:
            continue
        v = nodes[n, OUT]
        col = nodes[n, DATA_COL]
        if HAS_SEQUENCES and values[v, SEQ] != 0:
            col += data.steps * nodes[n, SEQ_COL]
        if HAS_SEQUENCES and values[v, SEQ] != 0:
            if HAS_TABLES and values[v, IS_IDS] != 0:
                _gather_steps(data.xi, unliteral(col), idx, start, m, work.lengths, work.starts,
                              slot(work.ids, values, v, m, R), parallel)
            else:
                _gather_steps(data.xf, col, idx, start, m, work.lengths, work.starts,
                              slot(work.acts, values, v, m, R), parallel)
        elif HAS_TABLES and values[v, IS_IDS] != 0:
            gather_rows(data.xi, unliteral(col), idx, start, slot(work.ids, values, v, m, R),
                        parallel)
        else:
            gather_rows(data.xf, col, idx, start, slot(work.acts, values, v, m, R), parallel)


@jit_always_inline
def load_targets(tape, work, data, idx, start, m, parallel):
    """(yf, yi, w) of rows idx[start:start + m], gathered into the work buffers; for a
    sequence output the labels (and weights) of each row's steps, -1 past its length.
    w is data.w itself (empty) when the data carries no row weights."""
    w = data.w
    if HAS_SEQUENCES and tape.values[tape.output, SEQ] != 0:
        yi = work.ybi[:work.steps[2]]
        if data.w.shape[0] > 0:
            w = work.ybw[:work.steps[2]]
        for i in range(m):
            r = idx[start + i] * data.steps
            r0 = work.starts[i]
            for t in range(work.lengths[i]):
                yi[r0 + t] = data.yi[r + t]
            if data.w.shape[0] > 0:
                for t in range(work.lengths[i]):
                    w[r0 + t] = data.w[r + t]
        return work.ybf, yi, w
    if data.w.shape[0] > 0:
        w = work.ybw[:m]
        for i in range(m):
            w[i] = data.w[idx[start + i]]
    if tape.loss == SOFTMAX_CROSS_ENTROPY:  # integer labels
        yi = work.ybi[:m]
        for i in range(m):
            yi[i] = data.yi[idx[start + i]]
        return work.ybf, yi, w
    yf = work.ybf[:m]
    gather_rows(data.yf, unliteral(0), idx, start, yf, parallel)
    return yf, work.ybi, w


@jit_always_inline
def batch_count(tape, data, idx, start, m):
    """What the loss of rows idx[start:start + m] is averaged over: the tokens that carry
    a label for a sequence output (at least 1), else loss_count."""
    if HAS_SEQUENCES and tape.values[tape.output, SEQ] != 0:
        count = 0
        for i in range(m):
            count += data.tokens[idx[start + i]]
        return max(count, 1)
    return loss_count(tape.loss, m, tape.values[tape.output, WIDTH])


# -- forward ---------------------------------------------------------------------------------------
@jit
def forward_nodes(tape, weights, work, first, stop, m, seed, drop_step, training, parallel):
    """Nodes first .. stop - 1 in tape order: each output slot <- its operation on its
    operands' slots.  One call runs many nodes: every call between compiled functions
    takes references to all the bundles' arrays, so the loop stays inside."""
    nodes, values, operands = tape.nodes, tape.values, tape.operands
    R = work.steps[2] if HAS_SEQUENCES else m
    for n in range(first, stop):
        kind = nodes[n, KIND]
        if kind == INPUT:
            continue
        out = slot(work.acts, values, nodes[n, OUT], m, R)
        a0 = nodes[n, ARG0]
        v0 = operands[a0, VALUE]
        if kind == DENSE:
            W, b = dense_params(weights.params, nodes, values, operands, n)
            dense_forward(slot(work.acts, values, v0, m, R), W, b, out, work.work, nodes[n, ACT],
                          tape.fattrs[n, SLOPE], parallel)
        elif HAS_DROPOUT and kind == DROPOUT:
            x = slot(work.acts, values, v0, m, R)
            p = tape.fattrs[n, P]
            if training and p > 0:
                dropout_apply(x, out, combine_key(seed, drop_step, nodes[n, KEY]), p, parallel)
            else:
                out[:] = x
        elif HAS_TABLES and kind == WINDOW:
            gather_windows(table(weights.emb, tape.tables, nodes[n, TABLE]),
                           slot(work.ids, values, v0, m, R), out, parallel)
        elif HAS_MERGE and kind == CONCAT:
            col = 0
            for a in range(a0, a0 + nodes[n, N_ARGS]):
                x = slot(work.acts, values, operands[a, VALUE], m, R)
                copy_columns(x, out, col)
                col += x.shape[1]
        elif HAS_MERGE and kind == ADD:
            out[:] = slot(work.acts, values, v0, m, R)
            for a in range(a0 + 1, a0 + nodes[n, N_ARGS]):
                add_into(out, slot(work.acts, values, operands[a, VALUE], m, R))
        elif HAS_SEQUENCES and kind == RECURRENT:
            W, U, b, b_rec = recurrent_params(weights.params, nodes[n, W_OFF], nodes, values,
                                              operands, n)
            cache, states, _ = recurrent_cache(work, nodes, values, n, m, R)
            last = nodes[n, LAST] != 0
            seq = states if last else out
            lengths = work.lengths[:m]
            starts = work.starts[:m]
            reverse = nodes[n, REVERSE] != 0
            recurrent_forward(nodes[n, CELL], nodes[n, ACT], slot(work.acts, values, v0, m, R),
                              W, U, b, b_rec, lengths, starts, work.steps[0], reverse, seq,
                              cache, work.rwork, parallel)
            if last:
                for i in range(m):
                    out[i] = seq[last_step(lengths, starts, i, reverse)]


@jit_always_inline
def forward(tape, weights, work, m, seed, drop_step, training, parallel):
    """Every node in tape order; returns the output value's slot."""
    forward_nodes(tape, weights, work, unliteral(0), tape.nodes.shape[0], m, unliteral(seed),
                  unliteral(drop_step), unliteral(training), parallel)
    R = work.steps[2] if HAS_SEQUENCES else m
    return slot(work.acts, tape.values, tape.output, m, R)


# -- backward ---------------------------------------------------------------------------------------
@jit_always_inline
def _gradient_target(work, values, operands, a, m, R):
    """Where operand a's share of its value's gradient goes: the value's gradient slot,
    or (when another reader wrote it already) the tmp buffer, added afterwards."""
    v = operands[a, VALUE]
    if operands[a, GRAD_ACC] != 0:
        g = slot(work.agrads, values, v, m, R)
        return shaped(work.tmp[:g.size], g.shape)
    return slot(work.agrads, values, v, m, R)


@jit_always_inline
def _finish_gradient(work, values, operands, a, m, R):
    if operands[a, GRAD_ACC] != 0:
        g = slot(work.agrads, values, operands[a, VALUE], m, R)
        add_into(g, shaped(work.tmp[:g.size], g.shape))


@jit
def backward_nodes(tape, weights, work, first, stop, m, seed, drop_step, training,
                   add_params, parallel):
    """Nodes stop - 1 down to first: from the gradient of each output to its
    parameters' gradients and its operands' gradients.  add_params: add to the
    parameter gradients instead of writing them (minibatches accumulating)."""
    nodes, values, operands = tape.nodes, tape.values, tape.operands
    R = work.steps[2] if HAS_SEQUENCES else m
    for n in range(stop - 1, first - 1, -1):
        kind = nodes[n, KIND]
        out_v = nodes[n, OUT]
        if kind == INPUT or values[out_v, NEEDS_GRAD] == 0:
            continue
        g = slot(work.agrads, values, out_v, m, R)
        a0 = nodes[n, ARG0]
        v0 = operands[a0, VALUE]
        need0 = values[v0, NEEDS_GRAD] != 0
        if kind == DENSE:
            W, _ = dense_params(weights.params, nodes, values, operands, n)
            x = slot(work.acts, values, v0, m, R)
            a = slot(work.acts, values, out_v, m, R)
            g_in = _gradient_target(work, values, operands, a0, m, R)
            if add_params or nodes[n, PARAM_ACC] != 0:
                # this node's share, added to what the other call (or minibatch) left
                dW = shaped(weights.pscratch[:W.size], W.shape)
                db = weights.pscratch[W.size:W.size + W.shape[1]]
                dense_backward(x, a, W, g, dW, db, g_in, nodes[n, ACT], tape.fattrs[n, SLOPE],
                               need0, parallel)
                wo = nodes[n, W_OFF]
                size = W.size + W.shape[1]
                add_flat(weights.grads[wo:wo + size], weights.pscratch[:size])
            else:
                dW, db = dense_params(weights.grads, nodes, values, operands, n)
                dense_backward(x, a, W, g, dW, db, g_in, nodes[n, ACT], tape.fattrs[n, SLOPE],
                               need0, parallel)
            if need0:
                _finish_gradient(work, values, operands, a0, m, R)
        elif HAS_DROPOUT and kind == DROPOUT:
            if need0:
                g_in = _gradient_target(work, values, operands, a0, m, R)
                p = tape.fattrs[n, P]
                if training and p > 0:
                    dropout_apply(g, g_in, combine_key(seed, drop_step, nodes[n, KEY]), p, parallel)
                else:
                    g_in[:] = g
                _finish_gradient(work, values, operands, a0, m, R)
        elif HAS_TABLES and kind == WINDOW:
            t = nodes[n, TABLE]
            rows, hashed, G = row_workspace(work, tape.tables, t)
            count = work.n_rows[t]
            if count < 0:  # the first node of this pass to reach the table
                hashed[:] = -1
                count = 0
            work.n_rows[t] = add_row_gradients(slot(work.ids, values, v0, m, R), g,
                                               tape.tables[t, DIM], tape.tables[t, PADDING],
                                               rows, G, hashed, count)
        elif HAS_MERGE and kind == CONCAT:
            col = 0
            for a in range(a0, a0 + nodes[n, N_ARGS]):
                v = operands[a, VALUE]
                w = values[v, WIDTH]
                if values[v, NEEDS_GRAD] != 0:
                    columns_into(g, col, slot(work.agrads, values, v, m, R), operands[a, GRAD_ACC] != 0)
                col += w
        elif HAS_MERGE and kind == ADD:
            for a in range(a0, a0 + nodes[n, N_ARGS]):
                v = operands[a, VALUE]
                if values[v, NEEDS_GRAD] != 0:
                    if operands[a, GRAD_ACC] != 0:
                        add_into(slot(work.agrads, values, v, m, R), g)
                    else:
                        slot(work.agrads, values, v, m, R)[:] = g
        elif HAS_SEQUENCES and kind == RECURRENT:
            wo = nodes[n, W_OFF]
            W, U, _, b_rec = recurrent_params(weights.params, wo, nodes, values, operands, n)
            cache, states, g_states = recurrent_cache(work, nodes, values, n, m, R)
            lengths = work.lengths[:m]
            starts = work.starts[:m]
            reverse = nodes[n, REVERSE] != 0
            seq, g_seq = slot(work.acts, values, out_v, m, R), g
            if nodes[n, LAST] != 0:  # the gradient reaches the last state only
                seq, g_seq = states, g_states
                g_seq[:] = 0
                for i in range(m):
                    g_seq[last_step(lengths, starts, i, reverse)] = g[i]
            g_in = _gradient_target(work, values, operands, a0, m, R)
            accumulate = add_params or nodes[n, PARAM_ACC] != 0
            size = recurrent_size(nodes, values, operands, n)
            if accumulate:  # this node's share, added to what the other call left
                dW, dU, db, db_rec = recurrent_params(weights.pscratch, 0, nodes, values,
                                                      operands, n)
            else:
                dW, dU, db, db_rec = recurrent_params(weights.grads, wo, nodes, values,
                                                      operands, n)
            recurrent_backward(nodes[n, CELL], nodes[n, ACT], slot(work.acts, values, v0, m, R),
                               W, U, b_rec, lengths, starts, work.steps[0], reverse,
                               nodes[n, TRUNCATE], seq, cache, g_seq, dW,
                               dU, db, db_rec, g_in, need0, work.rwork, parallel)
            if accumulate:
                add_flat(weights.grads[wo:wo + size], weights.pscratch[:size])
            if need0:
                _finish_gradient(work, values, operands, a0, m, R)


@jit_always_inline
def open_rows(tape, work):
    """Mark every table's row gradients empty: the next backward pass starts them."""
    for t in range(tape.tables.shape[0]):
        work.n_rows[t] = -1


@jit_always_inline
def close_rows(tape, work):
    """A table no node reached this pass (all its ids were padding) has no rows."""
    for t in range(tape.tables.shape[0]):
        if work.n_rows[t] < 0:
            work.n_rows[t] = 0


@jit_always_inline
def backward(tape, weights, work, m, seed, drop_step, training, add_params, parallel):
    """Every node in reverse tape order (the output's gradient is in place).

    With gradient checkpointing the segments go last to first: each but the last
    (whose values the forward pass left in place) is first run forward again from the
    values kept, with the same dropout keys, so the gradients are the same bits."""
    segs = tape.segments
    if not HAS_SEGMENTS or segs.shape[0] == 0:
        backward_nodes(tape, weights, work, unliteral(0), tape.nodes.shape[0], m,
                       unliteral(seed), unliteral(drop_step), unliteral(training),
                       unliteral(add_params), parallel)
        return
    for s in range(segs.shape[0] - 1, -1, -1):
        first, stop = segs[s, 0], segs[s, 1] + 1
        if s < segs.shape[0] - 1:
            forward_nodes(tape, weights, work, first, stop, m, unliteral(seed),
                          unliteral(drop_step), unliteral(training), parallel)
        backward_nodes(tape, weights, work, first, stop, m, unliteral(seed),
                       unliteral(drop_step), unliteral(training), unliteral(add_params),
                       parallel)


# -- the gradient phase -------------------------------------------------------------------------------
@jit_always_inline
def output_gradient(tape, work, yf, yi, yw, m, count, parallel):
    """The summed loss of the output's rows (each times its weight in ``yw`` when that
    is not empty); its gradient (the sum's, over ``count``) goes into the output
    value's gradient slot."""
    values = tape.values
    R = work.steps[2] if HAS_SEQUENCES else m
    out = slot(work.acts, values, tape.output, m, R)
    g = slot(work.agrads, values, tape.output, m, R)
    return loss_sum_and_grad(tape.loss, out, yf, yi, yw, g, work.row_loss, count, parallel)


@jit_always_inline
def gradient_status(tape, weights, work, clip_norm, parallel):
    """(status, squared global norm): NONFINITE_GRADIENT when any gradient, dense or
    row, is not finite.  The norm is only computed when clipping needs it."""
    tables = tape.tables
    if clip_norm > 0:
        sq = squared_norm(weights.grads, parallel)
        if HAS_TABLES:
            for t in range(tables.shape[0]):
                if tables[t, TRAINABLE] != 0:
                    _, _, G = row_workspace(work, tables, t)
                    sq += rows_squared_norm(G, work.n_rows[t])
        finite = math.isfinite(sq)
    else:
        sq = 0.0
        finite = count_nonfinite(weights.grads) == 0
        if HAS_TABLES:
            for t in range(tables.shape[0]):
                if tables[t, TRAINABLE] != 0:
                    _, _, G = row_workspace(work, tables, t)
                    finite = finite and count_nonfinite(G[:work.n_rows[t]].ravel()) == 0
    return (OK if finite else NONFINITE_GRADIENT), sq


@jit_always_inline
def gradients(tape, weights, work, clip_norm, yf, yi, yw, m, count, stream, training, add,
              parallel):
    """Phase one: forward, loss, backward, checks.  ``count``: what the loss is averaged
    over (the batch's own loss_count, or an accumulated group's); ``add``: add these
    gradients to those already held (dense and rows) instead of replacing them.

    Returns (summed loss, status, squared gradient norm).  On a non-finite loss
    nothing is computed further; the dropout stream advances only on success.
    """
    drop_step = stream.step[0]
    forward(tape, weights, work, m, stream.seed, drop_step, training, parallel)
    total = output_gradient(tape, work, yf, yi, yw, m, count, parallel)
    if not math.isfinite(total):
        return total, NONFINITE_LOSS, 0.0
    if not add:
        open_rows(tape, work)
    backward(tape, weights, work, m, stream.seed, drop_step, training, add, parallel)
    close_rows(tape, work)
    status, sq = gradient_status(tape, weights, work, clip_norm, parallel)
    if status == OK and training:
        stream.step[0] += 1
    return total, status, sq


# -- the update phase ----------------------------------------------------------------------------------
@jit_always_inline
def update(tape, weights, work, opt, lr, sq, parallel):
    """Phase two: clip (from the squared norm ``sq``), update the flat buffer, then the
    touched rows of every trainable table.  Returns OK or NONFINITE_UPDATE."""
    scale = clip_scale(sq, opt.clip_norm)
    opt.step[0] += 1
    bad = apply_update(opt.code, weights.params, weights.grads, opt.state, opt.hp, lr,
                       opt.step[0], scale, parallel)
    if HAS_TABLES:
        tables = tape.tables
        k = opt.state.shape[0]
        for t in range(tables.shape[0]):
            if tables[t, TRAINABLE] == 0:
                continue
            rows, _, G = row_workspace(work, tables, t)
            opt.emb_step[t] += 1
            bad += apply_sparse_update(opt.code, table(weights.emb, tables, t), G, rows,
                                       work.n_rows[t], table_state(opt.emb_state, tables, t, k),
                                       opt.hp, lr, opt.emb_step[t], scale, parallel)
    return NONFINITE_UPDATE if bad != 0 else OK


# -- fused steps ------------------------------------------------------------------------------------------
@jit
def train_step(tape, weights, work, opt, data, m, lr, stream, training, do_update, parallel):
    """One minibatch step on the first m rows of ``data``.  With do_update False only
    the gradients are computed.  Returns (batch-mean loss, status)."""
    tape, weights, work, opt, data, stream = (borrowed(tape), borrowed(weights),
                                              borrowed(work), borrowed(opt),
                                              borrowed(data), borrowed(stream))
    load_inputs(tape, work, data, work.order, 0, m, parallel)
    count = batch_count(tape, data, work.order, 0, m)
    yf, yi, yw = data.yf, data.yi, data.w
    if HAS_SEQUENCES:
        yf, yi, yw = load_targets(tape, work, data, work.order, 0, m, parallel)
    total, status, sq = gradients(tape, weights, work, opt.clip_norm, yf, yi, yw, m, count,
                                  stream, training, False, parallel)
    loss = total / count
    if status != OK or not do_update:
        return loss, status
    return loss, update(tape, weights, work, opt, lr, sq, parallel)


@jit_always_inline
def train_epoch(tape, weights, work, opt, data, perm, batch_size, accumulate, lrs, stream,
                parallel, losses):
    """All minibatches of one epoch in one call, in the order ``perm`` (int64 (N,)).

    accumulate = k: the gradients of k consecutive minibatches are summed (each
    weighted by its share of the k-times larger batch) and applied in one update;
    the epoch's last group may be smaller.  lrs : float64 (n_batches,) the rate of
    the update that closes each minibatch's group; losses : float64 (n_batches,)
    written with each minibatch's mean loss.  Returns (minibatches done, status).
    """
    n = perm.shape[0]
    n_batches = (n + batch_size - 1) // batch_size
    for s in range(n_batches):
        start = s * batch_size
        m = min(batch_size, n - start)
        load_inputs(tape, work, data, perm, start, m, parallel)
        yf, yi, yw = load_targets(tape, work, data, perm, start, m, parallel)
        j = s % accumulate
        g0 = (s - j) * batch_size
        group = min(g0 + accumulate * batch_size, n) - g0
        total, status, sq = gradients(tape, weights, work, opt.clip_norm, yf, yi, yw, m,
                                      batch_count(tape, data, perm, g0, group), stream, True,
                                      j > 0, parallel)
        losses[s] = total / batch_count(tape, data, perm, start, m)
        if status != OK:
            return s, status
        if j == accumulate - 1 or s == n_batches - 1:
            status = update(tape, weights, work, opt, lrs[s], sq, parallel)
            if status != OK:
                return s, status
    return n_batches, OK


@jit
def train_epochs(tape, weights, work, opt, data, perms, batch_size, accumulate, lrs, stream,
                 parallel, losses):
    """Several epochs in one call (fit without per-epoch callbacks).

    perms : int64 (epochs, N); lrs, losses : float64 (epochs, n_batches).
    Returns (epochs done, minibatches done in the failing epoch, status).
    """
    tape, weights, work, opt, data, stream = (borrowed(tape), borrowed(weights),
                                              borrowed(work), borrowed(opt),
                                              borrowed(data), borrowed(stream))
    for e in range(perms.shape[0]):
        done, status = train_epoch(tape, weights, work, opt, data, perms[e], batch_size,
                                   accumulate, lrs[e], stream, parallel, losses[e])
        if status != OK:
            return e, done, status
    return perms.shape[0], 0, OK


# -- inference ---------------------------------------------------------------------------------------------
@jit
def predict(tape, weights, work, data, out, batch_size, parallel):
    """out <- the output value for every row of the data, batch by batch."""
    tape, weights, work, data = borrowed(tape), borrowed(weights), borrowed(work), borrowed(data)
    n = data.lengths.shape[0] if HAS_SEQUENCES else out.shape[0]
    for start in range(0, n, batch_size):
        m = min(n, start + batch_size) - start
        load_inputs(tape, work, data, work.order, start, m, parallel)
        o = forward(tape, weights, work, m, 0, 0, False, parallel)
        if HAS_SEQUENCES and tape.values[tape.output, SEQ] != 0:
            # out: (n * data.steps, width), zero where there is no token
            for i in range(m):
                r = (start + i) * data.steps
                r0 = work.starts[i]
                for t in range(work.lengths[i]):
                    out[r + t] = o[r0 + t]
        else:
            out[start:start + m] = o


@jit_always_inline
def score_batch(tape, work, data, start, m):
    """(summed loss, number correct) of the output slot against rows start:start + m of
    the targets."""
    R = work.steps[2] if HAS_SEQUENCES else m
    o = slot(work.acts, tape.values, tape.output, m, R)
    scratch = slot(work.agrads, tape.values, tape.output, m, R)
    if HAS_SEQUENCES and tape.values[tape.output, SEQ] != 0:
        yf, yi, _ = load_targets(tape, work, data, work.order, start, m, False)
        return loss_sum_and_correct(tape.loss, o, yf, yi, scratch)
    if tape.loss == SOFTMAX_CROSS_ENTROPY:
        return loss_sum_and_correct(tape.loss, o, data.yf, data.yi[start:start + m], scratch)
    return loss_sum_and_correct(tape.loss, o, data.yf[start:start + m], data.yi, scratch)


@jit
def evaluate(tape, weights, work, data, n, batch_size, parallel):
    """(summed loss, number correct) over the first n rows, batch by batch, in inference
    mode."""
    tape, weights, work, data = borrowed(tape), borrowed(weights), borrowed(work), borrowed(data)
    total = 0.0
    correct = 0
    for start in range(0, n, batch_size):
        m = min(n, start + batch_size) - start
        load_inputs(tape, work, data, work.order, start, m, parallel)
        forward(tape, weights, work, m, 0, 0, False, parallel)
        s, c = score_batch(tape, work, data, start, m)
        total += s
        correct += c
    return total, correct


@jit
def loss_only(tape, weights, work, data, m, parallel):
    """The batch-mean loss of the first m rows in inference mode (gradcheck's numeric
    side)."""
    tape, weights, work, data = borrowed(tape), borrowed(weights), borrowed(work), borrowed(data)
    load_inputs(tape, work, data, work.order, 0, m, parallel)
    forward(tape, weights, work, m, 0, 0, False, parallel)
    count = batch_count(tape, data, work.order, 0, m)
    yf, yi, yw = data.yf, data.yi, data.w
    if HAS_SEQUENCES:
        yf, yi, yw = load_targets(tape, work, data, work.order, 0, m, parallel)
    return output_gradient(tape, work, yf, yi, yw, m, count, parallel) / count
