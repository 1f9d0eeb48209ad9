"""What a new user reaches for first: validation_split, predict_proba, epoch numbers that
agree across fits, ReduceLROnPlateau and CSVLogger."""
from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest

import fastbp as fb
from fastbp import callbacks as cbs
from fastbp import layers as L


def _mlp(loss="softmax_cross_entropy", n_out=3, seed=0):
    m = fb.Sequential([L.Dense(5, 8, activation="tanh"), L.Dense(8, n_out)], dtype="float64",
                      seed=seed)
    m.compile(fb.optim.Adam(lr=1e-2), loss)
    return m


def _data(n=40, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 5)), rng.integers(0, 3, n)


# -- epoch numbers --------------------------------------------------------------------------
def test_epoch_numbers_agree_at_begin_and_end_across_fits():
    m = _mlp()
    X, y = _data()
    seen = []
    spy = cbs.LambdaCallback(on_epoch_begin=lambda e: seen.append(("begin", e)),
                             on_epoch_end=lambda e, logs: seen.append(("end", e)))
    m.fit(X, y, epochs=2, batch_size=8, callbacks=[spy])
    m.fit(X, y, epochs=2, batch_size=8, callbacks=[spy])
    assert seen == [("begin", 0), ("end", 0), ("begin", 1), ("end", 1),
                    ("begin", 2), ("end", 2), ("begin", 3), ("end", 3)]


def test_a_second_fit_continues_the_schedule():
    """As docs/getting-started.md says: the epoch count and the schedule go on."""
    m = _mlp()
    X, y = _data()
    sched = fb.schedules.StepDecay(2, 0.5)
    h1 = m.fit(X, y, epochs=2, batch_size=8, schedule=sched)
    h2 = m.fit(X, y, epochs=2, batch_size=8, schedule=sched)
    assert h1["lr"] == [1e-2, 1e-2] and h2["lr"] == [5e-3, 5e-3]


# -- validation_split -----------------------------------------------------------------------
def test_validation_split_holds_out_the_last_rows_before_shuffling():
    X, y = _data(40)
    a, b = _mlp(), _mlp()
    ha = a.fit(X, y, epochs=3, batch_size=8, seed=2, validation_split=0.25)
    hb = b.fit(X[:30], y[:30], epochs=3, batch_size=8, seed=2, validation_data=(X[30:], y[30:]))
    np.testing.assert_array_equal(a.params, b.params)
    assert ha["val_loss"] == hb["val_loss"] and ha["loss"] == hb["loss"]
    assert ha["val_accuracy"][-1] == a.evaluate(X[30:], y[30:])["accuracy"]


def test_validation_split_of_a_two_input_model_and_of_lists():
    w = fb.Input(3, dtype="int64", name="w")
    f = fb.Input(2, name="f")
    h = L.Concatenate()([L.WindowEmbedding(10, 4, window=1)(w), f])
    m = fb.Model([w, f], L.Dense(14, 2)(h), dtype="float64")
    m.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy")
    rng = np.random.default_rng(0)
    W, F, y = rng.integers(0, 10, (20, 3)), rng.standard_normal((20, 2)), rng.integers(0, 2, 20)
    h1 = m.fit({"w": W, "f": F.tolist()}, y.tolist(), epochs=1, validation_split=0.2)
    assert len(h1["val_loss"]) == 1
    assert h1["val_loss"][0] == pytest.approx(m.evaluate([W[16:], F[16:]], y[16:])["loss"],
                                              rel=1e-12)


@pytest.mark.parametrize("bad, error", [(0.0, ValueError), (1.0, ValueError), (1.5, ValueError),
                                        (float("nan"), ValueError), ("0.2", TypeError),
                                        (0.99, ValueError)])
def test_bad_validation_split_is_refused_before_training(bad, error):
    m = _mlp()
    X, y = _data(40)
    before = m.params.copy()
    with pytest.raises(error, match="validation_split"):
        m.fit(X, y, validation_split=bad)
    np.testing.assert_array_equal(m.params, before)


def test_validation_data_overrides_validation_split_with_a_warning():
    m = _mlp()
    X, y = _data(40)
    with pytest.warns(RuntimeWarning, match="validation_data overrides validation_split"):
        h = m.fit(X, y, epochs=1, validation_split=0.5, validation_data=(X[:5], y[:5]))
    assert h["val_loss"][0] == pytest.approx(m.evaluate(X[:5], y[:5])["loss"], rel=1e-12)


# -- predict_proba --------------------------------------------------------------------------
def test_predict_proba_is_the_softmax_of_the_logits():
    m = _mlp()
    X, y = _data()
    m.fit(X, y, epochs=2, batch_size=8)
    logits = m.predict(X)
    p = m.predict_proba(X)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(p, e / e.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    assert (p.argmax(axis=1) == logits.argmax(axis=1)).all()


def test_predict_proba_is_the_sigmoid_for_binary_cross_entropy():
    m = _mlp("binary_cross_entropy", n_out=2)
    X, _ = _data()
    Y = (X[:, :2] > 0).astype(np.float64)
    m.fit(X, Y, epochs=2, batch_size=8)
    logits = m.predict(X)
    np.testing.assert_allclose(m.predict_proba(X), 1 / (1 + np.exp(-logits)), rtol=1e-12)
    big = m.predict_proba(X * 1e6)  # saturated logits: 0 and 1, never NaN
    assert np.isfinite(big).all()


def test_predict_proba_of_a_sequence_tagger_is_zero_at_padding():
    ids = fb.Input(dtype="int64", sequence=True)
    h = L.Embedding(12, 4, padding_id=0)(ids)
    m = fb.Model(ids, L.Dense(4, 3)(h), dtype="float64")
    m.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy")
    X = fb.text.pad_sequences([[3, 4, 5], [6], [7, 8]])
    p = m.predict_proba(X)
    assert p.shape == (3, 3, 3)
    np.testing.assert_allclose(p[0].sum(axis=1), 1.0)
    np.testing.assert_array_equal(p[1, 1:], 0.0)
    np.testing.assert_allclose(p[2, :2].sum(axis=1), 1.0)


def test_predict_proba_refuses_a_regression_loss():
    m = _mlp("mse")
    with pytest.raises(ValueError, match="predict_proba needs a model trained with "
                                         "softmax_cross_entropy or binary_cross_entropy"):
        m.predict_proba(np.zeros((2, 5)))


# -- ReduceLROnPlateau ----------------------------------------------------------------------
class _Holder:
    def __init__(self, lr):
        self.optimizer = fb.optim.SGD(lr=lr)


def _drive(cb, values, lr=1.0):
    holder = _Holder(lr)
    cb.set_model(holder)
    cb.on_train_begin()
    rates = []
    for e, v in enumerate(values):
        cb.on_epoch_end(e, {"val_loss": v})
        rates.append(holder.optimizer.lr)
    return rates


def test_reduce_lr_on_plateau_follows_keras_rule():
    """patience 2, factor 0.5, cooldown 1, min_lr 0.2, as Keras's code runs it: a
    cooldown epoch resets the wait, and the cooldown ends in the epoch it counts down to
    0 (so that epoch already counts as one without improvement)."""
    cb = cbs.ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1, min_delta=0.01, min_lr=0.2)
    values = [1.0, 0.9, 0.895, 0.9, 0.9, 0.9, 0.9, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]
    rates = _drive(cb, values)
    # 0 best 1.0; 1 best 0.9; 2 (0.895 is not below 0.9 - 0.01) wait 1; 3 wait 2: cut to
    # 0.5, cooldown 1; 4 cooldown to 0, wait 0 then 1; 5 wait 2: cut to 0.25; 6 wait 1;
    # 7 improves (0.5); 8 wait 1; 9 wait 2: cut to max(0.125, 0.2); then 0.2 stays
    assert rates == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2, 0.2]


def test_reduce_lr_on_plateau_lowers_the_rate_fit_uses():
    m = _mlp()
    X, y = _data()
    cb = cbs.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=10.0)
    h = m.fit(X, y, epochs=3, batch_size=8, callbacks=[cb])
    # the first epoch sets the best; each later one is a plateau at min_delta 10, and the
    # rate cut at the end of an epoch is the next epoch's
    assert h["lr"] == [1e-2, 1e-2, 5e-3]
    assert m.optimizer.lr == 2.5e-3


@pytest.mark.parametrize("kwargs", [dict(factor=1.0), dict(factor=0.0), dict(patience=-1),
                                    dict(min_lr=-1.0), dict(mode="up")])
def test_reduce_lr_on_plateau_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        cbs.ReduceLROnPlateau(**kwargs)


# -- CSVLogger ------------------------------------------------------------------------------
def test_csv_logger_writes_a_row_per_epoch_and_appends(tmp_path):
    path = tmp_path / "log.csv"
    m = _mlp()
    X, y = _data()
    h = m.fit(X, y, epochs=2, batch_size=8, validation_split=0.25,
              callbacks=[cbs.CSVLogger(path)])
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", "loss", "lr", "time", "val_accuracy", "val_loss"]
    assert [r[0] for r in rows[1:]] == ["0", "1"]
    assert [float(r[1]) for r in rows[1:]] == h["loss"]
    m.fit(X, y, epochs=1, batch_size=8, validation_split=0.25,
          callbacks=[cbs.CSVLogger(path, append=True)])
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 4 and rows[3][0] == "2"
    m.fit(X, y, epochs=1, batch_size=8, callbacks=[cbs.CSVLogger(path, separator=";")])
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    assert rows[0] == ["epoch", "loss", "lr", "time"] and rows[1][0] == "3" and len(rows) == 2


def test_csv_logger_refuses_a_bad_separator():
    with pytest.raises(ValueError, match="separator"):
        cbs.CSVLogger("x.csv", separator=",,")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cbs.CSVLogger("x.csv", separator="\t")


# -- plots ----------------------------------------------------------------------------------
def test_history_plot_and_diagnostics_plot_write_png_files(tmp_path):
    pytest.importorskip("matplotlib")
    m = _mlp()
    X, y = _data()
    h = m.fit(X, y, epochs=3, batch_size=8, validation_split=0.25)
    path = h.plot(tmp_path / "history.png")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    path = fb.diagnostics.plot(m, X, y, tmp_path / "fig7_7.png")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig7_7.png", "history.png"]
    with pytest.raises(ValueError, match="keys \\['nope'\\] not logged"):
        h.plot(tmp_path / "x.png", keys=["nope"])
    assert not (tmp_path / "x.png").exists()
