"""A tagger that tags: fastbp.text.Tagger saved with its vocabularies, ``fastbp tag``,
and the other commands on saved models (predict, evaluate, summary, conlleval, cache)."""
from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest

import fastbp as fb
from fastbp import cli
from fastbp import layers as L
from fastbp.text import Tagger, Vocabulary, affix_vocabulary, label_vocabulary

SENTS = [("the cat sat".split(), "DET NOUN VERB".split()),
         ("a dog ran fast".split(), "DET NOUN VERB ADV".split()),
         ("the dog sat".split(), "DET NOUN VERB".split())] * 6


def _window_tagger(features=()):
    vocab = Vocabulary.build([t for t, _ in SENTS])
    tags = label_vocabulary([y for _, y in SENTS])
    suffixes = affix_vocabulary([t for t, _ in SENTS]) if "suffix" in features else None
    w = fb.Input(3, dtype="int64", name="words")
    parts, inputs = [L.WindowEmbedding(len(vocab), 6, window=1)(w)], [w]
    for f, size in (("casing", len(fb.text.CASINGS)),
                    ("suffix", len(suffixes) if suffixes else 0)):
        if f in features:
            x = fb.Input(3, dtype="int64", name=f)
            inputs.append(x)
            parts.append(L.WindowEmbedding(size, 2, window=1)(x))
    h = L.Concatenate()(parts) if len(parts) > 1 else parts[0]
    m = fb.Model(inputs, L.Dense(h.width, len(tags))(h), dtype="float64", seed=0)
    m.compile(fb.optim.Adam(lr=5e-2), "softmax_cross_entropy")
    tagger = Tagger(m, vocab, tags, window=1, features=features, suffixes=suffixes)
    X = tagger._inputs([t for t, _ in SENTS])
    y = fb.text.label_array([y for _, y in SENTS], tags)
    m.fit(X, y, epochs=30, batch_size=8, seed=0)
    return tagger


def _run(argv, stdin=""):
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = io.StringIO(stdin), out, err
    try:
        code = cli.main(argv)
    finally:
        sys.stdin, sys.stdout, sys.stderr = old
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("features", [(), ("casing", "suffix")])
def test_a_saved_tagger_tags_raw_text(tmp_path, features):
    tagger = _window_tagger(features)
    path = tmp_path / "tagger.fbp"
    tagger.save(path)
    back = Tagger.load(path)
    assert back.vocab.words == tagger.vocab.words and back.tags.words == tagger.tags.words
    tagged = back.tag([["the", "cat", "sat"], [], ["a", "zebra", "ran"]])
    assert tagged[:2] == [["DET", "NOUN", "VERB"], []]
    # "zebra" is <unk>: the tags are the model's argmax over those windows
    X = back._inputs([["a", "<unk>", "ran"]])
    assert tagged[2] == [back.tags.word(int(i)) for i in back.model.predict(X).argmax(axis=1)]
    code, out, err = _run(["tag", str(path)], stdin="the dog ran fast\n\nThe cat sat\n")
    assert code == 0, err
    assert out == ("the\tDET\ndog\tNOUN\nran\tVERB\nfast\tADV\n\n\nThe\tDET\ncat\tNOUN\n"
                   "sat\tVERB\n\n")


def test_a_sequence_tagger_round_trips_through_safetensors(tmp_path):
    vocab = Vocabulary.build([t for t, _ in SENTS])
    tags = label_vocabulary([y for _, y in SENTS])
    ids = fb.Input(dtype="int64", sequence=True)
    h = L.Bidirectional(L.LSTM(6, 5))(L.Embedding(len(vocab), 6, padding_id=0)(ids))
    m = fb.Model(ids, L.Dense(10, len(tags))(h), dtype="float64", seed=1)
    m.compile(fb.optim.Adam(lr=5e-2), "softmax_cross_entropy")
    tagger = Tagger(m, vocab, tags, window=None)
    X = tagger._inputs([t for t, _ in SENTS])
    Y = fb.text.pad_sequences([tags.encode(y) for _, y in SENTS], padding_id=-1)
    m.fit(X, Y, epochs=30, batch_size=6, seed=0)
    tagger.save(tmp_path / "t.safetensors")
    back = Tagger.load(tmp_path / "t.safetensors")
    assert back.tag(["a dog sat".split()]) == [["DET", "NOUN", "VERB"]]


def test_a_model_without_tagger_metadata_is_refused(tmp_path):
    m = fb.Sequential([L.Dense(2, 2)])
    m.save(tmp_path / "m.fbp")
    code, _, err = _run(["tag", str(tmp_path / "m.fbp")], stdin="a b\n")
    assert code == 1 and "was not saved as a tagger" in err


def test_metadata_must_be_json(tmp_path):
    m = fb.Sequential([L.Dense(2, 2)])
    with pytest.raises(TypeError, match="metadata must be a JSON document"):
        m.save(tmp_path / "m.fbp", metadata={"x": object()})
    with pytest.raises(TypeError, match="metadata must be a JSON document"):
        m.save(tmp_path / "m.fbp", metadata={"x": float("nan")})
    assert list(tmp_path.iterdir()) == []
    m.save(tmp_path / "m.fbp", metadata={"note": [1, "two"]})
    assert fb.load(tmp_path / "m.fbp").metadata == {"note": [1, "two"]}


def test_predict_evaluate_and_summary_on_a_saved_model(tmp_path):
    m = fb.Sequential([L.Dense(4, 6, activation="relu"), L.Dense(6, 3)], dtype="float64")
    m.compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy")
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((30, 4)), rng.integers(0, 3, 30)
    m.fit(X, y, epochs=2, batch_size=8)
    m.save(tmp_path / "m.fbp")
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    code, out, err = _run(["predict", str(tmp_path / "m.fbp"), str(tmp_path / "X.npy"),
                           str(tmp_path / "p.npy"), "--proba"])
    assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), m.predict_proba(X), rtol=1e-12)
    code, out, err = _run(["evaluate", str(tmp_path / "m.fbp"), str(tmp_path / "X.npy"),
                           str(tmp_path / "y.npy")])
    assert code == 0, err
    assert out.startswith(f"loss {m.evaluate(X, y)['loss']:.6g}")
    code, out, err = _run(["summary", str(tmp_path / "m.fbp")])
    assert code == 0 and "trained: 2 epoch(s), 8 optimizer step(s) of Adam" in out
    np.save(tmp_path / "obj.npy", np.array([{}], dtype=object), allow_pickle=True)
    code, _, err = _run(["predict", str(tmp_path / "m.fbp"), str(tmp_path / "obj.npy"),
                         str(tmp_path / "q.npy")])
    assert code == 1 and "without pickles" in err and not (tmp_path / "q.npy").exists()


def test_conlleval_command(tmp_path):
    (tmp_path / "gold.txt").write_text("John B-PER\nSmith I-PER\nruns O\n\nParis B-LOC\n")
    (tmp_path / "pred.txt").write_text("John B-PER\nSmith I-PER\nruns O\n\nParis B-ORG\n")
    code, out, err = _run(["conlleval", str(tmp_path / "gold.txt"), str(tmp_path / "pred.txt")])
    assert code == 0, err
    assert "entities: 2 gold, 2 predicted, 1 correct; precision 50.00%" in out
    assert "PER: precision 100.00%" in out


def test_cache_show_lists_the_folders():
    code, out, _ = _run(["cache", "show"])
    assert code == 0 and out.strip().split("\n") == fb.cache_dirs()
