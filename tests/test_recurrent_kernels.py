"""The recurrent kernels (fastbp.kernels.recurrent) against PyTorch and NumPy twins.

* float64 outputs and gradients equal PyTorch's nn.RNN (tanh, relu), nn.LSTM and
  nn.GRU over a padded batch of different lengths (pack_padded_sequence), both
  directions (the reverse one against bidirectional=True's second half);
* a sample alone gives the same outputs and gradients as inside the batch;
* truncated BPTT equals central differences of a NumPy twin's windowed loss (each
  output's gradient reaches k steps back and no further), and truncate >= T is full BPTT;
* the packed layout (starts = cumsum of lengths, no padding rows) and a layout with
  padding rows between samples give the padded layout's outputs and gradients;
* 1 and 2 threads, serial and parallel, give the same bits (float32, a batch dealt
  into two groups, padded and packed), and float32 agrees with float64.

Output buffers, the cache and the work array are filled with NaN before each call,
and so are the padding rows of the upstream gradient: a kernel that leaves part of its
output unwritten, or reads what it should not, fails.
"""
from __future__ import annotations

import itertools
import zlib

import numba
import numpy as np
import pytest

from fastbp.kernels import activations as kact
from fastbp.kernels import recurrent as krec
from fastbp.threads import pin_blas

RNN, LSTM, GRU = krec.RNN, krec.LSTM, krec.GRU
TANH, RELU = kact.CODES["tanh"], kact.CODES["relu"]
# (cell, act) pairs: the RNN with both of PyTorch's nonlinearities
CELLS = [(RNN, TANH), (RNN, RELU), (LSTM, TANH), (GRU, TANH)]
CELL_IDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


def rng_for(*parts) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


def make_problem(cell, m, T, n_in, h, rng, dtype=np.float64, lengths=None, scale=0.5):
    """Random x (m, T, n_in), weights, lengths and an upstream gradient (0 at padding)."""
    G = krec.n_gates(cell) * h
    if lengths is None:
        lengths = rng.integers(1, T + 1, size=m)
        lengths[0] = T
    lengths = np.asarray(lengths, dtype=np.int64)
    pad = np.arange(T)[None, :] >= lengths[:, None]
    x = rng.standard_normal((m, T, n_in))
    x[pad] = 0
    p = {"W": rng.uniform(-scale, scale, (n_in, G)), "U": rng.uniform(-scale, scale, (h, G)),
         "b": rng.uniform(-scale, scale, G),
         "b_rec": rng.uniform(-scale, scale, G) if cell == GRU else np.zeros(1)}
    g = rng.standard_normal((m, T, h))
    g[pad] = 0
    cast = {k: v.astype(dtype) for k, v in p.items()}
    return x.astype(dtype), cast, lengths, g.astype(dtype)


LAYOUTS = ["padded", "packed", "gapped"]


def layout_starts(lengths, T, layout):
    """(starts, R): padded rows i*T + t; packed back to back (R = sum(lengths)); gapped
    with 0, 1 or 2 padding rows after each sample and 3 more at the end."""
    m = lengths.shape[0]
    if layout == "padded":
        return np.arange(m, dtype=np.int64) * T, m * T
    gaps = np.zeros(m, np.int64) if layout == "packed" else np.arange(m, dtype=np.int64) % 3
    ends = np.cumsum(lengths + gaps)
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    return starts, int(ends[-1]) + (0 if layout == "packed" else 3)


def run_kernels(cell, act, x, p, lengths, g, reverse=False, truncate=0, parallel=False,
                layout="padded"):
    """Forward then backward in the given row layout; returns out (m, T, h) and the
    gradients as a dict, x's as (m, T, n_in), both 0 at padding.  Rows no sample covers
    must come out 0 in out_seq and g_in (checked)."""
    m, T, n_in = x.shape
    h = p["U"].shape[0]
    dt = x.dtype
    starts, R = layout_starts(lengths, T, layout)
    real = np.zeros((m, T), bool)  # (i, t) real
    rows = np.zeros((m, T), np.int64)  # its row
    for i in range(m):
        real[i, :lengths[i]] = True
        rows[i] = starts[i] + np.arange(T)
    covered = np.zeros(R, bool)
    covered[rows[real]] = True
    x2 = np.zeros((R, n_in), dt)  # padding rows of x must be finite
    x2[rows[real]] = x[real]
    out = np.full((R, h), np.nan, dt)
    cache = np.full(R * krec.cache_width(cell, h), np.nan, dt)
    work = np.full(krec.work_size(cell, m, T, h, n_in), np.nan, dt)
    krec.recurrent_forward(cell, act, x2, p["W"], p["U"], p["b"], p["b_rec"], lengths, starts,
                           T, reverse, out, cache, work, parallel)
    grads = {k: np.full_like(v, np.nan) for k, v in p.items()}
    g_in = np.full_like(x2, np.nan)
    g2 = np.full((R, h), np.nan, dt)  # the gradient at padding is ignored
    g2[rows[real]] = g[real]
    db_rec = grads["b_rec"] if cell == GRU else np.zeros(1, dt)
    krec.recurrent_backward(cell, act, x2, p["W"], p["U"], p["b_rec"], lengths, starts, T,
                            reverse, truncate, out, cache, g2, grads["W"], grads["U"], grads["b"],
                            db_rec, g_in, True, work, parallel)
    if cell != GRU:
        del grads["b_rec"]
    assert np.all(out[~covered] == 0) and np.all(g_in[~covered] == 0)
    if layout == "padded":
        grads["x"] = g_in.reshape(m, T, n_in)
        return out.reshape(m, T, h), grads
    out3 = np.zeros((m, T, h), dt)
    out3[real] = out[rows[real]]
    grads["x"] = np.zeros((m, T, n_in), dt)
    grads["x"][real] = g_in[rows[real]]
    return out3, grads


# -- PyTorch -------------------------------------------------------------------------------


def torch_run(cell, act, x, p, lengths, g, reverse):
    """PyTorch's output (m, T, h) and the gradients of (out * g).sum(), float64.  The
    reverse direction is the second half of bidirectional=True (its first half gets
    random weights and a zero upstream gradient)."""
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    m, T, n_in = x.shape
    h = p["U"].shape[0]
    kw = dict(input_size=n_in, hidden_size=h, batch_first=True, bidirectional=reverse,
              dtype=torch.float64)
    if cell == RNN:
        net = torch.nn.RNN(nonlinearity="tanh" if act == TANH else "relu", **kw)
    else:
        net = (torch.nn.LSTM if cell == LSTM else torch.nn.GRU)(**kw)
    suffix = "_reverse" if reverse else ""
    # RNN and LSTM add two biases: split b between them
    b_ih = p["b"] if cell == GRU else 0.3 * p["b"]
    b_hh = p["b_rec"] if cell == GRU else p["b"] - b_ih
    ours = {"weight_ih_l0": p["W"].T, "weight_hh_l0": p["U"].T, "bias_ih_l0": b_ih,
            "bias_hh_l0": b_hh}
    with torch.no_grad():
        for name, value in ours.items():
            getattr(net, name + suffix).copy_(torch.tensor(value))
    xt = torch.tensor(x, requires_grad=True)
    packed = pack_padded_sequence(xt, torch.tensor(lengths), batch_first=True,
                                  enforce_sorted=False)
    out, _ = net(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
    upstream = torch.tensor(g)
    if reverse:
        upstream = torch.cat([torch.zeros_like(upstream), upstream], dim=2)
    (out * upstream).sum().backward()
    grad = {name: getattr(net, name + suffix).grad.numpy() for name in ours}
    grads = {"W": grad["weight_ih_l0"].T, "U": grad["weight_hh_l0"].T,
             "b": grad["bias_ih_l0"], "x": xt.grad.numpy()}
    if cell == GRU:
        grads["b_rec"] = grad["bias_hh_l0"]
    return out.detach().numpy()[:, :, h:] if reverse else out.detach().numpy(), grads


def assert_grads_equal(actual, desired, rtol=1e-9, atol=1e-12, what=""):
    assert sorted(actual) == sorted(desired), (sorted(actual), sorted(desired))
    for name in desired:
        np.testing.assert_allclose(actual[name], desired[name], rtol=rtol, atol=atol,
                                   err_msg=f"{what} d{name}")


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell,act", CELLS, ids=CELL_IDS)
def test_matches_torch(cell, act, reverse):
    """Outputs (0 at padding) and every gradient equal PyTorch's on a packed batch."""
    x, p, lengths, g = make_problem(cell, 5, 7, 4, 3, rng_for("torch", cell, act, reverse),
                                    lengths=[7, 3, 1, 7, 5])
    out, grads = run_kernels(cell, act, x, p, lengths, g, reverse=reverse)
    out_t, grads_t = torch_run(cell, act, x, p, lengths, g, reverse)
    pad = np.arange(7)[None, :] >= lengths[:, None]
    assert np.all(out[pad] == 0) and np.all(grads["x"][pad] == 0)
    np.testing.assert_allclose(out, out_t, rtol=1e-9, atol=1e-12)
    assert_grads_equal(grads, grads_t, what=f"cell {cell} act {act} reverse {reverse}")


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell,act", CELLS, ids=CELL_IDS)
def test_a_sample_alone_equals_its_part_of_the_batch(cell, act, reverse):
    """Sorting, grouping and padding change nothing: each sample alone (m=1, T=its length)
    gives its outputs and input gradient, and the batch's weight gradients are the sum of
    the samples' (a batch of 17 runs in two groups)."""
    rng = rng_for("alone", cell, act, reverse)
    m, T = 17, 6
    x, p, lengths, g = make_problem(cell, m, T, 3, 4, rng)
    assert krec.n_groups(m) == 2
    out, grads = run_kernels(cell, act, x, p, lengths, g, reverse=reverse, parallel=True)
    total = {k: np.zeros_like(v) for k, v in grads.items() if k != "x"}
    for i in range(m):
        L = int(lengths[i])
        o1, g1 = run_kernels(cell, act, x[i:i + 1, :L], p, lengths[i:i + 1], g[i:i + 1, :L],
                             reverse=reverse)
        np.testing.assert_allclose(out[i, :L], o1[0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(grads["x"][i, :L], g1["x"][0], rtol=1e-12, atol=1e-12)
        for k in total:
            total[k] += g1[k]
    for k in total:
        np.testing.assert_allclose(grads[k], total[k], rtol=1e-11, atol=1e-12, err_msg=k)


# -- NumPy twin and central differences --------------------------------------------------


def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def ref_step(cell, act, x_t, h, c, p):
    """One step of one sample in NumPy: (h_t, c_t) from (h_{t-1}, c_{t-1})."""
    W, U, b = p["W"], p["U"], p["b"]
    n = h.shape[0]
    if cell == RNN:
        z = x_t @ W + b + h @ U
        return (np.tanh(z) if act == TANH else np.maximum(z, 0.0)), c
    if cell == LSTM:
        z = x_t @ W + b + h @ U
        i, f, g, o = _sig(z[:n]), _sig(z[n:2 * n]), np.tanh(z[2 * n:3 * n]), _sig(z[3 * n:])
        c = f * c + i * g
        return o * np.tanh(c), c
    a = x_t @ W + b
    q = h @ U + p["b_rec"]
    r, u = _sig(a[:n] + q[:n]), _sig(a[n:2 * n] + q[n:2 * n])
    new = np.tanh(a[2 * n:] + r * q[2 * n:])
    return (1 - u) * new + u * h, c


def ref_truncated_loss(cell, act, x, p, lengths, g, reverse, k, frozen):
    """sum_t g_t . h_t where each h_t is run from the state k + 1 steps before it, that
    state taken from ``frozen`` (the states at the weights where the gradient is taken):
    its gradient is truncated BPTT, each output's gradient reaching steps t .. t-k.
    frozen : per sample, the list of (h, c) after each processing step."""
    m, T, n_in = x.shape
    h0 = np.zeros(p["U"].shape[0])
    loss = 0.0
    for i in range(m):
        L = int(lengths[i])
        pos = list(range(L - 1, -1, -1)) if reverse else list(range(L))
        for s in range(L):
            start = max(0, s - k)
            h, c = (h0, h0) if start == 0 else frozen[i][start - 1]
            for u in range(start, s + 1):
                h, c = ref_step(cell, act, x[i, pos[u]], h, c, p)
            loss += g[i, pos[s]] @ h
    return loss


def ref_states(cell, act, x, p, lengths, reverse):
    h0 = np.zeros(p["U"].shape[0])
    states = []
    for i in range(x.shape[0]):
        L = int(lengths[i])
        pos = range(L - 1, -1, -1) if reverse else range(L)
        h, c, seq = h0, h0, []
        for t in pos:
            h, c = ref_step(cell, act, x[i, t], h, c, p)
            seq.append((h, c))
        states.append(seq)
    return states


def central_differences(f, arrays, eps=1e-6):
    """d f / d every element of every array in ``arrays`` (a dict), in place perturbation."""
    grads = {}
    for name, a in arrays.items():
        d = np.zeros_like(a)
        flat, dflat = a.reshape(-1), d.reshape(-1)
        for j in range(flat.size):
            keep = flat[j]
            flat[j] = keep + eps
            up = f()
            flat[j] = keep - eps
            down = f()
            flat[j] = keep
            dflat[j] = (up - down) / (2 * eps)
        grads[name] = d
    return grads


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell,act", CELLS, ids=CELL_IDS)
def test_truncated_bptt_equals_central_differences_of_the_windowed_loss(cell, act, reverse):
    """truncate=k: each output's gradient goes back k steps, exactly per origin (T=6, k=2)."""
    k = 2
    x, p, lengths, g = make_problem(cell, 3, 6, 2, 3, rng_for("trunc", cell, act, reverse),
                                    lengths=[6, 4, 2])
    _, grads = run_kernels(cell, act, x, p, lengths, g, reverse=reverse, truncate=k)
    frozen = ref_states(cell, act, x, p, lengths, reverse)
    arrays = {name: v for name, v in p.items() if name != "b_rec" or cell == GRU}
    arrays["x"] = x
    numeric = central_differences(
        lambda: ref_truncated_loss(cell, act, x, p, lengths, g, reverse, k, frozen), arrays)
    assert_grads_equal(grads, numeric, rtol=1e-6, atol=1e-8, what=f"truncate={k}")
    # the windowed loss is not the full loss: truncation changed the gradient
    _, full = run_kernels(cell, act, x, p, lengths, g, reverse=reverse)
    assert np.max(np.abs(full["U"] - grads["U"])) > 1e-4


@pytest.mark.parametrize("cell,act", CELLS, ids=CELL_IDS)
def test_full_bptt_equals_central_differences(cell, act):
    """Without PyTorch too: truncate=0 is the gradient of sum_t g_t . h_t."""
    x, p, lengths, g = make_problem(cell, 2, 5, 2, 3, rng_for("full", cell, act),
                                    lengths=[5, 3])
    _, grads = run_kernels(cell, act, x, p, lengths, g)
    arrays = {name: v for name, v in p.items() if name != "b_rec" or cell == GRU}
    arrays["x"] = x
    numeric = central_differences(
        lambda: ref_truncated_loss(cell, act, x, p, lengths, g, False, 5, None), arrays)
    assert_grads_equal(grads, numeric, rtol=1e-6, atol=1e-8, what="full")


@pytest.mark.parametrize("cell,act", CELLS, ids=CELL_IDS)
def test_truncate_at_least_T_is_full_bptt(cell, act):
    """k >= T takes the full path (same bits); k = T - 1 reaches every step from every
    origin, through the streams, so it equals full BPTT to rounding."""
    T = 6
    x, p, lengths, g = make_problem(cell, 4, T, 3, 3, rng_for("k>=T", cell, act))
    for reverse in (False, True):
        _, full = run_kernels(cell, act, x, p, lengths, g, reverse=reverse)
        for k in (T, T + 3):
            _, same = run_kernels(cell, act, x, p, lengths, g, reverse=reverse, truncate=k)
            for name in full:
                np.testing.assert_array_equal(same[name], full[name], err_msg=f"k={k} {name}")
        _, almost = run_kernels(cell, act, x, p, lengths, g, reverse=reverse, truncate=T - 1)
        assert_grads_equal(almost, full, rtol=1e-12, atol=1e-14, what="k=T-1")


# -- row layouts ---------------------------------------------------------------------------


@pytest.mark.parametrize("truncate", [0, 2], ids=["full", "truncated"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell,act", CELLS, ids=CELL_IDS)
def test_packed_and_gapped_layouts_equal_the_padded_one(cell, act, reverse, truncate):
    """starts = cumsum(lengths) with R = sum(lengths) rows (no padding), and a layout with
    padding rows between samples and after the last, give the padded layout's outputs
    and input gradients row for row, and its weight gradients (the big products run on
    fewer rows, so to rounding).  Batches of one group (m=5) and two (m=17, serial and
    in prange)."""
    for m, T, parallel in ((5, 7, False), (17, 6, False), (17, 6, True)):
        x, p, lengths, g = make_problem(cell, m, T, 3, 4,
                                        rng_for("layout", cell, act, reverse, truncate, m))
        lengths[1] = 1
        out, grads = run_kernels(cell, act, x, p, lengths, g, reverse=reverse,
                                 truncate=truncate, parallel=parallel)
        for layout in ("packed", "gapped"):
            what = f"{layout} m={m} parallel={parallel}"
            out_l, grads_l = run_kernels(cell, act, x, p, lengths, g, reverse=reverse,
                                         truncate=truncate, parallel=parallel, layout=layout)
            np.testing.assert_allclose(out_l, out, rtol=1e-13, atol=1e-13, err_msg=what)
            np.testing.assert_allclose(grads_l["x"], grads["x"], rtol=1e-13, atol=1e-13,
                                       err_msg=what)
            assert_grads_equal({k: v for k, v in grads_l.items() if k != "x"},
                               {k: v for k, v in grads.items() if k != "x"},
                               rtol=1e-12, atol=1e-12, what=what)


def test_packed_layout_matches_torch():
    """The packed layout against PyTorch directly (LSTM, reverse, m=17)."""
    x, p, lengths, g = make_problem(LSTM, 17, 6, 3, 4, rng_for("packed torch"))
    out, grads = run_kernels(LSTM, TANH, x, p, lengths, g, reverse=True, parallel=True,
                             layout="packed")
    out_t, grads_t = torch_run(LSTM, TANH, x, p, lengths, g, True)
    np.testing.assert_allclose(out, out_t, rtol=1e-9, atol=1e-12)
    assert_grads_equal(grads, grads_t, what="packed")


# -- determinism, float32 ------------------------------------------------------------------


@pytest.mark.parametrize("cell,act", CELLS, ids=CELL_IDS)
def test_one_and_two_threads_give_the_same_bits(cell, act):
    """float32, batches of one group (m=9) and of two (m=21, taken in prange), a product
    that gemm splits into blocks (h=130: 4h x 130 x 7 rows); serial and parallel at 1 and
    2 threads, full and truncated BPTT, both directions, padded and packed layouts: all
    bit for bit."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 threads")
    pin_blas()
    cases = [(21, 7, 5, 6), (9, 3, 4, 130 if cell == LSTM else 40)]
    before = numba.get_num_threads()
    try:
        for m, T, n_in, h in cases:
            x, p, lengths, g = make_problem(cell, m, T, n_in, h, rng_for("threads", cell, m),
                                            dtype=np.float32)
            for layout, reverse, truncate in itertools.product(("padded", "packed"),
                                                               (False, True), (0, 2)):
                results = []
                for threads, parallel in ((1, False), (1, True), (2, True), (2, False)):
                    numba.set_num_threads(threads)
                    out, grads = run_kernels(cell, act, x, p, lengths, g, reverse=reverse,
                                             truncate=truncate, parallel=parallel,
                                             layout=layout)
                    results.append((out, grads))
                for out, grads in results[1:]:
                    np.testing.assert_array_equal(out, results[0][0])
                    for name in grads:
                        np.testing.assert_array_equal(grads[name], results[0][1][name],
                                                      err_msg=f"{m} {layout} {reverse} "
                                                              f"{truncate} {name}")
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("cell,act", CELLS, ids=CELL_IDS)
def test_float32_agrees_with_float64(cell, act):
    """The float32 path (tanh32, exp32's sigmoid) against float64, to float32 accuracy."""
    x, p, lengths, g = make_problem(cell, 18, 6, 4, 5, rng_for("f32", cell, act))
    out64, grads64 = run_kernels(cell, act, x, p, lengths, g, truncate=3)
    p32 = {k: v.astype(np.float32) for k, v in p.items()}
    out32, grads32 = run_kernels(cell, act, x.astype(np.float32), p32, lengths,
                                 g.astype(np.float32), truncate=3, parallel=True)
    np.testing.assert_allclose(out32, out64, rtol=0, atol=2e-6)
    for name in grads64:
        scale = np.max(np.abs(grads64[name]))
        np.testing.assert_allclose(grads32[name], grads64[name], rtol=0, atol=2e-5 * scale,
                                   err_msg=name)


def test_a_second_call_compiles_nothing():
    cell, act = LSTM, TANH
    x, p, lengths, g = make_problem(cell, 3, 4, 2, 3, rng_for("sig"))
    run_kernels(cell, act, x, p, lengths, g, parallel=True)
    counts = (len(krec.recurrent_forward.signatures), len(krec.recurrent_backward.signatures))
    x, p, lengths, g = make_problem(GRU, 20, 5, 3, 2, rng_for("sig2"))
    run_kernels(GRU, act, x, p, lengths, g, reverse=True, truncate=2)
    assert (len(krec.recurrent_forward.signatures),
            len(krec.recurrent_backward.signatures)) == counts


def test_deal_balances_groups_by_cost_and_keeps_each_longest_first():
    """The groups a batch is dealt into: equal counts (at most ceil(m / groups)), every
    sample once, each group longest first, and the slower group's cost (steps run plus
    rows stepped) no higher than dealing in turn gave, and lower over all batches."""
    rng = np.random.default_rng(7)
    totals = np.zeros(2)

    def cost(ls):
        return (max(ls) + sum(ls)) if len(ls) else 0
    for m in (16, 17, 31, 32):
        for _ in range(50):
            lengths = rng.integers(1, 60, size=m).astype(np.int64)
            rows, bounds = krec._deal(lengths, 2)
            assert sorted(rows.tolist()) == list(range(m))
            parts = [rows[bounds[g]:bounds[g + 1]] for g in range(2)]
            assert all(len(p) <= (m + 1) // 2 for p in parts)
            for p in parts:
                assert np.all(np.diff(lengths[p]) <= 0)
            order = krec._sorted_by_length(lengths)
            turns = max(cost(lengths[order[g::2]].tolist()) for g in range(2))
            dealt = max(cost(lengths[p].tolist()) for p in parts)
            assert dealt <= turns
            totals += dealt, turns
    assert totals[0] < 0.98 * totals[1]
