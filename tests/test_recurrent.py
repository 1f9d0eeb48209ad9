"""Sequence models at the model level (seed 004): Embedding, RNN, LSTM, GRU and
Bidirectional over right-padded batches.

* every recurrent layer through tests/layer_harness.check_layer (sequence mode), against
  PyTorch's nn.RNN / nn.LSTM / nn.GRU over pack_padded_sequence;
* ten Adam steps of a tagger equal PyTorch's (SparseAdam for the table, as fastbp's
  lazy row update), weights compared after every step;
* padding is exact: a sentence alone gives the outputs and gradients it gives inside a
  padded batch of longer sentences, and a minibatch runs its own longest sentence;
* truncated BPTT against a NumPy twin; many-to-one outputs; dropout and float inputs;
* 1 and 2 threads give the same bits; bad input is refused with a message that says
  what was expected and what came.

The kernels themselves are tested in tests/test_recurrent_kernels.py.
"""
from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastbp as fb
from layer_harness import check_layer

L = fb.layers
pad_sequences = fb.text.pad_sequences

# the harness batch: 7 rows of 6 steps, lengths from 1 to 6 (two full rows)
LENGTHS = np.array([6, 2, 5, 1, 3, 6, 4])
T = 6
PAD = np.arange(T)[None, :] >= LENGTHS[:, None]


def _have_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _t(a):
    import torch
    return torch.from_numpy(np.ascontiguousarray(a))


def _padded_floats(width):
    def make(rng):
        x = rng.standard_normal((len(LENGTHS), T, width))
        x[PAD] = 0
        return [x]
    return make


def _padded_ids(vocab):
    def make(rng):
        ids = rng.integers(1, vocab, (len(LENGTHS), T))
        ids[PAD] = 0
        return [ids]
    return make


# -- PyTorch twins -------------------------------------------------------------------------

def torch_recurrent(fwd, bwd=None):
    """A torch nn.RNN/LSTM/GRU (bidirectional when ``bwd`` is given) holding the fastbp
    layers' weights, and (fastbp gradient getter, torch leaf) pairs for every weight.
    RNN and LSTM add PyTorch's two biases; ``b`` is split between them (their gradients
    are the same, both compared with fastbp's db)."""
    import torch
    kind = type(fwd).__name__
    kw = dict(input_size=fwd.n_in, hidden_size=fwd.n_hidden, batch_first=True,
              bidirectional=bwd is not None, dtype=torch.float64)
    if kind == "RNN":
        net = torch.nn.RNN(nonlinearity=fwd.activation, **kw)
    else:
        net = getattr(torch.nn, kind)(**kw)
    pairs = []
    for layer, suffix in [(fwd, "")] + ([(bwd, "_reverse")] if bwd is not None else []):
        w_ih, w_hh, b_ih, b_hh = (getattr(net, f"{n}_l0{suffix}")
                                  for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        with torch.no_grad():
            w_ih.copy_(_t(layer.W.T))
            w_hh.copy_(_t(layer.U.T))
            if kind == "GRU":
                b_ih.copy_(_t(layer.b))
                b_hh.copy_(_t(layer.b_rec))
            else:
                b_ih.copy_(_t(0.3 * layer.b))
                b_hh.copy_(_t(layer.b - 0.3 * layer.b))
        pairs += [(lambda m, l=layer: l.grads["W"].T, w_ih),
                  (lambda m, l=layer: l.grads["U"].T, w_hh),
                  (lambda m, l=layer: l.grads["b"], b_ih),
                  (lambda m, l=layer: l.grads["b_rec" if kind == "GRU" else "b"], b_hh)]
    return net, pairs


def torch_run(net, x, lengths):
    """net over the padded batch x (rows, T, n) as packed sequences: (output (rows, T,
    width) zero at padding, h_n)."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    packed = pack_padded_sequence(x, torch.as_tensor(lengths), batch_first=True,
                                  enforce_sorted=False)
    out, state = net(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    h_n = state[0] if isinstance(state, tuple) else state
    return out, h_n


def _recurrent_twin(layer, xs, lengths):
    net, pairs = torch_recurrent(layer)
    return torch_run(net, xs[0], lengths)[0], pairs


def _bidirectional_twin(layer, xs, lengths):
    net, pairs = torch_recurrent(layer.forward_layer, layer.backward_layer)
    return torch_run(net, xs[0], lengths)[0], pairs


# -- 1. every recurrent layer through the harness ------------------------------------------

HARNESS = {
    # name: (make_layer, n_in, out_width, n_params, twin)
    "rnn_tanh": (lambda: L.RNN(4, 3), 4, 3, 4 * 3 + 3 * 3 + 3, _recurrent_twin),
    "rnn_relu": (lambda: L.RNN(4, 3, activation="relu"), 4, 3, 4 * 3 + 3 * 3 + 3,
                 _recurrent_twin),
    "lstm": (lambda: L.LSTM(4, 3), 4, 3, 4 * 12 + 3 * 12 + 12, _recurrent_twin),
    "gru": (lambda: L.GRU(4, 3), 4, 3, 4 * 9 + 3 * 9 + 9 + 9, _recurrent_twin),
    "bi_lstm": (lambda: L.Bidirectional(L.LSTM(4, 3)), 4, 6, 2 * (4 * 12 + 3 * 12 + 12),
                _bidirectional_twin),
    "bi_gru": (lambda: L.Bidirectional(L.GRU(4, 3)), 4, 6, 2 * (4 * 9 + 3 * 9 + 18),
               _bidirectional_twin),
}


@pytest.mark.parametrize("name", list(HARNESS))
def test_recurrent_layer_through_the_harness(name):
    make, n_in, width, n_params, twin = HARNESS[name]
    check_layer(make, [(n_in, "float64")], _padded_floats(n_in), out_width=width,
                n_params=n_params, torch_twin=twin if _have_torch() else None,
                rows=len(LENGTHS), sequence=True)


def test_embedding_through_the_harness():
    def twin(layer, xs, lengths):
        import torch
        E = torch.tensor(layer.E.copy(), requires_grad=True)
        out = torch.nn.functional.embedding(xs[0], E, padding_idx=0)
        return out, [(lambda m, l=layer: m.embedding_gradient(l), E)]
    check_layer(lambda: L.Embedding(9, 4), [(1, "int64")], _padded_ids(9), out_width=4,
                n_params=36, torch_twin=twin if _have_torch() else None,
                rows=len(LENGTHS), sequence=True)


def test_dense_per_step_through_the_harness():
    def twin(layer, xs, lengths):
        import torch
        W = torch.tensor(layer.W.copy(), requires_grad=True)
        b = torch.tensor(layer.b.copy(), requires_grad=True)
        real = torch.from_numpy(~PAD)[:, :, None]
        return torch.tanh(xs[0] @ W + b) * real, [(lambda m, l=layer: l.dW, W),
                                                   (lambda m, l=layer: l.db, b)]
    check_layer(lambda: L.Dense(4, 5, activation="tanh"), [(4, "float64")], _padded_floats(4),
                out_width=5, n_params=25, torch_twin=twin if _have_torch() else None,
                rows=len(LENGTHS), sequence=True)


def test_every_sequence_layer_is_in_the_harness():
    assert {type(m()).__name__ for m, *_ in HARNESS.values()} | {"Embedding"} == \
        {"RNN", "LSTM", "GRU", "Bidirectional", "Embedding"}


# -- a tagger and its data -----------------------------------------------------------------

V, D, H, K = 15, 4, 3, 5


def make_tagger(cell="LSTM", bidirectional=True, seed=0, dtype="float64", dropout=0.0,
                **options):
    """ids -> Embedding(V, D) -> [Dropout] -> [Bidirectional](cell(D, H)) -> [Dropout] ->
    Dense(K), per token.  Returns (model, embedding, recurrent layer, dense)."""
    ids = fb.Input(dtype="int64", sequence=True, name="ids")
    emb = L.Embedding(V, D)
    rec = getattr(L, cell)(D, H, **options)
    if bidirectional:
        rec = L.Bidirectional(rec)
    h = emb(ids)
    if dropout:
        h = L.Dropout(dropout)(h)
    h = rec(h)
    if dropout:
        h = L.Dropout(dropout)(h)
    dense = L.Dense(h.width, K)
    model = fb.Model(ids, dense(h), dtype=dtype, seed=seed)
    return model, emb, rec, dense


def sentences(rng, lengths, T=None, vocab=V, unlabelled=0):
    """Padded ids (n, T) and tags (n, T) (-1 at padding, and at ``unlabelled`` random real
    tokens) for sentences of these lengths."""
    words = [rng.integers(1, vocab, n) for n in lengths]
    tags = [rng.integers(0, K, n) for n in lengths]
    for _ in range(unlabelled):
        i = int(rng.integers(len(lengths)))
        if lengths[i] > 1:
            tags[i][rng.integers(lengths[i])] = -1
    T = T or max(lengths)
    return pad_sequences(words, maxlen=T), pad_sequences(tags, padding_id=-1, maxlen=T)


def directions(rec):
    return [rec.forward_layer, rec.backward_layer] if hasattr(rec, "forward_layer") else [rec]


# -- 2. ten Adam steps against PyTorch -------------------------------------------------------


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
def test_tagger_adam_steps_match_torch(cell):
    """Embedding -> Bidirectional(cell) -> Dense, 10 Adam steps on fresh padded batches.
    fastbp updates only the table rows a batch uses, with the lazy rule of
    torch.optim.SparseAdam (nn.Embedding(sparse=True)); the rest is torch.optim.Adam.
    PyTorch's second RNN/LSTM bias b_hh is frozen at zero (fastbp's b is their sum, and
    two trained biases would move twice as far)."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    model, emb, rec, dense = make_tagger(cell)
    opt = dict(lr=0.02, betas=(0.8, 0.95), eps=1e-6)
    model.compile(fb.optim.Adam(**opt), "softmax_cross_entropy")
    fwd, bwd = rec.forward_layer, rec.backward_layer
    t_emb = nn.Embedding(V, D, padding_idx=0, sparse=True).double()
    net, _ = torch_recurrent(fwd, bwd)
    lin = nn.Linear(2 * H, K).double()
    with torch.no_grad():
        t_emb.weight.copy_(_t(emb.E))
        lin.weight.copy_(_t(dense.W.T))
        lin.bias.copy_(_t(dense.b))
        if cell != "GRU":
            for suffix, layer in (("", fwd), ("_reverse", bwd)):
                getattr(net, "bias_ih_l0" + suffix).copy_(_t(layer.b))
                getattr(net, "bias_hh_l0" + suffix).zero_()
                getattr(net, "bias_hh_l0" + suffix).requires_grad_(False)
    dense_params = [p for p in list(net.parameters()) + list(lin.parameters()) if p.requires_grad]
    sparse_opt = torch.optim.SparseAdam(list(t_emb.parameters()), **opt)
    dense_opt = torch.optim.Adam(dense_params, **opt)
    crit = nn.CrossEntropyLoss(ignore_index=-1)

    def diff():
        pairs = [(emb.E, t_emb.weight), (dense.W, lin.weight.T), (dense.b, lin.bias)]
        for layer, suffix in ((fwd, ""), (bwd, "_reverse")):
            pairs += [(layer.W, getattr(net, "weight_ih_l0" + suffix).T),
                      (layer.U, getattr(net, "weight_hh_l0" + suffix).T)]
            b = getattr(net, "bias_ih_l0" + suffix)
            if cell == "GRU":
                pairs.append((layer.b_rec, getattr(net, "bias_hh_l0" + suffix)))
            pairs.append((layer.b, b))
        return max(float(np.max(np.abs(a - t.detach().numpy()))) for a, t in pairs)

    start = model.params.copy(), emb.E.copy()
    rng = np.random.default_rng(3)
    for step in range(10):
        lengths = rng.integers(1, 9, 6)
        ids, tags = sentences(rng, lengths, T=10, unlabelled=2)
        loss = model.train_on_batch(ids, tags)
        sparse_opt.zero_grad()
        dense_opt.zero_grad()
        out, _ = torch_run(net, t_emb(_t(ids)), lengths)
        t_loss = crit(lin(out).reshape(-1, K), _t(tags.reshape(-1)))
        t_loss.backward()
        sparse_opt.step()
        dense_opt.step()
        assert loss == pytest.approx(t_loss.item(), rel=1e-12), f"step {step}"
        d = diff()
        assert d <= 1e-9, f"step {step}: weights differ by {d:.3g}"
    # the weights moved: not two untrained nets compared
    assert np.max(np.abs(model.params - start[0])) > 1e-2
    assert np.max(np.abs(emb.E - start[1])) > 1e-2
    assert np.all(emb.E[0] == 0)  # the padding row


# -- 3. padding is exact ------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_a_sentence_alone_equals_itself_in_a_padded_batch(cell):
    """Outputs of each sentence alone (no padding) equal its rows in a batch of longer
    sentences padded past the longest; the batch gradient (mean over its labelled tokens)
    equals the token-weighted mean of the sentences' own gradients."""
    model, emb, rec, dense = make_tagger(cell)
    model.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy")
    rng = np.random.default_rng(5)
    lengths = np.array([9, 3, 1, 6, 9, 4, 2])
    ids, tags = sentences(rng, lengths, T=12, unlabelled=2)
    counts = (tags >= 0).sum(axis=1)
    assert np.all(counts >= 1) and np.any(counts < lengths)  # some real tokens go untagged

    out = model.predict(ids)
    assert out.shape == (7, 12, K)
    for i, n in enumerate(lengths):
        alone = model.predict(ids[i:i + 1, :n])
        np.testing.assert_allclose(out[i, :n], alone[0], rtol=0, atol=1e-13)
        assert np.all(out[i, n:] == 0)

    loss = model.compute_gradients(ids, tags)
    grads, table = model.grads.copy(), model.embedding_gradient(emb)
    want_loss, want_grads, want_table = 0.0, np.zeros_like(grads), np.zeros_like(table)
    for i, n in enumerate(lengths):
        part = model.compute_gradients(ids[i:i + 1, :n], tags[i:i + 1, :n])
        w = counts[i] / counts.sum()
        want_loss += w * part
        want_grads += w * model.grads
        want_table += w * model.embedding_gradient(emb)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    np.testing.assert_allclose(grads, want_grads, rtol=0, atol=1e-10)
    np.testing.assert_allclose(table, want_table, rtol=0, atol=1e-10)
    assert np.max(np.abs(grads)) > 1e-3


def test_lengths_come_from_the_first_int_sequence_input():
    """Words and a second id sequence per step (its table without a padding id): the
    words' padding gives the lengths, so what the second input holds at padded steps
    changes nothing, outputs or gradients."""
    rng = np.random.default_rng(15)
    ids, tags = sentences(rng, [7, 3, 5, 1], T=8)
    feats = rng.integers(0, 5, ids.shape)  # ids at the padded steps too
    words, marks = (fb.Input(dtype="int64", sequence=True, name=n) for n in ("words", "marks"))
    mark_table = L.Embedding(5, 2, padding_id=None)
    h = L.Concatenate()([L.Embedding(V, 3)(words), mark_table(marks)])
    model = fb.Model([words, marks], L.Dense(6, K)(L.Bidirectional(L.LSTM(5, 3))(h)),
                     dtype="float64", seed=0)
    model.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy")
    quiet = np.where(ids == 0, 0, feats)
    out = model.predict([ids, feats])
    assert np.all(out[ids == 0] == 0) and np.all(out[ids != 0] != 0)
    np.testing.assert_array_equal(model.predict({"marks": quiet, "words": ids}), out)
    model.compute_gradients([ids, feats], tags)
    grads, table = model.grads.copy(), model.embedding_gradient(mark_table)
    model.compute_gradients([ids, quiet], tags)
    np.testing.assert_array_equal(model.grads, grads)
    np.testing.assert_array_equal(model.embedding_gradient(mark_table), table)
    # listed first, the input whose table has no padding id does not decide the lengths
    words, marks = (fb.Input(dtype="int64", sequence=True, name=n) for n in ("words", "marks"))
    h = L.Concatenate()([L.Embedding(V, 3)(words), L.Embedding(5, 2, padding_id=None)(marks)])
    swapped = fb.Model([marks, words], L.Dense(6, K)(L.Bidirectional(L.LSTM(5, 3))(h)),
                       dtype="float64", seed=0)
    np.testing.assert_array_equal(swapped.predict([feats, ids]), out)


def test_evaluate_fit_and_accumulate_count_labelled_tokens():
    rng = np.random.default_rng(16)
    ids, tags = sentences(rng, rng.integers(1, 9, 12), T=10, unlabelled=3)
    model, *_ = make_tagger("GRU", seed=1)
    model.compile(fb.optim.SGD(lr=1e-300), "softmax_cross_entropy")  # steps that move nothing
    loss = model.compute_gradients(ids, tags)
    result = model.evaluate(ids, tags, batch_size=5)
    labelled = tags >= 0
    hits = model.predict(ids).argmax(axis=2)[labelled] == tags[labelled]
    assert result["loss"] == pytest.approx(loss, rel=1e-12)
    assert result["accuracy"] == pytest.approx(hits.mean(), rel=1e-15)
    # an epoch's loss weighs each minibatch by its labelled tokens
    before = model.params.copy()
    history = model.fit(ids, tags, epochs=1, batch_size=5, shuffle=False)
    np.testing.assert_allclose(model.params, before, rtol=1e-15, atol=1e-290)
    assert history["loss"][0] == pytest.approx(loss, rel=1e-12)
    # accumulate=2 over minibatches of different token counts is one step on both
    runs = []
    for how in ("accumulate", "one batch"):
        m, *_ = make_tagger("GRU", seed=1)
        m.compile(fb.optim.SGD(lr=0.5), "softmax_cross_entropy")
        if how == "accumulate":
            m.fit(ids[:8], tags[:8], epochs=1, batch_size=4, accumulate=2, shuffle=False)
        else:
            m.train_on_batch(ids[:8], tags[:8])
        runs.append(m.params.copy())
    assert labelled[:4].sum() != labelled[4:8].sum()
    np.testing.assert_allclose(runs[0], runs[1], rtol=0, atol=1e-15)
    assert np.max(np.abs(runs[0] - before)) > 1e-3


def test_gradient_checkpointing_gives_the_same_gradients():
    rng = np.random.default_rng(17)
    ids, tags = sentences(rng, [6, 2, 4, 5], T=7)
    grads = []
    for every in (None, 1, 2):
        tokens = fb.Input(dtype="int64", sequence=True)
        h = L.Bidirectional(L.GRU(D, H))(L.Embedding(V, D)(tokens))
        model = fb.Model(tokens, L.Dense(2 * H, K)(h), dtype="float64", seed=0,
                         checkpoint_every=every)
        model.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy")
        model.compute_gradients(ids, tags)
        grads.append((model.grads.copy(), model.embedding_gradient()))
    for g, table in grads[1:]:
        np.testing.assert_array_equal(g, grads[0][0])
        np.testing.assert_array_equal(table, grads[0][1])


# -- 4. a minibatch costs its own tokens ------------------------------------------


def test_a_minibatch_runs_its_own_longest_sentence():
    rng = np.random.default_rng(6)
    lengths = np.array([200] + list(rng.integers(2, 9, 15)))
    ids, tags = sentences(rng, lengths)
    assert ids.shape == (16, 200)
    short = slice(1, 6)
    longest = int(lengths[short].max())
    runs = []
    for cut in (None, longest):  # padded to 200 columns, and only to their own longest
        model, *_ = make_tagger("LSTM", seed=2)
        model.compile(fb.optim.Adam(lr=0.01), "softmax_cross_entropy")
        x, y = ids[short, :cut], tags[short, :cut]
        model.train_on_batch(x, y)
        assert model._plan.work.steps[0] == longest
        # its sequence values hold the real tokens only, packed
        assert model._plan.work.steps[2] == lengths[short].sum()
        runs.append((model, model.predict(x)))
    (a, out_a), (b, out_b) = runs
    np.testing.assert_array_equal(a.params, b.params)
    np.testing.assert_array_equal(a.tables, b.tables)
    assert out_a.shape == (5, 200, K) and out_b.shape == (5, longest, K)
    np.testing.assert_array_equal(out_a[:, :longest], out_b)
    assert np.all(out_a[:, longest:] == 0)
    # in fit too: the last minibatch (rows 12 .. 15, all short) ran its own longest
    a.fit(ids, tags, epochs=1, batch_size=4, shuffle=False)
    assert a._plan.work.steps[0] == lengths[12:].max()


# -- no recompilation -------------------------------------------------------------------------


def _exercise(model, rng, T_, cast=lambda a: a):
    lengths = rng.integers(1, T_ + 1, 20)
    ids, tags = sentences(rng, lengths, T=T_)
    ids = cast(ids)
    model.fit(ids, tags, epochs=2, batch_size=8, seed=1, validation_data=(ids[:5], tags[:5]))
    model.train_on_batch(ids[:3], tags[:3])
    model.compute_gradients(ids[:4], tags[:4])
    model.predict(ids, batch_size=7)
    model.evaluate(ids, tags)


def test_other_cells_sizes_and_shapes_do_not_recompile():
    """The cell, the sizes, the steps and the batch are data: after one tagger has run,
    taggers of the other cells and other shapes, int32, read-only and Fortran-ordered ids
    compile nothing new (the dispatchers' signature counts stay)."""
    from test_engine import _signature_counts
    rng = np.random.default_rng(18)
    model, *_ = make_tagger("LSTM")
    model.compile(fb.optim.Adam(lr=0.01), "softmax_cross_entropy")
    _exercise(model, rng, 9)
    counts = _signature_counts()
    assert any(n.startswith("interpreter.") and c > 0 for n, c in counts.items()), counts

    def read_only(a):
        a = a.copy()
        a.flags.writeable = False
        return a
    _exercise(model, rng, 17, read_only)
    _exercise(model, rng, 4, np.asfortranarray)
    _exercise(model, rng, 6, lambda a: a.astype(np.int32))
    for cell in ("GRU", "RNN"):
        other, *_ = make_tagger(cell, seed=3, truncate=2)
        other.compile(fb.optim.Adam(lr=0.01), "softmax_cross_entropy")
        _exercise(other, rng, 11)
    assert _signature_counts() == counts


# -- 5. truncated BPTT -------------------------------------------------------------------------


def numpy_truncated_rnn(x, lengths, W, U, b, W2, b2, labels, k, reverse):
    """Loss and gradients of a tanh RNN -> Dense -> softmax CE (mean over labelled
    tokens) with truncated BPTT: the gradient entering at the output of step t goes
    back through steps t, t-1, ..., t-k (in processing order); k = 0: all the way."""
    n, T_, _ = x.shape
    h_dim = U.shape[0]
    hs = np.zeros((n, T_, h_dim))
    for i in range(n):
        h = np.zeros(h_dim)
        order = range(lengths[i] - 1, -1, -1) if reverse else range(lengths[i])
        for t in order:
            h = np.tanh(x[i, t] @ W + h @ U + b)
            hs[i, t] = h
    logits = hs @ W2 + b2
    labelled = labels >= 0
    count = labelled.sum()
    z = logits - logits.max(axis=2, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=2, keepdims=True)
    loss = -np.sum(np.log(p[labelled, labels[labelled]])) / count
    dlogits = p.copy()
    dlogits[labelled, labels[labelled]] -= 1
    dlogits[~labelled] = 0
    dlogits /= count
    g = {"W2": np.einsum("ntj,ntk->jk", hs, dlogits), "b2": dlogits.sum(axis=(0, 1)),
         "W": np.zeros_like(W), "U": np.zeros_like(U), "b": np.zeros_like(b),
         "x": np.zeros_like(x)}
    dh_out = dlogits @ W2.T
    for i in range(n):
        order = list(range(lengths[i] - 1, -1, -1)) if reverse else list(range(lengths[i]))
        for s, t in enumerate(order):  # the origin: processing step s, position t
            delta = dh_out[i, t]
            first = 0 if k == 0 else max(0, s - k)
            for u in range(s, first - 1, -1):
                pos = order[u]
                dz = delta * (1 - hs[i, pos] ** 2)
                prev = hs[i, order[u - 1]] if u > 0 else np.zeros(h_dim)
                g["W"] += np.outer(x[i, pos], dz)
                g["U"] += np.outer(prev, dz)
                g["b"] += dz
                g["x"][i, pos] += dz @ W.T
                delta = dz @ U.T
    return loss, g


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("k", [1, 2, 0])
def test_truncated_bptt_equals_numpy(k, reverse):
    rng = np.random.default_rng(7)
    lengths = np.array([7, 4, 2, 7, 5])
    ids, tags = sentences(rng, lengths, T=8, unlabelled=1)
    tokens = fb.Input(dtype="int64", sequence=True)
    emb = L.Embedding(V, 2)
    rnn = L.RNN(2, 3, truncate=k, reverse=reverse)
    dense = L.Dense(3, K)
    model = fb.Model(tokens, dense(rnn(emb(tokens))), dtype="float64", seed=1)
    model.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy")
    rnn.U = 1.5 * rnn.U  # a longer memory, so that what truncation drops is not tiny
    loss = model.compute_gradients(ids, tags)
    x = emb.E[ids]
    want_loss, want = numpy_truncated_rnn(x, lengths, rnn.W, rnn.U, rnn.b, dense.W, dense.b,
                                          np.where(np.arange(8) < lengths[:, None], tags, -1),
                                          k, reverse)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    for name in ("W", "U", "b"):
        np.testing.assert_allclose(rnn.grads[name], want[name], rtol=0, atol=1e-12,
                                   err_msg=name)
    np.testing.assert_allclose(dense.dW, want["W2"], rtol=0, atol=1e-12)
    table = np.zeros_like(emb.E)
    np.add.at(table, ids, want["x"])
    table[0] = 0
    np.testing.assert_allclose(model.embedding_gradient(emb), table, rtol=0, atol=1e-12)
    if k:  # truncation changed the gradient (the reference is not full BPTT in disguise)
        _, full = numpy_truncated_rnn(x, lengths, rnn.W, rnn.U, rnn.b, dense.W, dense.b,
                                      np.where(np.arange(8) < lengths[:, None], tags, -1),
                                      0, reverse)
        assert np.max(np.abs(full["U"] - want["U"])) > 1e-4


@pytest.mark.parametrize("cell", ["RNN", "LSTM", "GRU"])
def test_truncate_at_least_T_is_full_bptt(cell):
    rng = np.random.default_rng(8)
    ids, tags = sentences(rng, [6, 3, 5, 1], T=6)
    grads = {}
    for k in (0, 6, 9, 2):
        model, *_ = make_tagger(cell, seed=4, truncate=k)
        model.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy")
        model.compute_gradients(ids, tags)
        grads[k] = model.grads.copy()
    np.testing.assert_array_equal(grads[6], grads[0])
    np.testing.assert_array_equal(grads[9], grads[0])
    assert np.max(np.abs(grads[2] - grads[0])) > 1e-8


# -- 6. many-to-one, dropout, float sequence inputs ---------------------------------------


def _many_to_one(cell, bidirectional, n_out, seed=0):
    tokens = fb.Input(dtype="int64", sequence=True)
    emb = L.Embedding(V, D)
    rec = getattr(L, cell)(D, H, return_sequences=False)
    if bidirectional:
        rec = L.Bidirectional(rec)
    h = rec(emb(tokens))
    assert not h.sequence and h.width == H * (2 if bidirectional else 1)
    dense = L.Dense(h.width, n_out)
    return fb.Model(tokens, dense(h), dtype="float64", seed=seed), emb, rec, dense


@pytest.mark.parametrize("cell,bidirectional,loss", [
    ("LSTM", False, "mse"), ("GRU", True, "mse"),
    ("LSTM", True, "softmax_cross_entropy"), ("RNN", False, "softmax_cross_entropy")])
def test_many_to_one_matches_torch(cell, bidirectional, loss):
    """return_sequences=False: the state after each sequence's last token (the reverse
    direction's after its first), PyTorch's h_n over packed sequences."""
    rng = np.random.default_rng(9)
    lengths = np.array([5, 1, 3, 7, 2, 7])
    ids, _ = sentences(rng, lengths, T=9)
    y = rng.standard_normal((6, 2)) if loss == "mse" else rng.integers(0, K, 6)
    model, emb, rec, dense = _many_to_one(cell, bidirectional, 2 if loss == "mse" else K)
    model.compile(fb.optim.Adam(lr=0.01), loss)
    assert model.predict(ids).shape == (6, dense.n_out)
    err, details = fb.gradcheck(model, ids, y, return_details=True)
    assert err < 1e-6, details
    torch = pytest.importorskip("torch")
    value = model.compute_gradients(ids, y)
    dirs = directions(rec)
    net, pairs = torch_recurrent(*dirs)
    E = torch.tensor(emb.E.copy(), requires_grad=True)
    W2 = torch.tensor(dense.W.copy(), requires_grad=True)
    b2 = torch.tensor(dense.b.copy(), requires_grad=True)
    _, h_n = torch_run(net, torch.nn.functional.embedding(_t(ids), E, padding_idx=0), lengths)
    last = torch.cat(list(h_n), dim=1)  # (rows, h) per direction, side by side
    out = last @ W2 + b2
    np.testing.assert_allclose(model.predict(ids), out.detach().numpy(), rtol=0, atol=1e-12)
    if loss == "mse":
        t_loss = torch.nn.functional.mse_loss(out, _t(y))
    else:
        t_loss = torch.nn.functional.cross_entropy(out, _t(y))
    t_loss.backward()
    assert value == pytest.approx(t_loss.item(), rel=1e-12)
    for get, leaf in pairs + [(lambda m: dense.dW, W2), (lambda m: dense.db, b2),
                              (lambda m: m.embedding_gradient(emb), E)]:
        np.testing.assert_allclose(get(model), leaf.grad.numpy(), rtol=0, atol=1e-10)
    history = model.fit(ids, y, epochs=3, batch_size=4)
    assert np.all(np.isfinite(history["loss"]))


def test_dropout_on_sequences_trains_and_predicts_deterministically():
    rng = np.random.default_rng(10)
    ids, tags = sentences(rng, rng.integers(1, 12, 40), T=12)
    runs = []
    for _ in range(2):
        model, emb, rec, dense = make_tagger("LSTM", dropout=0.3, seed=3)
        model.compile(fb.optim.Adam(lr=0.01), "softmax_cross_entropy")
        history = model.fit(ids, tags, epochs=3, batch_size=8, seed=1)
        assert np.all(np.isfinite(history["loss"]))
        runs.append((model, emb, rec, dense))
    (a, emb, rec, dense), (b, *_) = runs
    np.testing.assert_array_equal(a.params, b.params)  # seeded masks
    out = a.predict(ids)
    np.testing.assert_array_equal(a.predict(ids), out)
    assert np.all(out[ids == 0] == 0)
    # at inference dropout is the identity: the same weights without it predict the same
    plain, p_emb, p_rec, p_dense = make_tagger("LSTM", seed=3)
    p_emb.E[...] = emb.E
    for src, dst in zip(directions(rec), directions(p_rec)):
        for name, value in src.params.items():
            dst.params[name][...] = value
    p_dense.W, p_dense.b = dense.W, dense.b
    np.testing.assert_allclose(plain.predict(ids), out, rtol=0, atol=1e-15)
    # and training with dropout is not training without it
    fresh, *_ = make_tagger("LSTM", seed=3)
    fresh.compile(fb.optim.Adam(lr=0.01), "softmax_cross_entropy")
    fresh.fit(ids, tags, epochs=3, batch_size=8, seed=1)
    assert not np.array_equal(fresh.params, a.params)


def test_float_sequence_input_rnn_matches_torch():
    """fb.Input(3, sequence=True): (N, T, 3) floats, every row T long (no padding ids)."""
    rng = np.random.default_rng(11)
    X = rng.standard_normal((5, 4, 3))
    y = rng.integers(0, 2, (5, 4))
    y[1, 2] = -1
    x = fb.Input(3, sequence=True)
    rnn = L.RNN(3, 4)
    dense = L.Dense(4, 2)
    model = fb.Model(x, dense(rnn(x)), dtype="float64", seed=0)
    model.compile(fb.optim.Adam(lr=0.01), "softmax_cross_entropy")
    out = model.predict(X)
    assert out.shape == (5, 4, 2)
    err, details = fb.gradcheck(model, X, y, return_details=True)
    assert err < 1e-6, details
    history = model.fit(X, y, epochs=3, batch_size=2)
    assert np.all(np.isfinite(history["loss"]))
    torch = pytest.importorskip("torch")
    loss = model.compute_gradients(X, y)
    net, pairs = torch_recurrent(rnn)
    W2 = torch.tensor(dense.W.copy(), requires_grad=True)
    b2 = torch.tensor(dense.b.copy(), requires_grad=True)
    h, _ = net(_t(X))
    logits = h @ W2 + b2
    np.testing.assert_allclose(model.predict(X), logits.detach().numpy(), rtol=0, atol=1e-12)
    t_loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 2), _t(y.reshape(-1)),
                                               ignore_index=-1)
    t_loss.backward()
    assert loss == pytest.approx(t_loss.item(), rel=1e-12)
    for get, leaf in pairs + [(lambda m: dense.dW, W2), (lambda m: dense.db, b2)]:
        np.testing.assert_allclose(get(model), leaf.grad.numpy(), rtol=0, atol=1e-10)


# -- 7. one and two threads -----------------------------------------------------------------

THREAD_CHILD = textwrap.dedent("""
    import hashlib, os
    import numpy as np
    import fastbp as fb

    fb.set_num_threads(int(os.environ["NUMBA_NUM_THREADS"]))
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 30, 300)
    words = [rng.integers(1, 500, n) for n in lengths]
    tags = [rng.integers(0, 7, n) for n in lengths]
    ids = fb.text.pad_sequences(words)
    y = fb.text.pad_sequences(tags, padding_id=-1)
    m = fb.Sequential([fb.layers.Embedding(500, 16), fb.layers.Dropout(0.1),
                       fb.layers.Bidirectional(fb.layers.LSTM(16, 24)),
                       fb.layers.Dense(48, 7)], dtype="float32", seed=0)
    m.compile(fb.optim.Adam(lr=1e-2, clip_norm=1.0), "softmax_cross_entropy")
    history = m.fit(ids, y, epochs=2, batch_size=64, seed=1)
    digest = hashlib.sha256(m.params.tobytes() + m.tables.tobytes()
                            + m.optimizer.state.tobytes() + m.predict(ids).tobytes()
                            + np.array(history["loss"]).tobytes())
    print(fb.get_num_threads(), digest.hexdigest())
""")


@pytest.mark.parametrize("cpu", ["host", pytest.param("skylake", marks=pytest.mark.slow)])
def test_bilstm_tagger_is_bit_identical_at_one_and_two_threads(cpu, tmp_path):
    """float32, batches of 64 (dealt into two groups of rows by the recurrent kernels),
    in a cache of its own: the first run (one thread) compiles every kernel, the second
    (two threads) and the third (one thread) load them.  All three give the same bits.
    CI once got other bits on the run that compiled the LSTM backward than on the one
    that loaded it (``reassoc`` in copies of its time loop; since compiled without it);
    a shared cache that earlier tests had filled hid that here.  ``skylake``: compiled
    for another CPU model's costs (the host's instructions).  A CI host once gave
    different bits at 1 and 2 threads where this host gave the same; compiled for
    skylake this host showed the difference too (fastmath per-step products, since
    compiled without it)."""
    if cpu != "host" and platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip(f"NUMBA_CPU_NAME={cpu} is an x86-64 model; this is {platform.machine()}")
    root = os.path.dirname(os.path.dirname(os.path.abspath(fb.__file__)))
    digests = []
    for threads in ("1", "2", "1"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads, NUMBA_CACHE_DIR=str(tmp_path))
        if cpu != "host":
            env["NUMBA_CPU_NAME"] = cpu
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
        out = subprocess.run([sys.executable, "-c", THREAD_CHILD], env=env,
                             capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
        n, digest = out.stdout.split()[-2:]
        assert n == threads
        digests.append(digest)
    assert digests[0] == digests[1] == digests[2], digests


# -- 8. bad input ------------------------------------------------------------------------------


def raises(exc, *fragments):
    """pytest.raises(exc) whose message must contain every fragment (literally)."""
    pattern = "".join(f"(?=.*{re.escape(str(f))})" for f in fragments)
    return pytest.raises(exc, match=re.compile(pattern, re.S))


@pytest.fixture(scope="module")
def tagger():
    model, *_ = make_tagger("LSTM", bidirectional=False)
    model.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy")
    return model


def _good(n=3, T_=5):
    ids, tags = sentences(np.random.default_rng(12), [T_, 2, 4][:n], T=T_)
    return ids, tags


def _entry_points(model):
    return {"fit": lambda X, y: model.fit(X, y, epochs=1, batch_size=2),
            "train_on_batch": model.train_on_batch, "evaluate": model.evaluate,
            "compute_gradients": model.compute_gradients,
            "predict": lambda X, y: model.predict(X)}


@pytest.mark.parametrize("call", ["fit", "train_on_batch", "evaluate", "compute_gradients",
                                  "predict"])
def test_ragged_list_points_to_pad_sequences(tagger, call):
    ids, tags = _good()
    ragged = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]
    with raises(ValueError, "ragged", "lengths 2 to 4", "pad_sequences"):
        _entry_points(tagger)[call](ragged, tags)


@pytest.mark.parametrize("call", ["fit", "train_on_batch", "evaluate", "compute_gradients"])
def test_labels_must_have_the_shape_of_the_ids(tagger, call):
    ids, tags = _good()
    with raises(ValueError, "(3, 5)", "(3, 4)", "-1"):
        _entry_points(tagger)[call](ids, tags[:, :4])
    with raises(ValueError, "(3, 5)", "(3,)"):
        _entry_points(tagger)[call](ids, tags[:, 0])
    ragged = [[1, 2, 3, 0, 0], [4, 0], [1, 1, 1, 1, 0]]
    with raises(ValueError, "ragged", "pad_sequences"):
        _entry_points(tagger)[call](ids, ragged)


def test_bad_labels_are_refused(tagger):
    ids, tags = _good()
    bad = tags.copy()
    bad[0, 0] = K
    with raises(ValueError, f"label {K}", f"[0, {K})", "-1"):
        tagger.train_on_batch(ids, bad)
    bad[0, 0] = -2
    with raises(ValueError, "label -2"):
        tagger.train_on_batch(ids, bad)
    whole = tagger.copy()  # integral floats are labels, as for a classifier
    assert whole.train_on_batch(ids, tags.astype(np.float64)) == \
        tagger.copy().train_on_batch(ids, tags)
    fractional = tags.astype(np.float64)
    fractional[0, 0] = 0.5
    with raises(TypeError, "integer labels", "float64"):
        tagger.train_on_batch(ids, fractional)


@pytest.mark.parametrize("call", ["fit", "train_on_batch", "evaluate", "predict"])
def test_a_row_of_padding_only_is_refused(tagger, call):
    ids, tags = _good()
    ids[1] = 0
    with raises(ValueError, "row 1", "length 0", "padding id 0"):
        _entry_points(tagger)[call](ids, tags)


@pytest.mark.parametrize("bad", [V, V + 7, -1])
def test_ids_outside_the_vocabulary_are_refused(tagger, bad):
    ids, tags = _good()
    ids[2, 1] = bad
    before = tagger.params.copy()
    with raises(ValueError, f"id {bad}", f"[0, {V})"):
        tagger.train_on_batch(ids, tags)
    with raises(ValueError, f"id {bad}", f"[0, {V})"):
        tagger.predict(ids)
    np.testing.assert_array_equal(tagger.params, before)


def test_floats_into_an_int_sequence_input_are_refused(tagger):
    ids, tags = _good()
    with raises(TypeError, "int sequence input", "integers", "float64"):
        tagger.train_on_batch(ids.astype(np.float64), tags)
    with raises(TypeError, "int sequence input", "float32"):
        tagger.predict(ids.astype(np.float32))


def test_bad_shapes_of_sequence_inputs_are_refused(tagger):
    with raises(ValueError, "(n_samples, T)", "shape (4,)"):
        tagger.predict(np.array([1, 2, 3, 4]))
    x = fb.Input(3, sequence=True)
    model = fb.Model(x, L.RNN(3, 2)(x), dtype="float64")
    with raises(ValueError, "(n_samples, T, 3)", "(5, 4)"):
        model.predict(np.zeros((5, 4)))
    with raises(ValueError, "(n_samples, T, 3)", "(5, 4, 2)"):
        model.predict(np.zeros((5, 4, 2)))
    with raises(ValueError, "empty"):
        model.predict(np.zeros((5, 0, 3)))


def test_graph_errors_name_what_was_expected():
    flat = fb.Input(4)
    with raises(TypeError, "non-sequence", "sequence=True", "(batch, T, 4)"):
        L.LSTM(4, 3)(flat)
    seq = fb.Input(4, sequence=True)
    with raises(ValueError, "n_in=5", "receives 4 features"):
        L.GRU(5, 3)(seq)
    with raises(ValueError, "n_in=5", "receives 4 features"):
        L.Bidirectional(L.RNN(5, 3))(seq)
    ids = fb.Input(dtype="int64", sequence=True)
    with raises(TypeError, "int64 ids", "Embedding"):
        L.RNN(1, 3)(ids)
    with raises(TypeError, "Embedding", "sequence"):
        L.WindowEmbedding(10, 3, window=1)(ids)
    with raises(TypeError, "Bidirectional wraps", "Dense"):
        L.Bidirectional(L.Dense(3, 3))
    with raises(ValueError, "reverse"):
        L.Bidirectional(L.LSTM(3, 3, reverse=True))
    with raises(ValueError, "tanh", "relu", "sigmoid"):
        L.RNN(3, 3, activation="sigmoid")
    with raises(ValueError, "truncate"):
        L.RNN(3, 3, truncate=-1)
    with raises(TypeError, "return_sequences", "bool"):
        L.LSTM(3, 3, return_sequences=1)
    with raises(TypeError, "width"):
        fb.Input(sequence=True)  # floats need their width


def test_sequence_output_with_mse_is_refused():
    model, *_ = make_tagger("GRU")
    for loss in ("mse", "binary_cross_entropy"):
        with raises(ValueError, "per-token labels", "softmax_cross_entropy", loss,
                    "return_sequences=False"):
            model.compile(fb.optim.SGD(lr=0.1), loss)


def test_pad_sequences():
    np.testing.assert_array_equal(pad_sequences([[5, 3], [7], [1, 2, 3]]),
                                  [[5, 3, 0], [7, 0, 0], [1, 2, 3]])
    tags = pad_sequences([[2, 0], [1]], padding_id=-1)
    np.testing.assert_array_equal(tags, [[2, 0], [1, -1]])
    assert tags.dtype == np.int64
    np.testing.assert_array_equal(pad_sequences([np.array([4]), (6, 8)], maxlen=4),
                                  [[4, 0, 0, 0], [6, 8, 0, 0]])
    np.testing.assert_array_equal(pad_sequences(np.array([[1, 2], [3, 4]])), [[1, 2], [3, 4]])
    with raises(ValueError, "sequence 1", "3 ids", "maxlen=2"):
        pad_sequences([[1], [1, 2, 3]], maxlen=2)
    with raises(ValueError, "maxlen", "0"):
        pad_sequences([[1]], maxlen=0)
    with raises(ValueError, "sequence 1", "1-d", "(2, 2)"):
        pad_sequences([[1, 2], [[1, 2], [3, 4]]])
    with raises(TypeError, "sequence 0", "integer ids", "float"):
        pad_sequences([[1.5, 2.0]])
    with raises(TypeError, "non-empty list"):
        pad_sequences([])
    with raises(TypeError, "padding_id", "0.5"):
        pad_sequences([[1]], padding_id=0.5)
    # what it pads, a model reads: the lengths come back from the padding ids
    ids = pad_sequences([[3, 1, 4], [1], [5, 9]])
    model, *_ = make_tagger("RNN", bidirectional=False)
    out = model.predict(ids)
    assert np.all(out[1, 1:] == 0) and np.all(out[2, 2:] == 0) and np.all(out[0] != 0)


# -- 9. Sequential --------------------------------------------------------------------------


def test_sequential_bilstm_tagger_learns_saves_and_loads(tmp_path):
    """A tag that depends on the next word as well as the word itself: a tagger that
    reads both ways learns it."""
    model = fb.Sequential([L.Embedding(V, D), L.Bidirectional(L.LSTM(D, 8)), L.Dense(16, 3)],
                          dtype="float64", seed=0)
    names = [type(l).__name__ for l in model.layers]
    assert names == ["Embedding", "LSTM", "LSTM", "Concatenate", "Dense"]
    assert model.layers[2].reverse and not model.layers[1].reverse
    rng = np.random.default_rng(13)
    lengths = rng.integers(2, 10, 200)
    words = [rng.integers(1, V, n) for n in lengths]
    tags = [(w + np.append(w[1:], 0)) % 3 for w in words]
    ids, y = pad_sequences(words), pad_sequences(tags, padding_id=-1)
    model.compile(fb.optim.Adam(lr=0.03), "softmax_cross_entropy")
    history = model.fit(ids, y, epochs=25, batch_size=16, seed=0)
    assert history["loss"][-1] < 0.25 * history["loss"][0]
    assert model.evaluate(ids, y)["accuracy"] > 0.9
    assert model.predict(ids).shape == (200, ids.shape[1], 3)

    model.save(tmp_path / "tagger.fbp")
    back = fb.load(tmp_path / "tagger.fbp")
    assert [type(l).__name__ for l in back.layers] == names
    np.testing.assert_array_equal(back.predict(ids), model.predict(ids))
    for m in (model, back):
        m.fit(ids, y, epochs=2, batch_size=16)
    np.testing.assert_array_equal(back.params, model.params)
    np.testing.assert_array_equal(back.tables, model.tables)


def test_sequential_starts_with_a_recurrent_layer_on_floats():
    model = fb.Sequential([L.GRU(3, 4), L.Dense(4, 2)], dtype="float64", seed=0)
    X = np.random.default_rng(14).standard_normal((6, 5, 3))
    y = np.zeros((6, 5), dtype=np.int64)
    model.compile(fb.optim.Adam(lr=0.01), "softmax_cross_entropy")
    model.fit(X, y, epochs=2, batch_size=3)
    assert model.predict(X).shape == (6, 5, 2)
