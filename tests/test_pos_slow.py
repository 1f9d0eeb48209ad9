"""The real POS tagger (issue 5): one epoch on UD English EWT reaches 90% dev accuracy.
Marked slow (about a minute); run with ``pytest -m slow``."""
from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data"))


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(os.path.join(DATA, "ud-english-ewt")),
                    reason="needs ../shared/data (UD English EWT and the GloVe subset)")
def test_pos_tagger_one_epoch_reaches_90_percent_on_dev():
    sys.path.insert(0, os.path.join(HERE, "..", "examples"))
    try:
        import pos_tagger
    finally:
        sys.path.pop(0)
    arrays, vocab, tags, weights, _ = pos_tagger.load(DATA)
    (Xtr, ytr), (Xdv, ydv) = arrays["train"], arrays["dev"]
    model = pos_tagger.build_model(len(vocab), len(tags), weights, seed=0)
    model.fit(Xtr, ytr, epochs=1, batch_size=64, seed=0)
    acc = model.evaluate(Xdv, ydv)["accuracy"]
    assert acc >= 0.90, f"dev accuracy after one epoch: {acc:.4f}"
