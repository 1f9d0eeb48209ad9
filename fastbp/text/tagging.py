"""A tagger that tags raw text: a trained model with its vocabularies and tag set.

``Tagger(model, vocab, tags, window=2, features=("casing", "suffix"), suffixes=...)``
bundles what turning tokens into the model's inputs needs; ``tagger.save(path)``
stores it in the model's checkpoint (``model.save(path, metadata=...)``), and
``Tagger.load(path)`` or ``fastbp tag path < sentences.txt`` give it back.  A window
model (``window`` set) reads windows of word ids (and of casing and suffix ids, its
inputs named ``words``, ``casing``, ``suffix``); a sequence model (``window=None``)
reads padded sentences.  Words outside the vocabulary map to ``<unk>``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .features import affix_ids, casing_ids
from .sequences import pad_sequences
from .vocabulary import Vocabulary
from .windowing import windows

KIND = "fastbp-tagger"
FEATURES = ("casing", "suffix")


def _vocab_doc(v: Vocabulary) -> dict:
    return {"words": v.words[len(v.specials):], "specials": list(v.specials), "lower": v.lower}


def _vocab_of(doc, what) -> Vocabulary:
    if not isinstance(doc, dict) or set(doc) != {"words", "specials", "lower"}:
        raise ValueError(f"the tagger's {what} vocabulary is damaged: {str(doc)[:80]!r}")
    return Vocabulary(doc["words"], specials=doc["specials"], lower=doc["lower"])


class Tagger:
    """A model and what it needs to tag tokens: see the module docstring.

    Parameters
    ----------
    model : Model or Sequential
        The trained tagger, with one output per tag.
    vocab : Vocabulary
        The word vocabulary the model was trained with.
    tags : Vocabulary
        The tag set (its ids are the model's outputs).
    window : int or None
        w for a window model (inputs of 2w + 1 ids); None for a sequence model.
    features : sequence of str
        The extra inputs the model takes, of ``"casing"`` and ``"suffix"``.
    suffixes : Vocabulary, optional
        The suffix vocabulary, needed with the ``"suffix"`` feature.
    suffix_length : int
        The suffix length that vocabulary was built with.
    """

    def __init__(self, model, vocab: Vocabulary, tags: Vocabulary, window: int | None = 2,
                 features: Sequence[str] = (), suffixes: Vocabulary | None = None,
                 suffix_length: int = 3):
        for name, v in (("vocab", vocab), ("tags", tags)):
            if not isinstance(v, Vocabulary):
                raise TypeError(f"Tagger {name} must be a fastbp.text.Vocabulary, got "
                                f"{type(v).__name__}")
        features = tuple(features)
        unknown = [f for f in features if f not in FEATURES]
        if unknown:
            raise ValueError(f"Tagger features {unknown} are unknown; allowed: {list(FEATURES)}")
        if "suffix" in features and not isinstance(suffixes, Vocabulary):
            raise TypeError("Tagger with the suffix feature needs suffixes=, the suffix "
                            "Vocabulary the model was trained with")
        if window is not None and (isinstance(window, bool) or not isinstance(window, int)
                                   or window < 0):
            raise ValueError(f"Tagger window must be None (a sequence model) or an int >= 0, "
                             f"got {window!r}")
        if model.n_out != len(tags):
            raise ValueError(f"the model has {model.n_out} outputs; the tag set has "
                             f"{len(tags)} tags")
        self.model, self.vocab, self.tags = model, vocab, tags
        self.window, self.features = window, features
        self.suffixes, self.suffix_length = suffixes, int(suffix_length)

    # -- persistence -------------------------------------------------------------------
    def metadata(self) -> dict:
        """The JSON document :meth:`save` keeps with the model: the vocabularies, tag
        set, window and features."""
        doc = {"kind": KIND, "vocab": _vocab_doc(self.vocab), "tags": _vocab_doc(self.tags),
               "window": self.window, "features": list(self.features),
               "suffix_length": self.suffix_length}
        if self.suffixes is not None:
            doc["suffixes"] = _vocab_doc(self.suffixes)
        return doc

    def save(self, path) -> None:
        """Write the model's checkpoint to ``path``, with the vocabularies and tag set in
        its metadata."""
        self.model.save(path, metadata=self.metadata())

    @classmethod
    def from_model(cls, model) -> "Tagger":
        """The tagger of a loaded ``model`` whose metadata :meth:`save` wrote."""
        doc = model.metadata
        if not isinstance(doc, dict) or doc.get("kind") != KIND:
            raise ValueError("this model was not saved as a tagger (its metadata holds no "
                             "vocabularies); save it with fastbp.text.Tagger(...).save(path)")
        suffixes = doc.get("suffixes")
        return cls(model, _vocab_of(doc.get("vocab"), "word"), _vocab_of(doc.get("tags"), "tag"),
                   window=doc.get("window"), features=doc.get("features", ()),
                   suffixes=None if suffixes is None else _vocab_of(suffixes, "suffix"),
                   suffix_length=doc.get("suffix_length", 3))

    @classmethod
    def load(cls, path) -> "Tagger":
        """The tagger saved at ``path`` by :meth:`save`."""
        from ..model import load
        return cls.from_model(load(path))

    # -- tagging -----------------------------------------------------------------------
    def _inputs(self, sentences):
        words = [self.vocab.encode(s) for s in sentences]
        parts = {"words": words}
        if "casing" in self.features:
            parts["casing"] = [casing_ids(s) for s in sentences]
        if "suffix" in self.features:
            parts["suffix"] = [affix_ids(s, self.suffixes, self.suffix_length)
                               for s in sentences]
        if self.window is not None:
            arrays = {k: windows(v, window=self.window) for k, v in parts.items()}
        else:
            arrays = {k: pad_sequences(v) for k, v in parts.items()}
        return arrays if self.features else arrays["words"]

    def tag(self, sentences: Sequence[Sequence[str]], batch_size: int = 1024) -> list:
        """The tags of each sentence's tokens (empty sentences give empty lists), predicted
        ``batch_size`` rows at a time."""
        sentences = [list(s) for s in sentences]
        out = [[] for _ in sentences]
        kept = [i for i, s in enumerate(sentences) if s]
        if not kept:
            return out
        chosen = [sentences[i] for i in kept]
        logits = self.model.predict(self._inputs(chosen), batch_size=batch_size)
        names = self.tags.words
        if self.window is not None:
            ids = logits.argmax(axis=1)
            start = 0
            for i, s in zip(kept, chosen):
                out[i] = [names[t] for t in ids[start:start + len(s)]]
                start += len(s)
        else:
            ids = logits.argmax(axis=2)
            for row, (i, s) in enumerate(zip(kept, chosen)):
                out[i] = [names[t] for t in ids[row, :len(s)]]
        return out
