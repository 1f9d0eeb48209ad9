"""Sentence windows: the ids of the ``2*window+1`` tokens around every token, and the tag ids
of the tokens in the same row order.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from .._validation import check_int
from .vocabulary import Vocabulary, _check_sentences, _check_tokens

__all__ = ["windows", "label_array"]


def windows(sentences_ids: Iterable, window: int = 2, pad_id: int = 0) -> np.ndarray:
    """The ids of the ``2*window+1`` tokens around every token, sentence by sentence.

    Positions beyond a sentence's edges hold ``pad_id``; a window never reaches into the
    neighbouring sentence.  Rows follow the tokens in order (sentence 0 first), the same order
    as ``label_array``.

    Parameters
    ----------
    sentences_ids : list of 1-d integer arrays (or lists), one per sentence
    window : int >= 0
        Tokens on each side of the centre.
    pad_id : int >= 0

    Returns
    -------
    int64 array (n_tokens, 2*window+1)
        Column ``window`` is the token itself.
    """
    window = check_int("window", window, minimum=0)
    pad_id = check_int("pad_id", pad_id, minimum=0)
    flat, lengths = _flatten_ids("sentences_ids", sentences_ids)
    width = 2 * window + 1
    # Lay the sentences out with `window` pads before, between and after them; every window
    # is then a contiguous slice of the padded array.
    sentence = np.repeat(np.arange(lengths.size, dtype=np.int64), lengths)
    position = np.arange(flat.size, dtype=np.int64) + (sentence + 1) * window
    padded = np.full(flat.size + (lengths.size + 1) * window, pad_id, dtype=np.int64)
    padded[position] = flat
    if flat.size == 0:
        return np.empty((0, width), dtype=np.int64)
    return np.ascontiguousarray(
        np.lib.stride_tricks.sliding_window_view(padded, width)[position - window])


def _flatten_ids(name: str, sentences_ids) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(sentences_ids, (str, bytes)) or not isinstance(sentences_ids, Iterable):
        raise TypeError(f"{name} must be a list of 1-d integer arrays, got "
                        f"{type(sentences_ids).__name__}")
    arrays = []
    for i, s in enumerate(sentences_ids):
        a = np.asarray(s)
        if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
            raise TypeError(f"{name}[{i}] must be a 1-d integer array (a sentence's ids), got "
                            f"shape {a.shape} dtype {a.dtype}")
        arrays.append(a.astype(np.int64, copy=False))
    lengths = np.array([a.size for a in arrays], dtype=np.int64)
    flat = np.concatenate(arrays) if arrays else np.empty(0, dtype=np.int64)
    if flat.size and flat.min() < 0:
        raise ValueError(f"{name} holds a negative id ({int(flat.min())}); ids must be >= 0")
    return flat, lengths


def label_array(sentences_labels: Iterable[Sequence[str]], label_vocab) -> np.ndarray:
    """Tag ids of all tokens, flattened in the row order of ``windows``.

    Parameters
    ----------
    sentences_labels : list of list of str
    label_vocab : Vocabulary (see ``label_vocabulary``) or dict str -> int

    Returns
    -------
    int64 array (n_tokens,)
        An unknown tag raises ``ValueError`` (never mapped to ``<unk>``).
    """
    sentences_labels = _check_sentences("sentences_labels", sentences_labels)
    if isinstance(label_vocab, Vocabulary):
        index, lower = label_vocab._index, label_vocab.lower
    elif isinstance(label_vocab, Mapping):
        index, lower = label_vocab, False
    else:
        raise TypeError(f"label_vocab must be a Vocabulary or a dict str -> int, got "
                        f"{type(label_vocab).__name__}")
    out = []
    for i, s in enumerate(sentences_labels):
        s = _check_tokens(f"sentences_labels[{i}]", s)
        try:
            out.extend([index[t.lower() if lower else t] for t in s])
        except KeyError:
            j = next(j for j, t in enumerate(s) if (t.lower() if lower else t) not in index)
            known = sorted(index)
            raise ValueError(f"label {s[j]!r} (sentence {i}, token {j}) is not in the label "
                             f"vocabulary; it has {len(known)} labels: {known[:20]}") from None
    return np.array(out, dtype=np.int64)
