"""Gradient checking by float64 central differences (seed 000).

For each parameter array theta, the numeric derivative of element i is
(L(theta + h e_i) - L(theta - h e_i)) / (2 h).  The error of an array is the
norm-wise relative error ||g_backprop - g_numeric|| / max(||g_backprop||,
||g_numeric||), so that tiny gradient components do not swamp it, and the
function returns the worst over the arrays.
"""
from __future__ import annotations

import numpy as np

from ._validation import check_float, check_int
from .engine import codes as C


def _float64_twin(model):
    """The same model in float64 (gradients must be checked in float64)."""
    from .model import model_from_config
    twin = model_from_config(model.get_config(), dtype="float64")
    twin.params[:] = model.params
    twin.tables[:] = model.tables
    twin.compile(type(model.optimizer).from_config(model.optimizer.get_config()),
                 type(model.loss)(), fused=model.fused)
    return twin


def gradcheck(model, x, y, eps: float = 1e-6, max_per_array: int = 256, seed: int = 0,
              return_details: bool = False):
    """Worst norm-wise relative error between backprop and central differences.

    Parameters
    ----------
    model : a compiled Model or Sequential (a float32 model is checked through a
        float64 copy)
    x, y : one batch (x: an array, or a list/dict for a model of several inputs)
    eps : the finite-difference step h
    max_per_array : arrays with more elements are checked on a random sample of this size
    seed : seeds the choice of that sample
    return_details : also return {"layer.name": error}

    Dropout is off (inference mode) so that the loss is a deterministic function.
    """
    model._require_compiled()
    eps = check_float("eps", eps, low=0.0, low_open=True)
    max_per_array = check_int("max_per_array", max_per_array, 1)
    m = model if model.dtype == np.float64 else _float64_twin(model)
    data, rows = m._data(x, y, "x")
    m._workspace(rows, steps=data.steps)
    m.compute_gradients(x, y)
    analytic = m.grads.copy()
    plan = m._plan
    tables = [(t, layer, m.embedding_gradient(layer).ravel(), _used_ids(plan, t, rows))
              for t, layer in enumerate(m.embeddings) if plan.tables[t, C.TRAINABLE]]
    rng = np.random.default_rng(seed)

    def loss_at():
        return m._driver.loss_only(data, rows)

    def check(flat_params, flat_analytic, indices):
        num = np.empty(indices.shape[0])
        for j, k in enumerate(indices):
            orig = flat_params[k]
            flat_params[k] = orig + eps
            lp = loss_at()
            flat_params[k] = orig - eps
            lm = loss_at()
            flat_params[k] = orig
            num[j] = (lp - lm) / (2 * eps)
        ana = flat_analytic[indices]
        denom = max(np.linalg.norm(ana), np.linalg.norm(num))
        return 0.0 if denom == 0 else float(np.linalg.norm(ana - num) / denom)

    def sample(candidates):
        if candidates.shape[0] <= max_per_array:
            return candidates
        return np.sort(rng.choice(candidates, max_per_array, replace=False))

    details = {}
    for t, layer, dense, used in tables:
        # Only the rows the batch uses have a gradient; check their entries.
        if layer.padding_id is not None:
            used = used[used != layer.padding_id]
        cols = np.arange(layer.dim)
        candidates = (used[:, None] * layer.dim + cols[None, :]).ravel()
        details[f"{layer.index}.{type(layer).__name__}.E"] = check(layer.E.reshape(-1), dense,
                                                                   sample(candidates))
    for layer, offsets in zip(m.layers, plan.layout.param_offsets):
        for name, off in offsets.items():
            size = layer.params[name].size
            idx = off + sample(np.arange(size))
            details[f"{layer.index}.{type(layer).__name__}.{name}"] = check(m.params, analytic,
                                                                            idx)
    worst = max(details.values()) if details else 0.0
    return (worst, details) if return_details else worst


def _used_ids(plan, t, rows):
    """The distinct ids the batch looks up in table t (from the id arena)."""
    ids = [plan.slot(int(plan.operands[plan.nodes[n, C.ARG0], C.VALUE]), rows).ravel()
           for n in plan.table_nodes(t)]
    return np.unique(np.concatenate(ids))
