"""Data sets for the benchmarks: real MNIST from IDX files, and random workloads.

MNIST is read from the four xz-compressed IDX files described in
``shared/data/mnist/README.md`` (found beside the repository, or wherever
``FASTBP_MNIST_DIR`` points).  Nothing is downloaded.

>>> from benchmarks.datasets import load_mnist
>>> X, y, X_test, y_test = load_mnist()        # doctest: +SKIP
>>> X.shape, X.dtype, y.dtype                  # doctest: +SKIP
((60000, 784), dtype('float32'), dtype('int64'))
"""
from __future__ import annotations

import lzma
import os
import struct

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))

#: where MNIST is looked for, first match wins
MNIST_CANDIDATES = (
    os.path.join(_HERE, os.pardir, os.pardir, "shared", "data", "mnist"),  # checkout beside shared/
    os.path.join(_HERE, os.pardir, "shared", "data", "mnist"),             # shared/ inside the repo
    "/work/shared/data/mnist",
)

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.xz",
    "train_labels": "train-labels-idx1-ubyte.xz",
    "test_images": "t10k-images-idx3-ubyte.xz",
    "test_labels": "t10k-labels-idx1-ubyte.xz",
}

_cache: dict = {}


def read_idx(path: str) -> np.ndarray:
    """The array stored in an IDX file (optionally ``.xz``-compressed), as uint8.

    The header is a big-endian magic number ``0x0000 08 nd`` (``08``: unsigned
    bytes; ``nd``: number of dimensions) followed by ``nd`` big-endian uint32 sizes.
    """
    opener = lzma.open if path.endswith(".xz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (header {raw[:4]!r})")
    nd = raw[3]
    dims = struct.unpack(">" + "I" * nd, raw[4:4 + 4 * nd])
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * nd)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims}, found {data.size} bytes of data")
    return data.reshape(dims)


def mnist_dir(path: str | None = None) -> str:
    """The folder holding the MNIST IDX files; raises FileNotFoundError when there is none."""
    candidates = [path] if path else []
    if os.environ.get("FASTBP_MNIST_DIR"):
        candidates.append(os.environ["FASTBP_MNIST_DIR"])
    candidates.extend(MNIST_CANDIDATES)
    for c in candidates:
        if c and all(os.path.exists(os.path.join(c, f)) for f in MNIST_FILES.values()):
            return os.path.normpath(c)
    raise FileNotFoundError("MNIST IDX files (train-images-idx3-ubyte.xz ...) not found in "
                            f"{candidates}; set FASTBP_MNIST_DIR")


def load_mnist(path: str | None = None, dtype="float32", flatten: bool = True):
    """MNIST as ``(X_train, y_train, X_test, y_test)``.

    X : dtype (60000, 784) and (10000, 784) with pixels scaled to [0, 1]
    (``(n, 28, 28)`` with ``flatten=False``); y : int64 labels 0..9.
    The decompressed arrays are kept in memory for the next call.
    """
    folder = mnist_dir(path)
    key = (folder, np.dtype(dtype).name, flatten)
    if key not in _cache:
        raw = {k: read_idx(os.path.join(folder, f)) for k, f in MNIST_FILES.items()}
        if raw["train_images"].shape != (60000, 28, 28) or raw["test_images"].shape != (10000, 28, 28):
            raise ValueError(f"unexpected MNIST shapes {raw['train_images'].shape}, "
                             f"{raw['test_images'].shape}")
        out = []
        for split in ("train", "test"):
            X = raw[f"{split}_images"].astype(dtype) / np.asarray(255, dtype=dtype)
            if flatten:
                X = X.reshape(X.shape[0], -1)
            out += [np.ascontiguousarray(X), raw[f"{split}_labels"].astype(np.int64)]
        _cache[key] = tuple(out)
    return _cache[key]


def random_regression(n: int, n_in: int, n_out: int, seed: int = 0, dtype="float32"):
    """Standard-normal inputs (n, n_in) and targets (n, n_out), as in the fig. 7.8 program."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, n_in)).astype(dtype),
            rng.standard_normal((n, n_out)).astype(dtype))


def random_classification(n: int, n_in: int, n_classes: int, seed: int = 0, dtype="float32"):
    """Standard-normal inputs (n, n_in) and uniform int64 labels (n,) in [0, n_classes)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, n_in)).astype(dtype),
            rng.integers(0, n_classes, n).astype(np.int64))
