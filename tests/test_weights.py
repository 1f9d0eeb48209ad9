"""fit(sample_weight=..., class_weight=...): Keras's convention, each row's loss times its
weight and the sum divided by the batch's rows (by its labelled tokens for a sequence
output), equal to PyTorch's ``reduction="none"`` losses weighted the same way (float64,
1e-9), on the compiled path and on the per-layer path; and the refusals."""
from __future__ import annotations

import numpy as np
import pytest

import fastbp as fb
from test_recurrent import K, make_tagger, sentences, torch_recurrent, torch_run, _t

L = fb.layers


def _mlp(n_out, fused, seed=0):
    model = fb.Sequential([L.Dense(5, 7, activation="tanh"), L.Dense(7, n_out)],
                          dtype="float64", seed=seed)
    return model


def _torch_twin(model):
    import torch
    linears = []
    for layer in model.layers:
        lin = torch.nn.Linear(layer.W.shape[0], layer.W.shape[1]).double()
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(layer.W.T.copy()))
            lin.bias.copy_(torch.from_numpy(layer.b.copy()))
        linears.append(lin)
    return torch.nn.Sequential(linears[0], torch.nn.Tanh(), linears[1])


def _row_losses(loss, out, y):
    """PyTorch's reduction="none" loss of each row (an (m,) tensor; MSE and BCE: the
    row's elements summed, so that the mean over all elements is sum / (m * n))."""
    import torch.nn.functional as F
    import torch
    if loss == "softmax_cross_entropy":
        return F.cross_entropy(out, torch.from_numpy(y), reduction="none")
    t = torch.from_numpy(y.reshape(out.shape).astype(np.float64))
    if loss == "mse":
        return F.mse_loss(out, t, reduction="none").sum(dim=1)
    return F.binary_cross_entropy_with_logits(out, t, reduction="none").sum(dim=1)


def _data(loss, n_out, rng, n):
    X = rng.standard_normal((n, 5))
    if loss == "softmax_cross_entropy":
        y = rng.integers(0, n_out, n)
    elif loss == "mse":
        y = rng.standard_normal((n, n_out))
    else:
        y = rng.integers(0, 2, (n, n_out)).astype(np.float64)
    return X, y


CASES = [("softmax_cross_entropy", 4), ("mse", 3), ("binary_cross_entropy", 1),
         ("binary_cross_entropy", 3)]


@pytest.mark.parametrize("fused", [True, False], ids=["compiled", "per-layer"])
@pytest.mark.parametrize("loss,n_out", CASES)
def test_weighted_fit_matches_torch(loss, n_out, fused):
    """Three epochs of minibatches of 8 over 20 rows in a fixed order, Adam, with sample
    weights (and class weights where the loss has classes): the per-batch losses and
    the weights after every update equal PyTorch's."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    n = 20
    X, y = _data(loss, n_out, rng, n)
    sw = rng.uniform(0.0, 3.0, n)
    sw[3] = 0.0
    cw = None
    if loss == "softmax_cross_entropy":
        cw = {0: 2.5, 2: 0.25}  # class 1 and 3: weight 1
    elif n_out == 1:
        cw = {1: 4.0}
    model = _mlp(n_out, fused)
    model.compile(fb.optim.Adam(lr=0.05), loss, fused=fused)
    net = _torch_twin(model)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    h = model.fit(X, y, epochs=3, batch_size=8, shuffle=False, sample_weight=sw,
                  class_weight=cw)
    per_elem = 1 if loss == "softmax_cross_entropy" else n_out
    w = sw.copy()
    if cw is not None:
        labels = y if loss == "softmax_cross_entropy" else y[:, 0].astype(int)
        w = w * np.array([cw.get(c, 1.0) for c in labels])
    epoch_losses = []
    for _ in range(3):
        total = 0.0
        for s in range(0, n, 8):
            xb, yb, wb = X[s:s + 8], y[s:s + 8], w[s:s + 8]
            opt.zero_grad()
            out = net(torch.from_numpy(xb))
            t_loss = (torch.from_numpy(wb) * _row_losses(loss, out, yb)).sum() / (
                len(xb) * per_elem)
            t_loss.backward()
            opt.step()
            total += t_loss.item() * len(xb)
        epoch_losses.append(total / n)
    np.testing.assert_allclose(h.history["loss"], epoch_losses, rtol=1e-10)
    lins = [net[0], net[2]]
    for layer, lin in zip(model.layers, lins):
        np.testing.assert_allclose(layer.W, lin.weight.detach().numpy().T, rtol=0, atol=1e-9)
        np.testing.assert_allclose(layer.b, lin.bias.detach().numpy(), rtol=0, atol=1e-9)
    # the weights mattered: unweighted training ends elsewhere
    plain = _mlp(n_out, fused)
    plain.compile(fb.optim.Adam(lr=0.05), loss, fused=fused)
    plain.fit(X, y, epochs=3, batch_size=8, shuffle=False)
    assert np.max(np.abs(plain.params - model.params)) > 1e-3


@pytest.mark.parametrize("fused", [True, False], ids=["compiled", "per-layer"])
def test_unit_weights_give_the_same_bits_as_none(fused):
    rng = np.random.default_rng(2)
    X, y = _data("softmax_cross_entropy", 4, rng, 30)
    a, b = _mlp(4, fused), _mlp(4, fused)
    for m in (a, b):
        m.compile(fb.optim.Adam(lr=0.01), "softmax_cross_entropy", fused=fused)
    a.fit(X, y, epochs=2, batch_size=7, seed=0)
    b.fit(X, y, epochs=2, batch_size=7, seed=0, sample_weight=np.ones(30),
          class_weight={0: 1.0})
    assert np.array_equal(a.params, b.params)


def test_accumulation_and_train_on_batch_take_weights():
    """accumulate=2 over minibatches of 5 with weights equals one step on the 10 rows;
    train_on_batch's weighted loss is sum(w_i l_i) / rows."""
    rng = np.random.default_rng(4)
    X, y = _data("softmax_cross_entropy", 4, rng, 10)
    sw = rng.uniform(0.5, 2.0, 10)
    a, b = _mlp(4, True), _mlp(4, True)
    for m in (a, b):
        m.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy")
    a.fit(X, y, epochs=1, batch_size=5, accumulate=2, shuffle=False, sample_weight=sw)
    b.train_on_batch(X, y, sample_weight=sw)
    np.testing.assert_allclose(a.params, b.params, rtol=0, atol=1e-14)
    c = _mlp(4, True)
    c.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy")
    loss = c.compute_gradients(X, y, sample_weight=sw)
    z = X @ c.layers[0].W + c.layers[0].b
    o = np.tanh(z) @ c.layers[1].W + c.layers[1].b
    o = o - o.max(axis=1, keepdims=True)
    rows = np.log(np.exp(o).sum(axis=1)) - o[np.arange(10), y]
    assert loss == pytest.approx(float(np.dot(sw, rows) / 10), rel=1e-12)


@pytest.mark.parametrize("fused", [True, False], ids=["compiled", "per-layer"])
def test_weighted_tagger_matches_torch(fused):
    """A BiLSTM tagger over padded sentences: class weights per token label and a
    sample weight per sentence on each of its tokens; the loss divided by the labelled
    tokens; five Adam steps equal PyTorch's."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    model, emb, rec, dense = make_tagger("LSTM")
    opt = dict(lr=0.02)
    model.compile(fb.optim.Adam(**opt), "softmax_cross_entropy", fused=fused)
    fwd, bwd = rec.forward_layer, rec.backward_layer
    t_emb = nn.Embedding(emb.E.shape[0], emb.E.shape[1], padding_idx=0, sparse=True).double()
    net, _ = torch_recurrent(fwd, bwd)
    lin = nn.Linear(dense.W.shape[0], K).double()
    with torch.no_grad():
        t_emb.weight.copy_(_t(emb.E))
        lin.weight.copy_(_t(dense.W.T))
        lin.bias.copy_(_t(dense.b))
        for suffix, layer in (("", fwd), ("_reverse", bwd)):
            getattr(net, "bias_ih_l0" + suffix).copy_(_t(layer.b))
            getattr(net, "bias_hh_l0" + suffix).zero_()
            getattr(net, "bias_hh_l0" + suffix).requires_grad_(False)
    dense_params = [p for p in list(net.parameters()) + list(lin.parameters()) if p.requires_grad]
    sparse_opt = torch.optim.SparseAdam(list(t_emb.parameters()), **opt)
    dense_opt = torch.optim.Adam(dense_params, **opt)
    cw = {0: 3.0, 1: 0.5}
    table = torch.ones(K, dtype=torch.float64)
    for c, v in cw.items():
        table[c] = v
    rng = np.random.default_rng(5)
    for step in range(5):
        lengths = rng.integers(1, 9, 6)
        ids, tags = sentences(rng, lengths, T=10, unlabelled=2)
        sw = rng.uniform(0.2, 2.0, 6)
        loss = model.train_on_batch(ids, tags, sample_weight=sw, class_weight=cw)
        sparse_opt.zero_grad()
        dense_opt.zero_grad()
        out, _ = torch_run(net, t_emb(_t(ids)), lengths)
        flat = _t(tags.reshape(-1))
        per_token = nn.functional.cross_entropy(lin(out).reshape(-1, K), flat, ignore_index=-1,
                                                reduction="none")
        w = _t(np.repeat(sw, 10)) * table[flat.clamp(min=0)]
        t_loss = (w * per_token).sum() / (flat >= 0).sum()
        t_loss.backward()
        sparse_opt.step()
        dense_opt.step()
        assert loss == pytest.approx(t_loss.item(), rel=1e-11), f"step {step}"
        np.testing.assert_allclose(dense.W, lin.weight.detach().numpy().T, rtol=0, atol=1e-9)
        np.testing.assert_allclose(emb.E, t_emb.weight.detach().numpy(), rtol=0, atol=1e-9)
        np.testing.assert_allclose(fwd.U, net.weight_hh_l0.detach().numpy().T, rtol=0,
                                   atol=1e-9)


def raises(exc, *fragments):
    class _Ctx:
        def __enter__(self):
            self.cm = pytest.raises(exc)
            self.info = self.cm.__enter__()
            return self.info

        def __exit__(self, *a):
            out = self.cm.__exit__(*a)
            for f in fragments:
                assert f in str(self.info.value), (f, str(self.info.value))
            return out
    return _Ctx()


@pytest.fixture(scope="module")
def clf():
    m = _mlp(4, True)
    m.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy")
    return m


def test_bad_weights_are_refused_before_any_step(clf):
    rng = np.random.default_rng(0)
    X, y = _data("softmax_cross_entropy", 4, rng, 6)
    before = clf.params.copy()
    with raises(ValueError, "sample_weight", "(6,)", "(5,)"):
        clf.fit(X, y, sample_weight=np.ones(5))
    with raises(ValueError, "negative weight", "-1.0"):
        clf.fit(X, y, sample_weight=[1, 1, -1, 1, 1, 1])
    with raises(ValueError, "non-finite"):
        clf.fit(X, y, sample_weight=[1, 1, np.nan, 1, 1, 1])
    with raises(TypeError, "sample_weight", "numeric"):
        clf.fit(X, y, sample_weight=["a"] * 6)
    with raises(ValueError, "class 7", "0 .. 3"):
        clf.fit(X, y, class_weight={7: 2.0})
    with raises(ValueError, "class_weight[1]", ">= 0"):
        clf.fit(X, y, class_weight={1: -2.0})
    with raises(TypeError, "dict"):
        clf.fit(X, y, class_weight=[1.0, 2.0])
    with raises(TypeError, "integer class labels"):
        clf.fit(X, y, class_weight={"cat": 2.0})
    reg = _mlp(2, True)
    reg.compile(fb.optim.SGD(lr=0.1), "mse")
    with raises(ValueError, "class_weight", "'mse'", "sample_weight"):
        reg.fit(X, rng.standard_normal((6, 2)), class_weight={0: 1.0})
    assert np.array_equal(clf.params, before)


def test_validation_split_splits_the_sample_weights(clf):
    rng = np.random.default_rng(0)
    X, y = _data("softmax_cross_entropy", 4, rng, 10)
    a = clf.copy()
    b = clf.copy()
    sw = rng.uniform(0.5, 2.0, 10)
    ha = a.fit(X, y, epochs=1, batch_size=4, shuffle=False, validation_split=0.2,
               sample_weight=sw)
    hb = b.fit(X[:8], y[:8], epochs=1, batch_size=4, shuffle=False, sample_weight=sw[:8],
               validation_data=(X[8:], y[8:]))
    assert np.array_equal(a.params, b.params)
    assert ha.history["val_loss"] == hb.history["val_loss"]
