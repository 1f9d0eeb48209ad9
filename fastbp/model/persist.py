"""Saving and loading models (the file format itself is :mod:`fastbp.io`).

A checkpoint holds the architecture (the model's ``get_config``), the flat
parameter buffer, the embedding tables, the optimizer's state and the training
counters, so that ``fb.load(path).fit(...)`` continues where the saved model
stopped.  Version-1 checkpoints (a Sequential with at most one embedding table)
load too.
"""
from __future__ import annotations

import os

import numpy as np

from .. import io
from ..engine.graph import Input
from .base import Model
from .sequential import Sequential


def _layer_classes():
    from .. import layers
    return {name: getattr(layers, name) for name in layers.__all__ if name != "Layer"}


def _layers_from_config(specs):
    classes = _layer_classes()
    out = []
    for spec in specs:
        cls = classes.get(spec.get("class"))
        if cls is None:
            raise ValueError(f"unknown layer class {spec.get('class')!r} in the model config; "
                             f"known: {sorted(classes)}")
        out.append(cls.from_config(spec["config"]))
    return out


def model_from_config(config: dict, dtype=None) -> Model:
    """A freshly initialised model with the architecture ``config`` describes."""
    dtype = dtype or config["dtype"]
    layers = _layers_from_config(config["layers"])
    if config.get("class", "Sequential") == "Sequential":
        return Sequential(layers, dtype=dtype, seed=config["seed"],
                          checkpoint_every=config.get("checkpoint_every"))
    values = [Input(spec["width"], dtype=spec["dtype"], name=spec["name"])
              for spec in config["inputs"]]
    inputs = list(values)
    for call in config["calls"]:
        args = [values[i] for i in call["inputs"]]
        values.append(layers[call["layer"]](args if len(args) > 1 else args[0]))
    return Model(inputs, values[config["output"]], dtype=dtype, seed=config["seed"],
                 checkpoint_every=config.get("checkpoint_every"))


def save_model(model: Model, path) -> None:
    plan = model._plan
    meta = {"format": io.FORMAT, "version": io.VERSION, "model": model.get_config(),
            "rng_step": int(model._rng_step[0]), "dropout_seed": int(model._dropout_seed),
            "epoch": int(model.epoch), "shuffle_rng": model._shuffle_rng.bit_generator.state,
            "table_steps": plan.emb_step.tolist()}
    arrays = {"params": model.params, "tables": model.tables}
    if model.optimizer is not None:
        meta["optimizer"] = {"class": type(model.optimizer).__name__,
                             "config": model.optimizer.get_config(),
                             "step": int(model.optimizer.step[0])}
        meta["loss"] = model.loss.name
        meta["fused"] = model.fused
        arrays["optimizer_state"] = model.optimizer.state
        arrays["table_state"] = plan.emb_state
    io.write_checkpoint(os.fspath(path), meta, arrays)


def load(path) -> Model:
    """Load a model saved with ``model.save``; the optimizer state is restored too."""
    from .. import losses, optim
    path = os.fspath(path)
    meta, arrays = io.read_checkpoint(path)
    try:
        model = model_from_config(meta["model"])
    except (KeyError, TypeError, IndexError) as e:
        raise ValueError(f"{path!r}: damaged model description in the checkpoint ({e!r})") \
            from None
    params = arrays["params"]
    if params.shape != model.params.shape or params.dtype != model.params.dtype:
        raise ValueError(f"{path!r}: parameter buffer {params.shape}/{params.dtype} does not match "
                         f"the architecture ({model.params.shape}/{model.params.dtype})")
    model.params[:] = params
    v1 = meta["version"] == 1
    tables = arrays.get("embedding" if v1 else "tables")
    if model.embeddings:
        if tables is None or tables.size != model.tables.size:
            raise ValueError(f"{path!r}: the embedding tables are missing or have the wrong "
                             f"shape")
        model.tables[:] = tables.reshape(-1)
    try:
        model._rng_step[0] = meta["rng_step"]
        model._dropout_seed = meta["dropout_seed"]
        model.epoch = int(meta["epoch"])
        model._shuffle_rng.bit_generator.state = meta["shuffle_rng"]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path!r}: damaged training state in the checkpoint ({e})") from None
    if "optimizer" in meta:
        spec = meta["optimizer"]
        cls = getattr(optim, spec["class"], None)
        if not (isinstance(cls, type) and issubclass(cls, optim.Optimizer)):
            raise ValueError(f"{path!r}: unknown optimizer {spec['class']!r}")
        model.compile(cls.from_config(spec["config"]), losses.get(meta["loss"]),
                      fused=meta.get("fused", True))
        state = arrays.get("optimizer_state")
        if state is None or state.shape != model.optimizer.state.shape:
            raise ValueError(f"{path!r}: optimizer state is missing or has the wrong shape")
        model.optimizer.state[...] = state
        model.optimizer.step[0] = spec["step"]
        plan = model._plan
        if plan.trainable_tables():
            saved = arrays.get("embedding_state" if v1 else "table_state")
            if saved is None or saved.size != plan.emb_state.size:
                raise ValueError(f"{path!r}: the embedding's optimizer state is missing or has "
                                 f"the wrong shape")
            plan.emb_state[:] = saved.reshape(-1)
            steps = [meta.get("embedding_step", 0)] if v1 else meta.get("table_steps", [])
            plan.emb_step[:len(steps)] = np.asarray(steps, dtype=np.int64)[:plan.emb_step.size]
    return model
