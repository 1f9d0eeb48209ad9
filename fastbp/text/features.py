"""Token features: casing classes and affix (suffix or prefix) ids."""
from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable, Sequence

import numpy as np

from .._validation import check_int
from .vocabulary import Vocabulary, _check_sentences, _check_tokens

__all__ = ["CASINGS", "casing_ids", "affix_vocabulary", "affix_ids"]

#: The casing classes of ``casing_ids``, by id.  Id 0 is padding, so ``windows(...,
#: pad_id=0)`` works on casing ids.
CASINGS = ("<pad>", "lower", "upper", "title", "mixed", "digit", "has_digit", "punct", "other")
_CASE_ID = {name: i for i, name in enumerate(CASINGS)}


@functools.lru_cache(maxsize=1 << 16)
def _casing(token: str) -> int:
    cased = [c for c in token if c.isupper() or c.islower()]
    has_digit = any(c.isdigit() for c in token)
    if cased:
        if has_digit:
            return _CASE_ID["has_digit"]
        if all(c.islower() for c in cased):
            return _CASE_ID["lower"]
        if all(c.isupper() for c in cased):
            return _CASE_ID["upper" if len(cased) > 1 else "title"]
        if cased[0].isupper() and all(c.islower() for c in cased[1:]):
            return _CASE_ID["title"]
        return _CASE_ID["mixed"]
    if has_digit:
        return _CASE_ID["digit"]
    if token and all(unicodedata.category(c)[0] in "PS" for c in token):
        return _CASE_ID["punct"]
    return _CASE_ID["other"]


def casing_ids(tokens: Sequence[str]) -> np.ndarray:
    """Casing class of each token, ids into ``CASINGS``.

    Only cased letters (those with an upper/lower form) count as letters:

    ============  ==  ============================================================
    lower          1  letters, all lower-case, no digit: ``the``, ``@paul``, ``don't``
    upper          2  two or more letters, all upper-case, no digit: ``USA``, ``U.S.``
    title          3  first letter upper-case, the others lower: ``Paris``, ``I``
    mixed          4  other mixes of case: ``iPhone``, ``McDonald``
    digit          5  digits and no letters: ``2004``, ``3.14``, ``$100``, ``12:30``
    has_digit      6  digits and letters: ``76ers``, ``2nd``, ``A4``
    punct          7  only punctuation or symbols (Unicode P*, S*): ``.``, ``--``, emoji
    other          8  the rest: empty, whitespace, uncased scripts (``中文``)
    ============  ==  ============================================================

    Returns
    -------
    int64 array (len(tokens),), values in 1..8 (0 is reserved for padding)
    """
    tokens = _check_tokens("tokens", tokens)
    return np.array([_casing(t) for t in tokens], dtype=np.int64)


def _affix(token: str, n: int, kind: str) -> str:
    token = token.lower()
    return token[-n:] if kind == "suffix" else token[:n]


def _check_affix_args(n, kind) -> int:
    if kind not in ("suffix", "prefix"):
        raise ValueError(f"kind must be 'suffix' or 'prefix', got {kind!r}")
    return check_int("n", n, minimum=1)


def affix_vocabulary(sentences: Iterable[Sequence[str]], n: int = 3, kind: str = "suffix",
                     min_count: int = 1, max_size: int | None = None) -> Vocabulary:
    """A vocabulary of the lower-cased ``n``-character suffixes (or prefixes) of the words.

    A token shorter than ``n`` is its own affix.  Specials ``<pad>`` = 0 and ``<unk>`` = 1.

    Parameters
    ----------
    sentences : iterable of sequences of str
        The training sentences' tokens.
    n : int
        The affix length (>= 1).
    kind : {"suffix", "prefix"}
        Which end of the word.
    min_count : int
        Affixes seen fewer times are left out (they map to ``<unk>``).
    max_size : int, optional
        The most entries in the vocabulary, specials included (the least frequent
        affixes are dropped).
    """
    n = _check_affix_args(n, kind)
    sentences = _check_sentences("sentences", sentences)
    affixes = [[_affix(t, n, kind) for t in _check_tokens(f"sentences[{i}]", s)]
               for i, s in enumerate(sentences)]
    return Vocabulary.build(affixes, min_count=min_count, max_size=max_size)


def affix_ids(tokens: Sequence[str], affix_vocab: Vocabulary, n: int = 3,
              kind: str = "suffix") -> np.ndarray:
    """Ids in ``affix_vocab`` of the tokens' affixes (unknown affixes -> ``<unk>``).

    Parameters
    ----------
    tokens : sequence of str
        One sentence's tokens.
    affix_vocab : Vocabulary
        From :func:`affix_vocabulary`.
    n, kind : int, {"suffix", "prefix"}
        The affix length and end, as ``affix_vocab`` was built with.

    Returns
    -------
    int64 array (len(tokens),)
    """
    n = _check_affix_args(n, kind)
    if not isinstance(affix_vocab, Vocabulary):
        raise TypeError(f"affix_vocab must be a Vocabulary, got {type(affix_vocab).__name__}")
    tokens = _check_tokens("tokens", tokens)
    return affix_vocab.encode([_affix(t, n, kind) for t in tokens])
