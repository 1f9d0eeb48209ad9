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
import socket
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


_HOST = socket.gethostname().replace(".", "-") or "host"


def _remove_stale(folder: str, prefix: str) -> None:
    """Remove the temporary files of saves to this path whose writer is provably gone:
    a process of this host that no longer exists.  A file of a live process (another
    thread's save included) or of another host is left alone."""
    for stale in glob.glob(os.path.join(folder, glob.escape(prefix) + "*.fastbp-tmp")):
        parts = os.path.basename(stale)[len(prefix):].split(".")
        if len(parts) < 4 or parts[0] != _HOST or not parts[1].isdigit():
            continue
        try:
            os.kill(int(parts[1]), 0)
            continue  # alive (or a reused pid): not provably stale
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError):
            continue
        try:
            os.unlink(stale)
        except OSError:
            pass


def write_checkpoint(path, meta: dict, arrays: dict) -> None:
    """Write ``arrays`` and the JSON document ``meta`` atomically to ``path``."""
    path = os.fspath(path)
    arrays = dict(arrays)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    folder = os.path.dirname(os.path.abspath(path))
    prefix = f".{os.path.basename(path)}."
    _remove_stale(folder, prefix)
    # the writer's host and pid in the name: another save can tell a dead writer's file
    # from one still being written (by another process or thread)
    fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{_HOST}.{os.getpid()}.", suffix=".fastbp-tmp",
                               dir=folder)
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


def _read_entry(z: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> np.ndarray:
    """One .npy entry, its declared size checked against the archive before any
    allocation (a crafted header cannot ask for terabytes)."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ValueError(f"entry {info.filename!r} uses compression method "
                         f"{info.compress_type}")
    if info.file_size > limit * (1 if info.compress_type == zipfile.ZIP_STORED else 1032):
        raise ValueError(f"entry {info.filename!r} claims {info.file_size} bytes, more than "
                         f"the file can hold")
    with z.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"entry {info.filename!r} has .npy version {version}")
        if dtype.hasobject or dtype.kind not in "biuf":
            raise ValueError(f"entry {info.filename!r} holds dtype {dtype}, not numbers")
        count = 1
        for d in shape:
            count *= int(d)
        if count * dtype.itemsize != info.file_size - f.tell():
            raise ValueError(f"entry {info.filename!r} declares {shape} {dtype} "
                             f"({count * dtype.itemsize} bytes) but holds "
                             f"{info.file_size - f.tell()}")
        data = f.read(count * dtype.itemsize)
    arr = np.frombuffer(data, dtype=dtype).copy()
    return arr.reshape(shape, order="F" if fortran else "C")


def read_checkpoint(path) -> tuple[dict, dict]:
    """(meta, arrays) of a checkpoint, read without pickle; ValueError if it is none.

    Every way a damaged archive can fail while it is read (bad headers, CRCs,
    encryption flags, unknown compression, sizes it cannot hold) comes out as a
    ValueError naming the file."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
        size = os.path.getsize(path)
    except OSError as e:
        raise ValueError(f"cannot read checkpoint {path!r}: {e}") from None
    if magic != b"PK\x03\x04":
        raise ValueError(f"{path!r} is not a fastbp checkpoint (not an .npz archive; got the "
                         f"leading bytes {magic!r})")
    try:
        with zipfile.ZipFile(path) as z:
            infos = {info.filename: info for info in z.infolist()}
            if "meta.npy" not in infos or "params.npy" not in infos:
                raise ValueError("missing entries")
            arrays = {}
            for name, info in infos.items():
                if not name.endswith(".npy"):
                    raise ValueError(f"unexpected entry {name!r}")
                arrays[name[:-4]] = _read_entry(z, info, size)
        raw = arrays.pop("meta")
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError("the metadata entry is not a byte string")
        meta = json.loads(raw.tobytes().decode())
    except Exception as e:  # zipfile raises many kinds (RuntimeError, NotImplementedError, ...)
        if isinstance(e, ValueError) and str(e).startswith(repr(path)):
            raise
        raise ValueError(f"{path!r} is not a readable fastbp checkpoint: "
                         f"{type(e).__name__}: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a fastbp checkpoint")
    if meta.get("version") not in VERSIONS or isinstance(meta.get("version"), bool):
        raise ValueError(f"{path!r} has checkpoint version {meta.get('version')!r}; this fastbp "
                         f"reads versions {list(VERSIONS)}")
    return meta, arrays
