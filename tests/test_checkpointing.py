"""Gradient checkpointing (seed 002, problem 7.11): checkpoint_every=k keeps every k-th
layer's output and recomputes the others in the backward pass; gradients and whole
training runs are the same bits as without it."""
from __future__ import annotations

import numpy as np
import pytest

import fastbp as fb

L = fb.layers


def _mlp(every, dtype="float64", depth=7):
    layers = [L.Dense(6, 16, activation="tanh")]
    for i in range(depth - 2):
        layers.append(L.Dense(16, 16, activation="relu"))
        if i % 2 == 0:
            layers.append(L.Dropout(0.2))
    layers.append(L.Dense(16, 3))
    return fb.Sequential(layers, dtype=dtype, seed=1, checkpoint_every=every)


def _data(n=29, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6)), rng.integers(0, 3, n)


@pytest.mark.parametrize("every", [1, 2, 3, 5])
@pytest.mark.parametrize("fused", [True, False])
def test_sequential_gradients_and_training_are_bit_identical(every, fused):
    X, y = _data()
    plain, ckpt = _mlp(None), _mlp(every)
    for m in (plain, ckpt):
        m.compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy", fused=fused)
    assert ckpt._plan.acts_width < plain._plan.acts_width or every == 1
    assert plain.compute_gradients(X, y) == ckpt.compute_gradients(X, y)
    np.testing.assert_array_equal(plain.grads, ckpt.grads)
    # dropout on: the recomputed segments must draw the same masks
    hp = plain.fit(X, y, epochs=3, batch_size=8, seed=4)
    hc = ckpt.fit(X, y, epochs=3, batch_size=8, seed=4)
    assert hp["loss"] == hc["loss"]
    np.testing.assert_array_equal(plain.params, ckpt.params)


def _graph(every):
    """Words and features; a skip connection that crosses segments; a shared layer."""
    ids = fb.Input(3, dtype="int64", name="ids")
    f = fb.Input(4, name="f")
    e = L.WindowEmbedding(20, 4, window=1)(ids)
    h0 = L.Dense(12, 8, activation="tanh")(e)
    shared = L.Dense(8, 8, activation="relu")
    h = shared(h0)
    h = L.Dropout(0.3)(h)
    h = shared(h)
    g = L.Dense(4, 8)(f)
    h = L.Add()([h, h0, g])
    h = L.Concatenate()([h, L.Dense(8, 5, activation="sigmoid")(h)])
    out = L.Dense(13, 3)(h)
    return fb.Model([ids, f], out, dtype="float64", seed=2, checkpoint_every=every)


@pytest.mark.parametrize("every", [1, 2, 3, 4])
def test_graph_with_skips_shared_layers_and_tables_is_bit_identical(every):
    rng = np.random.default_rng(5)
    X = [rng.integers(0, 20, (21, 3)), rng.standard_normal((21, 4))]
    y = rng.integers(0, 3, 21)
    plain, ckpt, layerwise = _graph(None), _graph(every), _graph(every)
    for m in (plain, ckpt):
        m.compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy")
    layerwise.compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy", fused=False)
    plain.compute_gradients(X, y)
    ckpt.compute_gradients(X, y)
    np.testing.assert_array_equal(plain.grads, ckpt.grads)
    np.testing.assert_array_equal(plain.embedding_gradient(), ckpt.embedding_gradient())
    for m in (plain, ckpt, layerwise):
        m.fit(X, y, epochs=2, batch_size=5, seed=3, accumulate=2)
    for m in (ckpt, layerwise):
        np.testing.assert_array_equal(plain.params, m.params)
        np.testing.assert_array_equal(plain.tables, m.tables)


def test_checkpoint_every_is_saved_and_checked(tmp_path):
    X, y = _data()
    m = _mlp(3)
    m.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy")
    m.fit(X, y, epochs=1, batch_size=8)
    m.save(tmp_path / "c.fbp")
    back = fb.load(tmp_path / "c.fbp")
    assert back.checkpoint_every == 3
    np.testing.assert_array_equal(back.predict(X), m.predict(X))
    with pytest.raises(ValueError, match="checkpoint_every must be >= 1"):
        _mlp(0)
    with pytest.raises(TypeError, match="checkpoint_every must be an integer"):
        _mlp(2.5)
    with pytest.raises(ValueError, match="build the same model without checkpoint_every"):
        fb.diagnostics.layer_statistics(m, X, y)


def test_arena_shrinks_to_about_n_over_k_plus_k_values():
    # 50 layers of 64: without checkpointing 50 values of 64 (and the input); k = 7 keeps
    # every 7th output (7 of them, the last being the output) plus a 7-node scratch region
    layers = [L.Dense(64, 64, activation="relu") for _ in range(50)]
    plain = fb.Sequential(layers, seed=0)
    ckpt = fb.Sequential([L.Dense(64, 64, activation="relu") for _ in range(50)], seed=0,
                         checkpoint_every=7)
    assert plain._plan.acts_width == 51 * 64
    assert ckpt._plan.acts_width == (1 + 8 + 6) * 64
