"""Small data sets that ship inside fastbp, and a deterministic train/test split.

The data files are package data (``fastbp/data/``) read with
:mod:`importlib.resources`, so they work from a wheel, an editable install or
a zip; nothing is downloaded and nothing beyond NumPy is needed.
"""
from __future__ import annotations

import gzip
import numbers
from importlib import resources

import numpy as np

from ._validation import check_dtype, check_int

__all__ = ["load_digits", "train_test_split"]

DIGITS_FILE = "digits.csv.gz"


def load_digits(dtype: str = "float64") -> tuple[np.ndarray, np.ndarray]:
    """The UCI optical handwritten digits: 1,797 images of 8x8 pixels, 10 classes.

    Alpaydin & Kaynak (1998), CC BY 4.0; see ``fastbp/data/DIGITS.md`` for the
    source, the licence and the file format.

    Parameters
    ----------
    dtype : {"float32", "float64"}
        The dtype of ``X``.

    Returns
    -------
    X : float array (1797, 64)
        Pixel values, integers from 0 to 16 stored as floats; row ``i`` is
        image ``i`` in row-major order (``X[i].reshape(8, 8)`` shows it).
    y : int64 array (1797,)
        The digit of each image, 0 to 9.
    """
    dtype = check_dtype(dtype)
    source = resources.files("fastbp") / "data" / DIGITS_FILE
    with source.open("rb") as raw, gzip.open(raw, "rt", encoding="ascii") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape != (1797, 65):
        raise RuntimeError(f"{DIGITS_FILE} is damaged: expected 1797 rows of 65 values, "
                           f"read {table.shape}")
    X = np.ascontiguousarray(table[:, :64], dtype=dtype)
    y = np.ascontiguousarray(table[:, 64])
    return X, y


def train_test_split(X, y, test_size: float | int = 0.2, seed: int = 0,
                     stratify: bool = True):
    """Split (X, y) into a training and a test part, the same way for the same seed.

    Parameters
    ----------
    X : array (n, ...)
    y : array (n, ...)
        Rows of ``X`` and ``y`` stay paired.
    test_size : float in (0, 1) or int
        The fraction of rows (rounded up, as scikit-learn does) or the number
        of rows that go to the test part.
    seed : int
        Seeds the shuffle (``numpy.random.default_rng(seed)``).
    stratify : bool
        True: ``y`` holds class labels (1-d) and every class goes to the test
        part in (as near as whole rows allow) the same proportion as a whole,
        by largest remainders, so the test part has exactly the requested size.
        False: a plain random split.

    Returns
    -------
    X_train, X_test, y_train, y_test : arrays
        Each part in a shuffled order.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim == 0 or y.ndim == 0 or X.shape[0] != y.shape[0]:
        raise ValueError(f"X and y must have the same number of rows, got shapes "
                         f"{X.shape} and {y.shape}")
    n = X.shape[0]
    n_test = _test_count(test_size, n)
    seed = check_int("seed", seed, 0)
    if not isinstance(stratify, (bool, np.bool_)):
        raise TypeError(f"stratify must be a bool, got {stratify!r}")
    rng = np.random.default_rng(seed)
    if stratify:
        if y.ndim != 1:
            raise ValueError(f"stratify=True needs 1-d class labels y, got shape {y.shape}")
        test_idx = _stratified_test_rows(y, n_test, rng)
    else:
        test_idx = rng.permutation(n)[:n_test]
    is_test = np.zeros(n, dtype=bool)
    is_test[test_idx] = True
    train_idx = rng.permutation(np.flatnonzero(~is_test))
    test_idx = rng.permutation(np.flatnonzero(is_test))
    return X[train_idx], X[test_idx], y[train_idx], y[test_idx]


def _test_count(test_size, n: int) -> int:
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real):
        raise TypeError(f"test_size must be a fraction in (0, 1) or a row count, got "
                        f"{test_size!r}")
    if isinstance(test_size, numbers.Integral):
        n_test = int(test_size)
    else:
        if not 0.0 < float(test_size) < 1.0:
            raise ValueError(f"a fractional test_size must lie in (0, 1), got {test_size!r}")
        n_test = int(np.ceil(float(test_size) * n))
    if not 1 <= n_test <= n - 1:
        raise ValueError(f"test_size={test_size!r} gives {n_test} test rows out of {n}; "
                         f"both parts need at least one row")
    return n_test


def _stratified_test_rows(y: np.ndarray, n_test: int, rng: np.random.Generator) -> np.ndarray:
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    exact = counts * (n_test / y.shape[0])
    quota = np.floor(exact).astype(np.int64)
    # Largest remainders get the rows that rounding down left over; ties go to
    # the lower class, so the split depends on nothing but the seed.
    short = n_test - int(quota.sum())
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[:short]] += 1
    picked = []
    for c in range(classes.shape[0]):
        members = np.flatnonzero(inverse == c)
        picked.append(rng.permutation(members)[:quota[c]])
    return np.concatenate(picked)
