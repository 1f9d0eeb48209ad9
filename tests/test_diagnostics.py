"""fb.diagnostics against a NumPy computation of the same statistics."""
from __future__ import annotations

import math

import numpy as np

import fastbp as fb


def test_statistics_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 6))
    y = rng.standard_normal((50, 2))
    m = fb.Sequential([fb.layers.Dense(6, 8, activation="relu"),
                       fb.layers.Dense(8, 5, activation="tanh"),
                       fb.layers.Dense(5, 2)], dtype="float64", seed=1)
    m.compile(fb.optim.SGD(lr=0.1), "mse")
    m.layers[0].b = np.array([0, 0, -100, 0, 0, 0, 0, 0.0])  # unit 2 can never fire
    W1, b1 = m.layers[0].W.copy(), m.layers[0].b.copy()
    W2, b2 = m.layers[1].W.copy(), m.layers[1].b.copy()
    W3, b3 = m.layers[2].W.copy(), m.layers[2].b.copy()
    params = m.params.copy()
    h1 = np.maximum(x @ W1 + b1, 0)
    h2 = np.tanh(h1 @ W2 + b2)
    out = h2 @ W3 + b3
    g3 = 2 * (out - y) / out.size
    g2 = g3 @ W3.T
    d2 = g2 * (1 - h2 ** 2)
    g1 = d2 @ W2.T
    d1 = g1 * (h1 > 0)
    stats = fb.diagnostics.layer_statistics(m, x, y)
    np.testing.assert_array_equal(m.params, params)
    assert [s["name"] for s in stats] == ["Dense"] * 3
    for s, h, g, d in ((stats[0], h1, g1, d1), (stats[1], h2, g2, d2), (stats[2], out, g3, g3)):
        assert math.isclose(s["activation_variance"], h.var(), rel_tol=1e-12)
        assert math.isclose(s["output_gradient_variance"], g.var(), rel_tol=1e-12)
        assert math.isclose(s["gradient_variance"], d.var(), rel_tol=1e-12)
    assert stats[0]["dead_fraction"] == np.mean(np.all(h1 <= 0, axis=0))
    assert stats[0]["dead_fraction"] >= 1 / 8
    assert stats[1]["saturated_fraction"] == np.mean(np.abs(h2) > 0.99)
    assert "layer" in fb.diagnostics.report(m, x, y)


def test_he_initialisation_keeps_variances_flat_in_a_deep_relu_net():
    # Seed 002, figure 7.7: with sigma^2 = 2 / D_h the forward variance neither
    # explodes nor vanishes over 20 layers, while sigma^2 = 0.1 explodes.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 100))
    y = np.zeros((500, 1))
    out = {}
    for s2 in (0.02, 0.1):
        layers = [fb.layers.Dense(100, 100, activation="relu", init=fb.init.normal(s2 ** 0.5))
                  for _ in range(20)] + [fb.layers.Dense(100, 1)]
        m = fb.Sequential(layers, dtype="float64")
        m.compile(fb.optim.SGD(lr=0.1), "mse")
        v = [s["activation_variance"] for s in fb.diagnostics.layer_statistics(m, x, y)[:20]]
        out[s2] = v[-1] / v[0]
    assert 0.1 < out[0.02] < 10
    assert out[0.1] > 1e6


def _numpy_state_gradients(rnn, head, x, lengths, y, per_step):
    """Mean |dL/dh_t| of a tanh RNN over padded float sequences, by hand (full BPTT)."""
    m, T, _ = x.shape
    W, U, b = rnn.W, rnn.U, rnn.b
    Wo, bo = head.W, head.b
    hs = np.zeros((m, T, U.shape[0]))
    for i in range(m):
        h = np.zeros(U.shape[0])
        for t in range(lengths[i]):
            h = np.tanh(x[i, t] @ W + h @ U + b)
            hs[i, t] = h
    dh = np.zeros_like(hs)
    tokens = lengths.sum() if per_step else m
    for i in range(m):
        carry = np.zeros(U.shape[0])
        for t in range(lengths[i] - 1, -1, -1):
            g = carry.copy()
            if per_step or t == lengths[i] - 1:
                o = hs[i, t] @ Wo + bo
                p = np.exp(o - o.max())
                p /= p.sum()
                p[y[i, t] if per_step else y[i]] -= 1
                g += p @ Wo.T / tokens
            dh[i, t] = g
            carry = (g * (1 - hs[i, t] ** 2)) @ U.T
    norms = np.linalg.norm(dh, axis=2)
    real = np.arange(T)[None, :] < lengths[:, None]
    return (norms * real).sum(axis=0) / real.sum(axis=0)


def test_state_gradients_match_numpy_bptt():
    """dL/dh_t of a tanh RNN, many-to-one and per step, equals a NumPy BPTT (seed 004);
    full BPTT although the layer truncates, and the layer's truncation is kept."""
    from fastbp.engine import codes as C
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 6, 2))
    for per_step in (False, True):
        inp = fb.Input(2, sequence=True)
        rnn = fb.layers.RNN(2, 5, return_sequences=per_step, truncate=2)
        head = fb.layers.Dense(5, 3)
        model = fb.Model(inp, head(rnn(inp)), dtype="float64", seed=4)
        model.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy")
        y = rng.integers(0, 3, (4, 6) if per_step else 4)
        want = _numpy_state_gradients(rnn, head, x, np.full(4, 6), y, per_step)
        got = fb.diagnostics.state_gradients(model, x, y, layer=rnn)
        assert got.shape == (6,)
        np.testing.assert_allclose(got, want, rtol=1e-10)
        if not per_step:  # many-to-one: the gradient shrinks going back from the loss
            assert got[0] < got[-1]
        node = [n for n in range(model._plan.nodes.shape[0])
                if model._plan.nodes[n, C.KIND] == C.RECURRENT][0]
        assert model._plan.nodes[node, C.TRUNCATE] == 2
