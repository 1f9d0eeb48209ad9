"""Entity-level precision, recall and F1 of B/I/O tag sequences, as the CoNLL ``conlleval``
script computes them.
"""
from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence

import numpy as np

from .vocabulary import Vocabulary, _check_tokens

__all__ = ["conlleval"]


def _split_tag(tag: str, where: str) -> tuple[str, str]:
    if tag == "O":
        return "O", ""
    prefix, sep, kind = tag.partition("-")
    if prefix not in ("B", "I") or not sep or not kind:
        raise ValueError(f"{where}: tag {tag!r} is not 'O', 'B-<type>' or 'I-<type>'")
    return prefix, kind


def _chunks(tags: Sequence[str], where: str) -> set[tuple[int, int, str]]:
    """Chunks ``(start, end_exclusive, type)`` under conlleval's rules for B/I/O tags: a chunk
    starts at B-X, and at I-X after O or after a tag of another type; it ends before O, B-*
    or a tag of another type.  (This also reads IOB1.)"""
    out = set()
    prev_prefix, prev_type, start = "O", "", None
    for i, tag in enumerate(tags):
        prefix, kind = _split_tag(tag, f"{where}, token {i}")
        if start is not None and (prefix != "I" or kind != prev_type):
            out.add((start, i, prev_type))
            start = None
        if prefix != "O" and (prefix == "B" or prev_prefix == "O" or kind != prev_type):
            start = i
        prev_prefix, prev_type = prefix, kind
    if start is not None:
        out.add((start, len(tags), prev_type))
    return out


def _prf(correct: int, n_pred: int, n_true: int) -> dict:
    p = correct / n_pred if n_pred else 0.0
    r = correct / n_true if n_true else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "n_true": n_true, "n_pred": n_pred,
            "n_correct": correct}


def conlleval(true_tag_seqs, pred_tag_seqs, labels=None) -> dict:
    """Entity-level precision, recall and F1 as the CoNLL ``conlleval`` script computes them.

    A predicted entity counts only if its start, end and type all match a true entity.
    Chunks follow conlleval's rules: ``B-X`` starts one, and so does ``I-X`` after ``O`` or
    after a tag of another type; sentence ends close chunks.  Scores are fractions in [0, 1]
    (conlleval prints percentages); 0 where undefined.

    Parameters
    ----------
    true_tag_seqs, pred_tag_seqs : list of sentences, each a sequence of tags
        Tags are ``"O"``, ``"B-<type>"``, ``"I-<type>"`` (the type may hold hyphens).  One flat
        sequence of str is taken as one sentence.
    labels : Vocabulary, sequence of str or None
        If given, the sequences may hold integer tag ids, decoded through it.

    Returns
    -------
    dict with ``precision``, ``recall``, ``f1``, ``accuracy`` (token level, over exact tags),
    ``n_true``, ``n_pred``, ``n_correct`` (entity counts) and ``per_type``: type -> dict with
    the same entity-level keys, for every type that occurs in either side.
    """
    true_seqs = _tag_sentences("true_tag_seqs", true_tag_seqs, labels)
    pred_seqs = _tag_sentences("pred_tag_seqs", pred_tag_seqs, labels)
    if len(true_seqs) != len(pred_seqs):
        raise ValueError(f"true_tag_seqs has {len(true_seqs)} sentences, pred_tag_seqs "
                         f"{len(pred_seqs)}")
    n_true, n_pred, n_correct = (collections.Counter() for _ in range(3))
    tokens = same = 0
    for i, (t, p) in enumerate(zip(true_seqs, pred_seqs)):
        if len(t) != len(p):
            raise ValueError(f"sentence {i} has {len(t)} true tags and {len(p)} predicted tags")
        ct, cp = _chunks(t, f"true_tag_seqs[{i}]"), _chunks(p, f"pred_tag_seqs[{i}]")
        n_true.update(c[2] for c in ct)
        n_pred.update(c[2] for c in cp)
        n_correct.update(c[2] for c in ct & cp)
        tokens += len(t)
        same += sum(a == b for a, b in zip(t, p))
    result = _prf(sum(n_correct.values()), sum(n_pred.values()), sum(n_true.values()))
    result["accuracy"] = same / tokens if tokens else 0.0
    result["per_type"] = {k: _prf(n_correct[k], n_pred[k], n_true[k])
                          for k in sorted(set(n_true) | set(n_pred))}
    return result


def _tag_sentences(name: str, seqs, labels) -> list[list[str]]:
    if isinstance(seqs, (str, bytes)) or not isinstance(seqs, Iterable):
        raise TypeError(f"{name} must be a list of tag sequences, got {type(seqs).__name__}")
    seqs = list(seqs)
    if seqs and isinstance(seqs[0], str):
        seqs = [seqs]
    if labels is not None:
        names = labels.words if isinstance(labels, Vocabulary) else \
            _check_tokens("labels", labels)
        out = []
        for i, s in enumerate(seqs):
            arr = np.asarray(s)
            if arr.dtype.kind in "iu":
                if arr.size and (arr.min() < 0 or arr.max() >= len(names)):
                    raise ValueError(f"{name}[{i}] holds a tag id outside 0..{len(names) - 1}")
                out.append([names[j] for j in arr.tolist()])
            else:
                out.append(_check_tokens(f"{name}[{i}]", s))
        return out
    return [_check_tokens(f"{name}[{i}]", s) for i, s in enumerate(seqs)]
