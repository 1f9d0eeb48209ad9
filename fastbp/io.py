"""Saving and loading models without pickle.

A checkpoint is an ``.npz`` archive read with ``allow_pickle=False``: a JSON
document (architecture, optimizer and loss configuration, counters) stored as
a uint8 array, the flat parameter buffer and the optimizer state.  It is
written to a temporary file in the same folder, fsynced, then renamed over the
target, so an interrupted save leaves the previous file intact.
"""
from __future__ import annotations

import glob
import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT = "fastbp-checkpoint"
VERSION = 1


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _layer_classes():
    from .layers import Dense, Dropout, WindowEmbedding
    return {"Dense": Dense, "Dropout": Dropout, "WindowEmbedding": WindowEmbedding}


def model_from_config(config: dict, dtype=None):
    from .model import Sequential
    classes = _layer_classes()
    layers = []
    for spec in config["layers"]:
        cls = classes.get(spec.get("class"))
        if cls is None:
            raise ValueError(f"unknown layer class {spec.get('class')!r} in the model config; "
                             f"known: {sorted(classes)}")
        layers.append(cls.from_config(spec["config"]))
    return Sequential(layers, dtype=dtype or config["dtype"], seed=config["seed"])


def save_model(model, path) -> None:
    path = os.fspath(path)
    meta = {"format": FORMAT, "version": VERSION, "model": model.get_config(),
            "rng_step": int(model._rng_step[0]), "dropout_seed": int(model._dropout_seed),
            "epoch": int(model.epoch), "shuffle_rng": model._shuffle_rng.bit_generator.state}
    arrays = {"params": model.params}
    if model.window is not None:
        arrays["embedding"] = model.window.E
        if model.window.state is not None:
            arrays["embedding_state"] = model.window.state
            meta["embedding_step"] = int(model.window.step[0])
    if model.optimizer is not None:
        from . import optim
        meta["optimizer"] = {"class": type(model.optimizer).__name__,
                             "config": model.optimizer.get_config(),
                             "step": int(model.optimizer.step[0])}
        meta["loss"] = model.loss.name
        meta["fused"] = model.fused
        arrays["optimizer_state"] = model.optimizer.state
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    folder = os.path.dirname(os.path.abspath(path))
    prefix = f".{os.path.basename(path)}."
    for stale in glob.glob(os.path.join(folder, glob.escape(prefix) + "*.fastbp-tmp")):
        try:  # left by a save that was killed before its rename
            os.unlink(stale)
        except OSError:
            pass
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".fastbp-tmp", dir=folder)
    try:
        os.chmod(tmp, 0o644 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def load(path):
    """Load a model saved with ``model.save``; the optimizer state is restored too."""
    from . import optim, losses
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ValueError(f"cannot read checkpoint {path!r}: {e}") from None
    if magic != b"PK\x03\x04":
        raise ValueError(f"{path!r} is not a fastbp checkpoint (not an .npz archive; got the "
                         f"leading bytes {magic!r})")
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            if "meta" not in files or "params" not in files:
                raise ValueError(f"{path!r} is not a fastbp checkpoint (missing entries)")
            meta = json.loads(z["meta"].tobytes().decode())
            params = z["params"]
            state = z["optimizer_state"] if "optimizer_state" in files else None
            embedding = z["embedding"] if "embedding" in files else None
            embedding_state = z["embedding_state"] if "embedding_state" in files else None
    except (zipfile.BadZipFile, OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError,
            ValueError, KeyError) as e:
        raise ValueError(f"{path!r} is not a readable fastbp checkpoint: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a fastbp checkpoint")
    if meta.get("version") != VERSION:
        raise ValueError(f"{path!r} has checkpoint version {meta.get('version')!r}; this fastbp "
                         f"reads version {VERSION}")
    model = model_from_config(meta["model"])
    if params.shape != model.params.shape or params.dtype != model.params.dtype:
        raise ValueError(f"{path!r}: parameter buffer {params.shape}/{params.dtype} does not match "
                         f"the architecture ({model.params.shape}/{model.params.dtype})")
    model.params[:] = params
    if model.window is not None:
        if embedding is None or embedding.shape != model.window.E.shape:
            raise ValueError(f"{path!r}: the embedding table is missing or has the wrong shape")
        model.window.E[...] = embedding
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
        if state is None or state.shape != model.optimizer.state.shape:
            raise ValueError(f"{path!r}: optimizer state is missing or has the wrong shape")
        model.optimizer.state[...] = state
        model.optimizer.step[0] = spec["step"]
        w = model.window
        if w is not None and w.state is not None:
            if embedding_state is None or embedding_state.shape != w.state.shape:
                raise ValueError(f"{path!r}: the embedding's optimizer state is missing or has "
                                 f"the wrong shape")
            w.state[...] = embedding_state
            w.step[0] = meta.get("embedding_step", 0)
    return model
