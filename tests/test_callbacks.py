"""Callbacks, History, progress output and resuming from checkpoints (issue 6)."""
from __future__ import annotations

import numpy as np
import pytest

import fastbp as fb
from fastbp import callbacks as cbs


def _data(seed=0, n=120):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 5))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    return X, y


def _model(seed=0, p=0.0):
    layers = [fb.layers.Dense(5, 16, activation="relu")]
    if p:
        layers.append(fb.layers.Dropout(p))
    layers.append(fb.layers.Dense(16, 3))
    m = fb.Sequential(layers, dtype="float64", seed=seed)
    m.compile(fb.optim.Adam(lr=0.05), "softmax_cross_entropy")
    return m


def test_history_records_every_epoch_with_validation():
    X, y = _data()
    m = _model()
    h = m.fit(X, y, epochs=4, batch_size=16, validation_data=(X, y), seed=0)
    assert h.epoch == [0, 1, 2, 3]
    for key in ("loss", "lr", "val_loss", "val_accuracy", "time"):
        assert len(h[key]) == 4
    assert h["val_loss"][-1] == pytest.approx(m.evaluate(X, y)["loss"], rel=1e-12)


def test_early_stopping_restores_the_best_weights():
    X, y = _data()
    Xv, yv = _data(seed=1, n=40)
    m = _model()
    snapshots = []
    keep = cbs.LambdaCallback(on_epoch_end=lambda e, logs: snapshots.append(
        (logs["val_loss"], m.params.copy())))
    stop = cbs.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    m.optimizer.lr = 0.3  # overfits quickly, so validation loss turns up
    h = m.fit(X, y, epochs=60, batch_size=8, validation_data=(Xv, yv), callbacks=[keep, stop],
              seed=0)
    assert len(h.epoch) < 60 and stop.stopped_epoch is not None
    best_loss, best_params = min(snapshots, key=lambda t: t[0])
    np.testing.assert_array_equal(m.params, best_params)
    assert stop.best == best_loss


def test_learning_rate_scheduler_and_lambda_callback():
    X, y = _data()
    m = _model()
    seen = []
    sched = cbs.LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1))
    spy = cbs.LambdaCallback(on_epoch_begin=lambda e: seen.append(m.optimizer.lr))
    h = m.fit(X, y, epochs=3, batch_size=32, callbacks=[sched, spy])
    assert seen == pytest.approx([0.1, 0.05, 0.1 / 3])
    assert h["lr"] == pytest.approx([0.1, 0.05, 0.1 / 3])
    with pytest.raises(ValueError):
        m.fit(X, y, epochs=1, callbacks=[cbs.LearningRateScheduler(lambda e, lr: -1.0)])


def test_model_checkpoint_every_n_and_best(tmp_path):
    X, y = _data()
    m = _model()
    every = cbs.ModelCheckpoint(tmp_path / "e{epoch}.fbp", every=2)
    best = cbs.ModelCheckpoint(tmp_path / "best.fbp", save_best_only=True, monitor="val_loss")
    m.fit(X, y, epochs=5, batch_size=16, validation_data=(X, y), callbacks=[every, best])
    assert sorted(p.name for p in tmp_path.glob("e*.fbp")) == ["e2.fbp", "e4.fbp"]
    loaded = fb.load(tmp_path / "best.fbp")
    assert loaded.evaluate(X, y)["loss"] == pytest.approx(best.best, rel=1e-12)


def test_resume_from_a_checkpoint_is_bit_identical(tmp_path):
    X, y = _data()
    sched = fb.schedules.StepDecay(2, 0.5)
    a = _model(p=0.3)
    a.fit(X, y, epochs=6, batch_size=16, seed=3, schedule=sched)
    b = _model(p=0.3)
    b.fit(X, y, epochs=3, batch_size=16, seed=3, schedule=sched)
    b.save(tmp_path / "mid.fbp")
    c = fb.load(tmp_path / "mid.fbp")
    c.fit(X, y, epochs=3, batch_size=16, schedule=sched)
    np.testing.assert_array_equal(a.params, c.params)
    np.testing.assert_array_equal(a.optimizer.state, c.optimizer.state)


def test_verbose_modes(capsys):
    X, y = _data()
    m = _model()
    m.fit(X, y, epochs=2, batch_size=32, verbose=0)
    assert capsys.readouterr().out == ""
    m.fit(X, y, epochs=2, batch_size=32, verbose=2)
    out = capsys.readouterr().out
    assert out.count("loss=") == 2
    m.fit(X, y, epochs=1, batch_size=32, verbose=1)
    err = capsys.readouterr().err
    assert "epoch" in err and "4/4" in err
    with pytest.raises(ValueError):
        m.fit(X, y, verbose=3)


def test_callbacks_are_checked():
    X, y = _data()
    m = _model()
    with pytest.raises(TypeError):
        m.fit(X, y, callbacks=[object()])
    with pytest.raises(ValueError):
        m.fit(X, y, epochs=1, callbacks=[cbs.EarlyStopping(monitor="val_loss")])
