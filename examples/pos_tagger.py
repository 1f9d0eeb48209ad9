"""A CS224N-style window tagger (seed 000) for universal POS tags on UD English EWT.

Each token is classified from the 2w+1 = 5 words around it: their GloVe vectors
(50d, fine-tuned while training) are concatenated and fed to a hidden layer of 200
ReLU units and a 17-way softmax.  Adam 1e-3, batch 64, 5 epochs.

    python examples/pos_tagger.py [--data ../shared/data] [--epochs 5] [--threads 2]

Prints dev and test accuracy and the seconds each epoch took.
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


def load(data: str, window: int = 2, vectors: bool = True):
    """Windows, labels and the initial embedding table for EWT's three splits."""
    ud = os.path.join(data, "ud-english-ewt")
    splits = {name: list(text.read_conllu(os.path.join(ud, f"en_ewt-ud-{name}.conllu.xz")))
              for name in ("train", "dev", "test")}
    vocab = text.Vocabulary.build([t for t, _ in splits["train"]], min_count=1)
    weights = None
    if vectors:
        words, vecs = text.load_vectors_npy(os.path.join(data, "glove-6b-50d-ewt-subset"))
        vocab.extend(words)  # words seen only in dev/test still get their pretrained vector
        weights, _ = text.embedding_matrix(vocab, words, vecs, init="normal", scale=0.1, seed=0)
    tags = text.label_vocabulary([y for _, y in splits["train"]])
    arrays = {}
    for name, sents in splits.items():
        X = text.windows(vocab.encode_sentences([t for t, _ in sents]), window=window)
        y = text.label_array([y for _, y in sents], tags)
        arrays[name] = (X, y)
    return arrays, vocab, tags, weights


def build_model(vocab_size: int, n_tags: int, weights, window: int = 2, dim: int = 50,
                hidden: int = 200, seed: int = 0, trainable: bool = True):
    model = fb.Sequential([
        fb.layers.WindowEmbedding(vocab_size, dim, window=window, weights=weights,
                                  trainable=trainable, padding_id=0),
        fb.layers.Dense((2 * window + 1) * dim, hidden, activation="relu"),
        fb.layers.Dense(hidden, n_tags),
    ], dtype="float32", seed=seed)
    model.compile(fb.optim.Adam(lr=1e-3), "softmax_cross_entropy")
    return model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DEFAULT_DATA, help="the shared data folder")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--frozen", action="store_true", help="keep the GloVe vectors fixed")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        fb.set_num_threads(args.threads)
    t0 = time.perf_counter()
    arrays, vocab, tags, weights = load(args.data)
    (Xtr, ytr), (Xdv, ydv), (Xte, yte) = arrays["train"], arrays["dev"], arrays["test"]
    print(f"EWT: {len(Xtr)} train / {len(Xdv)} dev / {len(Xte)} test tokens, "
          f"vocabulary {len(vocab)}, {len(tags)} tags ({time.perf_counter() - t0:.1f} s to load)")
    model = build_model(len(vocab), len(tags), weights, seed=args.seed,
                        trainable=not args.frozen)
    model.fit(Xtr[:64], ytr[:64], epochs=1, batch_size=64)  # compile (or load) the kernels
    model = build_model(len(vocab), len(tags), weights, seed=args.seed,
                        trainable=not args.frozen)
    history = model.fit(Xtr, ytr, epochs=args.epochs, batch_size=args.batch_size,
                        seed=args.seed, validation_data=(Xdv, ydv), verbose=2)
    times = history["time"]
    dev = model.evaluate(Xdv, ydv)
    test = model.evaluate(Xte, yte)
    print(f"dev accuracy {dev['accuracy']:.4f}  test accuracy {test['accuracy']:.4f}")
    print(f"seconds per epoch: median {np.median(times):.2f} "
          f"({', '.join(f'{t:.2f}' for t in times)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
