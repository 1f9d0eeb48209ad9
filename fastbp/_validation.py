"""Checks at the API boundary.  Compiled kernels cannot explain themselves, so every
public entry point converts and checks here, before any kernel runs."""
from __future__ import annotations

import math
import numbers

import numpy as np

DTYPES = {"float32": np.float32, "float64": np.float64}


def check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return dt


def check_int(name: str, value, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


#: Seeds reach the compiled code as int64 (the dropout stream's key): [0, 2**63).
MAX_SEED = 2**63 - 1


def check_seed(name: str, value) -> int:
    """A seed as a Python int in [0, 2**63 - 1]."""
    value = check_int(name, value, 0)
    if value > MAX_SEED:
        raise ValueError(f"{name} must lie in [0, 2**63 - 1] = [0, {MAX_SEED}], got {value}")
    return value


def check_float(name: str, value, low=None, high=None, low_open=False, high_open=False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value!r}")
    return value


def _as_numeric_array(name: str, a) -> np.ndarray:
    if isinstance(a, (str, bytes)) or a is None:
        raise TypeError(f"{name} must be a numeric array, got {type(a).__name__}")
    arr = np.asarray(a)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real, got dtype {arr.dtype}")
    return arr


def _first_nonfinite(arr: np.ndarray) -> str:
    bad = np.argwhere(~np.isfinite(arr))[0]
    return f"{arr[tuple(bad)]!r} at index {tuple(int(i) for i in bad)}"


def _for_engine(arr: np.ndarray) -> np.ndarray:
    """A writable array: numba types a read-only array apart (``readonly array``), so
    one would compile the whole step again; a read-only input is copied once."""
    return arr if arr.flags.writeable else arr.copy()


def _cast_finite(name: str, arr: np.ndarray, dtype) -> np.ndarray:
    """arr as a C-contiguous array of ``dtype``, checked finite after the cast; the
    message shows the value as it was received (1e300 overflows float32 to inf)."""
    with np.errstate(over="ignore", invalid="ignore"):  # refused below, with the value
        out = np.ascontiguousarray(arr, dtype=dtype)
    if np.isfinite(out.sum()) or np.isfinite(out).all():
        return out
    bad = tuple(int(i) for i in np.argwhere(~np.isfinite(out))[0])
    raw = arr[bad]
    if np.isfinite(raw):
        raise ValueError(f"{name} holds {raw.item()!r} at index {bad}, which overflows "
                         f"{np.dtype(dtype).name} (largest finite value "
                         f"{float(np.finfo(dtype).max):.4g})")
    raise ValueError(f"{name} contains a non-finite value: {raw.item()!r} at index {bad}")


def check_weights(name: str, value, shape: tuple, dtype=None) -> np.ndarray:
    """Weights of ``shape``: real, and finite after the cast to ``dtype`` (the model's;
    None: as received)."""
    arr = _as_numeric_array(name, value)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {arr.shape}")
    if arr.dtype == bool:
        raise TypeError(f"{name} must hold numbers, got dtype bool")
    return _cast_finite(name, arr, arr.dtype if dtype is None else dtype)


def _outside(arr: np.ndarray, high: int):
    """The first element of arr outside [0, high), as received, or None."""
    bad = (arr < 0) | (arr >= high)
    if not bad.any():
        return None
    return arr[bad][0].item()


def check_features(name: str, X, n_features: int, dtype: np.dtype) -> np.ndarray:
    """X as a C-contiguous (n, n_features) array of ``dtype``, finite, non-empty."""
    arr = _as_numeric_array(name, X)
    if arr.ndim == 1 and n_features == arr.shape[0]:
        raise ValueError(f"{name} must be 2-d (n_samples, {n_features}); got a 1-d array of "
                         f"length {arr.shape[0]} (use {name}[None, :] for one sample)")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-d (n_samples, {n_features}), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); at least one sample is needed")
    if arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features per sample, the model expects "
                         f"{n_features}")
    return _for_engine(_cast_finite(name, arr, dtype))


def check_labels(name: str, y, n: int, n_classes: int) -> np.ndarray:
    """Integer class labels as int64 (n,), each in [0, n_classes)."""
    arr = _as_numeric_array(name, y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-d integer class labels of length {n}, got shape "
                         f"{arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} labels but X has {n} samples")
    if not np.issubdtype(arr.dtype, np.integer):
        if arr.dtype == bool:
            arr = arr.astype(np.int64)
        else:
            if not np.isfinite(arr).all():
                raise ValueError(f"{name} contains a non-finite label: {_first_nonfinite(arr)}")
            frac = arr != np.round(arr)
            if frac.any():
                raise ValueError(f"{name} must hold integer class labels; got the fractional "
                                 f"value {arr[frac][0]!r}")
    bad = _outside(arr, n_classes)  # before the cast, which would wrap 2**64 - 1 to -1
    if bad is not None:
        raise ValueError(f"{name} holds the label {bad!r}; labels must lie in "
                         f"[0, {n_classes}) for a model with {n_classes} outputs")
    return _for_engine(np.ascontiguousarray(arr, dtype=np.int64))


def check_targets(name: str, y, n: int, n_out: int, dtype: np.dtype, binary: bool) -> np.ndarray:
    """Float targets as a C-contiguous (n, n_out) array; (n,) is accepted when n_out == 1."""
    arr = _as_numeric_array(name, y)
    if arr.ndim == 1 and n_out == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != n_out:
        raise ValueError(f"{name} must have shape (n_samples, {n_out}), got {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} rows but X has {n} samples")
    out = _for_engine(_cast_finite(name, arr, dtype))
    if binary and ((out < 0).any() or (out > 1).any()):
        bad = out[(out < 0) | (out > 1)][0]
        raise ValueError(f"binary cross-entropy targets must lie in [0, 1], got {bad!r}")
    return out


def check_ids(name: str, X, width: int, vocab_size: int) -> np.ndarray:
    """Word-id windows as a C-contiguous int64 (n, width) array, every id in [0, vocab_size)."""
    arr = _as_numeric_array(name, X)
    if arr.dtype == bool:
        raise TypeError(f"{name} must hold integer word ids, got dtype bool")
    if arr.ndim != 2 or arr.shape[1] != width:
        raise ValueError(f"{name} must have shape (n_samples, {width}) (windows of {width} ids), "
                         f"got {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); at least one window is needed")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains a non-finite id: {_first_nonfinite(arr)}")
        frac = arr != np.round(arr)
        if frac.any():
            raise ValueError(f"{name} must hold integer word ids; got the non-integer value "
                             f"{arr[frac][0]!r}")
    bad = _outside(arr, vocab_size)  # before the cast to int64
    if bad is not None:
        raise ValueError(f"{name} holds the id {bad!r}; ids must lie in "
                         f"[0, {vocab_size}) for a vocabulary of {vocab_size} words")
    return _for_engine(np.ascontiguousarray(arr, dtype=np.int64))
