"""The sliding-window embedding path (seed 000, CS224N).

Forward gathers the 2w+1 word vectors of each window side by side:
x[i, s*d:(s+1)*d] = E[ids[i, s]].  Backward splits dL/dx back into word
vectors and adds the pieces of equal ids together: the gradient of row r is
sum over (i, s) with ids[i, s] == r of dL/dx[i, s*d:(s+1)*d].  Only those rows
are touched; the padding row takes no gradient (PyTorch's padding_idx).

The sum runs over the positions in order, so every row's pieces are added in the
same order whatever the number of threads.
"""
from __future__ import annotations

from numba import prange

from .._config import PARALLEL_MIN_WORK, jit, jit_parallel


@jit
def _gather_row(E, ids_row, out_row, d):
    for s in range(ids_row.shape[0]):
        src = E[ids_row[s]]
        base = s * d
        for j in range(d):
            out_row[base + j] = src[j]


@jit_parallel
def gather_windows(E, ids, out, parallel):
    """out[i, s*d:(s+1)*d] <- E[ids[i, s]].

    E : float (V, d); ids : int64 (batch, S) with every id in [0, V);
    out : float (batch, S*d), written.
    """
    m = ids.shape[0]
    d = E.shape[1]
    if parallel and out.size >= PARALLEL_MIN_WORK:
        for i in prange(m):
            _gather_row(E, ids[i], out[i], d)
    else:
        for i in range(m):
            _gather_row(E, ids[i], out[i], d)


def table_size(positions):
    """Length of the id -> row hash table window_row_gradients needs for
    ``positions`` = batch * (2w+1) ids: the power of two at least twice that."""
    size = 16
    while size < 2 * positions:
        size *= 2
    return size


@jit
def _bucket(r, mask):
    # Fibonacci hashing: the high bits of r times 2^32 / golden ratio (ids < 2^31).
    return ((r * 2654435769) >> 16) & mask


@jit
def window_row_gradients(ids, gx, d, padding_id, rows, G, table):
    """Sum the window gradient into one gradient row per distinct id.

    ids : int64 (batch, S); gx : float (batch, S*d) = dL/dx;
    rows : int64 (>= batch*S,) and G : float (>= batch*S, d), written:
    rows[:n] are the distinct ids in the order they first occur (padding
    excluded) and G[u] the gradient of row rows[u];
    table : int64 (table_size(batch*S),) work space.  Returns n.
    """
    table[:] = -1
    return add_row_gradients(ids, gx, d, padding_id, rows, G, table, 0)


@jit
def add_row_gradients(ids, gx, d, padding_id, rows, G, table, n):
    """Add the window gradient to the n rows already in (rows, G, table), opening a
    row for each id not seen yet; returns the new number of rows.

    One pass over the positions in order: a hash table (open addressing, linear
    probing) maps an id to its row, so each row's pieces are added in position
    order whatever the number of threads, and no sort is needed.  Calls that
    follow one another (a table read by two nodes, or by k accumulated
    minibatches) keep adding to the same rows.
    """
    m, S = ids.shape
    mask = table.shape[0] - 1
    for i in range(m):
        src = gx[i]
        for s in range(S):
            r = ids[i, s]
            if r == padding_id:
                continue
            h = _bucket(r, mask)
            while table[h] >= 0 and rows[table[h]] != r:
                h = (h + 1) & mask
            base = s * d
            if table[h] < 0:  # the id's first occurrence: a new row
                table[h] = n
                rows[n] = r
                g = G[n]
                n += 1
                for j in range(d):
                    g[j] = src[base + j]
            else:
                g = G[table[h]]
                for j in range(d):
                    g[j] += src[base + j]
    return n


@jit
def rows_squared_norm(G, n):
    """sum of squares of G[:n] in float64, row after row."""
    total = 0.0
    for u in range(n):
        row = G[u]
        for j in range(row.shape[0]):
            v = float(row[j])
            total += v * v
    return total


@jit
def expand_row_gradients(rows, G, n, out):
    """out <- the dense (V, d) gradient: zero except out[rows[u]] = G[u]."""
    out[:] = 0
    for u in range(n):
        out[rows[u]] = G[u]
