"""The public API: parameters and buffers, seeds, fit / evaluate / predict, History,
save / load, divergence, initialisers and schedules."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastbp as fb
import reference as ref
from helpers import make_targets, max_abs_diff


def mlp(dtype="float64", seed=0, sizes=(5, 8, 3), act="tanh", dropout=None):
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        layers.append(fb.layers.Dense(n_in, n_out, activation=None if last else act))
        if dropout and not last:
            layers.append(fb.layers.Dropout(dropout))
    return fb.Sequential(layers, dtype=dtype, seed=seed)


def data(n=40, n_in=5, n_out=3, loss="softmax_cross_entropy", seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, n_in)), make_targets(loss, rng, n, n_out)


# -- parameters and flat buffers -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dense_weight_shapes_dtype_and_views(dtype):
    model = mlp(dtype, sizes=(5, 8, 7, 3))
    dense = [l for l in model.layers if isinstance(l, fb.layers.Dense)]
    assert [(l.W.shape, l.b.shape) for l in dense] == [((5, 8), (8,)), ((8, 7), (7,)),
                                                       ((7, 3), (3,))]
    assert model.params.ndim == 1 and model.params.flags.c_contiguous
    assert model.params.dtype == np.dtype(dtype) and model.grads.dtype == np.dtype(dtype)
    assert model.n_params == model.params.size == model.grads.size == 5 * 8 + 8 + 8 * 7 + 7 + 7 * 3 + 3
    for layer in dense:
        assert layer.W.dtype == np.dtype(dtype)
        assert np.shares_memory(layer.W, model.params) and np.shares_memory(layer.b, model.params)
        assert np.shares_memory(layer.dW, model.grads) and np.shares_memory(layer.db, model.grads)
    # the views tile the buffer exactly, without overlap
    covered = np.zeros(model.n_params, dtype=int)
    base = model.params.__array_interface__["data"][0]
    item = model.params.itemsize
    for layer in dense:
        for arr in (layer.W, layer.b):
            start = (arr.__array_interface__["data"][0] - base) // item
            covered[start:start + arr.size] += 1
    np.testing.assert_array_equal(covered, 1)
    assert np.all(dense[0].b == 0) and np.any(dense[0].W != 0)


def test_writes_to_W_and_b_reach_the_model():
    model = mlp()
    layer = model.layers[0]
    layer.W[0, 0] = 123.0  # in-place element write
    assert 123.0 in model.params
    layer.b = np.arange(8.0)  # assignment through the property
    np.testing.assert_array_equal(layer.b, np.arange(8.0))
    assert np.shares_memory(layer.b, model.params)
    new_W = np.full((5, 8), 0.25)
    layer.W = new_W
    x = np.ones((1, 5))
    expected = ref.mlp_forward(x, [(new_W, np.arange(8.0), "tanh", 0.01),
                                   (model.layers[1].W, model.layers[1].b, None, 0.01)])
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-13)
    model.params[:] = 0.0  # and writes to the flat buffer reach the layers
    assert np.all(layer.W == 0) and np.all(layer.b == 0)


def test_weight_assignment_is_checked():
    layer = mlp().layers[0]
    with pytest.raises(ValueError, match=r"\(5, 8\)"):
        layer.W = np.zeros((8, 5))
    with pytest.raises(ValueError, match="finite"):
        layer.b = np.full(8, np.nan)
    with pytest.raises(TypeError):
        layer.W = np.full((5, 8), "a")


def test_optimizer_state_is_flat_and_named():
    model = mlp()
    opt = fb.optim.Adam(lr=1e-2)
    model.compile(opt, "softmax_cross_entropy")
    assert opt.state.ndim == 2 and opt.state.shape[1] == model.n_params
    assert opt.state.dtype == model.params.dtype
    assert np.shares_memory(opt.exp_avg, opt.state) and np.shares_memory(opt.exp_avg_sq, opt.state)
    X, y = data()
    model.train_on_batch(X, y)
    assert opt.step[0] == 1
    assert np.any(opt.exp_avg != 0) and np.all(opt.exp_avg_sq >= 0)
    sgd = fb.optim.SGD(lr=0.1, momentum=0.9)
    model.compile(sgd, "softmax_cross_entropy")
    model.train_on_batch(X, y)
    np.testing.assert_array_equal(sgd.momentum_buffer, model.grads)  # step 1: buffer = gradient


def test_compute_gradients_fills_grads_without_updating():
    model = mlp()
    model.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy")
    X, y = data(n=7)
    before = model.params.copy()
    loss = model.compute_gradients(X, y)
    np.testing.assert_array_equal(model.params, before)
    assert model.optimizer.step[0] == 0
    # against the NumPy twin of the network
    l0, l1 = model.layers
    h = ref.dense_forward(X, l0.W, l0.b, "tanh")
    o = ref.dense_forward(h, l1.W, l1.b, None)
    expected_loss, go = ref.softmax_cross_entropy(o, y)
    assert loss == pytest.approx(expected_loss, rel=1e-13)
    _, dW1, db1, gh = ref.dense_backward(h, o, l1.W, go, None)
    _, dW0, db0, _ = ref.dense_backward(X, h, l0.W, gh, "tanh")
    for got, expected in ((l0.dW, dW0), (l0.db, db0), (l1.dW, dW1), (l1.db, db1)):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


# -- seeds ------------------------------------------------------------------------------------


def test_seed_fixes_initial_weights():
    a, b, c = mlp(seed=1), mlp(seed=1), mlp(seed=2)
    np.testing.assert_array_equal(a.params, b.params)
    assert max_abs_diff(a.params, c.params) > 0.1


@pytest.mark.parametrize("fused", [True, False])
def test_fit_seed_reproduces_shuffling_and_dropout(fused):
    X, y = data(n=64)
    runs = []
    for seed in (5, 5, 6):
        model = mlp(seed=0, dropout=0.3)
        model.compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy", fused=fused)
        model.fit(X, y, epochs=3, batch_size=8, seed=seed)
        runs.append(model.params.copy())
    assert runs[0].tobytes() == runs[1].tobytes()
    assert max_abs_diff(runs[0], runs[2]) > 1e-6


def test_dropout_masks_change_from_step_to_step():
    """Without a new seed the dropout stream moves on: two single steps on the same batch
    from the same weights use different masks."""
    X, y = data(n=16)
    model = mlp(dropout=0.5)
    model.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy")
    start = model.params.copy()
    model.train_on_batch(X, y)
    first = model.params - start
    model.params[:] = start
    model.optimizer.step[0] = 0
    model.train_on_batch(X, y)
    second = model.params - start
    assert max_abs_diff(first, second) > 1e-6


# -- fit, evaluate, predict, History -------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_shape_dtype_and_batching(dtype):
    model = mlp(dtype)
    X, _ = data(n=53)
    out = model.predict(X)
    assert out.shape == (53, 3) and out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(model.predict(X, batch_size=7), out)
    np.testing.assert_array_equal(model.predict(X[:1]), out[:1])
    l0, l1 = model.layers
    expected = ref.mlp_forward(X.astype(dtype), [(l0.W, l0.b, "tanh", 0.01),
                                                 (l1.W, l1.b, None, 0.01)])
    np.testing.assert_allclose(out, expected, rtol=1e-5 if dtype == "float32" else 1e-12,
                               atol=1e-6 if dtype == "float32" else 1e-14)


@pytest.mark.parametrize("loss", ["mse", "binary_cross_entropy", "softmax_cross_entropy"])
def test_evaluate_returns_loss_and_accuracy(loss):
    X, y = data(n=37, loss=loss)
    if loss == "binary_cross_entropy":
        y = (y > 0.5).astype(float)
    model = mlp()
    model.compile(fb.optim.SGD(lr=0.1), loss)
    result = model.evaluate(X, y, batch_size=10)
    out = model.predict(X)
    expected_loss, _ = ref.LOSSES[loss](out, y)
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-12)
    if loss == "mse":
        assert set(result) == {"loss"}
    elif loss == "softmax_cross_entropy":
        assert set(result) == {"loss", "accuracy"}
        assert result["accuracy"] == pytest.approx(np.mean(out.argmax(1) == y), abs=1e-15)
    else:
        assert set(result) == {"loss", "accuracy"}
        assert result["accuracy"] == pytest.approx(np.mean((out > 0) == (y > 0.5)), abs=1e-15)


def test_evaluate_does_not_train():
    model = mlp(dropout=0.5)
    model.compile(fb.optim.Adam(), "softmax_cross_entropy")
    X, y = data()
    before = model.params.copy()
    a = model.evaluate(X, y)
    b = model.evaluate(X, y)
    assert a == b
    np.testing.assert_array_equal(model.params, before)
    assert model.optimizer.step[0] == 0


def test_train_on_batch_is_one_step_and_returns_the_loss():
    X, y = data(n=9)
    model = mlp()
    model.compile(fb.optim.SGD(lr=0.2), "softmax_cross_entropy")
    out = model.predict(X)
    expected_loss, _ = ref.softmax_cross_entropy(out, y)
    grads_model = mlp()
    grads_model.compile(fb.optim.SGD(lr=0.2), "softmax_cross_entropy")
    grads_model.compute_gradients(X, y)
    before = model.params.copy()
    loss = model.train_on_batch(X, y)
    assert isinstance(loss, float)
    assert loss == pytest.approx(expected_loss, rel=1e-13)
    assert model.optimizer.step[0] == 1
    np.testing.assert_allclose(model.params, before - 0.2 * grads_model.grads, rtol=1e-13,
                               atol=1e-15)


def test_history_contents_and_epoch_losses():
    X, y = data(n=50)
    model = mlp()
    model.compile(fb.optim.SGD(lr=0.1, momentum=0.9), "softmax_cross_entropy")
    schedule = fb.schedules.StepDecay(2, 0.5)
    history = model.fit(X, y, epochs=5, batch_size=16, shuffle=False, schedule=schedule)
    assert isinstance(history, fb.History)
    assert history.epoch == [0, 1, 2, 3, 4]
    assert {"loss", "lr"} <= set(history.history)
    assert all(len(v) == 5 for v in history.history.values())
    np.testing.assert_allclose(history["lr"], [0.1, 0.1, 0.05, 0.05, 0.025], rtol=1e-15)
    # the same steps one by one: the epoch loss is the size-weighted mean of batch losses
    twin = mlp()
    twin.compile(fb.optim.SGD(lr=0.1, momentum=0.9), "softmax_cross_entropy")
    expected = []
    for epoch in range(5):
        twin.optimizer.lr = schedule(epoch, 0.1)
        losses = [twin.train_on_batch(X[s:s + 16], y[s:s + 16]) * len(X[s:s + 16])
                  for s in range(0, 50, 16)]
        expected.append(sum(losses) / 50)
    np.testing.assert_allclose(history["loss"], expected, rtol=1e-12)
    assert max_abs_diff(model.params, twin.params) <= 1e-12


@pytest.mark.parametrize("schedule", [fb.schedules.StepDecay(2, 0.5),
                                      fb.schedules.ExponentialDecay(0.9, per="step")])
def test_epochs_in_one_call_match_epochs_one_at_a_time(schedule):
    """Without per-epoch hooks fit runs many epochs in one compiled call, with every
    epoch's sample order and learning rates drawn up front; a callback makes it go
    epoch by epoch.  Both draw the same orders and rates and give the same weights."""
    X, y = data(n=50)
    runs = []
    for callbacks in (None, [fb.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: None)]):
        model = mlp()
        model.compile(fb.optim.SGD(lr=0.1, momentum=0.9), "softmax_cross_entropy")
        history = model.fit(X, y, epochs=5, batch_size=16, seed=4, schedule=schedule,
                            callbacks=callbacks)
        runs.append((model.params.copy(), history["loss"], history["lr"]))
    (p0, loss0, lr0), (p1, loss1, lr1) = runs
    assert np.array_equal(p0, p1)
    assert loss0 == loss1 and lr0 == lr1
    assert len(set(lr0)) > 1
    # the shuffled orders are those of one permutation(n) call per epoch
    model = mlp()
    model.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy")
    model.fit(X, y, epochs=0, seed=4)
    rng = np.random.default_rng([4, 1])
    assert np.array_equal(model._permutations(3, 50, True),
                          np.stack([rng.permutation(50) for _ in range(3)]))


def test_fit_validation_data():
    X, y = data(n=60)
    Xv, yv = data(n=25, seed=1)
    model = mlp()
    model.compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy")
    history = model.fit(X, y, epochs=3, batch_size=20, validation_data=(Xv, yv), seed=0)
    assert {"loss", "val_loss", "val_accuracy"} <= set(history.history)
    final = model.evaluate(Xv, yv)
    assert history["val_loss"][-1] == pytest.approx(final["loss"], rel=1e-12)
    assert history["val_accuracy"][-1] == pytest.approx(final["accuracy"], abs=1e-15)
    # validation does not change training
    plain = mlp()
    plain.compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy")
    h2 = plain.fit(X, y, epochs=3, batch_size=20, seed=0)
    np.testing.assert_array_equal(plain.params, model.params)
    np.testing.assert_array_equal(h2["loss"], history["loss"])


@pytest.mark.parametrize("loss", ["mse", "binary_cross_entropy", "softmax_cross_entropy"])
def test_fit_learns(loss):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 5))
    W = rng.standard_normal((5, 3))
    z = X @ W
    y = {"mse": z, "binary_cross_entropy": (z > 0).astype(float),
         "softmax_cross_entropy": z.argmax(1)}[loss]
    model = mlp(dtype="float32", sizes=(5, 16, 3))
    model.compile(fb.optim.Adam(lr=1e-2), loss)
    history = model.fit(X, y, epochs=20, batch_size=32, seed=0)
    assert history["loss"][-1] < 0.3 * history["loss"][0]
    if loss != "mse":
        assert model.evaluate(X, y)["accuracy"] > 0.9


ONE_SAMPLE_CHILD = textwrap.dedent("""
    import numpy as np
    import fastbp as fb
    X = np.ones((1, 4))
    models = []
    for _ in range(2):
        m = fb.Sequential([fb.layers.Dense(4, 5, activation="tanh"), fb.layers.Dense(5, 3)],
                          dtype="float64", seed=0)
        models.append(m.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy"))
    history = models[0].fit(X, np.array([1]), epochs=2, batch_size=1)
    for _ in range(2):
        models[1].train_on_batch(X, np.array([1]))
    assert np.array_equal(models[0].params, models[1].params), "fit != two steps"
    print("ok", history["loss"])
""")


def test_fit_on_a_single_sample_softmax_fused():
    # in a child process: the failure is a segmentation fault
    root = os.path.dirname(os.path.dirname(os.path.abspath(fb.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    proc = subprocess.run([sys.executable, "-c", ONE_SAMPLE_CHILD], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and proc.stdout.startswith("ok"), (
        f"exit code {proc.returncode}: {proc.stderr[-2000:]}")


def test_fit_on_a_single_sample_softmax_per_layer():
    X, y = np.ones((1, 5)), np.array([2])
    model, twin = mlp(), mlp()
    model.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy", fused=False)
    twin.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy", fused=False)
    model.fit(X, y, epochs=2, batch_size=1)
    twin.train_on_batch(X, y)
    twin.train_on_batch(X, y)
    np.testing.assert_array_equal(model.params, twin.params)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("loss", ["mse", "binary_cross_entropy"])
def test_fit_on_a_single_sample_float_targets(loss, fused):
    X, y = np.ones((1, 5)), np.full((1, 3), 0.25)
    model, twin = mlp(), mlp()
    model.compile(fb.optim.SGD(lr=0.1), loss, fused=fused)
    twin.compile(fb.optim.SGD(lr=0.1), loss, fused=fused)
    model.fit(X, y, epochs=2, batch_size=4)
    twin.train_on_batch(X, y)
    twin.train_on_batch(X, y)
    np.testing.assert_array_equal(model.params, twin.params)


def test_predict_before_compile_and_train_requires_compile():
    model = mlp()
    X, y = data()
    assert model.predict(X).shape == (40, 3)
    for call in (lambda: model.fit(X, y), lambda: model.train_on_batch(X, y),
                 lambda: model.evaluate(X, y)):
        with pytest.raises(ValueError, match="compile"):
            call()


# -- save / load ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", [lambda: fb.optim.Adam(lr=1e-2, amsgrad=True, clip_norm=1.0),
                                 lambda: fb.optim.SGD(lr=0.1, momentum=0.9, nesterov=True),
                                 lambda: fb.optim.AdamW(lr=1e-3, weight_decay=0.1)],
                         ids=["adam", "sgd", "adamw"])
def test_save_load_round_trip(tmp_path, dtype, opt):
    X, y = data(n=48)
    model = fb.Sequential([fb.layers.Dense(5, 8, activation="leaky_relu", slope=0.2),
                           fb.layers.Dropout(0.25), fb.layers.Dense(8, 6, activation="sigmoid"),
                           fb.layers.Dense(6, 3)], dtype=dtype, seed=3)
    model.compile(opt(), "softmax_cross_entropy")
    model.fit(X, y, epochs=2, batch_size=16, seed=4)
    path = tmp_path / "model.fbp"
    model.save(path)
    loaded = fb.load(path)
    assert isinstance(loaded, fb.Sequential)
    assert loaded.dtype == model.dtype
    assert loaded.get_config() == model.get_config()
    assert [type(l) for l in loaded.layers] == [type(l) for l in model.layers]
    np.testing.assert_array_equal(loaded.params, model.params)
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    np.testing.assert_array_equal(loaded.optimizer.state, model.optimizer.state)
    np.testing.assert_array_equal(loaded.optimizer.step, model.optimizer.step)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.evaluate(X, y) == model.evaluate(X, y)
    # training goes on exactly as it would have (optimizer state and dropout stream kept)
    model.fit(X, y, epochs=1, batch_size=16, shuffle=False)
    loaded.fit(X, y, epochs=1, batch_size=16, shuffle=False)
    np.testing.assert_array_equal(loaded.params, model.params)
    model.fit(X, y, epochs=1, batch_size=16, seed=11)
    loaded.fit(X, y, epochs=1, batch_size=16, seed=11)
    np.testing.assert_array_equal(loaded.params, model.params)


def test_save_load_resumes_the_shuffling_stream(tmp_path):
    """fit(seed=None) after fb.load continues the saved model's shuffling stream."""
    X, y = data(n=48)
    model = mlp(seed=3)
    model.compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy")
    model.fit(X, y, epochs=2, batch_size=16, seed=4)
    model.save(tmp_path / "m.fbp")
    loaded = fb.load(tmp_path / "m.fbp")
    model.fit(X, y, epochs=1, batch_size=16)
    loaded.fit(X, y, epochs=1, batch_size=16)
    np.testing.assert_array_equal(loaded.params, model.params)


def test_save_load_uncompiled_and_overwrite(tmp_path):
    model = mlp(seed=9)
    path = tmp_path / "m.fbp"
    mlp(seed=1).save(path)
    model.save(str(path))  # overwrites, str paths work too
    loaded = fb.load(str(path))
    np.testing.assert_array_equal(loaded.params, model.params)
    assert loaded.optimizer is None
    assert [p.name for p in tmp_path.iterdir()] == ["m.fbp"]  # no temporary files left


def test_load_rejects_non_checkpoints(tmp_path):
    other = tmp_path / "other.npz"
    np.savez(other, params=np.zeros(3))
    with pytest.raises(ValueError, match="other.npz.*checkpoint"):
        fb.load(other)
    truncated = tmp_path / "truncated.fbp"
    mlp().save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(ValueError, match="truncated.fbp"):
        fb.load(truncated)
    with pytest.raises((ValueError, OSError), match="missing.fbp"):
        fb.load(tmp_path / "missing.fbp")


def test_load_of_arbitrary_bytes_names_the_file(tmp_path):
    """Not np.load's pickle message (which suggests allow_pickle): the file is named."""
    bad = tmp_path / "bad.fbp"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError) as info:
        fb.load(bad)
    assert "bad.fbp" in str(info.value) and "pickle" not in str(info.value)


# -- divergence -------------------------------------------------------------------------------------


def test_divergence_error_is_a_floating_point_error():
    assert issubclass(fb.DivergenceError, FloatingPointError)


@pytest.mark.parametrize("opt", [lambda: fb.optim.SGD(lr=1e10),
                                 lambda: fb.optim.SGD(lr=1e8, momentum=0.9)], ids=["sgd", "momentum"])
def test_train_on_batch_divergence_keeps_last_finite_weights(opt):
    X, y = data(n=32, loss="mse")
    model = mlp(sizes=(5, 8, 3))
    model.compile(opt(), "mse")
    last = None
    with pytest.raises(fb.DivergenceError, match="non-finite") as info:
        for _ in range(100):
            last = (model.params.copy(), model.optimizer.state.copy(),
                    model.optimizer.step.copy())
            model.train_on_batch(X, 1e3 * y)
    assert isinstance(info.value, FloatingPointError)
    assert np.all(np.isfinite(model.params))
    np.testing.assert_array_equal(model.params, last[0])
    np.testing.assert_array_equal(model.optimizer.state, last[1])
    np.testing.assert_array_equal(model.optimizer.step, last[2])


@pytest.mark.parametrize("fused", [True, False])
def test_fit_divergence_reports_where_and_keeps_weights(fused):
    X, y = data(n=64, loss="mse")
    y = 1e3 * y
    model = mlp(sizes=(5, 8, 3))
    model.compile(fb.optim.SGD(lr=1e8, momentum=0.9), "mse", fused=fused)
    with pytest.raises(fb.DivergenceError) as info:
        model.fit(X, y, epochs=50, batch_size=16, shuffle=False)
    err = info.value
    assert err.epoch is not None and err.step is not None
    assert f"epoch {err.epoch}" in str(err) and f"step {err.step}" in str(err)
    assert np.all(np.isfinite(model.params))
    # replaying the steps before the failure gives exactly the kept weights
    twin = mlp(sizes=(5, 8, 3))
    twin.compile(fb.optim.SGD(lr=1e8, momentum=0.9), "mse", fused=fused)
    steps = err.epoch * 4 + err.step
    for s in range(steps):
        i = (s % 4) * 16
        twin.train_on_batch(X[i:i + 16], y[i:i + 16])
    np.testing.assert_array_equal(twin.params, model.params)
    assert model.optimizer.step[0] == steps


def test_divergence_from_an_overflowing_update_keeps_finite_weights():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((32, 4))
    y = 100 * rng.standard_normal((32, 2))
    model = fb.Sequential([fb.layers.Dense(4, 8, activation="tanh"), fb.layers.Dense(8, 2)],
                          dtype="float32", seed=0)
    model.compile(fb.optim.SGD(lr=1e38), "mse")
    with pytest.raises(fb.DivergenceError):
        for _ in range(3):
            model.train_on_batch(X, y)
            assert np.all(np.isfinite(model.params)), "a step returned with non-finite weights"
    assert np.all(np.isfinite(model.params))


# -- initialisers -------------------------------------------------------------------------------

N_IN, N_OUT = 600, 400  # 240000 samples: the sample variance is within 1% (5 sigma)


def _sample(name, dtype=np.float64, seed=0):
    return fb.init.get(name)((N_IN, N_OUT), np.random.default_rng(seed), dtype)


def _close_var(w, var):
    # relative standard error of a sample variance of N normals: sqrt(2 / N)
    tol = 5 * math.sqrt(2 / w.size) * var
    assert abs(np.var(w) - var) < tol, (np.var(w), var)
    assert abs(np.mean(w)) < 5 * math.sqrt(var / w.size)


@pytest.mark.parametrize("name,var", [
    ("he", 2 / N_IN), ("he_normal", 2 / N_IN), ("lecun", 1 / N_IN), ("lecun_normal", 1 / N_IN),
    ("xavier_normal", 2 / (N_IN + N_OUT)), ("glorot_normal", 2 / (N_IN + N_OUT)),
])
def test_normal_initialisers_variance(name, var):
    w = _sample(name)
    assert w.shape == (N_IN, N_OUT)
    _close_var(w, var)
    # normal, not uniform: the kurtosis of a normal is 3 (uniform 1.8)
    assert abs(np.mean(w ** 4) / np.var(w) ** 2 - 3) < 0.1


@pytest.mark.parametrize("name,limit", [
    ("xavier_uniform", math.sqrt(6 / (N_IN + N_OUT))), ("glorot_uniform", math.sqrt(6 / (N_IN + N_OUT))),
    ("he_uniform", math.sqrt(6 / N_IN)), ("lecun_uniform", math.sqrt(3 / N_IN)),
])
def test_uniform_initialisers_bounds(name, limit):
    w = _sample(name)
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.999 * limit  # the whole range is used
    # the variance of U[-a, a] is a^2 / 3; that of the uniform's sample variance is smaller
    # than a normal's, so the normal tolerance is a safe bound
    _close_var(w, limit ** 2 / 3)


@pytest.mark.parametrize("shape", [(50, 20), (20, 50), (33, 33), (1, 7)])
def test_orthogonal_initialiser(shape):
    w = fb.init.orthogonal(shape, np.random.default_rng(0), np.float64)
    assert w.shape == shape
    if shape[0] >= shape[1]:
        np.testing.assert_allclose(w.T @ w, np.eye(shape[1]), atol=1e-12)
    else:
        np.testing.assert_allclose(w @ w.T, np.eye(shape[0]), atol=1e-12)
    other = fb.init.orthogonal(shape, np.random.default_rng(1), np.float64)
    assert max_abs_diff(w, other) > 1e-3


def test_zeros_and_normal_sigma_initialisers():
    assert np.all(_sample("zeros") == 0)
    w = fb.init.normal(0.05)((N_IN, N_OUT), np.random.default_rng(0), np.float64)
    _close_var(w, 0.05 ** 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_initialiser_dtype_and_seed(dtype):
    for name in ("he", "xavier_uniform", "orthogonal", "lecun_uniform"):
        a = fb.init.get(name)((7, 5), np.random.default_rng(3), dtype)
        b = fb.init.get(name)((7, 5), np.random.default_rng(3), dtype)
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, b)


def test_dense_default_and_explicit_initialisers():
    assert fb.layers.Dense(3, 4, activation="relu").init == "he"
    assert fb.layers.Dense(3, 4, activation="leaky_relu").init == "he"
    for act in ("tanh", "sigmoid", None):
        assert fb.layers.Dense(3, 4, activation=act).init == "xavier_uniform"
    model = fb.Sequential([fb.layers.Dense(500, 300, activation="relu")], dtype="float64")
    _close_var_shape(model.layers[0].W, 2 / 500)
    model = fb.Sequential([fb.layers.Dense(500, 300, init="orthogonal")], dtype="float64")
    np.testing.assert_allclose(model.layers[0].W.T @ model.layers[0].W, np.eye(300), atol=1e-12)
    model = fb.Sequential([fb.layers.Dense(50, 30, init=fb.init.zeros)], dtype="float64")
    assert np.all(model.params == 0)


def _close_var_shape(w, var):
    tol = 5 * math.sqrt(2 / w.size) * var
    assert abs(np.var(w) - var) < tol


# -- schedules -------------------------------------------------------------------------------------


def test_step_decay_and_exponential_decay():
    s = fb.schedules.StepDecay(3, 0.5)
    assert [s(t, 0.8) for t in range(8)] == [0.8, 0.8, 0.8, 0.4, 0.4, 0.4, 0.2, 0.2]
    e = fb.schedules.ExponentialDecay(0.1)
    for t in (0, 1, 5, 40):
        assert e(t, 0.3) == pytest.approx(0.3 * math.exp(-0.1 * t), rel=1e-15)
    assert s.per == "epoch" and fb.schedules.StepDecay(2, per="step").per == "step"


def test_other_schedules_follow_their_formulas():
    sch = fb.schedules
    inv = sch.InverseTimeDecay(0.5)
    assert inv(10, 0.1) == pytest.approx(0.1 / (1 + 0.1 * 0.5 * 10), rel=1e-15)
    cos = sch.CosineDecay(10, eta_min=0.01)
    assert cos(0, 0.1) == pytest.approx(0.1, rel=1e-15)
    assert cos(5, 0.1) == pytest.approx(0.055, rel=1e-12)
    assert cos(10, 0.1) == pytest.approx(0.01, rel=1e-15) and cos(25, 0.1) == 0.01
    warm = sch.LinearWarmup(4, then=sch.StepDecay(2, 0.5, per="step"))
    assert [warm(t, 1.0) for t in range(9)] == pytest.approx(
        [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 0.5, 0.5, 0.25], rel=1e-15)
    cyc = sch.CyclicLR(max_lr=1.0, step_size=2)
    assert [cyc(t, 0.0) for t in range(7)] == pytest.approx([0, 0.5, 1, 0.5, 0, 0.5, 1])
    cyc2 = sch.CyclicLR(max_lr=1.0, step_size=2, mode="triangular2")
    assert cyc2(6, 0.0) == pytest.approx(0.5)


def test_schedules_reject_bad_arguments():
    sch = fb.schedules
    for make in (lambda: sch.StepDecay(0), lambda: sch.StepDecay(2, gamma=0.0),
                 lambda: sch.StepDecay(2, gamma=float("nan")), lambda: sch.ExponentialDecay(-1.0),
                 lambda: sch.StepDecay(2, per="batch"), lambda: sch.CosineDecay(0),
                 lambda: sch.CyclicLR(1.0, 2, mode="sine")):
        with pytest.raises(ValueError):
            make()
    with pytest.raises(TypeError):
        sch.StepDecay(2.5)
    with pytest.raises(ValueError, match="-1"):
        sch.StepDecay(2)(-1, 0.1)


def test_per_step_schedule_in_fit():
    """A per-step schedule gives each optimizer step its own rate, counted across epochs."""
    X, y = data(n=30, loss="mse")
    schedule = fb.schedules.StepDecay(4, 0.5, per="step")
    model = mlp()
    model.compile(fb.optim.SGD(lr=0.2), "mse")
    model.fit(X, y, epochs=3, batch_size=10, shuffle=False, schedule=schedule)
    twin = mlp()
    twin.compile(fb.optim.SGD(lr=0.2), "mse")
    for t in range(9):
        twin.optimizer.lr = schedule(t, 0.2)
        s = (t % 3) * 10
        twin.train_on_batch(X[s:s + 10], y[s:s + 10])
    assert max_abs_diff(model.params, twin.params) <= 1e-12
