"""The functional Model: fb.Input, layers called on values, Concatenate, Add, shared layers,
several inputs and embedding tables; against PyTorch and against Sequential."""
from __future__ import annotations

import numpy as np
import pytest

import fastbp as fb

L = fb.layers


def _seed003_graph(V=11, d=4, h=6, k=5, seed=0):
    """Seed 003, figure 3: three words looked up in one table, concatenated, a tanh layer,
    a softmax output."""
    words = [fb.Input(1, dtype="int64", name=n) for n in ("w1", "w2", "w3")]
    emb = L.WindowEmbedding(V, d, window=0, padding_id=None)
    x = L.Concatenate()([emb(w) for w in words])
    hidden = L.Dense(3 * d, h, activation="tanh")(x)
    out = L.Dense(h, k)(hidden)
    return fb.Model(inputs=words, outputs=out, dtype="float64", seed=seed), emb


def _word_data(n=23, V=11, k=5, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, V, (n, 1)) for _ in range(3)], rng.integers(0, k, n)


def test_seed003_graph_loss_and_every_gradient_equal_pytorch():
    torch = pytest.importorskip("torch")
    model, emb = _seed003_graph()
    model.compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy")
    X, y = _word_data()
    d1, d2 = model.layers[2], model.layers[3]
    E = torch.tensor(emb.E.copy(), requires_grad=True)
    W1 = torch.tensor(d1.W.copy(), requires_grad=True)
    b1 = torch.tensor(d1.b.copy(), requires_grad=True)
    W2 = torch.tensor(d2.W.copy(), requires_grad=True)
    b2 = torch.tensor(d2.b.copy(), requires_grad=True)
    params = [E, W1, b1, W2, b2]
    # fastbp's lazy row update of a table is torch.optim.SparseAdam's rule
    sparse = torch.optim.SparseAdam([E], lr=1e-2)
    dense = torch.optim.Adam(params[1:], lr=1e-2)
    ids = [torch.from_numpy(x[:, 0]) for x in X]
    yt = torch.from_numpy(y)

    def torch_loss(sparse_grad=False):
        look = [torch.nn.functional.embedding(i, E, sparse=sparse_grad) for i in ids]
        x = torch.cat(look, dim=1)
        return torch.nn.functional.cross_entropy(torch.tanh(x @ W1 + b1) @ W2 + b2, yt)

    loss = model.compute_gradients(X, y)
    value = torch_loss()
    value.backward()
    assert abs(loss - value.item()) <= 1e-12
    np.testing.assert_allclose(model.embedding_gradient(emb), E.grad.numpy(), rtol=0, atol=1e-9)
    for layer, W, b in ((d1, W1, b1), (d2, W2, b2)):
        np.testing.assert_allclose(layer.dW, W.grad.numpy(), rtol=0, atol=1e-9)
        np.testing.assert_allclose(layer.db, b.grad.numpy(), rtol=0, atol=1e-9)
    for p in params:
        p.grad = None
    for step in range(10):
        fb_loss = model.train_on_batch(X, y)
        sparse.zero_grad()
        dense.zero_grad()
        t_loss = torch_loss(sparse_grad=True)
        t_loss.backward()
        sparse.step()
        dense.step()
        assert abs(fb_loss - t_loss.item()) <= 1e-9, step
    np.testing.assert_allclose(emb.E, E.detach().numpy(), rtol=0, atol=1e-9)
    for layer, W, b in ((d1, W1, b1), (d2, W2, b2)):
        np.testing.assert_allclose(layer.W, W.detach().numpy(), rtol=0, atol=1e-9)
        np.testing.assert_allclose(layer.b, b.detach().numpy(), rtol=0, atol=1e-9)


def _shared_add_graph(seed=0):
    """x -> A -> tanh; x -> B; Add(A(x), B(x), A(B(x))): layer A is called twice."""
    x = fb.Input(6, name="x")
    A = L.Dense(6, 6, activation="tanh")
    B = L.Dense(6, 6)
    bx = B(x)
    s = L.Add()([A(x), bx, A(bx)])
    out = L.Dense(6, 3)(L.Dropout(0.0)(s))
    return fb.Model(x, out, dtype="float64", seed=seed), A, B


def test_shared_layer_and_add_equal_pytorch():
    torch = pytest.importorskip("torch")
    model, A, B = _shared_add_graph()
    model.compile(fb.optim.SGD(lr=0.1, momentum=0.9), "softmax_cross_entropy")
    C = model.layers[-1]
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((17, 6)), rng.integers(0, 3, 17)
    tp = {name: torch.tensor(a.copy(), requires_grad=True) for name, a in
          (("WA", A.W), ("bA", A.b), ("WB", B.W), ("bB", B.b), ("WC", C.W), ("bC", C.b))}
    opt = torch.optim.SGD(tp.values(), lr=0.1, momentum=0.9)
    xt, yt = torch.from_numpy(X), torch.from_numpy(y)

    def torch_loss():
        a = lambda v: torch.tanh(v @ tp["WA"] + tp["bA"])  # noqa: E731
        bx = xt @ tp["WB"] + tp["bB"]
        s = a(xt) + bx + a(bx)
        return torch.nn.functional.cross_entropy(s @ tp["WC"] + tp["bC"], yt)

    loss = model.compute_gradients(X, y)
    t = torch_loss()
    t.backward()
    assert abs(loss - t.item()) <= 1e-12
    for layer, w, b in ((A, "WA", "bA"), (B, "WB", "bB"), (C, "WC", "bC")):
        np.testing.assert_allclose(layer.dW, tp[w].grad.numpy(), rtol=0, atol=1e-9)
        np.testing.assert_allclose(layer.db, tp[b].grad.numpy(), rtol=0, atol=1e-9)
    for p in tp.values():
        p.grad = None
    for step in range(10):
        fb_loss = model.train_on_batch(X, y)
        opt.zero_grad()
        t = torch_loss()
        t.backward()
        opt.step()
        assert abs(fb_loss - t.item()) <= 1e-9, step
    np.testing.assert_allclose(A.W, tp["WA"].detach().numpy(), rtol=0, atol=1e-9)


def test_shared_layer_gradcheck_and_per_layer_path_bitwise():
    model, _, _ = _shared_add_graph()
    model.compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy")
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((9, 6)), rng.integers(0, 3, 9)
    assert fb.gradcheck(model, X, y) < 1e-7
    twin, _, _ = _shared_add_graph()
    twin.compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy", fused=False)
    assert model.fused and not twin.fused
    model.fit(X, y, epochs=3, batch_size=4, seed=2)
    twin.fit(X, y, epochs=3, batch_size=4, seed=2)
    np.testing.assert_array_equal(model.params, twin.params)


def _tagger(V=30, seed=0, trainable_casing=True, dtype="float32"):
    w = fb.Input(5, dtype="int64", name="words")
    c = fb.Input(5, dtype="int64", name="casing")
    h = L.Concatenate()([L.WindowEmbedding(V, 6, window=2)(w),
                         L.WindowEmbedding(4, 2, window=2, trainable=trainable_casing)(c)])
    h = L.Dense(40, 12, activation="tanh")(h)
    out = L.Dense(12, 3)(h)
    return fb.Model(inputs=[w, c], outputs=out, dtype=dtype, seed=seed)


def _tagger_data(n=41, V=30, seed=5):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, (n, 5)), rng.integers(0, 4, (n, 5)), rng.integers(0, 3, n)


def test_two_embedding_inputs_list_and_dict_give_the_same_run():
    Xw, Xc, y = _tagger_data()
    a, b = _tagger(), _tagger()
    for m in (a, b):
        m.compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy")
    ha = a.fit([Xw, Xc], y, epochs=3, batch_size=8, seed=1)
    hb = b.fit({"casing": Xc, "words": Xw}, y, epochs=3, batch_size=8, seed=1)
    assert ha["loss"] == hb["loss"] and ha["loss"][-1] < ha["loss"][0]
    np.testing.assert_array_equal(a.params, b.params)
    np.testing.assert_array_equal(a.tables, b.tables)
    np.testing.assert_array_equal(a.predict([Xw, Xc]), b.predict({"words": Xw, "casing": Xc}))
    assert set(a.evaluate([Xw, Xc], y)) == {"loss", "accuracy"}


def test_frozen_table_stays_and_tuned_table_moves_only_used_rows():
    Xw, Xc, y = _tagger_data()
    Xc = np.minimum(Xc, 2)  # casing id 3 never occurs
    m = _tagger(trainable_casing=False)
    m.compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy")
    words, casing = m.embeddings
    E0, C0 = words.E.copy(), casing.E.copy()
    m.fit([Xw, Xc], y, epochs=2, batch_size=8)
    np.testing.assert_array_equal(casing.E, C0)
    moved = np.any(words.E != E0, axis=1)
    used = np.zeros(len(moved), bool)
    used[np.unique(Xw)] = True
    used[0] = False  # the padding row takes no gradient
    np.testing.assert_array_equal(moved, used)


@pytest.mark.parametrize("opt", [lambda: fb.optim.SGD(lr=0.1, momentum=0.9),
                                 lambda: fb.optim.Adam(lr=1e-2),
                                 lambda: fb.optim.AdaGrad(lr=0.1),
                                 lambda: fb.optim.RMSProp(lr=1e-2),
                                 lambda: fb.optim.Yogi(lr=1e-2)])
def test_several_tables_gradcheck_and_per_layer_path_bitwise(opt):
    Xw, Xc, y = _tagger_data(n=12)
    m = _tagger(dtype="float64")
    m.compile(opt(), "softmax_cross_entropy")
    assert fb.gradcheck(m, [Xw, Xc], y) < 1e-7
    twin = _tagger(dtype="float64")
    twin.compile(opt(), "softmax_cross_entropy", fused=False)
    m.fit([Xw, Xc], y, epochs=2, batch_size=5, seed=3)
    twin.fit([Xw, Xc], y, epochs=2, batch_size=5, seed=3)
    np.testing.assert_array_equal(m.params, twin.params)
    np.testing.assert_array_equal(m.tables, twin.tables)


def test_functional_save_load_round_trip_continues_bitwise(tmp_path):
    Xw, Xc, y = _tagger_data()
    m = _tagger()
    m.compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy")
    m.fit([Xw, Xc], y, epochs=1, batch_size=8, seed=1)
    m.save(tmp_path / "t.fbp")
    back = fb.load(tmp_path / "t.fbp")
    assert isinstance(back, fb.Model) and not isinstance(back, fb.Sequential)
    assert [v.name for v in back.inputs] == ["words", "casing"]
    np.testing.assert_array_equal(back.predict([Xw, Xc]), m.predict([Xw, Xc]))
    m.fit([Xw, Xc], y, epochs=2, batch_size=8)
    back.fit([Xw, Xc], y, epochs=2, batch_size=8)
    np.testing.assert_array_equal(m.params, back.params)
    np.testing.assert_array_equal(m.tables, back.tables)


def test_float_input_model_equals_sequential_bitwise():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((50, 8)), rng.integers(0, 3, 50)
    seq = fb.Sequential([L.Dense(8, 16, activation="relu"), L.Dropout(0.2), L.Dense(16, 3)],
                        seed=4)
    x = fb.Input(8)
    out = L.Dense(16, 3)(L.Dropout(0.2)(L.Dense(8, 16, activation="relu")(x)))
    fun = fb.Model(x, out, seed=4)
    for m in (seq, fun):
        m.compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy")
        m.fit(X, y, epochs=3, batch_size=7, seed=9)
    np.testing.assert_array_equal(seq.params, fun.params)


# -- accumulate=k ------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", ["mse", "softmax_cross_entropy"])
def test_accumulated_minibatches_equal_one_larger_batch(loss):
    rng = np.random.default_rng(2)
    n = 24
    X = rng.standard_normal((n, 5))
    y = rng.standard_normal((n, 3)) if loss == "mse" else rng.integers(0, 3, n)

    def model():
        m = fb.Sequential([L.Dense(5, 9, activation="tanh"), L.Dense(9, 3)], dtype="float64",
                          seed=1)
        return m.compile(fb.optim.Adam(lr=1e-2, clip_norm=0.5), loss)

    big, acc = model(), model()
    big.fit(X, y, epochs=2, batch_size=12, shuffle=False)
    acc.fit(X, y, epochs=2, batch_size=4, shuffle=False, accumulate=3)
    assert int(acc.optimizer.step[0]) == int(big.optimizer.step[0]) == 4
    np.testing.assert_allclose(acc.params, big.params, rtol=0, atol=1e-12)


def test_accumulate_with_uneven_last_group_and_embeddings():
    Xw, Xc, y = _tagger_data(n=26)
    big, acc = _tagger(dtype="float64"), _tagger(dtype="float64")
    for m in (big, acc):
        m.compile(fb.optim.SGD(lr=0.1, momentum=0.9), "softmax_cross_entropy")
    # 26 rows: batches of 4 in groups of 3 -> updates on 12, 12 and 2 rows
    order = np.arange(26)
    for start in (0, 12, 24):
        idx = order[start:start + 12]
        big.train_on_batch([Xw[idx], Xc[idx]], y[idx])
    acc.fit([Xw, Xc], y, epochs=1, batch_size=4, shuffle=False, accumulate=3)
    np.testing.assert_allclose(acc.params, big.params, rtol=0, atol=1e-12)
    np.testing.assert_allclose(acc.tables, big.tables, rtol=0, atol=1e-12)


def test_accumulate_per_layer_path_equals_compiled_path():
    Xw, Xc, y = _tagger_data(n=26)
    a, b = _tagger(dtype="float64"), _tagger(dtype="float64")
    a.compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy")
    b.compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy", fused=False)
    for m in (a, b):
        m.fit([Xw, Xc], y, epochs=2, batch_size=4, seed=1, accumulate=2)
    np.testing.assert_array_equal(a.params, b.params)
    np.testing.assert_array_equal(a.tables, b.tables)


# -- bad input ------------------------------------------------------------------------------------
def test_bad_graphs_are_refused_before_any_kernel_runs():
    x = fb.Input(4, name="x")
    ids = fb.Input(3, dtype="int64", name="ids")
    with pytest.raises(ValueError, match=r"Dense\(n_in=5.*width 4"):
        L.Dense(5, 2)(x)
    with pytest.raises(TypeError, match="takes float features, got int64 ids"):
        L.Dense(3, 2)(ids)
    with pytest.raises(TypeError, match="takes int64 ids, got float features"):
        L.WindowEmbedding(10, 2, window=2)(x)
    with pytest.raises(ValueError, match="takes windows of 5 ids"):
        L.WindowEmbedding(10, 2, window=2)(ids)
    with pytest.raises(ValueError, match="equal width"):
        L.Add()([x, L.Dense(4, 3)(x)])
    with pytest.raises(TypeError, match="int64 ids"):
        L.Concatenate()([x, ids])
    other = fb.Input(2, name="other")
    out = L.Dense(4, 2)(x)
    with pytest.raises(ValueError, match="does not depend on the input 'other'"):
        fb.Model([x, other], out)
    with pytest.raises(ValueError, match="not among the model's inputs"):
        fb.Model([other], out)
    with pytest.raises(TypeError, match="fb.Input values"):
        L.Dense(4, 2)(np.zeros((3, 4)))
    shared = L.Add()
    shared([x, x])
    with pytest.raises(ValueError, match="every call must get inputs like the first"):
        shared([x, x, x])


def test_graph_with_a_cycle_is_refused():
    x = fb.Input(3)
    a = L.Dense(3, 3)
    h = a(x)
    call = h.producer
    call.inputs = [h]  # only by tampering: values are made after their inputs
    with pytest.raises(ValueError, match="cycle"):
        fb.Model(x, h)


def test_a_layer_serves_one_model():
    x = fb.Input(3)
    dense = L.Dense(3, 2)
    out = dense(x)
    fb.Model(x, out)
    with pytest.raises(ValueError, match="another model|belongs to"):
        fb.Model(x, out)
    with pytest.raises(ValueError, match="belongs to"):
        dense(x)
    with pytest.raises(ValueError, match="belongs to a model"):
        fb.Sequential([dense])


def test_bad_inputs_to_fit_evaluate_predict_name_the_input():
    Xw, Xc, y = _tagger_data()
    m = _tagger()
    m.compile("adam", "softmax_cross_entropy")
    with pytest.raises(ValueError, match="has 1 arrays"):
        m.fit([Xw], y)
    with pytest.raises(TypeError, match="list of 2 arrays in that order or a dict"):
        m.predict(Xw)
    with pytest.raises(ValueError, match=r"missing \['casing'\], unknown \['case'\]"):
        m.evaluate({"words": Xw, "case": Xc}, y)
    with pytest.raises(ValueError, match="same number of rows"):
        m.fit([Xw, Xc[:-1]], y)
    with pytest.raises(ValueError, match=r"X\['casing'\].*\[0, 4\)"):
        m.fit([Xw, Xc + 3], y)
    with pytest.raises(ValueError, match=r"X\[.words.\].*integer"):
        m.predict([Xw + 0.5, Xc])
    with pytest.raises(ValueError, match="shape"):
        m.predict([Xc, Xw[:, :3]])
    x = fb.Input(4, name="x")
    f = fb.Model(x, L.Dense(4, 2)(x))
    with pytest.raises(ValueError, match="X has 5 features per sample, the model expects 4"):
        f.predict(np.zeros((3, 5)))


def test_version1_checkpoint_of_a_window_model_loads_bit_for_bit():
    """tests/data/v1_window_adam.fbp was saved by fastbp 0.1.0 before the tape (commit
    24ee378) after training.  Its weights and table load as the bits it holds (their
    digest); predict and evaluate equal a float64 NumPy forward pass of them.  (A digest
    of the predictions, taken on an AMD host, differs on an Intel host with AVX-512, for
    24ee378 itself as for today's code: compiled float32 sums depend on the host.)"""
    import hashlib
    import os
    path = os.path.join(os.path.dirname(__file__), "data", "v1_window_adam.fbp")
    rng = np.random.default_rng(1)
    rng.standard_normal((103, 10)), rng.standard_normal((103, 5)), rng.integers(0, 4, 103)
    ids, yw = rng.integers(0, 50, (97, 5)), rng.integers(0, 3, 97)
    m = fb.load(path)
    assert isinstance(m, fb.Sequential) and int(m.optimizer.step[0]) == 21
    h = hashlib.sha256()
    for a in (m.params, m.window.E):
        h.update(np.ascontiguousarray(a).tobytes())
    assert h.hexdigest()[:16] == DIGEST_V1_WEIGHTS
    emb, d1, _, d2 = m.layers
    x = emb.E.astype(np.float64)[ids].reshape(len(ids), -1)
    o = np.tanh(x @ d1.W.astype(np.float64) + d1.b) @ d2.W.astype(np.float64) + d2.b
    np.testing.assert_allclose(m.predict(ids), o, rtol=1e-5, atol=1e-6)
    z = o - o.max(axis=1, keepdims=True)
    want = float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(yw)), yw]))
    assert m.evaluate(ids, yw)["loss"] == pytest.approx(want, rel=1e-6)
    m.fit(ids, yw, epochs=1, batch_size=16)  # the optimizer state came back: training goes on
    assert int(m.optimizer.step[0]) == 28 and int(m.window.step[0]) == 28


DIGEST_V1_WEIGHTS = "37fb16784d3560de"  # the file's weights and table, as fastbp 24ee378 saved them
