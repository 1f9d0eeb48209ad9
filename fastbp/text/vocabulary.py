"""Vocabularies: a bijection between words and integer ids (``<pad>`` = 0, ``<unk>`` = 1 by
default), and the vocabulary of tags.

Also the checks of tokenised input (a list of token lists, a list of str tokens) that the other
modules of ``fastbp.text`` share.
"""
from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np

from .._validation import check_int

__all__ = ["Vocabulary", "label_vocabulary"]

PAD, UNK = "<pad>", "<unk>"


def _check_sentences(name: str, sentences) -> list:
    """A list of token lists (a bare str, or a flat list of str, is the usual mistake)."""
    if isinstance(sentences, (str, bytes)) or not isinstance(sentences, Iterable):
        raise TypeError(f"{name} must be a list of token lists, got {type(sentences).__name__}")
    sentences = list(sentences)
    for i, s in enumerate(sentences):
        if isinstance(s, (str, bytes)):
            raise TypeError(f"{name}[{i}] is a {type(s).__name__} ({s[:30]!r}); {name} must be a "
                            f"list of token lists (wrap one sentence as [tokens])")
    return sentences


def _check_tokens(name: str, tokens) -> list:
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Iterable):
        raise TypeError(f"{name} must be a list of str tokens, got {type(tokens).__name__}")
    tokens = list(tokens)
    if not all(isinstance(t, str) for t in tokens):
        j, bad = next((j, t) for j, t in enumerate(tokens) if not isinstance(t, str))
        raise TypeError(f"{name}[{j}] is {bad!r} ({type(bad).__name__}); tokens must be str")
    return tokens


class Vocabulary:
    """A bijection between words and integer ids.

    Ids ``0 .. len(specials)-1`` are the special tokens (``<pad>`` = 0 and ``<unk>`` = 1 by
    default), then the words in the order given.  With ``lower=True`` words are stored and
    looked up lower-cased.  Unknown words map to ``unk_id`` (a ``KeyError`` if the vocabulary
    has no ``<unk>``).  A text token equal to a special (``"<unk>"``) maps to that special.

    Parameters
    ----------
    words : iterable of str
        The ordinary words, in id order (duplicates after lower-casing are dropped).
    specials : tuple of str
        Tokens placed first; ``"<pad>"`` and ``"<unk>"`` give ``pad_id`` and ``unk_id``.
    lower : bool
        Lower-case words on insertion and lookup.
    """

    def __init__(self, words: Iterable[str] = (), *, specials: Sequence[str] = (PAD, UNK),
                 lower: bool = True):
        if not isinstance(lower, bool):
            raise TypeError(f"lower must be a bool, got {lower!r}")
        specials = tuple(_check_tokens("specials", specials))
        if len(set(specials)) != len(specials) or "" in specials:
            raise ValueError(f"specials must be distinct non-empty str, got {specials!r}")
        self.lower = lower
        self.specials = specials
        self._words: list[str] = list(specials)
        self._index: dict[str, int] = {w: i for i, w in enumerate(specials)}
        self.extend(words)

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_count: int = 1, lower: bool = True,
              max_size: int | None = None, specials: Sequence[str] = (PAD, UNK)) -> Vocabulary:
        """Count the words of tokenised sentences and keep the frequent ones.

        Order: specials, then words by descending count, ties alphabetically (deterministic).

        Parameters
        ----------
        sentences : list of list of str
        min_count : int >= 1
            Words seen fewer times are left out (they become ``<unk>``).
        lower : bool
            Count and look up lower-cased words.
        max_size : int or None
            The most entries in the whole vocabulary, specials included (``len(vocab) <=
            max_size``); the least frequent words are dropped.
        specials : tuple of str
        """
        sentences = _check_sentences("sentences", sentences)
        min_count = check_int("min_count", min_count, minimum=1)
        vocab = cls(specials=specials, lower=lower)
        if max_size is not None:
            max_size = check_int("max_size", max_size, minimum=len(vocab.specials))
        counts: collections.Counter = collections.Counter()
        for i, s in enumerate(sentences):
            s = _check_tokens(f"sentences[{i}]", s)
            counts.update(map(str.lower, s) if lower else s)
        for sp in vocab.specials:
            counts.pop(sp, None)
        ranked = sorted((kv for kv in counts.items() if kv[1] >= min_count),
                        key=lambda kv: (-kv[1], kv[0]))
        if max_size is not None:
            ranked = ranked[:max_size - len(vocab.specials)]
        vocab.extend(w for w, _ in ranked)
        return vocab

    def extend(self, words: Iterable[str]) -> int:
        """Append the words not yet present (e.g. those of pretrained vectors), in order.

        Returns the number of words added.  Existing ids never change.
        """
        words = _check_tokens("words", words)
        before = len(self._words)
        for w in words:
            if self.lower:
                w = w.lower()
            if w not in self._index:
                self._index[w] = len(self._words)
                self._words.append(w)
        return len(self._words) - before

    @property
    def pad_id(self) -> int | None:
        """Id of ``<pad>`` (0 by default), None if it is not a special."""
        return self._index.get(PAD) if PAD in self.specials else None

    @property
    def unk_id(self) -> int | None:
        """Id of ``<unk>`` (1 by default), None if it is not a special."""
        return self._index.get(UNK) if UNK in self.specials else None

    @property
    def words(self) -> list[str]:
        """All entries in id order (a copy), specials first."""
        return list(self._words)

    def __len__(self) -> int:
        return len(self._words)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._words))

    def __contains__(self, word) -> bool:
        if not isinstance(word, str):
            return False
        return (word.lower() if self.lower else word) in self._index

    def __getitem__(self, word: str) -> int:
        if not isinstance(word, str):
            raise TypeError(f"a Vocabulary is indexed by a str token, got {word!r} "
                            f"({type(word).__name__}); use vocab.word(id) for the reverse")
        key = word.lower() if self.lower else word
        i = self._index.get(key, self.unk_id)
        if i is None:
            raise KeyError(f"{word!r} is not in the vocabulary, which has no {UNK!r} special")
        return i

    def word(self, id: int) -> str:
        """The word of one id."""
        if isinstance(id, (bool, np.bool_)) or not isinstance(id, (int, np.integer)):
            raise TypeError(f"id must be an integer, got {id!r} ({type(id).__name__})")
        if not 0 <= id < len(self._words):
            raise ValueError(f"id {int(id)} is out of range: the vocabulary has ids "
                             f"0..{len(self._words) - 1}")
        return self._words[id]

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        """Ids of a token list.

        Returns
        -------
        ids : int64 array (len(tokens),)
        """
        tokens = _check_tokens("tokens", tokens)
        get, unk = self._index.get, self.unk_id
        if self.lower:
            ids = [get(t.lower(), unk) for t in tokens]
        else:
            ids = [get(t, unk) for t in tokens]
        if unk is None and None in ids:
            bad = tokens[ids.index(None)]
            raise KeyError(f"{bad!r} is not in the vocabulary, which has no {UNK!r} special")
        return np.array(ids, dtype=np.int64)

    def encode_sentences(self, sentences: Iterable[Sequence[str]]) -> list[np.ndarray]:
        """``[encode(s) for s in sentences]``: one int64 array per sentence."""
        return [self.encode(s) for s in _check_sentences("sentences", sentences)]

    def decode(self, ids) -> list[str]:
        """Words of a 1-d integer array (or list) of ids."""
        arr = np.asarray(ids)
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise TypeError(f"ids must be a 1-d integer array, got shape {arr.shape} dtype "
                            f"{arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= len(self._words)):
            bad = int(arr[(arr < 0) | (arr >= len(self._words))][0])
            raise ValueError(f"id {bad} is out of range: the vocabulary has ids "
                             f"0..{len(self._words) - 1}")
        words = self._words
        return [words[i] for i in arr.tolist()]

    def to_dict(self) -> dict:
        """A JSON-able description; ``Vocabulary.from_dict`` rebuilds it exactly."""
        return {"words": self._words[len(self.specials):], "specials": list(self.specials),
                "lower": self.lower}

    @classmethod
    def from_dict(cls, d: Mapping) -> Vocabulary:
        """The vocabulary that ``d``, a dict from :meth:`to_dict` (keys ``words``,
        ``specials``, ``lower``), describes, with the same ids."""
        if not isinstance(d, Mapping) or set(d) != {"words", "specials", "lower"}:
            keys = sorted(d) if isinstance(d, Mapping) else type(d).__name__
            raise ValueError(f"a vocabulary dict has keys ['lower', 'specials', 'words'], "
                             f"got {keys}")
        vocab = cls(specials=d["specials"], lower=d["lower"])
        words = _check_tokens("words", d["words"])
        if vocab.extend(words) != len(words):
            raise ValueError("the vocabulary dict repeats a word (or a special), so its ids "
                             "cannot be rebuilt")
        return vocab

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        head = ", ".join(repr(w) for w in self._words[:6])
        more = ", ..." if len(self._words) > 6 else ""
        return f"Vocabulary({len(self)} entries: {head}{more}; lower={self.lower})"


def label_vocabulary(sentences_labels: Iterable[Sequence[str]]) -> Vocabulary:
    """A vocabulary of tags: no specials, case kept, by descending count then alphabetically.

    ``sentences_labels`` holds one sequence of tags (str) per sentence."""
    return Vocabulary.build(sentences_labels, lower=False, specials=())
