"""Pretrained word vectors: the text format ``word v1 v2 ... vd`` (GloVe, fastText .vec,
word2vec text), the ``vectors.npy.xz`` + ``vocab.tsv`` folders, and the embedding table of a
vocabulary.

Also ``_open_text``, the opener of (possibly compressed) text files that the CoNLL readers share.
"""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from .._validation import check_dtype, check_float, check_int
from .vocabulary import Vocabulary, _check_tokens

__all__ = ["load_vectors", "load_vectors_npy", "embedding_matrix"]


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
    encoding : str
        The text encoding of the file (UTF-8 by default).

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
