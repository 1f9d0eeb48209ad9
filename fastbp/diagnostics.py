"""Per-layer diagnostics of a network on a batch (seeds 002 and 003).

Seed 002 (figure 7.7) follows the variance of the hidden units through the
forward pass and the variance of the gradients through the backward pass: with
He initialisation both stay flat across 50 ReLU layers, with smaller weights
they vanish and with larger ones they explode.  Seed 003 adds the units that stop
learning: ReLUs that never fire ("dead") and sigmoid/tanh units pinned at
their flat ends ("saturated"), whose derivative is about zero.

:func:`layer_statistics` runs the model's own kernels node by node (the
per-layer path, inference mode) on one batch and reports, for each layer call:

``activation_variance``
    variance of the layer's outputs over the batch and the units;
``output_gradient_variance``
    variance of dL/da, the gradient arriving at the layer's output;
``gradient_variance``
    variance of dL/dz = dL/da * f'(z), the gradient at the pre-activations
    (for layers without activation the same as the previous entry);
``dead_fraction``
    (ReLU family) the fraction of units that are <= 0 for every sample;
``saturated_fraction``
    (sigmoid: a < 0.01 or a > 0.99; tanh: |a| > 0.99) the fraction of
    unit activations in the flat region.

Seed 004 explains why a vanilla RNN learns little from far back: dL/dh_k is a
product of one Jacobian per step between k and the loss, each scaled by tanh',
so it shrinks geometrically with the distance; LSTM and GRU keep it alive.
:func:`state_gradients` measures that picture: the norm of dL/dh_t against the
step t for a recurrent layer, on one batch (``examples/rnn_gradients.py`` plots it
for RNN, LSTM and GRU).

The model's gradient buffer is overwritten (it is scratch between steps); the
parameters are not changed.
"""
from __future__ import annotations

import math

import numpy as np

from .engine import codes as C
from .engine import interpreter as I
from .engine.drivers import Layerwise
from .kernels.recurrent import cache_width as _rec_cache_width
from .threads import parallel_enabled


def layer_statistics(model, x, y) -> list[dict]:
    """A list with one dict of statistics per layer call (see the module docstring).

    Parameters
    ----------
    model : a compiled Model or Sequential
        Its loss gives the gradients; its weights are not changed.
    x : array (batch, n_in), or a list or dict of arrays for several inputs
        The batch, as ``fit`` takes it.
    y : array
        The batch's targets, as the model's loss takes them.

    Returns
    -------
    list of dict, in the order of the layer calls, each with ``layer`` (its index),
    ``name``, ``activation`` and the statistics above.
    """
    model._require_compiled()
    if model.checkpoint_every:
        raise ValueError(f"layer_statistics reads every activation, and a model built with "
                         f"checkpoint_every={model.checkpoint_every} keeps only some; build "
                         f"the same model without checkpoint_every to inspect it")
    data, m = model._data(x, y, "x")
    model._workspace(m, steps=data.steps)
    plan = model._plan
    driver = Layerwise(plan)
    driver.forward(data, m, training=False)
    stats, entry_of = [], {}
    for n in range(len(plan.inputs), plan.nodes.shape[0]):
        layer = plan.node_layers[n]
        h = plan.slot(int(plan.nodes[n, C.OUT]), m)
        entry = {"layer": layer.index, "name": type(layer).__name__,
                 "activation": getattr(layer, "activation", None),
                 "width": int(h.shape[1]), "activation_variance": float(h.var()),
                 "activation_mean": float(h.mean())}
        act = entry["activation"]
        if act in ("relu", "leaky_relu"):
            entry["dead_fraction"] = float(np.mean(np.all(h <= 0, axis=0)))
        elif act == "sigmoid":
            entry["saturated_fraction"] = float(np.mean((h < 0.01) | (h > 0.99)))
        elif act == "tanh":
            entry["saturated_fraction"] = float(np.mean(np.abs(h) > 0.99))
        entry_of[n] = entry
        stats.append(entry)
    par = parallel_enabled()
    count = driver.build.batch_count(plan.tape, data, plan.work.order, 0, m)
    targets = driver._targets(data, plan.work.order, 0, m)
    loss = driver.build.output_gradient(plan.tape, plan.work, targets.yf, targets.yi,
                                        targets.w, m, count, par) / count
    I.open_rows(plan.tape, plan.work)
    for n in range(plan.nodes.shape[0] - 1, len(plan.inputs) - 1, -1):
        out_v = int(plan.nodes[n, C.OUT])
        if not plan.needs_grad(out_v):
            continue
        entry = entry_of[n]
        g = plan.slot(out_v, m, grad=True)
        entry["output_gradient_variance"] = float(g.var())
        driver.backward_node(n, m, False, 0, False)
        # a dense node leaves delta = dL/dz in its output's gradient slot
        entry["gradient_variance"] = float(g.var()) if plan.nodes[n, C.KIND] == C.DENSE \
            else entry["output_gradient_variance"]
    for entry in stats:
        entry["loss"] = float(loss)
    return stats


def report(model, x, y) -> str:
    """The statistics of :func:`layer_statistics` for ``model`` on the batch ``x``, ``y``
    (as that function takes them), as a text table, one row per layer call."""
    rows = layer_statistics(model, x, y)
    lines = [f"{'layer':>5} {'name':<16} {'act':<10} {'var(a)':>10} {'var(dL/dz)':>11} "
             f"{'dead':>6} {'saturated':>9}"]
    for r in rows:
        dead = r.get("dead_fraction")
        sat = r.get("saturated_fraction")
        gv = r.get("gradient_variance", math.nan)
        lines.append(f"{r['layer']:>5} {r['name']:<16} {str(r['activation']):<10} "
                     f"{r['activation_variance']:>10.3g} {gv:>11.3g} "
                     f"{'' if dead is None else f'{dead:.2f}':>6} "
                     f"{'' if sat is None else f'{sat:.2f}':>9}")
    return "\n".join(lines)


def state_gradients(model, x, y, layer=None) -> np.ndarray:
    """The mean norm of dL/dh_t at each step t of a recurrent layer, on one batch.

    model : a compiled model with a recurrent layer; its weights are not changed.
    x, y : the batch (inputs as ``fit`` takes them, a sequence input among them) and its
        targets.
    layer : the RNN, LSTM or GRU (one direction of a Bidirectional); None: the model's
        first recurrent layer.
    Returns float64 (T,): entry t averages ||dL/dh_t|| (the whole gradient reaching the
    state of step t: from the layer's output and from the steps after it) over the
    sequences that reach step t (NaN where none does).  Full BPTT is used even when the
    layer was built with ``truncate``.
    """
    from .layers.recurrent import _Recurrent
    model._require_compiled()
    plan = model._plan
    nodes = [n for n in range(len(plan.inputs), plan.nodes.shape[0])
             if plan.nodes[n, C.KIND] == C.RECURRENT
             and (layer is None or plan.node_layers[n] is layer)]
    if not nodes:
        what = "no recurrent layer" if layer is None else f"no call of {layer!r}"
        raise ValueError(f"state_gradients: the model has {what}")
    if layer is not None and not isinstance(layer, _Recurrent):
        raise TypeError(f"state_gradients takes an RNN, LSTM or GRU, got {layer!r}")
    if model.checkpoint_every:
        raise ValueError("state_gradients reads every state, which checkpoint_every drops")
    target = nodes[0]
    data, m = model._data(x, y, "x")
    model._workspace(m, steps=data.steps)
    driver = Layerwise(plan)
    driver.forward(data, m, training=False)
    step_data = driver._targets(data, plan.work.order, 0, m)
    par = parallel_enabled()
    count = driver.build.batch_count(plan.tape, data, plan.work.order, 0, m)
    driver.build.output_gradient(plan.tape, plan.work, step_data.yf, step_data.yi,
                                 step_data.w, m, count, par)
    I.open_rows(plan.tape, plan.work)
    truncate = int(plan.nodes[target, C.TRUNCATE])
    plan.nodes[target, C.TRUNCATE] = 0
    try:
        for n in range(plan.nodes.shape[0] - 1, target - 1, -1):
            driver.backward_node(n, m, False, 0, False)
    finally:
        plan.nodes[target, C.TRUNCATE] = truncate
    T, R = int(plan.work.steps[0]), int(plan.work.steps[2])
    h = int(plan.vtable[plan.nodes[target, C.OUT], C.WIDTH])
    out_v = int(plan.nodes[target, C.OUT])
    if plan.nodes[target, C.LAST]:  # the states' gradients sit in the node's cache
        kept = int(_rec_cache_width(int(plan.nodes[target, C.CELL]), h))
        cap = int(plan.work.steps[1])
        off = int(plan.nodes[target, C.CACHE_OFF]) * m * cap + m * cap * (kept + h)
        dh = plan.work.cache[off:off + R * h].reshape(R, h)
    else:
        dh = plan.slot(out_v, m, grad=True)
    norms = np.linalg.norm(dh.astype(np.float64), axis=1)  # packed rows, sample by sample
    total, count = np.zeros(T), np.zeros(T)
    for i in range(m):
        r0, L = int(plan.work.starts[i]), int(plan.work.lengths[i])
        total[:L] += norms[r0:r0 + L]
        count[:L] += 1
    with np.errstate(invalid="ignore"):
        return total / count


def plot(model, x, y, path):
    """Seed 002's figure 7.7 for this model and batch: the variance of each layer's
    activations (forward) and of its gradient dL/dz (backward) against the layer, on a
    log scale, saved as a PNG (extra ``fastbp[plot]``).  Returns the path.

    ``model``, ``x`` and ``y`` are as for :func:`layer_statistics`; ``path`` is the PNG
    file to write (atomically)."""
    from .plotting import pyplot, save
    rows = layer_statistics(model, x, y)
    plt = pyplot()
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(11, 4.2))
    at = [i + 1 for i in range(len(rows))]
    ax_a.plot(at, [r["activation_variance"] for r in rows], marker="o", markersize=3)
    ax_b.plot(at, [r.get("gradient_variance", math.nan) for r in rows], marker="o",
              markersize=3)
    for ax, title in ((ax_a, "forward: variance of the activations"),
                      (ax_b, "backward: variance of dL/dz")):
        ax.set_yscale("log")
        ax.set_xlabel("layer call")
        ax.set_title(title)
    return save(fig, path)
