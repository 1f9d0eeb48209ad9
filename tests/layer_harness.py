"""One check every layer goes through (after Keras' layer test harness).

:func:`check_layer` builds small functional models around a layer and checks, in
float64: the output's shape and dtype, the parameter count, backprop against
central differences, one training step, a save/load round trip that continues
bit for bit, the compiled path against the per-layer path bit for bit, and,
when a PyTorch twin is given, the forward output and every gradient against
PyTorch's.
"""
from __future__ import annotations

import numpy as np

import fastbp as fb


def _model(make_layer, inputs, head, seed):
    values = [fb.Input(w, dtype=dt, name=f"in{i}") for i, (w, dt) in enumerate(inputs)]
    layer = make_layer()
    out = layer(values if len(values) > 1 else values[0])
    if head:
        out = fb.layers.Dense(out.width, 3, activation=None)(out)
    return fb.Model(values, out, dtype="float64", seed=seed), layer


def check_layer(make_layer, inputs, make_data, out_width, n_params, torch_twin=None,
                rows=7, seed=0, trains=True):
    """Check a layer the way every fastbp layer is checked.

    make_layer : () -> a new layer, configured the same way on every call
    inputs : list of (width, dtype) of the values the layer is called on
    make_data : rng -> list of arrays, one (rows, width) per input
    out_width, n_params : the expected output width and parameter count (tables too)
    torch_twin : optional (layer, list of torch tensors) -> (torch output, pairs), the
        layer's forward in PyTorch from the fastbp layer's weights, where ``pairs`` lists
        (fastbp gradient getter, torch leaf tensor) for each parameter
    trains : whether one training step must move the layer's parameters
    """
    rng = np.random.default_rng(seed)
    X = make_data(rng)
    y = rng.integers(0, 3, rows)

    # shapes, dtype, parameter count
    bare, layer = _model(make_layer, inputs, head=False, seed=seed)
    out = bare.predict(X)
    assert out.shape == (rows, out_width) and out.dtype == np.float64, out.shape
    assert layer.n_params == n_params, (layer.n_params, n_params)

    # float64 central differences
    model, layer = _model(make_layer, inputs, head=True, seed=seed)
    model.compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy")
    err, details = fb.gradcheck(model, X, y, return_details=True)
    assert err < 1e-6, details

    # one training step moves the layer (when it has something to train)
    before = [p.copy() for p in layer.params.values()] + (
        [layer.E.copy()] if hasattr(layer, "E") else [])
    loss = model.train_on_batch(X, y)
    assert np.isfinite(loss)
    after = list(layer.params.values()) + ([layer.E] if hasattr(layer, "E") else [])
    moved = any(np.any(a != b) for a, b in zip(after, before))
    assert moved == trains, (moved, trains)

    # compiled path == per-layer path, bit for bit, over a few epochs with dropout on
    runs = []
    for fused in (True, False):
        m, _ = _model(make_layer, inputs, head=True, seed=seed)
        m.compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy", fused=fused)
        m.fit(X, y, epochs=3, batch_size=3, seed=1)
        runs.append(m)
    np.testing.assert_array_equal(runs[0].params, runs[1].params)
    np.testing.assert_array_equal(runs[0].tables, runs[1].tables)

    # save / load continues bit for bit
    import os
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "layer.fbp")
        runs[0].save(path)
        back = fb.load(path)
    np.testing.assert_array_equal(back.predict(X), runs[0].predict(X))
    for m in (runs[0], back):
        m.fit(X, y, epochs=2, batch_size=3)
    np.testing.assert_array_equal(back.params, runs[0].params)
    np.testing.assert_array_equal(back.tables, runs[0].tables)

    if torch_twin is not None:
        _check_against_torch(make_layer, inputs, X, torch_twin, seed)


def _check_against_torch(make_layer, inputs, X, torch_twin, seed):
    import torch
    bare, layer = _model(make_layer, inputs, head=False, seed=seed)
    bare.compile(fb.optim.SGD(lr=0.1), "mse")
    target = np.random.default_rng(seed + 1).standard_normal(bare.predict(X).shape)
    loss = bare.compute_gradients(X, target)
    tx = [torch.from_numpy(np.ascontiguousarray(x)) for x in X]
    for t in tx:
        t.requires_grad_(t.is_floating_point())
    out, pairs = torch_twin(layer, tx)
    np.testing.assert_allclose(bare.predict(X), out.detach().numpy(), rtol=0, atol=1e-12)
    t_loss = torch.nn.functional.mse_loss(out, torch.from_numpy(target))
    t_loss.backward()
    assert abs(loss - t_loss.item()) <= 1e-12
    for get, leaf in pairs:
        np.testing.assert_allclose(get(bare), leaf.grad.numpy(), rtol=0, atol=1e-10)
