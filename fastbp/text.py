"""Text utilities for window models (CS224N, seed 000): vocabularies, windows, pretrained
vectors, casing and affix features, CoNLL readers and the conlleval F1.

Pure Python and NumPy.  The usual pipeline for a window tagger::

    sents = list(read_conllu("en_ewt-ud-train.conllu.xz"))         # [(tokens, tags), ...]
    vocab = Vocabulary.build([t for t, _ in sents])                 # <pad>=0, <unk>=1
    tags = label_vocabulary([y for _, y in sents])
    X = windows([vocab.encode(t) for t, _ in sents], window=2)      # (n_tokens, 5) int64
    y = label_array([y for _, y in sents], tags)                    # (n_tokens,) int64
    words, vecs = load_vectors_npy("glove-6b-50d-ewt-subset")
    E, coverage = embedding_matrix(vocab, words, vecs)              # (len(vocab), 50) float32
"""
from __future__ import annotations

import bz2
import collections
import functools
import gzip
import io
import lzma
import os
import unicodedata
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from ._validation import check_dtype, check_float, check_int

__all__ = [
    "Vocabulary", "label_vocabulary", "windows", "label_array",
    "load_vectors", "load_vectors_npy", "embedding_matrix",
    "CASINGS", "casing_ids", "affix_vocabulary", "affix_ids",
    "read_conllu", "read_conll", "conlleval",
]

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


# --------------------------------------------------------------------------- vocabulary

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
    """A vocabulary of tags: no specials, case kept, by descending count then alphabetically."""
    return Vocabulary.build(sentences_labels, lower=False, specials=())


# --------------------------------------------------------------------------- windows

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


# --------------------------------------------------------------------------- pretrained vectors

def _open_text(source, encoding: str = "utf-8"):
    """(file object, whether we opened it); .gz, .xz/.lzma and .bz2 paths are decompressed."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        opener = {".gz": gzip.open, ".xz": lzma.open, ".lzma": lzma.open, ".bz2": bz2.open}.get(
            Path(path).suffix.lower(), open)
        return opener(path, "rt", encoding=encoding), True
    if isinstance(source, (io.RawIOBase, io.BufferedIOBase)):
        return io.TextIOWrapper(source, encoding=encoding), False
    if isinstance(source, (bytes, bytearray)) or not hasattr(source, "__iter__"):
        raise TypeError(f"expected a path or a text file object, got {type(source).__name__}")
    return source, False


def _vocab_filter(vocab) -> set | None:
    if vocab is None:
        return None
    if isinstance(vocab, (str, bytes)) or not isinstance(vocab, Iterable):
        raise TypeError(f"vocab must be a Vocabulary, a set of words or None, got "
                        f"{type(vocab).__name__}")
    words = _check_tokens("vocab", vocab)
    return set(words) | {w.lower() for w in words}


def _parse_vector_block(rests: list[str], linenos: list[int], dim: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        try:
            data = np.fromstring(" ".join(rests), dtype=np.float32, sep=" ")
        except (DeprecationWarning, ValueError):
            data = None
    if data is not None and data.size == len(rests) * dim:
        return data.reshape(len(rests), dim)
    for rest, lineno in zip(rests, linenos):    # slow path, only to say which line is wrong
        fields = rest.split()
        if len(fields) != dim:
            raise ValueError(f"vector line {lineno} has {len(fields)} values, expected {dim} "
                             f"(set by dim=, the header or the first vector line)")
        try:
            np.array(fields, dtype=np.float32)
        except ValueError:
            raise ValueError(f"vector line {lineno} has a value that is not a number: "
                             f"{rest[:80]!r}") from None
    raise ValueError(f"could not parse the vectors of lines {linenos[0]}..{linenos[-1]}")


def load_vectors(path, vocab=None, dim: int | None = None, lower: bool = True,
                 encoding: str = "utf-8") -> tuple[list[str], np.ndarray]:
    """Read word vectors in the common text format (GloVe, fastText .vec, word2vec text).

    One ``word v1 v2 ... vd`` per line; an optional first line ``count dim`` (word2vec and
    fastText) is recognised and skipped.  Paths ending in .gz, .xz or .bz2 are decompressed.

    Parameters
    ----------
    path : str, PathLike or text file object
    vocab : Vocabulary, set of str or None
        If given, only the words in it are kept (compared exact and lower-cased), which saves
        memory for large files.
    dim : int or None
        Expected dimension; None takes it from the header or the first vector line.
    lower : bool
        Lower-case the file's words; where two words collide, the first (in GloVe and word2vec
        files the more frequent) wins.

    Returns
    -------
    words : list of str (n,)
    vectors : float32 array (n, dim)
    """
    if dim is not None:
        dim = check_int("dim", dim, minimum=1)
    keep = _vocab_filter(vocab)
    f, opened = _open_text(path, encoding)
    words: list[str] = []
    blocks: list[np.ndarray] = []
    rests: list[str] = []
    linenos: list[int] = []
    seen: set[str] = set()
    try:
        for lineno, line in enumerate(f, start=1):
            parts = line.split(None, 1)
            if not parts:
                continue
            if lineno == 1 and len(parts) == 2 and parts[0].isdigit() and \
                    parts[1].strip().isdigit():
                header_dim = int(parts[1])
                if dim is not None and dim != header_dim:
                    raise ValueError(f"the header says dim {header_dim}, but dim={dim} was asked")
                dim = header_dim
                continue
            if len(parts) == 1:
                raise ValueError(f"vector line {lineno} holds a word and no values: "
                                 f"{line[:80]!r}")
            if dim is None:
                dim = len(parts[1].split())
            word = parts[0].lower() if lower else parts[0]
            if word in seen or (keep is not None and word not in keep and parts[0] not in keep):
                continue
            seen.add(word)
            words.append(word)
            rests.append(parts[1])
            linenos.append(lineno)
            if len(rests) == 8192:
                blocks.append(_parse_vector_block(rests, linenos, dim))
                rests, linenos = [], []
        if rests:
            blocks.append(_parse_vector_block(rests, linenos, dim))
    finally:
        if opened:
            f.close()
    if dim is None:
        raise ValueError(f"{path!r} holds no vectors (and dim was not given)")
    vectors = np.concatenate(blocks) if blocks else np.empty((0, dim), dtype=np.float32)
    if not np.isfinite(vectors.sum()):
        row = int(np.argwhere(~np.isfinite(vectors))[0, 0])
        raise ValueError(f"the vector of {words[row]!r} holds a NaN or Inf")
    return words, np.ascontiguousarray(vectors)


def load_vectors_npy(folder, vocab=None) -> tuple[list[str], np.ndarray]:
    """Read vectors stored as ``vectors.npy.xz`` (or ``vectors.npy``) plus ``vocab.tsv``.

    This is the format of ``shared/data/glove-6b-50d-ewt-subset``: ``vocab.tsv`` has one
    ``word<TAB>row`` line per vector, in the order of the rows of the array.

    Parameters
    ----------
    folder : str or PathLike
    vocab : Vocabulary, set of str or None
        Keep only these words (compared exact and lower-cased).

    Returns
    -------
    words : list of str (n,)
    vectors : float32 array (n, dim)
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {str(folder)!r}")
    keep = _vocab_filter(vocab)
    with open(folder / "vocab.tsv", encoding="utf-8") as f:
        words = [line.rstrip("\n").rsplit("\t", 1)[0] for line in f if line.strip()]
    if (folder / "vectors.npy.xz").exists():
        with lzma.open(folder / "vectors.npy.xz") as f:
            vectors = np.load(io.BytesIO(f.read()), allow_pickle=False)
    else:
        vectors = np.load(folder / "vectors.npy", allow_pickle=False)
    if vectors.ndim != 2 or vectors.shape[0] != len(words):
        raise ValueError(f"{str(folder)!r}: vocab.tsv has {len(words)} words but the vectors "
                         f"have shape {vectors.shape}")
    if keep is not None:
        rows = [i for i, w in enumerate(words) if w in keep or w.lower() in keep]
        words, vectors = [words[i] for i in rows], vectors[rows]
    return words, np.ascontiguousarray(vectors, dtype=np.float32)


def embedding_matrix(vocab: Vocabulary, words: Sequence[str], vectors, init: str = "normal",
                     scale: float = 0.1, seed: int = 0,
                     dtype: str = "float32") -> tuple[np.ndarray, float]:
    """An embedding table for ``vocab`` from pretrained ``(words, vectors)``.

    A vocabulary word takes the vector of the same pretrained word, else that of its
    lower-cased form (so a cased vocabulary finds uncased GloVe vectors).  Other rows are
    random: ``init="normal"`` draws N(0, scale**2), ``"uniform"`` U(-scale, scale),
    ``"zeros"`` zeros; the draw is the same for a given seed whatever the coverage.  The
    ``<pad>`` row is zeros.

    Returns
    -------
    E : array (len(vocab), dim) of ``dtype``
    coverage : float
        The fraction of the non-special vocabulary entries that found a pretrained vector.
    """
    if not isinstance(vocab, Vocabulary):
        raise TypeError(f"vocab must be a Vocabulary, got {type(vocab).__name__}")
    words = _check_tokens("words", words)
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[0] != len(words) or vectors.dtype.kind != "f":
        raise ValueError(f"vectors must be a float array (len(words)={len(words)}, dim), got "
                         f"shape {vectors.shape} dtype {vectors.dtype}")
    if vectors.size and not np.isfinite(vectors.sum()):
        raise ValueError("vectors hold a NaN or Inf")
    if init not in ("normal", "uniform", "zeros"):
        raise ValueError(f"init must be 'normal', 'uniform' or 'zeros', got {init!r}")
    scale = check_float("scale", scale, low=0.0)
    seed = check_int("seed", seed, minimum=0)
    dt = check_dtype(dtype)
    n, dim = len(vocab), vectors.shape[1]
    rng = np.random.default_rng(seed)
    if init == "normal":
        E = rng.normal(0.0, scale, size=(n, dim))
    elif init == "uniform":
        E = rng.uniform(-scale, scale, size=(n, dim))
    else:
        E = np.zeros((n, dim))
    E = E.astype(dt)
    exact = {w: i for i, w in reversed(list(enumerate(words)))}
    lowered = {w.lower(): i for i, w in reversed(list(enumerate(words)))}
    n_special = len(vocab.specials)
    rows, src = [], []
    for i, w in enumerate(vocab.words[n_special:], start=n_special):
        j = exact.get(w)
        if j is None:
            j = lowered.get(w.lower())
        if j is not None:
            rows.append(i)
            src.append(j)
    E[rows] = vectors[src]
    if vocab.pad_id is not None:
        E[vocab.pad_id] = 0
    coverage = len(rows) / (n - n_special) if n > n_special else 0.0
    return E, coverage


# --------------------------------------------------------------------------- casing and affixes

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
    """
    n = _check_affix_args(n, kind)
    sentences = _check_sentences("sentences", sentences)
    affixes = [[_affix(t, n, kind) for t in _check_tokens(f"sentences[{i}]", s)]
               for i, s in enumerate(sentences)]
    return Vocabulary.build(affixes, min_count=min_count, max_size=max_size)


def affix_ids(tokens: Sequence[str], affix_vocab: Vocabulary, n: int = 3,
              kind: str = "suffix") -> np.ndarray:
    """Ids in ``affix_vocab`` of the tokens' affixes (unknown affixes -> ``<unk>``).

    Returns
    -------
    int64 array (len(tokens),)
    """
    n = _check_affix_args(n, kind)
    if not isinstance(affix_vocab, Vocabulary):
        raise TypeError(f"affix_vocab must be a Vocabulary, got {type(affix_vocab).__name__}")
    tokens = _check_tokens("tokens", tokens)
    return affix_vocab.encode([_affix(t, n, kind) for t in tokens])


# --------------------------------------------------------------------------- readers

_CONLLU_COLUMNS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps",
                   "misc")


def read_conllu(path_or_file, column: str | int = "upos",
                encoding: str = "utf-8") -> Iterator[tuple[list[str], list[str]]]:
    """Sentences of a CoNLL-U file as ``(tokens, tags)`` pairs of lists of str.

    Comment lines (``#``) are skipped, and so are multiword-token ranges (ID ``3-4``) and
    empty nodes (ID ``8.1``): the tokens are the syntactic words, as UD counts them.

    Parameters
    ----------
    path_or_file : str, PathLike (``.xz``, ``.gz``, ``.bz2`` are decompressed) or file object
    column : str or int
        The tag column: a name (``"upos"``, ``"xpos"``, ``"lemma"``, ``"deprel"``, ``"feats"``,
        ...) or a 0-based index of the 10 columns.
    """
    if isinstance(column, str) and column.lower() in _CONLLU_COLUMNS:
        col = _CONLLU_COLUMNS.index(column.lower())
    elif isinstance(column, int) and not isinstance(column, bool) and 0 <= column < 10:
        col = column
    else:
        raise ValueError(f"column must be one of {list(_CONLLU_COLUMNS)} or an index 0..9, got "
                         f"{column!r}")
    f, opened = _open_text(path_or_file, encoding)
    return _conllu_sentences(f, opened, col)


def _conllu_sentences(f, opened: bool, col: int):
    tokens, tags = [], []
    try:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                if tokens:
                    yield tokens, tags
                    tokens, tags = [], []
                continue
            if line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) != 10:
                raise ValueError(f"CoNLL-U line {lineno} has {len(fields)} tab-separated "
                                 f"columns, expected 10: {line[:80]!r}")
            if "-" in fields[0] or "." in fields[0]:
                continue
            tokens.append(fields[1])
            tags.append(fields[col])
        if tokens:
            yield tokens, tags
    finally:
        if opened:
            f.close()


def read_conll(path_or_file, token_col: int = 0, tag_col: int = -1, *,
               empty_token: str = UNK, comments: bool = True,
               encoding: str = "utf-8") -> Iterator[tuple[list[str], list[str]]]:
    """Sentences of a CoNLL-style column file (NER: BTC, WNUT17, UNER, CoNLL-2003).

    A line with a tab is split on tabs, otherwise on whitespace.  Any whitespace-only line
    (WNUT17 train ends sentences with a lone tab) ends a sentence.  Token fields are stripped
    and an empty token becomes ``empty_token`` (BTC has a few).  ``-DOCSTART-`` lines are
    skipped.  With ``comments=True`` a line starting with ``#`` and holding no tab is a comment
    (the ``# sent_id = ...`` lines of UNER), while ``#\\tO`` (a hashtag token) is data; set
    ``comments=False`` for a space-separated file in which ``#`` is a token.

    Parameters
    ----------
    path_or_file : str, PathLike (``.xz``, ``.gz``, ``.bz2`` are decompressed) or file object
    token_col, tag_col : int
        Column indices (negative counts from the end).  UNER ``.iob2`` files: 1 and 2.
    """
    token_col = check_int("token_col", token_col)
    tag_col = check_int("tag_col", tag_col)
    if not isinstance(empty_token, str) or not empty_token.strip():
        raise ValueError(f"empty_token must be a non-blank str, got {empty_token!r}")
    f, opened = _open_text(path_or_file, encoding)
    return _conll_sentences(f, opened, token_col, tag_col, empty_token, comments)


def _conll_sentences(f, opened, token_col, tag_col, empty_token, comments):
    tokens, tags = [], []
    try:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                if tokens:
                    yield tokens, tags
                    tokens, tags = [], []
                continue
            tabbed = "\t" in line
            if comments and not tabbed and line.startswith("#"):
                continue
            fields = line.split("\t") if tabbed else line.split()
            try:
                token, tag = fields[token_col].strip(), fields[tag_col].strip()
            except IndexError:
                raise ValueError(f"line {lineno} has {len(fields)} columns, too few for "
                                 f"token_col={token_col} and tag_col={tag_col}: "
                                 f"{line[:80]!r}") from None
            if token == "-DOCSTART-":
                continue
            if not tag:
                raise ValueError(f"line {lineno} has an empty tag: {line[:80]!r}")
            tokens.append(token or empty_token)
            tags.append(tag)
        if tokens:
            yield tokens, tags
    finally:
        if opened:
            f.close()


# --------------------------------------------------------------------------- conlleval

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
