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
    # a plain int needs no abstract-class test (fit checks one per epoch or step)
    if type(value) is not int and (isinstance(value, bool)
                                   or not isinstance(value, numbers.Integral)):
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


def _refuse_ragged(name: str, a) -> None:
    """A list of sequences of different lengths, with a pointer to pad_sequences."""
    if isinstance(a, (list, tuple)) and a and all(hasattr(r, "__len__") for r in a):
        lengths = {len(r) for r in a}
        if len(lengths) > 1:
            raise ValueError(f"{name} is a ragged list of sequences (lengths {min(lengths)} to "
                             f"{max(lengths)}); pad them into one array first with "
                             f"fb.text.pad_sequences(sequences, padding_id=...)")


def check_sequence(name: str, X, width: int, is_ids: bool, dtype, vocab_size, padding):
    """A batch of right-padded sequences as a C-contiguous (n, T * width) array (each
    row's steps side by side), and each row's length when ``padding`` is given.

    Ids: (n, T) for one id per step, (n, T, width) for more, each in [0, vocab_size);
    the length of a row is the position after its last step that is not all
    ``padding`` (-1: every row is T long); a row of padding alone is refused.
    Float features: (n, T, width), finite.
    """
    _refuse_ragged(name, X)
    arr = _as_numeric_array(name, X)
    shape = "(n_samples, T)" if is_ids and width == 1 else f"(n_samples, T, {width})"
    if is_ids and width == 1 and arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] != width:
        what = "ids" if is_ids else "features"
        raise ValueError(f"{name} must be a {shape} array of {what} (a sequence input), got "
                         f"shape {arr.shape}")
    n, T = arr.shape[0], arr.shape[1]
    if n == 0 or T == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); at least one sequence of at "
                         f"least one step is needed")
    if not is_ids:
        if not np.issubdtype(arr.dtype, np.floating) and arr.dtype != bool and \
                not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{name} must hold float features, got dtype {arr.dtype}")
        return _for_engine(_cast_finite(name, arr, dtype).reshape(n, T * width)), None
    if np.issubdtype(arr.dtype, np.floating) or arr.dtype == bool:
        raise TypeError(f"{name} is an int sequence input (token ids) and must hold integers, "
                        f"got dtype {arr.dtype}")
    bad = _outside(arr, vocab_size)
    if bad is not None:
        raise ValueError(f"{name} holds the id {bad!r}; ids must lie in [0, {vocab_size}) for "
                         f"a vocabulary of {vocab_size} words")
    out = _for_engine(np.ascontiguousarray(arr, dtype=np.int64).reshape(n, T * width))
    if padding is None:
        return out, None
    if padding < 0:
        return out, np.full(n, T, dtype=np.int64)
    real = (arr != padding).any(axis=2)  # (n, T): a step with a token
    lengths = np.where(real.any(axis=1), T - np.argmax(real[:, ::-1], axis=1), 0)
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        raise ValueError(f"{name} row {int(empty[0])} has length 0 (every id is the padding "
                         f"id {padding}); every sequence needs at least one token")
    return out, lengths.astype(np.int64)


def check_sequence_labels(name: str, y, n: int, T: int, lengths, n_classes: int, xname: str):
    """Per-token labels (n, T), -1 where there is no token, as a flat int64 (n * T,)
    array; and per row the number of labels that count (>= 0 within its length)."""
    _refuse_ragged(name, y)
    arr = _as_numeric_array(name, y)
    if arr.shape != (n, T):
        raise ValueError(f"{name} must have the shape of the ids, ({n}, {T}) (one label per "
                         f"step, -1 where there is no token), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if arr.dtype == bool or not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise TypeError(f"{name} must hold integer labels (-1 for no token), got dtype "
                            f"{arr.dtype} with values that are not integers")
    bad = (arr < -1) | (arr >= n_classes)
    if bad.any():
        raise ValueError(f"{name} holds the label {arr[bad][0].item()!r}; labels must lie in "
                         f"[0, {n_classes}) for a model with {n_classes} outputs, or be -1 "
                         f"where there is no token")
    labels = np.ascontiguousarray(arr, dtype=np.int64)
    inside = np.arange(T)[None, :] < lengths[:, None]
    tokens = ((labels >= 0) & inside).sum(axis=1).astype(np.int64)
    return labels.reshape(-1), tokens


def check_sample_weight(name: str, w, n: int) -> np.ndarray:
    """Per-row loss weights as float64 (n,): finite and >= 0."""
    arr = _as_numeric_array(name, w)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must be a 1-d array of one weight per row ({n},), got shape "
                         f"{arr.shape}")
    out = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} holds a non-finite weight: {_first_nonfinite(out)}; weights "
                         f"must be finite and >= 0")
    if (out < 0).any():
        raise ValueError(f"{name} holds the negative weight {out[out < 0][0]!r} at row "
                         f"{int(np.argmax(out < 0))}; weights must be finite and >= 0")
    return out


def check_class_weight(name: str, class_weight, n_classes: int) -> np.ndarray:
    """{class: weight} as float64 (n_classes,), 1 for a class the dict leaves out; every
    key an integer class in [0, n_classes), every weight finite and >= 0."""
    if not isinstance(class_weight, dict):
        raise TypeError(f"{name} must be a dict {{class label: weight}}, got "
                        f"{type(class_weight).__name__}")
    table = np.ones(n_classes, dtype=np.float64)
    for key, value in class_weight.items():
        if isinstance(key, (bool, np.bool_)) or not isinstance(key, (numbers.Integral,)):
            raise TypeError(f"{name} keys must be integer class labels, got {key!r}")
        if not 0 <= int(key) < n_classes:
            raise ValueError(f"{name} names the class {key!r}, which the model does not have; "
                             f"its classes are 0 .. {n_classes - 1}")
        table[int(key)] = check_float(f"{name}[{key!r}]", value, low=0.0)
    return table
