"""compile(metrics=[...]): the compiled metrics equal scikit-learn's (or NumPy's) on the
same predictions, by evaluate and in History each epoch; unknown or unfitting metrics
are refused at compile."""
from __future__ import annotations

import numpy as np
import pytest

import fastbp as fb

L = fb.layers


def _clf(n_out=5, seed=0):
    m = fb.Sequential([L.Dense(6, 12, activation="tanh"), L.Dense(12, n_out)],
                      dtype="float64", seed=seed)
    return m


def _np_f1_macro(y, p):
    classes = np.union1d(y, p)
    f = []
    for c in classes:
        tp = np.sum((p == c) & (y == c))
        fp = np.sum((p == c) & (y != c))
        fn = np.sum((p != c) & (y == c))
        f.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f))


def _np_top_k(out, y, k):
    order = np.argsort(-out, axis=1, kind="stable")[:, :k]
    return float(np.mean([y[i] in order[i] for i in range(len(y))]))


@pytest.mark.parametrize("fused", [True, False], ids=["compiled", "per-layer"])
def test_classification_metrics_equal_numpy_and_sklearn(fused):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((300, 6)), rng.integers(0, 5, 300)
    m = _clf(n_out=8)
    m.compile(fb.optim.Adam(lr=0.01), "softmax_cross_entropy", fused=fused,
              metrics=["accuracy", "top_k_accuracy", fb.metrics.TopKAccuracy(k=2), "f1_macro"])
    h = m.fit(X[:200], y[:200], epochs=3, batch_size=16, validation_data=(X[200:], y[200:]))
    r = m.evaluate(X[200:], y[200:], batch_size=7)
    out = m.predict(X[200:])
    p = out.argmax(axis=1)
    assert r["accuracy"] == pytest.approx(np.mean(p == y[200:]), abs=1e-15)
    assert r["top_k_accuracy"] == pytest.approx(_np_top_k(out, y[200:], 5), abs=1e-15)
    assert r["top_2_accuracy"] == pytest.approx(_np_top_k(out, y[200:], 2), abs=1e-15)
    assert r["f1_macro"] == pytest.approx(_np_f1_macro(y[200:], p), abs=1e-12)
    assert 0 < r["f1_macro"] < 1 and r["top_2_accuracy"] > r["accuracy"]
    assert h.history["val_f1_macro"][-1] == r["f1_macro"]
    assert len(h.history["val_top_2_accuracy"]) == 3
    sk = pytest.importorskip("sklearn.metrics")
    assert r["f1_macro"] == pytest.approx(sk.f1_score(y[200:], p, average="macro"), abs=1e-12)
    assert r["top_2_accuracy"] == pytest.approx(
        sk.top_k_accuracy_score(y[200:], out, k=2, labels=range(8)), abs=1e-12)


def test_binary_and_multilabel_f1_equal_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    X = rng.standard_normal((120, 6))
    for n_out in (1, 3):
        y = (X[:, :n_out] + 0.5 * rng.standard_normal((120, n_out)) > 0).astype(float)
        m = _clf(n_out)
        m.compile(fb.optim.Adam(lr=0.01), "binary_cross_entropy",
                  metrics=["accuracy", "f1_macro"])
        m.fit(X, y, epochs=2, batch_size=16)
        r = m.evaluate(X, y)
        p = (m.predict(X) > 0).astype(float)
        if n_out == 1:
            want = sk.f1_score(y[:, 0], p[:, 0], average="macro")
        else:
            want = sk.f1_score(y, p, average="macro", zero_division=0)
        assert r["f1_macro"] == pytest.approx(want, abs=1e-12)
        assert r["accuracy"] == pytest.approx(np.mean(p == y), abs=1e-15)


def test_regression_metrics_equal_numpy():
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((90, 6)), rng.standard_normal((90, 2))
    m = _clf(2)
    m.compile(fb.optim.Adam(lr=0.01), "mse", metrics=["mae", "mse"])
    h = m.fit(X, y, epochs=2, batch_size=16, validation_split=0.2)
    r = m.evaluate(X, y)
    d = m.predict(X) - y
    assert r["mae"] == pytest.approx(np.abs(d).mean(), rel=1e-12)
    assert r["mse"] == pytest.approx((d ** 2).mean(), rel=1e-12)
    assert r["mse"] == pytest.approx(r["loss"], rel=1e-12)
    assert set(h.history) >= {"val_mae", "val_mse", "val_loss"}


def test_tagger_metrics_count_labelled_tokens():
    from test_recurrent import K, make_tagger, sentences
    model, *_ = make_tagger("GRU")
    model.compile(fb.optim.Adam(lr=0.01), "softmax_cross_entropy",
                  metrics=["accuracy", "f1_macro"])
    rng = np.random.default_rng(3)
    ids, tags = sentences(rng, rng.integers(1, 9, 20), T=10, unlabelled=3)
    model.fit(ids, tags, epochs=1, batch_size=4)
    r = model.evaluate(ids, tags)
    out = model.predict(ids)
    mask = tags >= 0
    p, y = out.argmax(axis=-1)[mask], tags[mask]
    assert r["accuracy"] == pytest.approx(np.mean(p == y), abs=1e-15)
    assert r["f1_macro"] == pytest.approx(_np_f1_macro(y, p), abs=1e-12)


def test_bad_metrics_are_refused_at_compile():
    m = _clf()
    with pytest.raises(ValueError, match="unknown metric 'auc'.*allowed"):
        m.compile("adam", "softmax_cross_entropy", metrics=["auc"])
    with pytest.raises(ValueError, match="'mae' needs loss mse.*'softmax_cross_entropy'"):
        m.compile("adam", "softmax_cross_entropy", metrics=["mae"])
    with pytest.raises(ValueError, match="k must be below 5"):
        m.compile("adam", "softmax_cross_entropy", metrics=[fb.metrics.TopKAccuracy(k=5)])
    with pytest.raises(ValueError, match="twice"):
        m.compile("adam", "softmax_cross_entropy", metrics=["f1_macro", "f1_macro"])
    with pytest.raises(TypeError, match="metrics must be a list"):
        m.compile("adam", "softmax_cross_entropy", metrics=3)
    with pytest.raises(ValueError, match="TopKAccuracy k must be >= 1"):
        fb.metrics.TopKAccuracy(k=0)
