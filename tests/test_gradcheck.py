"""Backpropagation against float64 central differences (fb.gradcheck), and gradcheck
itself against layers whose gradients are known to be right or wrong."""
from __future__ import annotations

import numpy as np
import pytest

import fastbp as fb
from helpers import make_targets

ACTIVATIONS = ["relu", "leaky_relu", "sigmoid", "tanh", None]
LOSSES = ["mse", "binary_cross_entropy", "softmax_cross_entropy"]
TOL = 1e-6


def _mlp(act, dtype="float64", seed=0, dropout=None, sizes=(5, 7, 4)):
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        # slope 0.2: a visible negative side; the activation on the output layer too
        layers.append(fb.layers.Dense(n_in, n_out, activation=act, slope=0.2))
        if dropout is not None and i < len(sizes) - 2:
            layers.append(fb.layers.Dropout(dropout))
    return fb.Sequential(layers, dtype=dtype, seed=seed)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("act", ACTIVATIONS, ids=str)
def test_gradcheck_activation_by_loss(act, loss, fused):
    rng = np.random.default_rng(7)
    model = _mlp(act, seed=3)
    # non-zero biases, so that the check also covers db and the kinks move off x = 0
    for layer in model.layers:
        layer.b = 0.3 * rng.standard_normal(layer.b.shape)
    model.compile(fb.optim.SGD(lr=0.1), loss, fused=fused)
    x = rng.standard_normal((6, 5))
    y = make_targets(loss, rng, 6, 4)
    err, details = fb.gradcheck(model, x, y, return_details=True)
    assert set(details) == {"0.Dense.W", "0.Dense.b", "1.Dense.W", "1.Dense.b"}
    assert err < TOL, details
    # gradcheck measures and must not train
    assert model.optimizer.step[0] == 0


@pytest.mark.parametrize("loss", LOSSES)
def test_gradcheck_deeper_model_with_dropout_in_inference_mode(loss):
    rng = np.random.default_rng(11)
    model = _mlp("tanh", seed=5, dropout=0.3, sizes=(6, 9, 8, 3))
    model.compile(fb.optim.Adam(lr=1e-2), loss)
    x = rng.standard_normal((5, 6))
    y = make_targets(loss, rng, 5, 3)
    assert fb.gradcheck(model, x, y) < TOL


def test_gradcheck_of_float32_model_goes_through_float64():
    rng = np.random.default_rng(2)
    model = _mlp("sigmoid", dtype="float32", seed=1)
    model.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy")
    before = model.params.copy()
    x = rng.standard_normal((4, 5)).astype(np.float32)
    y = rng.integers(0, 4, 4)
    assert fb.gradcheck(model, x, y) < TOL
    np.testing.assert_array_equal(model.params, before)


def test_gradcheck_leaves_parameters_untouched():
    rng = np.random.default_rng(3)
    model = _mlp("tanh", seed=1)
    model.compile(fb.optim.SGD(lr=0.1), "mse")
    before = model.params.copy()
    fb.gradcheck(model, rng.standard_normal((3, 5)), rng.standard_normal((3, 4)))
    np.testing.assert_array_equal(model.params, before)


def test_gradcheck_samples_large_arrays():
    rng = np.random.default_rng(4)
    model = fb.Sequential([fb.layers.Dense(40, 30, activation="tanh"),
                           fb.layers.Dense(30, 3)], dtype="float64", seed=0)
    model.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy")
    x = rng.standard_normal((8, 40))
    y = rng.integers(0, 3, 8)
    assert fb.gradcheck(model, x, y, max_per_array=50) < TOL


# -- gradcheck must detect wrong gradients ------------------------------------------------------


class Scale(fb.layers.Layer):
    """a = x * s (elementwise, s : (n,)), written in NumPy; ``wrong`` scales the gradient
    of s (``"param"``) or the gradient passed down (``"input"``) by 1.5."""

    def __init__(self, wrong=None):
        super().__init__()
        self.wrong = wrong

    def param_shapes(self, input_dim):
        return {"s": (input_dim,)}

    def build(self, input_dim, rng, dtype):
        return {"s": (1.0 + 0.5 * rng.standard_normal(input_dim)).astype(dtype)}

    def forward(self, x, training):
        self._x = x
        return x * self.params["s"]

    def backward(self, g):
        factor = 1.5 if self.wrong == "param" else 1.0
        self.grads["s"][...] = factor * (g * self._x).sum(axis=0)
        g_in = g * self.params["s"]
        return 1.5 * g_in if self.wrong == "input" else g_in


def _scale_model(wrong):
    return fb.Sequential([fb.layers.Dense(5, 6, activation="tanh"), Scale(wrong),
                          fb.layers.Dense(6, 3)], dtype="float64", seed=0)


@pytest.mark.parametrize("loss", LOSSES)
def test_gradcheck_passes_a_correct_custom_layer(loss):
    rng = np.random.default_rng(5)
    model = _scale_model(None)
    model.compile(fb.optim.SGD(lr=0.1), loss)
    assert model.fused is False  # unknown layer: the per-layer path
    x = rng.standard_normal((4, 5))
    assert fb.gradcheck(model, x, make_targets(loss, rng, 4, 3)) < TOL


@pytest.mark.parametrize("wrong,bad_arrays", [("param", {"1.Scale.s"}),
                                              ("input", {"0.Dense.W", "0.Dense.b"})])
def test_gradcheck_detects_a_wrong_gradient(wrong, bad_arrays):
    rng = np.random.default_rng(5)
    model = _scale_model(wrong)
    model.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy")
    x = rng.standard_normal((4, 5))
    err, details = fb.gradcheck(model, x, rng.integers(0, 3, 4), return_details=True)
    # a 1.5x gradient has relative error 1/3 against the true one (norm-wise, over max)
    assert err == pytest.approx(1 / 3, rel=1e-4)
    assert {k for k, v in details.items() if v > 0.1} == bad_arrays
    assert all(v < TOL for k, v in details.items() if k not in bad_arrays)
