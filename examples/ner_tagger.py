"""Window-based named-entity recognition (seed 000, CS224N) on the Broad Twitter Corpus.

Each token's IOB2 tag (O, B-/I-PER, B-/I-ORG, B-/I-LOC) is predicted from the 2w+1 = 5
words around it: GloVe 50d vectors (fine-tuned), a hidden layer of 200 ReLU units,
a softmax over the 7 tags.  Adam 1e-3, batch 64.  Reports entity-level precision,
recall and F1 as the conlleval script computes them, on dev and test.

    python examples/ner_tagger.py [--data ../shared/data] [--epochs 5]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import fastbp as fb
from fastbp import text

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data"))


def split_by_sentence(flat, sentences):
    out, start = [], 0
    for s in sentences:
        out.append(list(flat[start:start + len(s)]))
        start += len(s)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        fb.set_num_threads(args.threads)
    btc = os.path.join(args.data, "broad-twitter-corpus")
    splits = {name: list(text.read_conll(os.path.join(btc, f"btc.{name}.conll.xz")))
              for name in ("train", "dev", "test")}
    vocab = text.Vocabulary.build([t for t, _ in splits["train"]], min_count=1)
    words, vecs = text.load_vectors_npy(os.path.join(args.data, "glove-6b-50d-ewt-subset"))
    vocab.extend(words)
    weights, coverage = text.embedding_matrix(vocab, words, vecs, seed=args.seed)
    tags = text.label_vocabulary([y for _, y in splits["train"]])
    data = {}
    for name, sents in splits.items():
        X = text.windows(vocab.encode_sentences([t for t, _ in sents]), window=2)
        y = text.label_array([y for _, y in sents], tags)
        data[name] = (X, y, [t for t, _ in sents], [y for _, y in sents])
    print(f"BTC: {len(data['train'][0])} train / {len(data['dev'][0])} dev / "
          f"{len(data['test'][0])} test tokens; vocabulary {len(vocab)}, "
          f"{coverage:.0%} of it with a GloVe vector; tags {tags.words}")
    model = fb.Sequential([
        fb.layers.WindowEmbedding(len(vocab), 50, window=2, weights=weights, padding_id=0),
        fb.layers.Dense(250, 200, activation="relu"),
        fb.layers.Dense(200, len(tags)),
    ], seed=args.seed)
    model.compile(fb.optim.Adam(lr=1e-3), "softmax_cross_entropy")
    Xtr, ytr = data["train"][:2]
    t0 = time.perf_counter()
    model.fit(Xtr, ytr, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
              verbose=2, validation_data=data["dev"][:2])
    print(f"trained in {time.perf_counter() - t0:.1f} s (the first epoch includes compiling)")
    for name in ("dev", "test"):
        X, y, sents, gold = data[name]
        pred = model.predict(X).argmax(axis=1)
        pred_tags = split_by_sentence([tags.word(int(i)) for i in pred], sents)
        score = text.conlleval(gold, pred_tags)
        per = ", ".join(f"{k} {v['f1']:.3f}" for k, v in sorted(score["per_type"].items()))
        print(f"{name}: precision {score['precision']:.4f} recall {score['recall']:.4f} "
              f"F1 {score['f1']:.4f} (token accuracy {score['accuracy']:.4f}; {per})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
