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

Submodules (everything public is re-exported here):

- ``vocabulary``: ``Vocabulary``, ``label_vocabulary`` (and the specials ``PAD``, ``UNK``)
- ``windowing``: sentence windows, ``windows``, and their tag ids, ``label_array``
- ``vectors``: pretrained vectors, ``load_vectors`` (``word v1 v2 ...``), ``load_vectors_npy``,
  ``embedding_matrix``
- ``features``: casing and affix features, ``CASINGS``, ``casing_ids``, ``affix_vocabulary``,
  ``affix_ids``
- ``conll``: CoNLL readers, ``read_conllu``, ``read_conll``
- ``scoring``: the conlleval entity-level F1, ``conlleval``
- ``sequences``: sentences as one padded (n, T) array, ``pad_sequences``
- ``tagging``: a trained tagger with its vocabularies, saved and tagging raw text, ``Tagger``
"""
from __future__ import annotations

from .conll import read_conll, read_conllu
from .features import CASINGS, affix_ids, affix_vocabulary, casing_ids
from .scoring import conlleval
from .sequences import pad_sequences
from .tagging import Tagger
from .vectors import embedding_matrix, load_vectors, load_vectors_npy
from .vocabulary import PAD, UNK  # noqa: F401  (public names of fastbp.text, not in __all__)
from .vocabulary import Vocabulary, label_vocabulary
from .windowing import label_array, windows

__all__ = [
    "Vocabulary", "label_vocabulary", "windows", "label_array",
    "load_vectors", "load_vectors_npy", "embedding_matrix",
    "CASINGS", "casing_ids", "affix_vocabulary", "affix_ids",
    "read_conllu", "read_conll", "conlleval", "pad_sequences", "Tagger",
]
