"""Keep numba's on-disk cache of fastbp's kernels consistent with their sources.

Numba keys a cached function on its own source file's time stamp only, so a
change in a kernel that a cached function *calls* (``engine.train_step``
calls ``dense_forward``, say) would go unnoticed and the stale machine code
would be loaded.  fastbp therefore stamps its cache folder with a hash of
every kernel source, the numba version and the fastbp version; on import,
a folder with another stamp is emptied of its ``*.nbi``/``*.nbc`` files.
"""
from __future__ import annotations

import glob
import hashlib
import os

import numba

_STAMP = "fastbp-kernels.stamp"
_VERSION = "0.1.0"


def _sources() -> list[str]:
    here = os.path.dirname(os.path.abspath(__file__))
    files = sorted(glob.glob(os.path.join(here, "kernels", "*.py")))
    files += sorted(glob.glob(os.path.join(here, "engine", "*.py")))
    files.append(os.path.join(here, "_config.py"))
    return files


def sources_hash() -> str:
    h = hashlib.sha256()
    h.update(f"numba {numba.__version__} fastbp {_VERSION}".encode())
    for path in _sources():
        h.update(os.path.basename(path).encode())
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def kernel_cache_dirs() -> set[str]:
    """The folders numba caches fastbp's kernels in (from the dispatchers themselves)."""
    from .engine import interpreter
    from .kernels import dense
    dirs = set()
    for fn in (interpreter.train_step, dense.dense_forward):
        path = getattr(getattr(fn, "_cache", None), "_cache_path", None)
        if path:
            dirs.add(path)
    return dirs


def clear(dirs=None) -> int:
    """Delete fastbp's cached kernels; returns the number of files removed."""
    removed = 0
    for d in dirs if dirs is not None else kernel_cache_dirs():
        for pattern in ("*.nbi", "*.nbc"):
            for path in glob.glob(os.path.join(d, pattern)):
                try:
                    os.remove(path)
                    removed += 1
                except OSError:
                    pass
    return removed


def ensure_fresh() -> None:
    """Empty the kernel cache when the kernel sources changed since it was written."""
    try:
        digest = sources_hash()
        for d in kernel_cache_dirs():
            stamp = os.path.join(d, _STAMP)
            try:
                with open(stamp) as f:
                    if f.read().strip() == digest:
                        continue
            except OSError:
                pass
            clear([d])
            os.makedirs(d, exist_ok=True)
            tmp = f"{stamp}.{os.getpid()}"
            with open(tmp, "w") as f:
                f.write(digest)
            os.replace(tmp, stamp)
    except OSError:
        # A read-only install: numba falls back to its own cache folder and recompiles.
        pass


def is_cached(dispatcher) -> bool:
    """Whether numba's cache holds compiled code for ``dispatcher`` (an index file; the
    code may still be for other types).  False when it cannot tell."""
    try:
        return os.path.exists(dispatcher._cache._cache_file._index_path)
    except AttributeError:
        return False
