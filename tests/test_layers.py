"""Every layer through tests/layer_harness.check_layer."""
from __future__ import annotations

import numpy as np
import pytest

import fastbp as fb
from layer_harness import check_layer
from test_gradcheck import Scale  # a = x * s, written in NumPy

L = fb.layers


def _floats(*widths):
    return lambda rng: [rng.standard_normal((7, w)) for w in widths]


def _torch_dense(activation):
    def twin(layer, xs):
        import torch
        W = torch.tensor(layer.W.copy(), requires_grad=True)
        b = torch.tensor(layer.b.copy(), requires_grad=True)
        z = xs[0] @ W + b
        f = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
             "leaky_relu": lambda v: torch.nn.functional.leaky_relu(v, 0.01),
             None: lambda v: v}[activation]
        return f(z), [(lambda m, l=layer: l.dW, W), (lambda m, l=layer: l.db, b)]
    return twin


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "sigmoid", "tanh", None])
def test_dense(activation):
    twin = _torch_dense(activation) if _have_torch() else None
    check_layer(lambda: L.Dense(5, 4, activation=activation), [(5, "float64")], _floats(5),
                out_width=4, n_params=24, torch_twin=twin)


def test_dropout():
    check_layer(lambda: L.Dropout(0.3), [(4, "float64")], _floats(4), out_width=4, n_params=0,
                trains=False, torch_twin=_identity_twin if _have_torch() else None)


def _identity_twin(layer, xs):
    return xs[0] * 1.0, []


def _torch_window(layer, xs):
    import torch
    E = torch.tensor(layer.E.copy(), requires_grad=True)
    ids = xs[0]
    out = torch.nn.functional.embedding(ids, E, padding_idx=layer.padding_id)
    return out.reshape(ids.shape[0], -1), [(lambda m, l=layer: m.embedding_gradient(l), E)]


@pytest.mark.parametrize("trainable", [True, False])
def test_window_embedding(trainable):
    twin = _torch_window if _have_torch() and trainable else None
    check_layer(lambda: L.WindowEmbedding(9, 3, window=1, trainable=trainable),
                [(3, "int64")], lambda rng: [rng.integers(0, 9, (7, 3))], out_width=9,
                n_params=27, trains=trainable, torch_twin=twin)


def test_concatenate():
    def twin(layer, xs):
        import torch
        return torch.cat(xs, dim=1), []
    check_layer(lambda: L.Concatenate(), [(2, "float64"), (3, "float64"), (1, "float64")],
                _floats(2, 3, 1), out_width=6, n_params=0, trains=False,
                torch_twin=twin if _have_torch() else None)


def test_add():
    def twin(layer, xs):
        return xs[0] + xs[1] + xs[2], []
    check_layer(lambda: L.Add(), [(3, "float64")] * 3, _floats(3, 3, 3), out_width=3,
                n_params=0, trains=False, torch_twin=twin if _have_torch() else None)


def test_numpy_layer_through_the_harness(monkeypatch):
    # load() knows the built-in classes only; register the test's layer for the round trip
    import fastbp.model.persist as persist
    classes = persist._layer_classes()
    monkeypatch.setattr(persist, "_layer_classes", lambda: {**classes, "Scale": Scale})

    def twin(layer, xs):
        import torch
        s = torch.tensor(layer.params["s"].copy(), requires_grad=True)
        return xs[0] * s, [(lambda m, l=layer: l.grads["s"], s)]
    check_layer(Scale, [(4, "float64")], _floats(4), out_width=4, n_params=4,
                torch_twin=twin if _have_torch() else None)


def _have_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def test_every_builtin_layer_has_a_harness_test():
    tested = {"Dense", "Dropout", "WindowEmbedding", "Concatenate", "Add",
              # through the harness's sequence mode in test_recurrent.py
              "Embedding", "RNN", "LSTM", "GRU", "Bidirectional"}
    assert set(L.__all__) - {"Layer"} == tested
