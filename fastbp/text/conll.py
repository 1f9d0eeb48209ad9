"""Readers of CoNLL-U files (UD treebanks) and of CoNLL-style column files (NER)."""
from __future__ import annotations

from collections.abc import Iterator

from .._validation import check_int
from .vectors import _open_text
from .vocabulary import UNK

__all__ = ["read_conllu", "read_conll"]

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
    encoding : str
        The text encoding (UTF-8 by default).
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
    empty_token : str
        What an empty token field becomes (``<unk>`` by default).
    comments : bool
        Whether a ``#`` line holding no tab is a comment (see above).
    encoding : str
        The text encoding (UTF-8 by default).
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
