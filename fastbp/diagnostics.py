"""Per-layer diagnostics of a network on a batch (seeds 002 and 003).

Seed 002 (figure 7.7) follows the variance of the hidden units through the
forward pass and the variance of the gradients through the backward pass: with
He initialisation both stay flat across 50 ReLU layers, with smaller weights
they vanish and with larger ones they explode.  Seed 003 adds the units that stop
learning: ReLUs that never fire ("dead") and sigmoid/tanh units pinned at
their flat ends ("saturated"), whose derivative is about zero.

:func:`layer_statistics` runs the model's own kernels layer by layer (the
per-layer path, inference mode) on one batch and reports, for each layer:

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

The model's gradient buffer is overwritten (it is scratch between steps); the
parameters are not changed.
"""
from __future__ import annotations

import math

import numpy as np

from .kernels.losses import loss_and_grad
from .layers.dense import Dense
from .threads import parallel_enabled


def layer_statistics(model, x, y) -> list[dict]:
    """A list with one dict of statistics per layer (see the module docstring)."""
    model._require_compiled()
    x = model._inputs(x, "x")
    yf, yi = model._targets(y, x.shape[0])
    model._workspace(x.shape[0])
    stats = []
    h = x
    for layer in model.layers:
        if hasattr(layer, "set_step"):
            layer.set_step(model._dropout_seed, int(model._rng_step[0]))
        h = np.ascontiguousarray(layer.forward(h, False))
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
        stats.append(entry)
    out = h
    g = np.empty_like(out)
    row_loss = np.empty(out.shape[0])
    loss = loss_and_grad(model.loss.code, out, yf, yi, g, row_loss, parallel_enabled())
    for layer in reversed(model.layers[model._first_param_layer:]):
        entry = stats[layer.index]
        entry["output_gradient_variance"] = float(g.var())
        g_next = layer.backward(g)
        if isinstance(layer, Dense):
            delta = layer._ws["delta"][:g.shape[0]]
            entry["gradient_variance"] = float(delta.var())
        else:
            entry["gradient_variance"] = entry["output_gradient_variance"]
        if g_next is None:
            break
        g = np.ascontiguousarray(g_next)
    for entry in stats:
        entry["loss"] = float(loss)
    return stats


def report(model, x, y) -> str:
    """The statistics of :func:`layer_statistics` as a text table."""
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
