"""Saving and loading models (the file format itself is :mod:`fastbp.io`).

A checkpoint holds the architecture (the model's ``get_config``), the flat
parameter buffer, the embedding tables, the optimizer's state and the training
counters, so that ``fb.load(path).fit(...)`` continues where the saved model
stopped.  Version-1 checkpoints (a Sequential with at most one embedding table)
load too.
"""
from __future__ import annotations

import json
import os

import numpy as np

from .. import io
from ..engine.graph import Input
from .base import SIZE_LIMITS, Model
from .sequential import Sequential


def _layer_classes():
    """fastbp's layers and every user Layer subclass defined so far, by class name."""
    from .. import layers
    from ..layers.base import REGISTRY
    classes = {name: cls for name, cls in REGISTRY.items() if not name.startswith("_")}
    classes.update({name: getattr(layers, name) for name in layers.__all__ if name != "Layer"})
    return classes


def _layers_from_config(specs, classes=None):
    classes = classes or _layer_classes()
    out = []
    for spec in specs:
        cls = classes.get(spec.get("class"))
        if cls is None:
            raise ValueError(f"unknown layer class {spec.get('class')!r} in the model config; "
                             f"known: {sorted(classes)} (a Layer subclass of your own is "
                             f"known once its module is imported)")
        out.append(cls.from_config(spec["config"]))
    return out


def model_from_config(config: dict, dtype=None, classes=None) -> Model:
    """A freshly initialised model with the architecture ``config`` describes.
    classes: {name: layer class} to build from (default: fastbp's layers)."""
    dtype = dtype or config["dtype"]
    layers = _layers_from_config(config["layers"], classes)
    if config.get("class", "Sequential") == "Sequential":
        return Sequential(layers, dtype=dtype, seed=config["seed"],
                          checkpoint_every=config.get("checkpoint_every"))
    values = [Input(spec["width"], dtype=spec["dtype"], name=spec["name"],
                    sequence=bool(spec.get("sequence", False))) for spec in config["inputs"]]
    inputs = list(values)
    for call in config["calls"]:
        args = [values[i] for i in call["inputs"]]
        values.append(layers[call["layer"]](args if len(args) > 1 else args[0]))
    return Model(inputs, values[config["output"]], dtype=dtype, seed=config["seed"],
                 checkpoint_every=config.get("checkpoint_every"))


def save_model(model: Model, path, metadata=None) -> None:
    if metadata is not None:
        try:
            metadata = json.loads(json.dumps(metadata, allow_nan=False))
        except (TypeError, ValueError) as e:
            raise TypeError(f"save: metadata must be a JSON document (dicts with str keys, "
                            f"lists, str, finite numbers, bool, None); {e}") from None
        model.metadata = metadata
    meta, arrays = state_of(model)
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        io.write_safetensors(path, _named_tensors(model, arrays),
                             {"format": SAFETENSORS_FORMAT, "fastbp": json.dumps(meta)})
    else:
        io.write_checkpoint(path, meta, arrays)


#: The ``format`` entry of a fastbp safetensors file's metadata.
SAFETENSORS_FORMAT = "fastbp-safetensors-1"
#: Training state in a safetensors file, by checkpoint array name.
_STATE_TENSORS = {"optimizer_state": "optimizer.state", "table_state": "optimizer.table_state",
                  "partial_perm": "fit.partial_perm", "partial_losses": "fit.partial_losses"}


def _named_tensors(model, arrays):
    """A safetensors file's tensors: every layer's parameters by name
    (``layers.<index>.<name>``, its table as ``layers.<index>.E``) for other tools to
    read, and the training state under its own names."""
    out = {}
    for i, layer in enumerate(model.layers):
        for name, view in layer.params.items():
            out[f"layers.{i}.{name}"] = view
        if getattr(layer, "E", None) is not None and layer in model.embeddings:
            out[f"layers.{i}.E"] = layer.E
    for key, name in _STATE_TENSORS.items():
        if key in arrays:
            out[name] = arrays[key]
    return out


def _load_safetensors(path, where):
    """(meta, arrays) of a fastbp safetensors file, the flat buffers assembled from the
    layers' tensors; missing, extra or misshapen tensors are named."""
    tensors, metadata = io.read_safetensors(path)
    if metadata.get("format") != SAFETENSORS_FORMAT or "fastbp" not in metadata:
        raise ValueError(f"{where} is a safetensors file without fastbp's metadata (its "
                         f"__metadata__ has {sorted(metadata)}); fastbp reads the files "
                         f"model.save('....safetensors') writes")
    try:
        meta = json.loads(metadata["fastbp"])
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: its fastbp metadata is not JSON ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("model"), dict):
        raise ValueError(f"{where}: its fastbp metadata holds no model description")
    # a crafted architecture may not ask for more entries than the file has bytes; the
    # tensors are checked one by one below, with their names
    room = os.path.getsize(path)
    token = SIZE_LIMITS.set((room, room))
    try:
        model = model_from_config(meta["model"])
    except (KeyError, TypeError, IndexError, AttributeError, OverflowError, ValueError) as e:
        raise ValueError(f"{where}: damaged model description ({e!r})") from None
    finally:
        SIZE_LIMITS.reset(token)
    expected = _named_tensors(model, {})
    wanted = set(expected) | {n for k, n in _STATE_TENSORS.items()}
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - wanted)
    if missing or extra:
        raise ValueError(f"{where}: the tensors do not match the architecture (missing "
                         f"{missing}, unexpected {extra})")
    for name, view in expected.items():
        t = tensors[name]
        if t.shape != view.shape or t.dtype != view.dtype:
            raise ValueError(f"{where}: tensor {name!r} is {t.shape} {t.dtype}; the "
                             f"architecture needs {view.shape} {view.dtype}")
        view[...] = t
    arrays = {"params": model.params.copy(), "tables": model.tables.copy()}
    for key, name in _STATE_TENSORS.items():
        if name in tensors:
            arrays[key] = tensors[name]
    return meta, arrays


def copy_model(model: Model) -> Model:
    """What a save and a load would give, without the file; the layers are built from
    the model's own classes, so a user's NumPy layers copy too."""
    meta, arrays = state_of(model)
    classes = _layer_classes()
    classes.update({type(layer).__name__: type(layer) for layer in model.layers})
    # restore copies the arrays into the new model's buffers; the metadata goes through
    # JSON as from a file (its own objects, JSON's types)
    return restore(json.loads(json.dumps(meta)), arrays, f"a copy of {model!r}", classes)


def state_of(model: Model) -> tuple[dict, dict]:
    """(JSON-ready metadata, arrays) of a checkpoint of ``model``."""
    plan = model._plan
    meta = {"format": io.FORMAT, "version": io.VERSION, "model": model.get_config(),
            "rng_step": int(model._rng_step[0]), "dropout_seed": int(model._dropout_seed),
            "epoch": int(model.epoch), "shuffle_rng": model._shuffle_rng.bit_generator.state,
            "table_steps": plan.emb_step.tolist(), "user": model.metadata}
    arrays = {"params": model.params, "tables": model.tables}
    if model.optimizer is not None:
        meta["optimizer"] = {"class": type(model.optimizer).__name__,
                             "config": model.optimizer.get_config(),
                             "step": int(model.optimizer.step[0])}
        meta["loss"] = model.loss.name
        meta["fused"] = model.fused
        arrays["optimizer_state"] = model.optimizer.state
        arrays["table_state"] = plan.emb_state
    partial = model._partial
    if partial is not None:  # an epoch Ctrl-C stopped inside: the next fit continues it
        meta["partial_epoch"] = {k: partial[k] for k in ("next", "n", "batch_size", "accumulate")}
        arrays["partial_perm"] = partial["perm"]
        arrays["partial_losses"] = partial["losses"]
    return meta, arrays


def _restore_partial(model, meta, arrays, where):
    spec = meta.get("partial_epoch")
    if spec is None:
        return
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: the checkpoint's partial epoch is {spec!r}")
    counts = {k: _counter(spec, k, where) for k in ("next", "n", "batch_size", "accumulate")}
    perm, losses = arrays.get("partial_perm"), arrays.get("partial_losses")
    n = counts["n"]
    batches = -(-n // max(counts["batch_size"], 1))
    if (perm is None or losses is None or perm.shape != (n,) or perm.dtype.kind not in "iu"
            or not np.array_equal(np.sort(perm), np.arange(n)) or losses.shape != (batches,)
            or not 0 < counts["next"] < batches or counts["batch_size"] < 1
            or counts["accumulate"] < 1 or counts["next"] % counts["accumulate"]):
        raise ValueError(f"{where}: the checkpoint's partial epoch does not hold together")
    model._partial = dict(counts, perm=perm.astype(np.int64), losses=losses.astype(np.float64))


def load(path) -> Model:
    """Load the model saved at ``path`` with ``model.save``; the optimizer state is
    restored too.  A ``.fbp`` checkpoint or a safetensors file (``model.save("m.safetensors")``: the
    layers' weights as named tensors, the config in its metadata), told apart by the
    name's ending or else by their first bytes."""
    path = os.fspath(path)
    if path.endswith(".safetensors") or io.is_safetensors(path):
        meta, arrays = _load_safetensors(path, repr(path))
    else:
        meta, arrays = io.read_checkpoint(path)
    return restore(meta, arrays, repr(path))


def _counter(meta, key, where, default=None):
    value = meta.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ValueError(f"{where}: the checkpoint's {key} is {value!r}; it must be an integer "
                         f"in [0, 2**63)")
    return value


def _finite(arr, name, where):
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{where}: the checkpoint's {name} hold non-finite values")


def restore(meta: dict, arrays: dict, where: str, classes=None) -> Model:
    """The model a checkpoint's (meta, arrays) describe, every field checked; ``where``
    names the source in messages.  Anything a crafted file can make fail comes out as
    a ValueError."""
    try:
        return _restore(meta, arrays, where, classes)
    except ValueError:
        raise
    except Exception as e:  # a crafted config reaching a constructor in an unplanned way
        raise ValueError(f"{where}: damaged checkpoint ({type(e).__name__}: {e})") from None


def _restore(meta, arrays, where, classes):
    from .. import losses, optim
    params = arrays.get("params")
    if params is None or params.ndim != 1:
        raise ValueError(f"{where}: the checkpoint's parameter buffer is missing or not flat")
    tables = arrays.get("embedding" if meta.get("version") == 1 else "tables")
    limits = (params.size, 0 if tables is None else tables.size)
    for name, arr in arrays.items():
        _finite(arr, name, where)
    if not isinstance(meta.get("model"), dict):
        raise ValueError(f"{where}: the checkpoint holds no model description")
    token = SIZE_LIMITS.set(limits)
    try:
        model = model_from_config(meta["model"], classes=classes)
    except (KeyError, TypeError, IndexError, AttributeError, OverflowError) as e:
        raise ValueError(f"{where}: damaged model description in the checkpoint ({e!r})") \
            from None
    finally:
        SIZE_LIMITS.reset(token)
    if params.shape != model.params.shape or params.dtype != model.params.dtype:
        raise ValueError(f"{where}: parameter buffer {params.shape}/{params.dtype} does not match "
                         f"the architecture ({model.params.shape}/{model.params.dtype})")
    model.params[:] = params
    v1 = meta["version"] == 1
    tables = arrays.get("embedding" if v1 else "tables")
    if model.embeddings:
        if tables is None or tables.size != model.tables.size:
            raise ValueError(f"{where}: the embedding tables are missing or have the wrong "
                             f"shape")
        model.tables[:] = tables.reshape(-1)
    _restore_partial(model, meta, arrays, where)
    model._rng_step[0] = _counter(meta, "rng_step", where)
    model._dropout_seed = _counter(meta, "dropout_seed", where)
    model.epoch = _counter(meta, "epoch", where)
    model.metadata = meta.get("user")
    try:
        model._shuffle_rng.bit_generator.state = meta["shuffle_rng"]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{where}: damaged training state in the checkpoint ({e})") from None
    if "optimizer" in meta:
        spec = meta["optimizer"]
        cls = getattr(optim, spec["class"], None)
        if not (isinstance(cls, type) and issubclass(cls, optim.Optimizer)):
            raise ValueError(f"{where}: unknown optimizer {spec['class']!r}")
        model.compile(cls.from_config(spec["config"]), losses.get(meta["loss"]),
                      fused=meta.get("fused", True))
        state = arrays.get("optimizer_state")
        if state is None or state.shape != model.optimizer.state.shape:
            raise ValueError(f"{where}: optimizer state is missing or has the wrong shape")
        model.optimizer.state[...] = state
        model.optimizer.step[0] = _counter(spec, "step", where)
        plan = model._plan
        if plan.trainable_tables():
            saved = arrays.get("embedding_state" if v1 else "table_state")
            if saved is None or saved.size != plan.emb_state.size:
                raise ValueError(f"{where}: the embedding's optimizer state is missing or has "
                                 f"the wrong shape")
            plan.emb_state[:] = saved.reshape(-1)
            steps = [meta.get("embedding_step", 0)] if v1 else meta.get("table_steps", [])
            if not isinstance(steps, list) or len(steps) > plan.emb_step.size:
                raise ValueError(f"{where}: the checkpoint's table steps are {steps!r}")
            steps = [_counter({"table step": t}, "table step", where) for t in steps]
            plan.emb_step[:len(steps)] = np.asarray(steps, dtype=np.int64)
    return model
