"""A CS224N-style window tagger (seed 000) for universal POS tags on UD English EWT.

Each token is classified from the 2w+1 = 5 words around it: their GloVe vectors
(50d, fine-tuned while training) are concatenated and fed to a hidden layer of 200
ReLU units and a 17-way softmax.  Adam 1e-3, batch 64, 5 epochs.

With ``--features casing,suffix`` the tagger also reads, for the same 5 positions,
each word's casing class (``fb.text.casing_ids``: lower, Title, UPPER, digits, ...,
a 5-wide vector each) and its lower-cased 3-letter suffix (``fb.text.affix_ids``,
a 20-wide vector each): a functional ``fb.Model`` with three id inputs, three
``WindowEmbedding`` tables and a ``Concatenate``.  GloVe is lower-cased, so casing
is what the word vectors cannot see; the suffix gives unknown words a tag hint.
Dropout (``--dropout``, 0.5 by default with features, none without) after the
hidden layer keeps the wider tagger from overfitting its five epochs.

    python examples/pos_tagger.py [--data ../shared/data] [--epochs 5] [--threads 2]
        [--features casing,suffix]

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


FEATURES = ("casing", "suffix")
#: width of each feature's vectors
FEATURE_DIMS = {"casing": 5, "suffix": 20}


def load(data: str, window: int = 2, vectors: bool = True, features=()):
    """Windows, labels and the initial embedding table for EWT's three splits; with
    ``features``, also the windows of casing and suffix ids (``arrays[split]`` is then
    (dict of id windows by input name, labels)) and the size of each feature's table."""
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
    suffixes = text.affix_vocabulary([t for t, _ in splits["train"]], n=3, kind="suffix",
                                     min_count=2)
    sizes = {"casing": len(text.CASINGS), "suffix": len(suffixes)}
    arrays = {}
    for name, sents in splits.items():
        tokens = [t for t, _ in sents]
        X = text.windows(vocab.encode_sentences(tokens), window=window)
        y = text.label_array([y for _, y in sents], tags)
        if features:
            X = {"words": X}
            if "casing" in features:
                X["casing"] = text.windows([text.casing_ids(t) for t in tokens], window=window)
            if "suffix" in features:
                X["suffix"] = text.windows([text.affix_ids(t, suffixes) for t in tokens],
                                           window=window)
        arrays[name] = (X, y)
    return arrays, vocab, tags, weights, sizes


def build_model(vocab_size: int, n_tags: int, weights, window: int = 2, dim: int = 50,
                hidden: int = 200, seed: int = 0, trainable: bool = True, features=(),
                sizes=None, dropout: float = 0.0):
    if features:
        return build_feature_model(vocab_size, n_tags, weights, window, dim, hidden, seed,
                                   trainable, features, sizes, dropout)
    layers = [
        fb.layers.WindowEmbedding(vocab_size, dim, window=window, weights=weights,
                                  trainable=trainable, padding_id=0),
        fb.layers.Dense((2 * window + 1) * dim, hidden, activation="relu"),
    ]
    if dropout:
        layers.append(fb.layers.Dropout(dropout))
    model = fb.Sequential(layers + [fb.layers.Dense(hidden, n_tags)], dtype="float32",
                          seed=seed)
    model.compile(fb.optim.Adam(lr=1e-3), "softmax_cross_entropy")
    return model


def build_feature_model(vocab_size, n_tags, weights, window, dim, hidden, seed, trainable,
                        features, sizes, dropout):
    """Words, casing and suffix windows, each through its own table, side by side."""
    width = 2 * window + 1
    words = fb.Input(width, dtype="int64", name="words")
    inputs = [words]
    parts = [fb.layers.WindowEmbedding(vocab_size, dim, window=window, weights=weights,
                                       trainable=trainable, padding_id=0)(words)]
    for name in features:
        x = fb.Input(width, dtype="int64", name=name)
        inputs.append(x)
        parts.append(fb.layers.WindowEmbedding(sizes[name], FEATURE_DIMS[name], window=window,
                                               padding_id=0)(x))
    h = fb.layers.Concatenate()(parts)
    h = fb.layers.Dense(h.width, hidden, activation="relu")(h)
    if dropout:
        h = fb.layers.Dropout(dropout)(h)
    out = fb.layers.Dense(hidden, n_tags)(h)
    model = fb.Model(inputs=inputs, outputs=out, dtype="float32", seed=seed)
    model.compile(fb.optim.Adam(lr=1e-3), "softmax_cross_entropy")
    return model


def _head(X, n):
    return {k: v[:n] for k, v in X.items()} if isinstance(X, dict) else X[:n]


def parse_features(value: str):
    names = tuple(f for f in value.split(",") if f)
    unknown = [f for f in names if f not in FEATURES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown features {unknown}; allowed: {list(FEATURES)}")
    return names


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DEFAULT_DATA, help="the shared data folder")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--frozen", action="store_true", help="keep the GloVe vectors fixed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--features", type=parse_features, default=(),
                    help="extra windows beside the words: casing, suffix (comma-separated)")
    ap.add_argument("--dropout", type=float, default=None,
                    help="dropout after the hidden layer (default 0.5 with --features, else 0)")
    args = ap.parse_args(argv)
    if args.dropout is None:
        args.dropout = 0.5 if args.features else 0.0
    if args.threads:
        fb.set_num_threads(args.threads)
    t0 = time.perf_counter()
    arrays, vocab, tags, weights, sizes = load(args.data, features=args.features)
    (Xtr, ytr), (Xdv, ydv), (Xte, yte) = arrays["train"], arrays["dev"], arrays["test"]
    n_train = len(Xtr["words"]) if isinstance(Xtr, dict) else len(Xtr)
    print(f"EWT: {n_train} train / {len(ydv)} dev / {len(yte)} test tokens, "
          f"vocabulary {len(vocab)}, {len(tags)} tags ({time.perf_counter() - t0:.1f} s to load)"
          + (f", features {', '.join(args.features)}" if args.features else ""))
    options = dict(seed=args.seed, trainable=not args.frozen, features=args.features,
                   sizes=sizes, dropout=args.dropout)
    model = build_model(len(vocab), len(tags), weights, **options)
    model.fit(_head(Xtr, 64), ytr[:64], epochs=1, batch_size=64)  # compile (or load) kernels
    model = build_model(len(vocab), len(tags), weights, **options)
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
