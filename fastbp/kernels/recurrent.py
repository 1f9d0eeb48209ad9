"""Recurrent layer kernels: RNN, LSTM and GRU over a batch of sequences.

A sequence value of m samples and width d is a C-ordered array (R, d) whose row
starts[i] + t is sample i at step t, for t < lengths[i] (``starts`` and
``lengths`` int64, m; starts non-decreasing, starts[0] = 0, each sample's rows
ending before the next one's start and within R); every row no sample covers is
padding.  The padded layout is starts = arange(m) * T, R = m*T (row i*T + t);
the packed one is starts = the exclusive cumulative sum of lengths, R =
sum(lengths), with no padding at all.  T is only the loop bound, >= max(lengths).
The state starts at zero.  The cells are PyTorch's ``nn.RNN``, ``nn.LSTM`` and
``nn.GRU``, gate for gate, with the weights stored transposed (``x W``):

=====  ====================================================================
RNN    h_t = f(x_t W + b + h_{t-1} U)                  W (n_in, h), U (h, h)
LSTM   z = x_t W + b + h_{t-1} U = [z_i z_f z_g z_o]   W (n_in, 4h), U (h, 4h)
       c_t = sigmoid(z_f) c_{t-1} + sigmoid(z_i) tanh(z_g)
       h_t = sigmoid(z_o) tanh(c_t)
GRU    a = x_t W + b,  q = h_{t-1} U + b_rec  (gates r, z, n; 3h wide)
       r = sigmoid(a_r + q_r);  u = sigmoid(a_z + q_z);  n = tanh(a_n + r q_n)
       h_t = (1 - u) n + u h_{t-1}
=====  ====================================================================

(torch: W = weight_ih.T, U = weight_hh.T; b = b_ih + b_hh for RNN and LSTM;
for GRU b = b_ih and b_rec = b_hh.)  With ``reverse`` each sample is read from
its own last real step down to its first (the second direction of PyTorch's
``bidirectional=True`` over packed sequences); row starts[i] + t still holds the
state at position t.

Backward through one step, dh = dL/dh_t (the output's gradient plus what the
later step carried back), da = dL/d(x_t W), dq = dL/d(h_{t-1} U):

=====  ====================================================================
RNN    da = dq = dh f'(h_t);                         dh_{t-1} = dq U^T
LSTM   dc = dc_t + dh o (1 - tanh^2 c_t)
       da_i = dc g i (1 - i);  da_f = dc c_{t-1} f (1 - f)
       da_g = dc i (1 - g^2);  da_o = dh tanh(c_t) o (1 - o)
       dq = da;                  dh_{t-1} = dq U^T;  dc_{t-1} = dc f
GRU    da_n = dh (1 - u) (1 - n^2);  dq_n = da_n r
       da_r = dq_r = da_n q_n r (1 - r);  da_z = dq_z = dh (h_{t-1} - n) u (1 - u)
       dh_{t-1} = dh u + dq U^T
=====  ====================================================================

and for all steps at once, dA and dQ holding da and dq for every row (zero at
padding) and Hprev the state each row's step started from (zero at a sample's
first step and at padding)::

    dW = x^T dA,  dU = Hprev^T dQ,  db = column sums of dA,
    db_rec = column sums of dQ (GRU),  g_in = dA W^T.

Truncated BPTT (``truncate = k > 0``, seed 004): the gradient entering at the
output of step t reaches steps t, t-1, ..., t-k (in processing order) and no
further, exactly for every origin t, as the loop of Denny Britz's
``bptt_truncate``.  The carried gradient is kept apart by age: stream a holds
what entered a steps later, streams 0 .. k-1 are carried one step further, and
stream k only adds to its step's gradients.  All streams of a step go through
one product with U^T (their rows side by side).  For an LSTM dh and dc travel
and are cut together.  k >= T is full BPTT and takes its path.

The forward takes the input projection x W of every step as one product (R
rows) into the cache, and adds the biases in each step's gate loops.  Samples
are sorted by length (longest first, ties in batch order) so that at
each step the active samples are a prefix, and the per-step product runs only
on them, as PyTorch's packed sequences (a few rows by U forward and by U^T,
transposed once per backward call, backward: loops that read the matrix in
place, :mod:`fastbp.kernels.rowgemm`, rather than BLAS, which copies all of it
per call).  A batch of at least
GROUPS * MIN_GROUP_ROWS samples is dealt into GROUPS groups of equal counts and
near-equal cost (:func:`_deal`: both get long and short sequences), each
running its own recurrence, in ``prange`` when ``parallel``.  The groups are
fixed by the batch's lengths, never by the thread count, and every sum is taken in
a fixed order, so the results are the same bits for any number of threads.  The
kernels are compiled without ``reassoc`` (:data:`fastbp._config.EXACT_FASTMATH`), so
they give the same bits whether a process compiled them or loaded them from the cache.
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange, types
from numba.extending import overload

from .._config import (EXACT_FASTMATH, jit_exact, jit_exact_always_inline, jit_exact_parallel,
                       unliteral)
from .activations import exp32, sigmoid, tanh32
from .elementwise import activate_row, column_sums, scale_by_derivative_row
from .gemm import matmul
from .rowgemm import step_product

RNN = 0
LSTM = 1
GRU = 2

#: A batch is dealt into up to GROUPS independent recurrences of at least
#: MIN_GROUP_ROWS samples each (fixed by the batch size alone).
GROUPS = 2
MIN_GROUP_ROWS = 8


@jit_exact
def n_gates(cell):
    """Gate blocks of h columns in W, U and b: RNN 1, LSTM 4 (i, f, g, o), GRU 3 (r, z, n)."""
    if cell == LSTM:
        return 4
    if cell == GRU:
        return 3
    return 1


@jit_exact
def cache_width(cell, h):
    """Floats per (sample, step) the forward keeps for the backward.

    The cache is two arrays one after the other: the gates (R, n_gates * h), holding
    the input projection x W until the step runs and then the gates after their
    nonlinearities (RNN: the projection stays; the backward reads h_t from out_seq),
    and (R, h) of c_t (LSTM) or q_n = (h_{t-1} U + b_rec)_n (GRU).  RNN h, LSTM 5h,
    GRU 4h.
    """
    if cell == LSTM:
        return 5 * h
    if cell == GRU:
        return 4 * h
    return h


@jit_exact
def n_groups(m):
    """Independent recurrences a batch of m samples is dealt into."""
    return max(1, min(GROUPS, m // MIN_GROUP_ROWS))


@jit_exact
def _group_rows(m):
    # Samples in the largest group.
    g = n_groups(m)
    return (m + g - 1) // g


@jit_exact
def _forward_group_size(cell, m, h):
    # Per group: its states H and C (rows, h) and the recurrent product Q (rows, G).
    return _group_rows(m) * (2 * h + n_gates(cell) * h)


@jit_exact
def _backward_group_size(cell, m, h, streams):
    # Per group: D (rows * streams, G), the carries CU and CD (rows * streams, h),
    # and one row each of dh, dc, da and the discarded direct carry.
    G = n_gates(cell) * h
    return _group_rows(m) * streams * (G + 2 * h) + 3 * h + G


@jit_exact
def _backward_shared_size(cell, m, T, h):
    # dA (R, G), dQ (R, G; GRU only: elsewhere dQ is dA), Hprev (R, h), a zero row and
    # U^T (G, h); sized for the padded layout R = m*T, the most rows any layout has.
    G = n_gates(cell) * h
    return m * T * (G + (G if cell == GRU else 0) + h) + h + G * h


@jit_exact
def work_size(cell, m, T, h, n_in):
    """Floats of scratch recurrent_forward and recurrent_backward use (either may reuse
    all of it), for any ``truncate``: a truncated backward keeps at most T - 1 streams.
    Never less for a smaller m or T; an upper bound for any layout (R <= m*T rows).
    n_in is not needed (the products take no scratch)."""
    forward = n_groups(m) * _forward_group_size(cell, m, h)
    backward = (_backward_shared_size(cell, m, T, h)
                + n_groups(m) * _backward_group_size(cell, m, h, max(1, T - 1)))
    return max(forward, backward, 1)


# -- nonlinearities in the argument's own precision -------------------------------------


def _tanh(z):
    """tanh: :func:`tanh32` for float32, math.tanh for float64."""
    return math.tanh(z)


def _sigmoid(z):
    """Logistic sigmoid: from :func:`exp32` for float32, activations.sigmoid for float64."""
    return sigmoid(z)


@overload(_tanh, jit_options=dict(fastmath=EXACT_FASTMATH))
def _tanh_typed(z):
    if z == types.float32:
        return lambda z: tanh32(z)
    return lambda z: math.tanh(z)


@jit_exact
def _sigmoid32(z):
    # exp only of -|z| (no overflow); branch-free, so that the gate loops vectorise.
    e = exp32(-abs(z))
    s = np.float32(1) / (np.float32(1) + e)
    return s if z >= 0 else e * s


@overload(_sigmoid, jit_options=dict(fastmath=EXACT_FASTMATH))
def _sigmoid_typed(z):
    if z == types.float32:
        return lambda z: _sigmoid32(z)
    return lambda z: sigmoid(z)


# -- one step of one sample ---------------------------------------------------------------


@jit_exact_always_inline
def _rnn_cell_forward(a, q, b, act, h):
    """h <- f(a + b + q).  a : x_t W (h,); q : h_{t-1} U (h,); h : the state, written."""
    for j in range(h.shape[0]):
        h[j] = a[j] + b[j] + q[j]
    activate_row(h, act, 0.0)


@jit_exact
def _sigmoid_row(z):
    for j in range(z.shape[0]):
        z[j] = _sigmoid(z[j])


@jit_exact
def _tanh_row(z):
    for j in range(z.shape[0]):
        z[j] = _tanh(z[j])


# Each cell goes over its row in a few short loops rather than one: LLVM vectorises a
# loop only when it can check at run time that the arrays it writes overlap none it
# reads, and gives up on a loop that touches five arrays (the fused LSTM loop ran scalar).


@jit_exact_always_inline
def _lstm_cell_forward(z, q, b, c, h):
    """z : x_t W (4h,), overwritten with the gates i, f, g, o; q : h_{t-1} U (4h,);
    c : c_{t-1} in, c_t out; h : h_t, written."""
    n = h.shape[0]
    for j in range(4 * n):
        z[j] += b[j] + q[j]
    _sigmoid_row(z[:2 * n])  # i, f
    _tanh_row(z[2 * n:3 * n])  # g
    _sigmoid_row(z[3 * n:])  # o
    for j in range(n):
        c_t = z[n + j] * c[j] + z[j] * z[2 * n + j]
        c[j] = c_t
        h[j] = z[3 * n + j] * _tanh(c_t)


@jit_exact_always_inline
def _gru_cell_forward(z, q, b, b_rec, q_n, h):
    """z : x_t W (3h,), overwritten with the gates r, z, n; q : h_{t-1} U (3h,);
    q_n : written with (q + b_rec)_n; h : h_{t-1} in, h_t out."""
    n = h.shape[0]
    one = h.dtype.type(1)
    for j in range(2 * n):
        z[j] += b[j] + q[j] + b_rec[j]
    _sigmoid_row(z[:2 * n])  # r, z
    for j in range(n):
        q_n[j] = q[2 * n + j] + b_rec[2 * n + j]
    for j in range(n):
        z[2 * n + j] = _tanh(z[2 * n + j] + b[2 * n + j] + z[j] * q_n[j])
    for j in range(n):
        u = z[n + j]
        h[j] = (one - u) * z[2 * n + j] + u * h[j]


@jit_exact_always_inline
def _rnn_cell_backward(h_t, dh, act, da):
    """da <- dh f'(h_t)."""
    for j in range(da.shape[0]):
        da[j] = dh[j]
    scale_by_derivative_row(da, h_t, act, 0.0)


@jit_exact_always_inline
def _lstm_cell_backward(gates, c, c_prev, dh, dc, da, dc_prev):
    """gates : i, f, g, o (4h,); c, c_prev : c_t, c_{t-1}; dh, dc : dL/dh_t, dL/dc_t from
    later steps; da (4h,) and dc_prev = dL/dc_{t-1} through f, written."""
    n = c.shape[0]
    one = c.dtype.type(1)
    for j in range(n):
        i = gates[j]
        f = gates[n + j]
        g = gates[2 * n + j]
        o = gates[3 * n + j]
        tc = _tanh(c[j])
        d_c = dc[j] + dh[j] * o * (one - tc * tc)
        da[j] = d_c * g * i * (one - i)
        da[n + j] = d_c * c_prev[j] * f * (one - f)
        da[2 * n + j] = d_c * i * (one - g * g)
        da[3 * n + j] = dh[j] * tc * o * (one - o)
        dc_prev[j] = d_c * f


@jit_exact_always_inline
def _gru_cell_backward(gates, q_n, h_prev, dh, da, dq, dh_prev):
    """gates : r, z, n (3h,); q_n : (h_{t-1} U + b_rec)_n; dh : dL/dh_t; da, dq (3h,)
    and dh_prev = dL/dh_{t-1} through the update gate (dh u), written."""
    n = dh.shape[0]
    one = dh.dtype.type(1)
    for j in range(n):
        r = gates[j]
        u = gates[n + j]
        c = gates[2 * n + j]
        da_n = dh[j] * (one - u) * (one - c * c)
        da_r = da_n * q_n[j] * r * (one - r)
        da_z = dh[j] * (h_prev[j] - c) * u * (one - u)
        da[j] = da_r
        da[n + j] = da_z
        da[2 * n + j] = da_n
        dq[j] = da_r
        dq[n + j] = da_z
        dq[2 * n + j] = da_n * r
        dh_prev[j] = dh[j] * u


@jit_exact
def _cell_backward(cell, act, gates, extra, extra_prev, first, h_t, h_prev, zeros, dh, dc, da,
                   dq, direct):
    """One step's backward for the gradient (dh, dc) entering it.  gates, extra : the
    step's cache rows, extra_prev the previous step's (unread when ``first``); h_t,
    h_prev : the states (h_prev unread when first); writes da, dq (GRU; for RNN and LSTM
    the caller passes da again) and ``direct``, the carry to h_{t-1} (GRU) or c_{t-1}
    (LSTM) that bypasses U."""
    if cell == LSTM:
        _lstm_cell_backward(gates, extra, zeros if first else extra_prev, dh, dc, da, direct)
    elif cell == GRU:
        _gru_cell_backward(gates, extra, zeros if first else h_prev, dh, da, dq, direct)
    else:
        _rnn_cell_backward(h_t, dh, act, da)


@jit_exact
def _gradient_in(cell, g, CU, CD, lo, hi, dh, dc):
    """dh, dc <- the gradient entering a step: g (the output's) plus the carries of
    streams lo .. hi-1, CU through U into dh, CD into dc (LSTM) or dh (GRU)."""
    h = dh.shape[0]
    for j in range(h):
        dh[j] = g[j]
        dc[j] = 0
    for a in range(lo, hi):
        cu = CU[a]
        cd = CD[a]
        for j in range(h):
            dh[j] += cu[j]
        if cell == LSTM:
            for j in range(h):
                dc[j] += cd[j]
        elif cell == GRU:
            for j in range(h):
                dh[j] += cd[j]


@jit_exact
def _fill_zero(row):
    for j in range(row.shape[0]):
        row[j] = 0


@jit_exact_always_inline
def _copy(src, dst):
    for j in range(dst.shape[0]):
        dst[j] = src[j]


# -- the time loop of one group ------------------------------------------------------------


@jit_exact
def _cache_views(cache, R, G, e):
    """The cache as gates (R, G), then the rest (R, e)."""
    return cache[:R * G].reshape((R, G)), cache[R * G:R * (G + e)].reshape((R, e))


@jit_exact
def _sorted_by_length(lengths):
    """Sample indices, longest first; equal lengths keep their batch order (an insertion
    sort: batches are small, and np.argsort takes seconds to compile)."""
    m = lengths.shape[0]
    order = np.empty(m, np.int64)
    for i in range(m):
        k = i
        while k > 0 and lengths[order[k - 1]] < lengths[i]:
            order[k] = order[k - 1]
            k -= 1
        order[k] = i
    return order


@jit_exact
def _deal(lengths, groups):
    """Sample indices dealt into ``groups`` groups of at most ceil(m / groups) samples:
    longest first, each to the group whose recurrence costs least so far (ties to the
    lower group; a full group passes).  A group's cost is the steps its loop runs (its
    longest length) plus the rows it steps (the sum of its lengths).  Dealing in turn
    (0, 1, 0, 1, ...) left the first group up to its longest sentence's excess behind:
    on EWT batches of 32 the slower group's cost falls 6%.  Returns (rows, bounds):
    group g's samples, longest first, are rows[bounds[g]:bounds[g + 1]]."""
    order = _sorted_by_length(lengths)
    m = order.shape[0]
    cap = (m + groups - 1) // groups
    group_of = np.empty(m, np.int64)
    count = np.zeros(groups, np.int64)
    cost = np.zeros(groups, np.int64)
    for k in range(m):
        best = -1
        for g in range(groups):
            if count[g] < cap and (best < 0 or cost[g] < cost[best]):
                best = g
        length = lengths[order[k]]
        cost[best] += length * (2 if count[best] == 0 else 1)  # the first sets the steps
        count[best] += 1
        group_of[k] = best
    bounds = np.zeros(groups + 1, np.int64)
    for g in range(groups):
        bounds[g + 1] = bounds[g] + count[g]
    rows = np.empty(m, np.int64)
    fill = bounds[:groups].copy()
    for k in range(m):
        g = group_of[k]
        rows[fill[g]] = order[k]
        fill[g] += 1
    return rows, bounds


@jit_exact
def _zero_padding(rows, lengths, starts):
    """Every row of rows (R, d) no sample covers <- 0: those before starts[0], between
    starts[i] + lengths[i] and starts[i + 1], and from the last sample's end to R."""
    m = lengths.shape[0]
    R = rows.shape[0]
    lo = 0
    for i in range(m + 1):
        hi = starts[i] if i < m else R
        for r in range(lo, hi):
            rows[r, :] = 0
        if i < m:
            lo = max(lo, starts[i] + lengths[i])


@jit_exact
def _forward_group(cell, act, U, b, b_rec, lengths, starts, T, reverse, rows, gates, extra,
                   out_seq, work, parallel):
    """The recurrence of the samples ``rows`` (sorted longest first).  gates (R, G) holds
    x W and is overwritten with the gates, extra (R, h) gets c_t (LSTM) or q_n (GRU);
    work : this group's (rows, 2h + G) floats."""
    n = rows.shape[0]
    h, G = U.shape
    H = work[:n * h].reshape((n, h))
    C = work[n * h:2 * n * h].reshape((n, h))
    Q = work[2 * n * h:2 * n * h + n * G].reshape((n, G))
    H[:, :] = 0
    C[:, :] = 0
    active = n
    for s in range(T):
        while active > 0 and lengths[rows[active - 1]] <= s:
            active -= 1
        if active == 0:
            break
        if s == 0:
            Q[:active, :] = 0
        else:
            step_product(H[:active], U, Q[:active], parallel)
        for k in range(active):
            i = rows[k]
            t = lengths[i] - 1 - s if reverse else s
            r = starts[i] + t
            if cell == LSTM:
                _lstm_cell_forward(gates[r], Q[k], b, C[k], H[k])
                _copy(C[k], extra[r])
            elif cell == GRU:
                _gru_cell_forward(gates[r], Q[k], b, b_rec, extra[r], H[k])
            else:
                _rnn_cell_forward(gates[r], Q[k], b, act, H[k])
            _copy(H[k], out_seq[r])


@jit_exact_parallel
def recurrent_forward(cell, act, x, W, U, b, b_rec, lengths, starts, T, reverse, out_seq, cache,
                      work, parallel):
    """Run an RNN, LSTM or GRU over a batch (layout and equations in the module docstring).

    cell : RNN, LSTM or GRU; act : the RNN's activation code (kernels.activations: tanh
        or relu; unread for LSTM and GRU);
    x : float (R, n_in), C order, R rows (padded: m*T; packed: sum(lengths)); its padding
        rows are never read by the recurrence but must be finite (the backward's
        dW = x^T dA meets them with zeros);
    W : (n_in, G); U : (h, G); b : (G,), G = n_gates(cell) * h;
    b_rec : (G,) for GRU, any 1-element array otherwise (unread);
    lengths : int64 (m,), each in [1, T];
    starts : int64 (m,), the row of each sample's first step (non-decreasing, starts[0] = 0,
        starts[i] + lengths[i] <= starts[i + 1] and <= R);
    T : the loop bound, >= max(lengths);
    reverse : read each sample from its last real step down to its first;
    out_seq : (R, h), written: h_t at real rows, 0 at padding;
    cache : flat, at least R*cache_width(cell, h) elements, written for the backward;
    work : flat, at least work_size(cell, m, T, h, n_in) elements;
    parallel : the batch's groups (and large products) on numba's threads.
    """
    m = lengths.shape[0]
    h, G = U.shape
    gates, extra = _cache_views(cache, x.shape[0], G, cache_width(cell, h) - G)
    matmul(x, W, gates, parallel)  # the input projection of every step at once
    groups = n_groups(m)
    rows, bounds = _deal(lengths, groups)
    size = _forward_group_size(cell, m, h)
    if parallel and groups > 1:
        for g0 in prange(groups):
            g = np.int64(g0)  # prange's index is unsigned
            _forward_group(cell, act, U, b, b_rec, lengths, starts, T, reverse,
                           rows[bounds[g]:bounds[g + 1]],
                           gates, extra, out_seq, work[g * size:(g + 1) * size],
                           unliteral(False))
    else:  # one group's products may still split in blocks
        for g in range(groups):
            _forward_group(cell, act, U, b, b_rec, lengths, starts, T, reverse,
                           rows[bounds[g]:bounds[g + 1]],
                           gates, extra, out_seq, work[g * size:(g + 1) * size],
                           parallel and groups == 1)
    _zero_padding(out_seq, lengths, starts)


@jit_exact
def _backward_group(cell, act, Ut, lengths, starts, T, reverse, full, streams, rows, out_seq,
                    gates, extra, g_seq, dA, dQ, Hprev, zeros, work, parallel):
    """BPTT over the samples ``rows`` (sorted longest first): writes their rows of dA, dQ
    and Hprev.  Ut : U^T (G, h), C order.  full : one stream, never cut; else ``streams``
    = k streams by age (module docstring).  work : this group's _backward_group_size floats."""
    n = rows.shape[0]
    G, h = Ut.shape
    S = streams
    o = 0
    D = work[o:o + n * S * G].reshape((n * S, G))  # dq of every stream, sample-major
    o += n * S * G
    CU = work[o:o + n * S * h].reshape((n * S, h))  # carry through U: D U^T
    o += n * S * h
    CD = work[o:o + n * S * h].reshape((n * S, h))  # carry that bypasses U
    o += n * S * h
    dh = work[o:o + h]
    dc = work[o + h:o + 2 * h]
    direct = work[o + 2 * h:o + 3 * h]
    da = work[o + 3 * h:o + 3 * h + G]
    CU[:, :] = 0
    CD[:, :] = 0
    back = 1 if reverse else -1  # the previous step's row is r + back
    active = 0
    for s in range(T - 1, -1, -1):
        while active < n and lengths[rows[active]] > s:
            active += 1
        if active == 0:
            continue
        first = s == 0
        for k in range(active):
            i = rows[k]
            t = lengths[i] - 1 - s if reverse else s
            r = starts[i] + t
            rp = r if first else r + back
            if first:
                Hprev[r, :] = 0
            else:
                _copy(out_seq[rp], Hprev[r])
            gr, er, ep, hr, hp = gates[r], extra[r], extra[rp], out_seq[r], out_seq[rp]
            # the gradient entering this step: the output's and every stream's carry
            _gradient_in(cell, g_seq[r], CU, CD, k * S, k * S + S, dh, dc)
            if full:
                _copy(dh, g_seq[r])  # the whole dL/dh_t, left for fb.diagnostics
                _cell_backward(cell, act, gr, er, ep, first, hr, hp, zeros, dh, dc, dA[r], dQ[r],
                               CD[k])
                _copy(dQ[r], D[k])
                continue
            _cell_backward(cell, act, gr, er, ep, first, hr, hp, zeros, dh, dc, dA[r], dQ[r],
                           direct)
            # streams 0 .. k-1 go one step further, oldest first (each reads the carry of
            # the next younger stream before that one's is overwritten)
            for a in range(S - 1, -1, -1):
                if a == 0:
                    _gradient_in(cell, g_seq[r], CU, CD, 0, 0, dh, dc)
                else:
                    _gradient_in(cell, zeros, CU, CD, k * S + a - 1, k * S + a, dh, dc)
                out = D[k * S + a]
                _cell_backward(cell, act, gr, er, ep, first, hr, hp, zeros, dh, dc,
                               da if cell == GRU else out, out, CD[k * S + a])
        if not first:
            step_product(D[:active * S], Ut, CU[:active * S], parallel)


@jit_exact_parallel
def recurrent_backward(cell, act, x, W, U, b_rec, lengths, starts, T, reverse, truncate, out_seq,
                       cache, g_seq, dW, dU, db, db_rec, g_in, need_input_grad, work, parallel):
    """Backward of :func:`recurrent_forward` (equations in the module docstring).

    Arguments as there, and:
    truncate : 0 for full BPTT; k > 0 carries the gradient entering at each step's output
        back k steps at most (k >= T is full BPTT);
    out_seq, cache : as the forward left them;
    g_seq : (R, h), dL/d out_seq; its padding rows are not read; full BPTT overwrites
        each real row with the whole dL/dh_t (the output's share plus what the later
        steps carried back: seed 004's vanishing gradients, fb.diagnostics.state_gradients);
    dW (n_in, G), dU (h, G), db (G,) : written;
    db_rec : (G,) for GRU, written; any 1-element array otherwise (untouched);
    g_in : (R, n_in), written with dL/dx (0 at padding) when need_input_grad, else
        untouched.
    """
    m = lengths.shape[0]
    h, G = U.shape
    R = x.shape[0]
    gates, extra = _cache_views(cache, R, G, cache_width(cell, h) - G)
    full = truncate <= 0 or truncate >= T
    streams = 1 if full else truncate
    dA = work[:R * G].reshape((R, G))
    o = R * G
    dQ = dA
    if cell == GRU:
        dQ = work[o:o + R * G].reshape((R, G))
        o += R * G
    Hprev = work[o:o + R * h].reshape((R, h))
    o += R * h
    zeros = work[o:o + h]
    _fill_zero(zeros)
    o += h
    # U^T once per call, so that the per-step carry D U^T is rows of D times rows of
    # U^T (rowgemm), not dot products, whose vectorised order depends on compilation
    Ut = work[o:o + G * h].reshape((G, h))
    Ut[:, :] = U.T
    o += G * h
    groups = n_groups(m)
    rows, bounds = _deal(lengths, groups)
    size = _backward_group_size(cell, m, h, streams)
    if parallel and groups > 1:
        for g0 in prange(groups):
            g = np.int64(g0)  # prange's index is unsigned
            _backward_group(cell, act, Ut, lengths, starts, T, reverse, full, streams,
                            rows[bounds[g]:bounds[g + 1]], out_seq, gates, extra, g_seq, dA, dQ,
                            Hprev, zeros,
                            work[o + g * size:o + (g + 1) * size], unliteral(False))
    else:
        for g in range(groups):
            _backward_group(cell, act, Ut, lengths, starts, T, reverse, full, streams,
                            rows[bounds[g]:bounds[g + 1]], out_seq, gates, extra, g_seq, dA, dQ,
                            Hprev, zeros,
                            work[o + g * size:o + (g + 1) * size], parallel and groups == 1)
    _zero_padding(dA, lengths, starts)
    _zero_padding(Hprev, lengths, starts)
    column_sums(dA, db)
    if cell == GRU:
        _zero_padding(dQ, lengths, starts)
        column_sums(dQ, db_rec)
    matmul(x.T, dA, dW, parallel)
    matmul(Hprev.T, dQ, dU, parallel)
    if need_input_grad:
        matmul(dA, W.T, g_in, parallel)
