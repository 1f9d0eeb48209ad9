"""Tests of fastbp.text: vocabularies, windows, pretrained vectors, casing, readers, conlleval.

Tests that read the shared data sets skip when ``../shared/data`` (from the repository root)
is missing; the expected counts are those of each data set's README.md.
"""
from __future__ import annotations

import collections
import gzip
import io
import json
import lzma
from pathlib import Path

import numpy as np
import pytest

from fastbp import text
from fastbp.text import (CASINGS, Vocabulary, affix_ids, affix_vocabulary, casing_ids,
                         conlleval, embedding_matrix, label_array, label_vocabulary,
                         load_vectors, load_vectors_npy, read_conll, read_conllu, windows)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data folder {DATA} missing")


# --------------------------------------------------------------------------- naive twins

def naive_windows(sentences, window, pad_id):
    rows = []
    for s in sentences:
        for i in range(len(s)):
            rows.append([s[j] if 0 <= j < len(s) else pad_id
                         for j in range(i - window, i + window + 1)])
    return np.array(rows, dtype=np.int64).reshape(len(rows), 2 * window + 1)


def perl_conlleval(true_seqs, pred_seqs):
    """A line-by-line port of the state machine of conlleval.pl (2004-01-26).  Sentence
    boundaries are fed as the script's boundary lines (both tags O)."""
    def split(tag):
        if "-" in tag:
            a, b = tag.split("-", 1)
            return a, b
        return tag, ""

    def end_of_chunk(pt, t, ptype, typ):
        end = (pt, t) in {("B", "B"), ("B", "O"), ("I", "B"), ("I", "O"),
                          ("E", "E"), ("E", "I"), ("E", "O")}
        if pt != "O" and pt != "." and ptype != typ:
            end = True
        return end or pt in ("[", "]")

    def start_of_chunk(pt, t, ptype, typ):
        start = (pt, t) in {("B", "B"), ("I", "B"), ("O", "B"), ("O", "I"),
                            ("E", "E"), ("E", "I"), ("O", "E")}
        if t != "O" and t != "." and ptype != typ:
            start = True
        return start or t in ("[", "]")

    lines = []
    for ts, ps in zip(true_seqs, pred_seqs):
        lines.extend(zip(ts, ps))
        lines.append(None)
    correct_chunk, found_correct, found_guessed = (collections.Counter() for _ in range(3))
    in_correct = False
    last_c, last_g, last_ct, last_gt = "O", "O", "", ""
    for line in lines:
        (c, ct), (g, gt) = (("O", ""), ("O", "")) if line is None else map(split, line)
        end_c = end_of_chunk(last_c, c, last_ct, ct)
        end_g = end_of_chunk(last_g, g, last_gt, gt)
        start_c = start_of_chunk(last_c, c, last_ct, ct)
        start_g = start_of_chunk(last_g, g, last_gt, gt)
        if in_correct:
            if end_c and end_g and last_gt == last_ct:
                in_correct = False
                correct_chunk[last_ct] += 1
            elif end_c != end_g or gt != ct:
                in_correct = False
        if start_c and start_g and gt == ct:
            in_correct = True
        if start_c:
            found_correct[ct] += 1
        if start_g:
            found_guessed[gt] += 1
        last_c, last_g, last_ct, last_gt = c, g, ct, gt
    if in_correct:
        correct_chunk[last_ct] += 1
    return correct_chunk, found_correct, found_guessed


def random_tags(rng, n, types=("PER", "LOC", "creative-work")):
    tags = ["O"] + [f"{p}-{t}" for p in "BI" for t in types]
    return [str(t) for t in rng.choice(tags, size=n, p=None)]


# --------------------------------------------------------------------------- Vocabulary

SENTS = [["b", "a", "c", "a"], ["C", "b", "d"], ["the", "The", "THE"]]


def test_vocab_specials_and_order():
    v = Vocabulary.build(SENTS)
    assert v.pad_id == 0 and v.unk_id == 1
    # the: 3; a, b, c: 2 (alphabetical among ties); d: 1
    assert v.words == ["<pad>", "<unk>", "the", "a", "b", "c", "d"]
    assert len(v) == 7 and list(v) == v.words
    assert v["THE"] == 2 and v["C"] == 5 and "D" in v and "zz" not in v
    assert v["zz"] == v.unk_id
    assert v.word(0) == "<pad>" and v.word(np.int64(3)) == "a"


def test_vocab_min_count_max_size_cased():
    assert Vocabulary.build(SENTS, min_count=2).words == ["<pad>", "<unk>", "the", "a", "b", "c"]
    assert Vocabulary.build(SENTS, max_size=4).words == ["<pad>", "<unk>", "the", "a"]
    cased = Vocabulary.build(SENTS, lower=False)
    assert cased.words == ["<pad>", "<unk>", "a", "b", "C", "THE", "The", "c", "d", "the"]
    assert cased["c"] != cased["C"] and cased["tHe"] == cased.unk_id


def test_vocab_build_is_deterministic_and_skips_specials_in_text():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(50)]
    sents = [list(rng.choice(words, size=rng.integers(1, 20))) for _ in range(100)]
    v1 = Vocabulary.build(sents)
    v2 = Vocabulary.build(list(reversed([list(reversed(s)) for s in sents])))
    assert v1 == v2
    v = Vocabulary.build([["<unk>", "<PAD>", "x"]])
    assert v.words == ["<pad>", "<unk>", "x"]
    np.testing.assert_array_equal(v.encode(["<unk>", "<PAD>", "x"]), [1, 0, 2])


def test_vocab_encode_decode():
    v = Vocabulary.build(SENTS)
    ids = v.encode(["The", "a", "unseen", "D"])
    assert ids.dtype == np.int64 and ids.shape == (4,)
    np.testing.assert_array_equal(ids, [2, 3, 1, 6])
    assert v.decode(ids) == ["the", "a", "<unk>", "d"]
    assert v.decode([]) == [] and v.encode([]).shape == (0,)
    enc = v.encode_sentences(SENTS)
    assert [e.tolist() for e in enc] == [[4, 3, 5, 3], [5, 4, 6], [2, 2, 2]]


def test_vocab_dict_round_trip_and_extend():
    v = Vocabulary.build(SENTS)
    d = json.loads(json.dumps(v.to_dict()))
    w = Vocabulary.from_dict(d)
    assert w == v and w.words == v.words and w.lower == v.lower
    before = v.words
    assert v.extend(["A", "new", "NEW", "other"]) == 2   # "a" exists; "new" once
    assert v.words[:len(before)] == before
    assert v["new"] == len(before) and v["other"] == len(before) + 1
    assert w != v
    with pytest.raises(ValueError, match="repeats"):
        Vocabulary.from_dict({"words": ["a", "a"], "specials": ["<pad>"], "lower": True})
    with pytest.raises(ValueError, match="keys"):
        Vocabulary.from_dict({"words": []})


def test_vocab_without_specials():
    v = Vocabulary(["x", "y"], specials=(), lower=False)
    assert v.pad_id is None and v.unk_id is None and v["y"] == 1
    with pytest.raises(KeyError, match="no '<unk>'"):
        v["z"]
    with pytest.raises(KeyError, match="'z'"):
        v.encode(["x", "z"])


def test_vocab_bad_input():
    with pytest.raises(TypeError, match=r"sentences\[0\]\[1\] is 3 \(int\)"):
        Vocabulary.build([["a", 3]])
    with pytest.raises(TypeError, match="list of token lists"):
        Vocabulary.build(["a", "b"])
    with pytest.raises(TypeError, match="list of token lists"):
        Vocabulary.build("a b")
    with pytest.raises(ValueError, match="min_count must be >= 1, got 0"):
        Vocabulary.build(SENTS, min_count=0)
    with pytest.raises(TypeError, match="min_count must be an integer"):
        Vocabulary.build(SENTS, min_count=1.5)
    with pytest.raises(ValueError, match="max_size must be >= 2, got 1"):
        Vocabulary.build(SENTS, max_size=1)
    with pytest.raises(ValueError, match="distinct"):
        Vocabulary(specials=("<pad>", "<pad>"))
    with pytest.raises(TypeError, match="lower must be a bool"):
        Vocabulary(lower="yes")
    v = Vocabulary.build(SENTS)
    with pytest.raises(TypeError, match="indexed by a str"):
        v[3]
    with pytest.raises(ValueError, match=r"id 7 is out of range.*0\.\.6"):
        v.word(7)
    with pytest.raises(ValueError, match="id -1 is out of range"):
        v.decode([0, -1])
    with pytest.raises(TypeError, match="1-d integer"):
        v.decode([0.5])
    with pytest.raises(TypeError, match=r"tokens\[1\] is None"):
        v.encode(["a", None])


# --------------------------------------------------------------------------- windows

def test_windows_sentence_edges():
    X = windows([[5, 6, 7], [8]], window=2, pad_id=0)
    assert X.dtype == np.int64 and X.flags.c_contiguous
    np.testing.assert_array_equal(X, [[0, 0, 5, 6, 7],
                                      [0, 5, 6, 7, 0],
                                      [5, 6, 7, 0, 0],
                                      [0, 0, 8, 0, 0]])   # never crosses into the next sentence


def test_windows_larger_than_sentence_and_window_zero():
    np.testing.assert_array_equal(windows([[3, 4]], window=3, pad_id=9),
                                  [[9, 9, 9, 3, 4, 9, 9], [9, 9, 3, 4, 9, 9, 9]])
    np.testing.assert_array_equal(windows([[3, 4], [5]], window=0), [[3], [4], [5]])
    assert windows([[1]], window=1).tolist() == [[0, 1, 0]]


def test_windows_empty():
    assert windows([], window=2).shape == (0, 5)
    np.testing.assert_array_equal(windows([[], [4], []], window=1), [[0, 4, 0]])


@pytest.mark.parametrize("seed", range(6))
def test_windows_match_naive_loop(seed):
    rng = np.random.default_rng(seed)
    window = int(rng.integers(0, 5))
    pad_id = int(rng.integers(0, 3))
    sents = [rng.integers(0, 1000, size=int(rng.integers(0, 12))).astype(rng.choice(
        [np.int32, np.int64, np.uint16])) for _ in range(int(rng.integers(1, 60)))]
    np.testing.assert_array_equal(windows(sents, window, pad_id),
                                  naive_windows(sents, window, pad_id))


def test_windows_bad_input():
    with pytest.raises(ValueError, match="window must be >= 0, got -1"):
        windows([[1]], window=-1)
    with pytest.raises(TypeError, match="window must be an integer"):
        windows([[1]], window=2.0)
    with pytest.raises(TypeError, match=r"sentences_ids\[1\] must be a 1-d integer array.*float"):
        windows([[1], [0.5]])
    with pytest.raises(TypeError, match=r"shape \(1, 2\)"):
        windows([np.zeros((1, 2), dtype=np.int64)])
    with pytest.raises(ValueError, match="negative id"):
        windows([[1, -2]])
    with pytest.raises(ValueError, match="pad_id must be >= 0"):
        windows([[1]], pad_id=-1)


def test_label_array_follows_window_rows():
    tags = [["DET", "NOUN"], [], ["VERB"], ["NOUN", "NOUN"]]
    lv = label_vocabulary(tags)
    assert lv.words == ["NOUN", "DET", "VERB"] and lv.pad_id is None
    y = label_array(tags, lv)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, [1, 0, 2, 0, 0])
    np.testing.assert_array_equal(label_array(tags, {"DET": 7, "NOUN": 8, "VERB": 9}),
                                  [7, 8, 9, 8, 8])
    assert windows([[0, 0], [], [0], [0, 0]], 1).shape[0] == y.shape[0]
    with pytest.raises(ValueError, match=r"label 'ADJ' \(sentence 1, token 0\)"):
        label_array([["DET"], ["ADJ"]], lv)
    with pytest.raises(TypeError, match="label_vocab"):
        label_array(tags, ["DET"])


# --------------------------------------------------------------------------- casing, affixes

@pytest.mark.parametrize("token, name", [
    ("the", "lower"), ("don't", "lower"), ("@paul", "lower"), ("e-mail", "lower"),
    ("USA", "upper"), ("U.S.", "upper"),
    ("Paris", "title"), ("I", "title"), ("A", "title"), ("#Tag", "title"),
    ("iPhone", "mixed"), ("McDonald", "mixed"), ("O'Neil", "mixed"),
    ("2004", "digit"), ("3.14", "digit"), ("$100", "digit"), ("12:30", "digit"),
    ("76ers", "has_digit"), ("2nd", "has_digit"), ("A4", "has_digit"),
    (".", "punct"), ("--", "punct"), ("$", "punct"), ("\U0001F600", "punct"),
    ("", "other"), ("中文", "other"), (" ", "other"),
])
def test_casing_classes(token, name):
    assert CASINGS[casing_ids([token])[0]] == name


def test_casing_ids_and_feature_windows():
    assert CASINGS[0] == "<pad>" and len(set(CASINGS)) == len(CASINGS)
    c = casing_ids(["The", "cat", ",", "NASA", "2"])
    assert c.dtype == np.int64
    np.testing.assert_array_equal(c, [3, 1, 7, 2, 5])
    np.testing.assert_array_equal(windows([c[:2], c[2:]], window=1),
                                  [[0, 3, 1], [3, 1, 0], [0, 7, 2], [7, 2, 5], [2, 5, 0]])
    with pytest.raises(TypeError, match=r"tokens\[0\] is 1"):
        casing_ids([1])


def test_affixes():
    sents = [["Walking", "talking", "go"], ["sings", "GO"]]
    sv = affix_vocabulary(sents, n=3)
    assert sv.words == ["<pad>", "<unk>", "go", "ing", "ngs"]     # go, ing: 2 each; ngs: 1
    np.testing.assert_array_equal(affix_ids(["RUNNING", "Go", "cat"], sv), [3, 2, 1])
    pv = affix_vocabulary(sents, n=2, kind="prefix")
    np.testing.assert_array_equal(affix_ids(["Tall", "x"], pv, n=2, kind="prefix"),
                                  [pv["ta"], pv.unk_id])
    with pytest.raises(ValueError, match="kind must be 'suffix' or 'prefix'"):
        affix_vocabulary(sents, kind="infix")
    with pytest.raises(ValueError, match="n must be >= 1"):
        affix_ids(["a"], sv, n=0)


# --------------------------------------------------------------------------- vectors

VEC_TEXT = """the 0.1 0.2 0.3
The 9 9 9
cat -1 0.5 2e-1
sat 1 2 3
"""


def test_load_vectors_text_format(tmp_path):
    p = tmp_path / "v.txt"
    p.write_text(VEC_TEXT)
    words, V = load_vectors(p)
    assert words == ["the", "cat", "sat"]           # "The" collides with "the": first wins
    assert V.dtype == np.float32 and V.shape == (3, 3) and V.flags.c_contiguous
    np.testing.assert_array_equal(V[1], np.array([-1, 0.5, 0.2], dtype=np.float32))
    words, V = load_vectors(p, lower=False)
    assert words == ["the", "The", "cat", "sat"] and V[1].tolist() == [9, 9, 9]
    words, V = load_vectors(p, vocab={"CAT", "dog"})
    assert words == ["cat"] and V.shape == (1, 3)
    words, V = load_vectors(p, vocab={"dog"})
    assert words == [] and V.shape == (0, 3)
    words, V = load_vectors(io.StringIO(VEC_TEXT), dim=3)
    assert len(words) == 3


def test_load_vectors_header_and_compression(tmp_path):
    body = "4 3\n" + VEC_TEXT
    for name, opener in [("v.txt", open), ("v.txt.gz", gzip.open), ("v.vec.xz", lzma.open)]:
        with opener(tmp_path / name, "wt", encoding="utf-8") as f:
            f.write(body)
        words, V = load_vectors(tmp_path / name, lower=False)
        assert words == ["the", "The", "cat", "sat"] and V.shape == (4, 3)
    with pytest.raises(ValueError, match="header says dim 3, but dim=4"):
        load_vectors(tmp_path / "v.txt", dim=4)


def test_load_vectors_bad_files(tmp_path):
    cases = {"a 1 2\nb 1 2 3\n": "line 2 has 3 values, expected 2",
             "a 1 2\nb 1 x\n": "line 2 has a value that is not a number",
             "a 1 2\nb\n": "line 2 holds a word and no values",
             "a 1 nan\n": "NaN or Inf",
             "": "holds no vectors"}
    for i, (body, msg) in enumerate(cases.items()):
        p = tmp_path / f"bad{i}.txt"
        p.write_text(body)
        with pytest.raises(ValueError, match=msg):
            load_vectors(p)
    with pytest.raises(FileNotFoundError):
        load_vectors(tmp_path / "missing.txt")


def test_embedding_matrix():
    v = Vocabulary.build([["the", "cat", "zzz", "Sat"]])
    words = ["sat", "the", "cat", "dog"]
    vecs = np.arange(12, dtype=np.float32).reshape(4, 3)
    E, cov = embedding_matrix(v, words, vecs)
    assert E.shape == (len(v), 3) and E.dtype == np.float32
    assert cov == pytest.approx(3 / 4)
    np.testing.assert_array_equal(E[v.pad_id], 0)
    for w in ("the", "cat", "sat"):
        np.testing.assert_array_equal(E[v[w]], vecs[words.index(w)])
    assert np.abs(E[v["zzz"]]).max() > 0 and np.abs(E[v.unk_id]).max() > 0
    E2, _ = embedding_matrix(v, words, vecs)
    E3, _ = embedding_matrix(v, words, vecs, seed=1)
    np.testing.assert_array_equal(E, E2)
    assert not np.array_equal(E[v["zzz"]], E3[v["zzz"]])
    # the random rows do not depend on which words are covered
    E4, cov4 = embedding_matrix(v, ["dog"], vecs[:1])
    assert cov4 == 0.0
    np.testing.assert_array_equal(E4[v["zzz"]], E[v["zzz"]])
    Eu, _ = embedding_matrix(v, words, vecs, init="uniform", scale=0.5, dtype="float64")
    assert Eu.dtype == np.float64 and np.abs(Eu[v["zzz"]]).max() <= 0.5
    Ez, _ = embedding_matrix(v, words, vecs, init="zeros")
    np.testing.assert_array_equal(Ez[v["zzz"]], 0)
    # a cased vocabulary finds the lower-cased pretrained word; an exact match comes first
    cv = Vocabulary(["Cat", "dog", "DOG"], lower=False)
    Ec, covc = embedding_matrix(cv, ["cat", "DOG", "dog"], vecs[:3])
    assert covc == 1.0
    np.testing.assert_array_equal(Ec[cv["Cat"]], vecs[0])
    np.testing.assert_array_equal(Ec[cv["dog"]], vecs[2])
    np.testing.assert_array_equal(Ec[cv["DOG"]], vecs[1])


def test_embedding_matrix_bad_input():
    v = Vocabulary(["a"])
    with pytest.raises(ValueError, match=r"len\(words\)=2"):
        embedding_matrix(v, ["a", "b"], np.zeros((3, 2)))
    with pytest.raises(ValueError, match="init must be"):
        embedding_matrix(v, ["a"], np.zeros((1, 2)), init="he")
    with pytest.raises(ValueError, match="dtype must be"):
        embedding_matrix(v, ["a"], np.zeros((1, 2)), dtype="int8")
    with pytest.raises(ValueError, match="NaN"):
        embedding_matrix(v, ["a"], np.full((1, 2), np.nan))
    with pytest.raises(TypeError, match="vocab must be a Vocabulary"):
        embedding_matrix({"a": 0}, ["a"], np.zeros((1, 2)))


@needs_data
def test_glove_subset(tmp_path):
    folder = DATA / "glove-6b-50d-ewt-subset"
    words, V = load_vectors_npy(folder)
    assert len(words) == 17047 and V.shape == (17047, 50) and V.dtype == np.float32
    assert words[0] == "the"
    np.testing.assert_array_equal(V[0, :4], np.array([0.418, 0.24968, -0.41242, 0.1217],
                                                     dtype=np.float32))
    # the text format reads back the same words and float32 values exactly
    head = 500
    p = tmp_path / "glove.txt.gz"
    with gzip.open(p, "wt", encoding="utf-8") as f:
        for w, row in zip(words[:head], V[:head]):
            f.write(w + " " + " ".join(repr(float(x)) for x in row) + "\n")
    w2, V2 = load_vectors(p)
    assert w2 == words[:head]
    np.testing.assert_array_equal(V2, V[:head])
    # a vocabulary filter, and the coverage of UD EWT dev (README: 98.8% of train tokens)
    sents = [t for t, _ in read_conllu(DATA / "ud-english-ewt" / "en_ewt-ud-dev.conllu.xz")]
    vocab = Vocabulary.build(sents)
    fw, fV = load_vectors_npy(folder, vocab=vocab)
    assert set(fw) <= set(vocab.words) and len(fw) > 0.9 * (len(vocab) - 2)
    E, cov = embedding_matrix(vocab, fw, fV)
    assert 0.9 < cov < 1.0
    known = set(words)
    tokens = [t.lower() for s in sents for t in s]
    assert sum(t in known for t in tokens) / len(tokens) > 0.98


# --------------------------------------------------------------------------- readers

CONLLU = """# newdoc id = d1
# sent_id = s1
# text = I don't know.
1\tI\tI\tPRON\tPRP\t_\t4\tnsubj\t_\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\tdo\tAUX\tVBP\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
4\tknow\tknow\tVERB\tVB\t_\t0\troot\t_\t_
4.1\tknows\tknow\tVERB\tVB\t_\t_\t_\t_\t_
5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

# sent_id = s2
1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_"""


def test_read_conllu_small():
    sents = list(read_conllu(io.StringIO(CONLLU)))
    assert sents == [(["I", "do", "n't", "know", "."], ["PRON", "AUX", "PART", "VERB", "PUNCT"]),
                     (["Hi"], ["INTJ"])]
    assert [t for _, t in read_conllu(io.StringIO(CONLLU), column="xpos")] == \
        [["PRP", "VBP", "RB", "VB", "."], ["UH"]]
    assert [t for _, t in read_conllu(io.StringIO(CONLLU), column=2)][1] == ["hi"]
    with pytest.raises(ValueError, match="column must be one of"):
        read_conllu(io.StringIO(CONLLU), column="pos")
    with pytest.raises(ValueError, match="line 2 has 3 tab-separated columns"):
        list(read_conllu(io.StringIO("# c\n1\ta\tb\n")))
    with pytest.raises(FileNotFoundError):
        read_conllu("/nonexistent/file.conllu")


def test_read_conll_small():
    body = ("-DOCSTART- -X- -X- O\n\n"
            "#\tO\n#Tag\tB-ORG\n \tO\n\tO\nke s \tI-ORG\n\t\n"    # BTC/WNUT traps
            "# sent_id = x\n"
            "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n \n"
            "last\tO")
    sents = list(read_conll(io.StringIO(body)))
    assert sents == [(["#", "#Tag", "<unk>", "<unk>", "ke s"], ["O", "B-ORG", "O", "O", "I-ORG"]),
                     (["EU", "rejects"], ["B-ORG", "O"]),
                     (["last"], ["O"])]
    uner = "# sent_id = a\n1\tWhere\tO\t-\t-\n2\tTampa\tB-LOC\t-\t-\n"
    assert list(read_conll(io.StringIO(uner), token_col=1, tag_col=2)) == \
        [(["Where", "Tampa"], ["O", "B-LOC"])]
    assert list(read_conll(io.StringIO("# O\n"), comments=False)) == [(["#"], ["O"])]
    with pytest.raises(ValueError, match="line 1 has 2 columns"):
        list(read_conll(io.StringIO("a\tO\n"), token_col=3))
    with pytest.raises(ValueError, match="empty tag"):
        list(read_conll(io.StringIO("a\t \n")))


@needs_data
def test_read_ud_ewt():
    ud = DATA / "ud-english-ewt"
    for split, n_sent, n_words in [("dev", 2001, 25147), ("test", 2077, 25094)]:
        sents = list(read_conllu(ud / f"en_ewt-ud-{split}.conllu.xz"))
        assert len(sents) == n_sent
        assert sum(len(t) for t, _ in sents) == n_words
        assert all(len(t) == len(y) for t, y in sents)
    upos = {y for _, tags in sents for y in tags}
    assert upos == set("ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ "
                       "SYM VERB X".split())
    # a binary file object works too
    with lzma.open(ud / "en_ewt-ud-dev.conllu.xz") as f:
        first = next(read_conllu(f, column="xpos"))
    assert first == (["From", "the", "AP", "comes", "this", "story", ":"],
                     ["IN", "DT", "NNP", "VBZ", "DT", "NN", ":"])
    X = windows(Vocabulary.build([t for t, _ in sents]).encode_sentences(
        [t for t, _ in sents]), window=2)
    assert X.shape == (25094, 5)


@needs_data
@pytest.mark.parametrize("path, kwargs, n_sent, n_tok, entities", [
    ("broad-twitter-corpus/btc.train.conll.xz", {}, 6338, 99933,
     {"PER": 4084, "ORG": 2665, "LOC": 2030}),
    ("broad-twitter-corpus/btc.dev.conll.xz", {}, 1001, 15027,
     {"PER": 1194, "ORG": 380, "LOC": 156}),
    ("broad-twitter-corpus/btc.test.conll.xz", {}, 2001, 35428,
     {"PER": 2650, "ORG": 1090, "LOC": 636}),
    ("wnut17/wnut17train.conll.xz", {}, 3394, 62730, None),
    ("wnut17/emerging.dev.conll.xz", {}, 1009, 15733, None),
    ("wnut17/emerging.test.annotated.xz", {}, 1287, 23394, None),
    ("uner-english-ewt/en_ewt-ud-dev.iob2.xz", {"token_col": 1, "tag_col": 2}, 2001, 25149,
     {"LOC": 399, "PER": 343, "ORG": 224}),
    ("uner-english-ewt/en_ewt-ud-test.iob2.xz", {"token_col": 1, "tag_col": 2}, 2077, 25097,
     {"PER": 449, "ORG": 322, "LOC": 317}),
])
def test_read_ner_corpora(path, kwargs, n_sent, n_tok, entities):
    sents = list(read_conll(DATA / path, **kwargs))
    assert len(sents) == n_sent
    assert sum(len(t) for t, _ in sents) == n_tok
    assert all(t and t == t.strip() for toks, _ in sents for t in toks)
    tags = [y for _, y in sents]
    result = conlleval(tags, tags)
    assert result["f1"] == 1.0 and result["accuracy"] == 1.0
    if entities is not None:
        assert {k: v["n_true"] for k, v in result["per_type"].items()} == entities
    else:
        assert set(result["per_type"]) == {"person", "location", "corporation", "group",
                                           "creative-work", "product"}
    lv = label_vocabulary(tags)
    assert label_array(tags, lv).shape == (n_tok,)


# --------------------------------------------------------------------------- conlleval

def test_conlleval_hand_made():
    true = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-ORG", "O", "B-PER"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG", "O"], ["B-ORG", "I-ORG", "B-PER"]]
    # true chunks: PER(0-1) LOC(3) | ORG(0) PER(2); predicted: PER(0-1) ORG(3) | ORG(0-1) PER(2)
    r = conlleval(true, pred)
    assert (r["n_true"], r["n_pred"], r["n_correct"]) == (4, 4, 2)
    assert r["precision"] == r["recall"] == r["f1"] == 0.5
    assert r["accuracy"] == 6 / 8
    assert r["per_type"]["PER"]["f1"] == 1.0
    assert r["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                    "n_true": 1, "n_pred": 0, "n_correct": 0}
    assert (r["per_type"]["ORG"]["n_pred"], r["per_type"]["ORG"]["precision"]) == (2, 0.0)


@pytest.mark.parametrize("true, pred, counts", [
    # (n_true, n_pred, n_correct)
    (["B-PER", "I-PER", "O"], ["B-PER", "O", "O"], (1, 1, 0)),           # partial match
    (["B-PER", "I-PER"], ["B-ORG", "I-ORG"], (1, 1, 0)),                 # type mismatch
    (["O", "B-LOC", "I-LOC", "O"], ["O", "I-LOC", "I-LOC", "O"], (1, 1, 1)),  # I- after O starts
    (["B-PER", "B-PER"], ["B-PER", "I-PER"], (2, 1, 0)),                 # B-X B-X: two chunks
    (["B-PER", "I-LOC"], ["B-PER", "I-LOC"], (2, 2, 2)),                 # I-Y after B-X starts
    (["B-PER", "I-PER", "I-PER"], ["B-PER", "I-PER", "B-PER"], (1, 2, 0)),  # a split chunk
    (["O", "O"], ["O", "O"], (0, 0, 0)),
])
def test_conlleval_chunk_rules(true, pred, counts):
    r = conlleval([true], [pred])
    assert (r["n_true"], r["n_pred"], r["n_correct"]) == counts
    correct, found_true, found_pred = perl_conlleval([true], [pred])
    assert counts == (sum(found_true.values()), sum(found_pred.values()), sum(correct.values()))


def test_conlleval_scores():
    r = conlleval([["B-PER", "O", "B-LOC", "O", "B-ORG"]], [["B-PER", "O", "O", "O", "B-ORG"]])
    assert r["precision"] == 1.0 and r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(0.8)
    assert r["accuracy"] == pytest.approx(4 / 5)
    empty = conlleval([["O"]], [["O"]])
    assert empty["f1"] == 0.0 and empty["per_type"] == {} and empty["accuracy"] == 1.0


def test_conlleval_sentence_boundaries_close_chunks():
    r = conlleval([["B-PER"], ["I-PER"]], [["B-PER"], ["I-PER"]])
    assert r["n_true"] == 2 and r["f1"] == 1.0
    merged = conlleval(["B-PER", "I-PER"], ["B-PER", "I-PER"])     # one flat sentence
    assert merged["n_true"] == 1


def test_conlleval_ids_and_bad_input():
    lv = Vocabulary(["O", "B-PER", "I-PER"], specials=(), lower=False)
    r = conlleval([np.array([1, 2, 0])], [np.array([1, 0, 0])], labels=lv)
    assert (r["n_true"], r["n_pred"], r["n_correct"]) == (1, 1, 0)
    r2 = conlleval([[1, 2, 0]], [[1, 2, 0]], labels=["O", "B-PER", "I-PER"])
    assert r2["f1"] == 1.0
    with pytest.raises(ValueError, match="outside 0..2"):
        conlleval([[3]], [[0]], labels=lv)
    with pytest.raises(ValueError, match="'X-PER' is not 'O', 'B-<type>' or 'I-<type>'"):
        conlleval([["X-PER"]], [["O"]])
    with pytest.raises(ValueError, match="'B' is not"):
        conlleval([["O"]], [["B"]])
    with pytest.raises(ValueError, match="sentence 0 has 2 true tags and 1 predicted"):
        conlleval([["O", "O"]], [["O"]])
    with pytest.raises(ValueError, match="1 sentences, pred_tag_seqs 2"):
        conlleval([["O"]], [["O"], ["O"]])


@pytest.mark.parametrize("seed", range(5))
def test_conlleval_matches_perl_state_machine(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 15, size=40)
    true = [random_tags(rng, n) for n in lengths]
    # predictions: the truth with some tags replaced, so that many chunks match
    pred = [[t if rng.random() < 0.8 else random_tags(rng, 1)[0] for t in s] for s in true]
    r = conlleval(true, pred)
    correct, found_true, found_pred = perl_conlleval(true, pred)
    assert r["n_correct"] == sum(correct.values()) > 0
    assert r["n_true"] == sum(found_true.values())
    assert r["n_pred"] == sum(found_pred.values())
    for k, v in r["per_type"].items():
        assert (v["n_correct"], v["n_true"], v["n_pred"]) == (correct[k], found_true[k],
                                                              found_pred[k])
    p = sum(correct.values()) / sum(found_pred.values())
    rc = sum(correct.values()) / sum(found_true.values())
    assert r["f1"] == pytest.approx(2 * p * rc / (p + rc), rel=1e-12)


def test_module_exports():
    for name in text.__all__:
        assert hasattr(text, name)
