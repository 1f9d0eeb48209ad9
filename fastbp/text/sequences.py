"""Sentences as padded id arrays, for the recurrent taggers (``fb.Input(sequence=True)``)."""
from __future__ import annotations

import numbers

import numpy as np


def pad_sequences(sequences, padding_id: int = 0, maxlen: int | None = None,
                  dtype="int64") -> np.ndarray:
    """Right-pad lists of ids (or tag ids) into one (n, T) array.

    sequences : a list of sequences of integers (lists, tuples or 1-d arrays)
    padding_id : what fills the steps after each sequence (0, the ``<pad>`` id of a
        :class:`~fastbp.text.Vocabulary`, for words; -1 for labels, which the loss ignores)
    maxlen : T; None takes the longest sequence.  Longer sequences are refused rather
        than cut (cut them yourself to keep what you choose).
    dtype : the dtype of the result (int64 by default).

    >>> pad_sequences([[5, 3], [7]])
    array([[5, 3],
           [7, 0]])
    """
    if isinstance(sequences, np.ndarray) and (sequences.ndim == 2 or sequences.dtype == object):
        sequences = list(sequences)
    if not isinstance(sequences, (list, tuple)) or not sequences:
        raise TypeError(f"pad_sequences takes a non-empty list of id sequences, got "
                        f"{type(sequences).__name__}")
    if isinstance(padding_id, bool) or not isinstance(padding_id, numbers.Integral):
        raise TypeError(f"padding_id must be an integer, got {padding_id!r}")
    rows = []
    for i, seq in enumerate(sequences):
        a = np.asarray(seq)
        if a.ndim != 1:
            raise ValueError(f"sequence {i} must be 1-d (a list of ids), got shape {a.shape}")
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"sequence {i} must hold integer ids, got dtype {a.dtype}")
        rows.append(a)
    longest = max(r.shape[0] for r in rows)
    if maxlen is None:
        maxlen = longest
    elif isinstance(maxlen, bool) or not isinstance(maxlen, numbers.Integral) or maxlen < 1:
        raise ValueError(f"maxlen must be a positive integer or None, got {maxlen!r}")
    elif longest > maxlen:
        i = next(k for k, r in enumerate(rows) if r.shape[0] > maxlen)
        raise ValueError(f"sequence {i} has {rows[i].shape[0]} ids, more than maxlen={maxlen}")
    out = np.full((len(rows), int(maxlen)), padding_id, dtype=dtype)
    for i, r in enumerate(rows):
        out[i, :r.shape[0]] = r
    return out
