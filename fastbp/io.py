"""The checkpoint file format, without pickle (the model side is fastbp.model.persist).

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
#: 1: a Sequential with at most one embedding table; 2: any Model, tables in one buffer.
VERSION = 2
VERSIONS = (1, 2)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_checkpoint(path, meta: dict, arrays: dict) -> None:
    """Write ``arrays`` and the JSON document ``meta`` atomically to ``path``."""
    path = os.fspath(path)
    arrays = dict(arrays)
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


def read_checkpoint(path) -> tuple[dict, dict]:
    """(meta, arrays) of a checkpoint, read without pickle; ValueError if it is none."""
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
            arrays = {name: z[name] for name in files if name != "meta"}
    except (zipfile.BadZipFile, OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError,
            ValueError, KeyError) as e:
        raise ValueError(f"{path!r} is not a readable fastbp checkpoint: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a fastbp checkpoint")
    if meta.get("version") not in VERSIONS:
        raise ValueError(f"{path!r} has checkpoint version {meta.get('version')!r}; this fastbp "
                         f"reads versions {list(VERSIONS)}")
    return meta, arrays
