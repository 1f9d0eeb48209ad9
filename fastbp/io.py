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
    arrays = dict(arrays)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    write_atomically(path, lambda f: np.savez(f, **arrays))


def write_atomically(path, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it and rename it
    over ``path``: a save that fails or is interrupted leaves the old file (or none)."""
    path = os.fspath(path)
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
            write(f)
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


# -- safetensors -------------------------------------------------------------------------
#: safetensors' dtype names for the dtypes fastbp writes and reads.
ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
             "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_ST_NAMES = {np.dtype(v): k for k, v in ST_DTYPES.items()}
#: The largest JSON header read (safetensors' own readers refuse more than 100 MB).
ST_HEADER_LIMIT = 100_000_000


def write_safetensors(path, tensors: dict, metadata: dict) -> None:
    """Write ``tensors`` (name -> array) and ``metadata`` (str -> str) as a safetensors
    file, atomically: an 8-byte little-endian header length, the JSON header (names,
    dtypes, shapes, byte offsets; padded with spaces to 8 bytes), then the raw
    C-ordered little-endian bytes, in name order."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        if a.dtype not in _ST_NAMES:
            raise TypeError(f"safetensors cannot hold tensor {name!r} of dtype {a.dtype}")
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        header[name] = {"dtype": _ST_NAMES[a.dtype.newbyteorder("=")], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        blobs.append(a)
        offset += a.nbytes
    header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)

    def write(f):
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for a in blobs:
            f.write(a.tobytes())
    write_atomically(path, write)


def is_safetensors(path) -> bool:
    """Whether the file starts as a safetensors file does (a header length, then '{')."""
    try:
        with open(os.fspath(path), "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 1


def read_safetensors(path) -> tuple[dict, dict]:
    """(tensors, metadata) of a safetensors file; ValueError naming the file for anything
    that does not hold together (sizes, offsets, dtypes, JSON)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"cannot read {path!r}: {e}") from None

    def bad(why):
        return ValueError(f"{path!r} is not a readable safetensors file: {why}")
    if len(data) < 8:
        raise bad(f"{len(data)} bytes, fewer than the 8 of the header length")
    n = int.from_bytes(data[:8], "little")
    if n > ST_HEADER_LIMIT or 8 + n > len(data):
        raise bad(f"a header of {n} bytes in a file of {len(data)}")
    try:
        header = json.loads(data[8:8 + n].decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"its header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise bad("its header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise bad("its __metadata__ is not a map of strings to strings")
    buffer = memoryview(data)[8 + n:]
    tensors, spans = {}, []
    for name, spec in header.items():
        if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"tensor {name!r} is described by {spec!r}")
        dtype, shape, span = spec["dtype"], spec["shape"], spec["data_offsets"]
        if dtype not in ST_DTYPES:
            raise bad(f"tensor {name!r} has dtype {dtype!r}; fastbp reads {sorted(ST_DTYPES)}")
        if (not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool)
                                                   and d >= 0 for d in shape)):
            raise bad(f"tensor {name!r} has shape {shape!r}")
        if (not isinstance(span, list) or len(span) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in span)
                or not 0 <= span[0] <= span[1] <= len(buffer)):
            raise bad(f"tensor {name!r} has data_offsets {span!r} in a buffer of "
                      f"{len(buffer)} bytes")
        dt = np.dtype(ST_DTYPES[dtype]).newbyteorder("<")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if count * dt.itemsize != span[1] - span[0]:
            raise bad(f"tensor {name!r} of shape {shape} {dtype} needs {count * dt.itemsize} "
                      f"bytes; its offsets hold {span[1] - span[0]}")
        spans.append((span[0], span[1], name))
        tensors[name] = np.frombuffer(buffer[span[0]:span[1]], dtype=dt).astype(
            dt.newbyteorder("="), copy=True).reshape(shape)
    spans.sort()
    for (_, end, a), (begin, _, b) in zip(spans, spans[1:]):
        if begin < end:
            raise bad(f"tensors {a!r} and {b!r} overlap")
    return tensors, metadata


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
