"""One check every layer goes through (after Keras' layer test harness).

:func:`check_layer` builds small functional models around a layer and checks, in
float64: the output's shape and dtype, the parameter count, backprop against
central differences, one training step, a save/load round trip that continues
bit for bit, the compiled path against the per-layer path bit for bit, and,
when a PyTorch twin is given, the forward output and every gradient against
PyTorch's.

With ``sequence=True`` the same checks run on a sequence layer (RNN, LSTM, GRU,
Bidirectional, or any layer applied per step): the data are right-padded batches,
(rows, T) ids or (rows, T, width) floats, the labels one per step (-1 at padding)
and the output (rows, T, width).  A float sequence input has no padding ids to
give the rows' lengths, so the harness hands each float array to the layer through
a trainable :class:`~fastbp.layers.Embedding` "feeder" whose table holds the
array's steps (row 0 the zero padding row): the layer receives exactly the array,
each row ends where its data end, and the feeder's table gradient is the gradient
with respect to the layer's input (compared with PyTorch's too).
"""
from __future__ import annotations

import numpy as np

import fastbp as fb


def _model(make_layer, inputs, head, seed, feeds=None):
    """The layer on fresh inputs, with a Dense(3) head or not.  ``feeds`` (sequence
    mode): per input, None for an input of its own (ids or floats) or the table of an
    Embedding feeder (float data addressed by step ids)."""
    if feeds is None:
        values = [fb.Input(w, dtype=dt, name=f"in{i}") for i, (w, dt) in enumerate(inputs)]
        layer_inputs = values
    else:
        values, layer_inputs = [], []
        for i, ((w, dt), table) in enumerate(zip(inputs, feeds)):
            if table is None:
                ids = dt.startswith("int")
                v = fb.Input(None if ids and w == 1 else w, dtype=dt, name=f"in{i}",
                             sequence=True)
                values.append(v)
                layer_inputs.append(v)
            else:
                v = fb.Input(dtype="int64", name=f"in{i}", sequence=True)
                values.append(v)
                layer_inputs.append(fb.layers.Embedding(table.shape[0], w, weights=table)(v))
    layer = make_layer()
    out = layer(layer_inputs if len(layer_inputs) > 1 else layer_inputs[0])
    if head:
        out = fb.layers.Dense(out.width, 3, activation=None)(out)
    return fb.Model(values, out, dtype="float64", seed=seed), layer


def _owned(layer):
    """The layers whose parameters ``layer`` stands for (a Bidirectional's two directions)."""
    if hasattr(layer, "forward_layer"):
        return [layer.forward_layer, layer.backward_layer]
    return [layer]


def _snapshot(layer):
    return [p.copy() for l in _owned(layer) for p in
            list(l.params.values()) + ([l.E] if hasattr(l, "E") else [])]


def check_layer(make_layer, inputs, make_data, out_width, n_params, torch_twin=None,
                rows=7, seed=0, trains=True, sequence=False):
    """Check a layer the way every fastbp layer is checked.

    make_layer : () -> a new layer, configured the same way on every call
    inputs : list of (width, dtype) of the values the layer is called on
    make_data : rng -> list of arrays, one (rows, width) per input
    out_width, n_params : the expected output width and parameter count (tables too)
    torch_twin : optional (layer, list of torch tensors) -> (torch output, pairs), the
        layer's forward in PyTorch from the fastbp layer's weights, where ``pairs`` lists
        (fastbp gradient getter, torch leaf tensor) for each parameter
    trains : whether one training step must move the layer's parameters
    sequence : the inputs are sequences (``width`` features or ids per step) and so is
        the output.  make_data then gives (rows, T) id arrays (id 0 pads) or (rows, T,
        width) float arrays whose padded steps are all zero; every array must mark the
        same rows' lengths.  torch_twin is called as ``twin(layer, xs, lengths)`` with
        the (rows, T[, width]) tensors and a (rows,) int64 tensor of lengths, and gives
        the output (rows, T, out_width), zero at padding.
    """
    rng = np.random.default_rng(seed)
    X = make_data(rng)
    if sequence:
        _check_sequence_layer(make_layer, inputs, X, out_width, n_params, torch_twin, rows,
                              seed, trains, rng)
        return
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
    _check_training(make_layer, inputs, X, y, seed, trains, layer, model)
    if torch_twin is not None:
        _check_against_torch(make_layer, inputs, X, torch_twin, seed)


def _check_training(make_layer, inputs, X, y, seed, trains, layer, model, feeds=None):
    """One step moves the layer; fused == per-layer; save/load continues bit for bit."""
    # one training step moves the layer (when it has something to train)
    before = _snapshot(layer)
    loss = model.train_on_batch(X, y)
    assert np.isfinite(loss)
    moved = any(np.any(a != b) for a, b in zip(_snapshot(layer), before))
    assert moved == trains, (moved, trains)

    # compiled path == per-layer path, bit for bit, over a few epochs with dropout on
    runs = []
    for fused in (True, False):
        m, _ = _model(make_layer, inputs, head=True, seed=seed, feeds=feeds)
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


# -- sequence layers -----------------------------------------------------------------------


def _lengths(arrays, T):
    """Each row's length, as the model finds it: the position after the last step that
    is not padding (id 0, or an all-zero float step); the arrays must agree."""
    found = None
    for a in arrays:
        real = a != 0 if a.ndim == 2 else np.any(a != 0, axis=2)
        got = np.where(real.any(axis=1), T - np.argmax(real[:, ::-1], axis=1), 0)
        assert found is None or np.array_equal(found, got), "inputs mark different lengths"
        found = got
    assert np.all(found >= 1), "every row needs at least one step"
    return found.astype(np.int64)


def _feed(arrays, inputs, lengths):
    """The model's data and the feeders' tables: an id array goes in as it is; a float
    array (rows, T, w) becomes step ids (rows, T) into a table of its steps (row 0, the
    padding id, is zero)."""
    rows, T = arrays[0].shape[:2]
    pad = np.arange(T)[None, :] >= lengths[:, None]
    steps = 1 + np.arange(rows * T).reshape(rows, T)
    steps[pad] = 0
    data, feeds = [], []
    for a, (w, dt) in zip(arrays, inputs):
        if dt.startswith("int"):
            data.append(a)
            feeds.append(None)
        else:
            assert a.shape == (rows, T, w), (a.shape, (rows, T, w))
            assert not np.any(a[pad]), "padded float steps must be zero"
            table = np.zeros((rows * T + 1, w))
            table[1:] = a.reshape(rows * T, w)
            data.append(steps)
            feeds.append(table)
    return data, feeds


def _copy_weights(src, dst):
    for a, b in zip(_owned(src), _owned(dst)):
        for name, value in a.params.items():
            b.params[name][...] = value
        if hasattr(a, "E"):
            b.E[...] = a.E


def _check_sequence_layer(make_layer, inputs, arrays, out_width, n_params, torch_twin, rows,
                          seed, trains, rng):
    T = arrays[0].shape[1]
    lengths = _lengths(arrays, T)
    assert np.any(lengths < T) and np.any(lengths == T), "the batch should be padded"
    pad = np.arange(T)[None, :] >= lengths[:, None]
    y = rng.integers(0, 3, (rows, T))
    y[pad] = -1
    X, feeds = _feed(arrays, inputs, lengths)
    X = X if len(X) > 1 else X[0]

    # shapes, dtype, parameter count; zeros at the padded steps
    bare, layer = _model(make_layer, inputs, head=False, seed=seed, feeds=feeds)
    out = bare.predict(X)
    assert out.shape == (rows, T, out_width) and out.dtype == np.float64, out.shape
    assert np.all(out[pad] == 0) and np.any(out[~pad] != 0)
    assert layer.n_params == n_params, (layer.n_params, n_params)

    # float inputs without the feeder: the full-length rows give the same outputs
    full = lengths == T
    if any(f is not None for f in feeds):
        direct, dlayer = _model(make_layer, inputs, head=False, seed=seed,
                                feeds=[None] * len(inputs))
        _copy_weights(layer, dlayer)
        raw = [a[full] for a in arrays]
        np.testing.assert_array_equal(direct.predict(raw if len(raw) > 1 else raw[0]),
                                      out[full])

    # float64 central differences, through the layer to the feeders' tables
    model, layer = _model(make_layer, inputs, head=True, seed=seed, feeds=feeds)
    model.compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy")
    err, details = fb.gradcheck(model, X, y, return_details=True)
    assert err < 1e-6, details

    _check_training(make_layer, inputs, X, y, seed, trains, layer, model, feeds=feeds)
    if torch_twin is not None:
        _check_sequence_against_torch(make_layer, inputs, arrays, X, y, feeds, lengths,
                                      torch_twin, seed)


def _check_sequence_against_torch(make_layer, inputs, arrays, X, y, feeds, lengths, torch_twin,
                                  seed):
    """Output, loss and every gradient (the layer's, the head's, the inputs') against the
    twin with a per-step head and CrossEntropyLoss(ignore_index=-1)."""
    import torch
    model, layer = _model(make_layer, inputs, head=True, seed=seed, feeds=feeds)
    model.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy")
    head = model.layers[-1]
    bare, bare_layer = _model(make_layer, inputs, head=False, seed=seed + 1, feeds=feeds)
    _copy_weights(layer, bare_layer)
    loss = model.compute_gradients(X, y)
    tx = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    for t in tx:
        t.requires_grad_(t.is_floating_point())
    out, pairs = torch_twin(layer, tx, torch.from_numpy(lengths))
    np.testing.assert_allclose(bare.predict(X), out.detach().numpy(), rtol=0, atol=1e-12)
    W = torch.tensor(head.W.copy(), requires_grad=True)
    b = torch.tensor(head.b.copy(), requires_grad=True)
    logits = out @ W + b
    t_loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 3),
                                               torch.from_numpy(y.reshape(-1)), ignore_index=-1)
    t_loss.backward()
    assert abs(loss - t_loss.item()) <= 1e-12, (loss, t_loss.item())
    pairs = list(pairs) + [(lambda m: head.dW, W), (lambda m: head.db, b)]
    for get, leaf in pairs:
        np.testing.assert_allclose(get(model), leaf.grad.numpy(), rtol=0, atol=1e-10)
    # the input gradient: the feeder's table gradient at each real step's row
    real = np.arange(arrays[0].shape[1])[None, :] < lengths[:, None]
    feeders = iter([l for l in model.layers
                    if isinstance(l, fb.layers.Embedding) and l not in _owned(layer)])
    for a, t, table, ids in zip(arrays, tx, feeds, X if len(arrays) > 1 else [X]):
        if table is None:
            continue
        G = model.embedding_gradient(next(feeders))
        np.testing.assert_allclose(G[ids[real]], t.grad.numpy()[real], rtol=0, atol=1e-10)
        assert not np.any(G[0])
