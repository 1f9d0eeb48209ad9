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
