"""The sliding-window embedding path (issue 5): gather/scatter kernels, lazy sparse
updates against PyTorch (nn.Embedding(sparse=True) + SparseAdam + Adam), sparse SGD
equal to dense SGD, repeated ids, the padding row, frozen tables and bad ids."""
from __future__ import annotations

import numpy as np
import pytest

import fastbp as fb
from fastbp.kernels.embedding import gather_windows, table_size, window_row_gradients


def _window_model(V=40, dim=3, window=1, hidden=6, classes=4, dtype="float64", seed=0,
                  trainable=True, padding_id=0, weights=None):
    return fb.Sequential([
        fb.layers.WindowEmbedding(V, dim, window=window, trainable=trainable,
                                  padding_id=padding_id, weights=weights),
        fb.layers.Dense((2 * window + 1) * dim, hidden, activation="tanh"),
        fb.layers.Dense(hidden, classes),
    ], dtype=dtype, seed=seed)


@pytest.mark.parametrize("parallel", [False, True])
def test_gather_matches_numpy(parallel):
    rng = np.random.default_rng(0)
    E = rng.standard_normal((50, 7))
    ids = rng.integers(0, 50, (33, 5))
    out = np.empty((33, 35))
    gather_windows(E, ids, out, parallel)
    np.testing.assert_array_equal(out, E[ids].reshape(33, 35))


@pytest.mark.parametrize("padding_id", [0, 3, -1])
def test_row_gradients_accumulate_repeats_like_add_at(padding_id):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 6, (20, 3))  # many repeats
    gx = rng.standard_normal((20, 3 * 4))
    rows = np.empty(60, dtype=np.int64)
    G = np.empty((60, 4))
    table = np.empty(table_size(60), dtype=np.int64)
    n = window_row_gradients(ids, gx, 4, padding_id, rows, G, table)
    dense = np.zeros((6, 4))
    np.add.at(dense, ids.ravel(), gx.reshape(60, 4))
    if padding_id >= 0:
        dense[padding_id] = 0
    # The distinct ids in the order they first occur.
    _, first = np.unique(ids.ravel(), return_index=True)
    want_rows = np.array([r for r in ids.ravel()[np.sort(first)] if r != padding_id])
    np.testing.assert_array_equal(rows[:n], want_rows)
    np.testing.assert_allclose(G[:n], dense[want_rows], rtol=1e-14, atol=1e-15)
    # NumPy's fancy-index += would have lost the repeats:
    lossy = np.zeros((6, 4))
    lossy[ids.ravel()] += gx.reshape(60, 4)
    assert not np.allclose(lossy[want_rows], dense[want_rows])


@pytest.mark.parametrize("high", [64, 2**31, 2**62])
def test_row_gradients_hash_any_ids(high):
    """The id -> row hash table stays correct when many ids share a bucket (ids that
    are multiples of the table size) and for ids beyond 2^31 (its product wraps)."""
    rng = np.random.default_rng(high % 1000)
    ids = rng.integers(0, high, (64, 5))
    ids[::3, 0] = np.arange(22) * 1024 % high  # the same low bits
    ids[5:9, 2] = ids[0, 1]  # a repeat
    gx = rng.standard_normal((64, 5 * 3))
    P = ids.size
    rows, G = np.empty(P, dtype=np.int64), np.empty((P, 3))
    n = window_row_gradients(ids, gx, 3, -1, rows, G, np.empty(table_size(P), np.int64))
    assert n == len(set(ids.ravel().tolist()))
    got = dict(zip(rows[:n].tolist(), G[:n]))
    for r in set(ids.ravel().tolist()):
        want = gx.reshape(P, 3)[ids.ravel() == r].sum(axis=0)
        np.testing.assert_allclose(got[r], want, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("fused", [True, False])
def test_gradcheck_window_model(fused):
    rng = np.random.default_rng(2)
    ids = rng.integers(0, 40, (9, 3))
    ids[0, 0] = ids[1, 2] = ids[2, 1]  # a repeated id
    ids[3, 0] = 0  # the padding row
    y = rng.integers(0, 4, 9)
    m = _window_model()
    m.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy", fused=fused)
    err, details = fb.gradcheck(m, ids, y, return_details=True)
    assert err < 1e-6, details
    assert "0.WindowEmbedding.E" in details


def test_padding_row_takes_no_gradient_and_starts_at_zero():
    m = _window_model(padding_id=0)
    assert np.all(m.window.E[0] == 0)
    m.compile(fb.optim.Adam(lr=0.1), "softmax_cross_entropy")
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 40, (30, 3))
    ids[:, 0] = 0
    for _ in range(5):
        m.train_on_batch(ids, rng.integers(0, 4, 30))
    assert np.all(m.window.E[0] == 0)


def test_only_used_rows_change_and_frozen_tables_stay():
    rng = np.random.default_rng(4)
    ids = rng.integers(1, 20, (16, 3))
    y = rng.integers(0, 4, 16)
    for opt in (fb.optim.SGD(lr=0.1, momentum=0.9), fb.optim.Adam(lr=0.1),
                fb.optim.AdaGrad(lr=0.1), fb.optim.RMSProp(lr=0.01), fb.optim.Adadelta(),
                fb.optim.Yogi(lr=0.1), fb.optim.AdamW(lr=0.1)):
        m = _window_model()
        m.compile(opt, "softmax_cross_entropy")
        before = m.window.E.copy()
        m.train_on_batch(ids, y)
        changed = np.any(m.window.E != before, axis=1)
        used = np.zeros(40, bool)
        used[np.unique(ids)] = True
        assert not np.any(changed & ~used), type(opt).__name__
        assert np.all(changed[used]), type(opt).__name__
    m = _window_model(trainable=False)
    m.compile(fb.optim.Adam(lr=0.1), "softmax_cross_entropy")
    before = m.window.E.copy()
    dense_before = m.params.copy()
    m.fit(ids, y, epochs=3, batch_size=4)
    np.testing.assert_array_equal(m.window.E, before)
    assert not np.array_equal(m.params, dense_before)


def test_sparse_sgd_equals_dense_sgd():
    # Plain SGD on the used rows only is exactly SGD on the whole table, since the
    # other rows have zero gradient.
    rng = np.random.default_rng(5)
    V, d = 30, 4
    ids = rng.integers(0, V, (12, 3))
    y = rng.integers(0, 4, 12)
    m = _window_model(V=V, dim=d, padding_id=None)
    m.compile(fb.optim.SGD(lr=0.3), "softmax_cross_entropy")
    ref_E = m.window.E.copy()
    ref = _window_model(V=V, dim=d, padding_id=None)
    ref.compile(fb.optim.SGD(lr=0.3), "softmax_cross_entropy")
    for _ in range(5):
        ref.compute_gradients(ids, y)
        G = ref.embedding_gradient()
        ref.train_on_batch(ids, y)          # its table is updated lazily too ...
        ref_E = ref_E - 0.3 * G             # ... and here by a dense step on all rows
        m.train_on_batch(ids, y)
        np.testing.assert_array_equal(m.window.E, ref.window.E)
        np.testing.assert_allclose(m.window.E, ref_E, rtol=0, atol=1e-15)


def test_adam_matches_torch_sparse_adam():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    V, d, w, H, C = 25, 4, 1, 7, 3
    m = _window_model(V=V, dim=d, window=w, hidden=H, classes=C, padding_id=0)
    m.compile(fb.optim.Adam(lr=0.05, betas=(0.8, 0.95), eps=1e-6), "softmax_cross_entropy")
    emb = torch.nn.Embedding(V, d, padding_idx=0, sparse=True).double()
    lin1 = torch.nn.Linear((2 * w + 1) * d, H).double()
    lin2 = torch.nn.Linear(H, C).double()
    with torch.no_grad():
        emb.weight.copy_(torch.from_numpy(m.window.E.copy()))
        lin1.weight.copy_(torch.from_numpy(m.layers[1].W.T.copy()))
        lin1.bias.copy_(torch.from_numpy(m.layers[1].b.copy()))
        lin2.weight.copy_(torch.from_numpy(m.layers[2].W.T.copy()))
        lin2.bias.copy_(torch.from_numpy(m.layers[2].b.copy()))
    sparse_opt = torch.optim.SparseAdam(list(emb.parameters()), lr=0.05, betas=(0.8, 0.95),
                                        eps=1e-6)
    dense_opt = torch.optim.Adam(list(lin1.parameters()) + list(lin2.parameters()), lr=0.05,
                                 betas=(0.8, 0.95), eps=1e-6)
    crit = torch.nn.CrossEntropyLoss()
    for step in range(15):
        ids = rng.integers(0, 12, (10, 2 * w + 1))  # a small range: rows repeat and skip steps
        y = rng.integers(0, C, 10)
        m.train_on_batch(ids, y)
        sparse_opt.zero_grad()
        dense_opt.zero_grad()
        x = emb(torch.from_numpy(ids)).reshape(10, -1)
        loss = crit(lin2(torch.tanh(lin1(x))), torch.from_numpy(y))
        loss.backward()
        sparse_opt.step()
        dense_opt.step()
        diff = max(np.abs(m.window.E - emb.weight.detach().numpy()).max(),
                   np.abs(m.layers[1].W - lin1.weight.detach().numpy().T).max(),
                   np.abs(m.layers[2].W - lin2.weight.detach().numpy().T).max())
        assert diff <= 1e-9, f"step {step}: difference {diff}"


def test_fused_and_per_layer_paths_agree_and_threads_do_not_matter():
    rng = np.random.default_rng(7)
    ids = rng.integers(0, 40, (64, 3))
    y = rng.integers(0, 4, 64)
    results = []
    for fused in (True, False):
        m = _window_model(seed=3)
        m.compile(fb.optim.Adam(lr=0.01), "softmax_cross_entropy", fused=fused)
        m.fit(ids, y, epochs=3, batch_size=16, seed=1)
        results.append((m.params.copy(), m.window.E.copy()))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.parametrize("bad,err", [
    (np.array([[0, 1, 40]]), ValueError),          # id == vocab_size
    (np.array([[0, -1, 2]]), ValueError),          # negative
    (np.array([[0.0, 1.5, 2.0]]), ValueError),     # non-integer
    (np.array([[0, 1]]), ValueError),              # wrong window width
    (np.array([0, 1, 2]), ValueError),             # wrong rank
    (np.array([["a", "b", "c"]]), TypeError),      # not numbers
])
def test_bad_ids_are_rejected_before_any_kernel(bad, err):
    m = _window_model()
    m.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy")
    before = m.window.E.copy()
    with pytest.raises(err) as info:
        m.train_on_batch(bad, np.zeros(len(bad), dtype=int))
    if bad.dtype.kind in "iuf" and bad.ndim == 2 and bad.shape[1] == 3:
        assert any(s in str(info.value) for s in ("40", "-1", "1.5"))
    np.testing.assert_array_equal(m.window.E, before)


def test_save_and_load_keep_the_table_and_its_state(tmp_path):
    rng = np.random.default_rng(8)
    ids = rng.integers(0, 40, (32, 3))
    y = rng.integers(0, 4, 32)
    a = _window_model(seed=1)
    a.compile(fb.optim.Adam(lr=0.01), "softmax_cross_entropy")
    a.fit(ids, y, epochs=2, batch_size=8, seed=0)
    a.save(tmp_path / "w.fbp")
    b = fb.load(tmp_path / "w.fbp")
    np.testing.assert_array_equal(a.window.E, b.window.E)
    np.testing.assert_array_equal(a.window.state, b.window.state)
    a.fit(ids, y, epochs=2, batch_size=8)
    b.fit(ids, y, epochs=2, batch_size=8)
    np.testing.assert_array_equal(a.window.E, b.window.E)
    np.testing.assert_array_equal(a.params, b.params)


def test_pretrained_weights_are_used():
    rng = np.random.default_rng(9)
    W = rng.standard_normal((40, 3))
    m = _window_model(weights=W)
    np.testing.assert_array_equal(m.window.E, W)
    with pytest.raises(ValueError):
        _window_model(weights=np.zeros((39, 3)))


WINDOW_CHILD = r"""
import hashlib, sys
import numpy as np
import fastbp as fb
rng = np.random.default_rng(0)
ids = rng.integers(0, 5000, (3000, 5))
y = rng.integers(0, 5, 3000)
m = fb.Sequential([fb.layers.WindowEmbedding(5000, 50), fb.layers.Dropout(0.1),
                   fb.layers.Dense(250, 200, activation="tanh"), fb.layers.Dense(200, 5)],
                  dtype=sys.argv[1], seed=0)
m.compile(fb.optim.Adam(lr=1e-3, clip_norm=1.0), "softmax_cross_entropy")
m.fit(ids, y, epochs=2, batch_size=512, seed=1)
print(fb.get_num_threads(), hashlib.sha256(m.params.tobytes() + m.window.E.tobytes()
                                           + m.window.state.tobytes()).hexdigest())
"""


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_window_model_is_bit_identical_at_one_and_two_threads(dtype):
    import os
    import subprocess
    import sys
    digests = {}
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads)
        out = subprocess.run([sys.executable, "-c", WINDOW_CHILD, dtype], env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        n, digest = out.stdout.split()[-2:]
        assert n == threads
        digests[threads] = digest
    assert digests["1"] == digests["2"]
