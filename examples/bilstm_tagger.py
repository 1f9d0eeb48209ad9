"""A BiLSTM tagger (seed 004) for universal POS tags on UD English EWT.

Each sentence is read whole: its words' GloVe vectors (50d, fine-tuned while
training) go through an LSTM of 100 units each way (``fb.layers.Bidirectional``),
and every step's 200 numbers through a Dense layer to the 17 tags.  Sentences are
right-padded into (sentences, T) id arrays (``fb.text.pad_sequences``; padding id 0
for words, -1 for tags, which the loss skips); each sentence stops at its own last
word, and a minibatch costs only its longest sentence.  Adam 3e-3, batch 32
sentences, shuffled every epoch.

With ``--features casing,suffix`` each word also brings its casing class
(``fb.text.casing_ids``, a 5-wide vector) and its lower-cased 3-letter suffix
(``fb.text.affix_ids``, a 20-wide vector), each from its own ``Embedding``, side by
side with the word vector (``Concatenate``) before the BiLSTM, as
``examples/pos_tagger.py`` does for its windows.

    python examples/bilstm_tagger.py [--data ../shared/data] [--epochs 5] [--threads 2]
        [--features casing,suffix] [--seed 0]

Prints the seconds each epoch took and the dev and test token accuracy.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import fastbp as fb
from fastbp import text
from pos_tagger import FEATURES, _head as head, parse_features  # the window tagger's

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data"))

#: width of each feature's vectors (those of examples/pos_tagger.py)
FEATURE_DIMS = {"casing": 5, "suffix": 20}
DIM, HIDDEN = 50, 100


def load(data: str, features=()):
    """Padded id arrays of EWT's three splits and what the model needs to be built.

    Returns
    -------
    arrays : {split: (X, Y)}; X int64 (sentences, T) word ids, or with ``features`` a
        dict {"words": ..., "casing": ..., "suffix": ...} of such arrays; Y int64
        (sentences, T) tag ids, -1 after each sentence's end
    vocab, tags : the word and tag vocabularies
    weights : float32 (len(vocab), 50), GloVe rows where there is one
    sizes : {"casing": ..., "suffix": ...} table sizes of the features
    """
    ud = os.path.join(data, "ud-english-ewt")
    splits = {name: list(text.read_conllu(os.path.join(ud, f"en_ewt-ud-{name}.conllu.xz")))
              for name in ("train", "dev", "test")}
    vocab = text.Vocabulary.build([t for t, _ in splits["train"]], min_count=1)
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
        X = text.pad_sequences(vocab.encode_sentences(tokens), padding_id=0)
        Y = text.pad_sequences([text.label_array([y], tags) for _, y in sents], padding_id=-1)
        if features:
            X = {"words": X}
            if "casing" in features:
                X["casing"] = text.pad_sequences([text.casing_ids(t) for t in tokens])
            if "suffix" in features:
                X["suffix"] = text.pad_sequences([text.affix_ids(t, suffixes) for t in tokens])
        arrays[name] = (X, Y)
    return arrays, vocab, tags, weights, sizes


def build_model(vocab_size: int, n_tags: int, weights, features=(), sizes=None,
                seed: int = 0, lr: float = 3e-3, trainable: bool = True) -> fb.Model:
    """Embedding(s) -> Bidirectional(LSTM(n_in, 100)) -> Dense(200, n_tags), per step."""
    words = fb.Input(dtype="int64", sequence=True, name="words")
    inputs = [words]
    parts = [fb.layers.Embedding(vocab_size, DIM, weights=weights, trainable=trainable,
                                 padding_id=0)(words)]
    for name in features:
        x = fb.Input(dtype="int64", sequence=True, name=name)
        inputs.append(x)
        parts.append(fb.layers.Embedding(sizes[name], FEATURE_DIMS[name], padding_id=0)(x))
    h = parts[0] if len(parts) == 1 else fb.layers.Concatenate()(parts)
    n_in = DIM + sum(FEATURE_DIMS[f] for f in features)
    h = fb.layers.Bidirectional(fb.layers.LSTM(n_in, HIDDEN))(h)
    out = fb.layers.Dense(2 * HIDDEN, n_tags)(h)
    model = fb.Model(inputs=inputs if features else words, outputs=out, dtype="float32",
                     seed=seed)
    model.compile(fb.optim.Adam(lr=lr), "softmax_cross_entropy")
    return model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DEFAULT_DATA, help="the shared data folder")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32, help="sentences per minibatch")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--frozen", action="store_true", help="keep the GloVe vectors fixed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--features", type=parse_features, default=(),
                    help="inputs beside the words: casing, suffix (comma-separated)")
    args = ap.parse_args(argv)
    if args.threads:
        fb.set_num_threads(args.threads)
    t0 = time.perf_counter()
    arrays, vocab, tags, weights, sizes = load(args.data, features=args.features)
    (Xtr, Ytr), (Xdv, Ydv), (Xte, Yte) = arrays["train"], arrays["dev"], arrays["test"]
    n_tokens = {k: int((Y >= 0).sum()) for k, (_, Y) in arrays.items()}
    print(f"EWT: {len(Ytr)} / {len(Ydv)} / {len(Yte)} train/dev/test sentences "
          f"({n_tokens['train']} / {n_tokens['dev']} / {n_tokens['test']} tokens; longest "
          f"{Ytr.shape[1]} / {Ydv.shape[1]} / {Yte.shape[1]}), vocabulary {len(vocab)}, "
          f"{len(tags)} tags ({time.perf_counter() - t0:.1f} s to load)"
          + (f", features {', '.join(args.features)}" if args.features else ""), flush=True)
    options = dict(features=args.features, sizes=sizes, seed=args.seed, lr=args.lr,
                   trainable=not args.frozen)
    t0 = time.perf_counter()
    model = build_model(len(vocab), len(tags), weights, **options)
    model.fit(head(Xtr, 64), Ytr[:64], epochs=1, batch_size=args.batch_size)  # compile/load
    model.evaluate(head(Xdv, 64), Ydv[:64])
    print(f"kernels ready in {time.perf_counter() - t0:.1f} s", flush=True)
    model = build_model(len(vocab), len(tags), weights, **options)
    history = model.fit(Xtr, Ytr, epochs=args.epochs, batch_size=args.batch_size,
                        seed=args.seed, validation_data=(Xdv, Ydv), verbose=2)
    times = history["time"]
    dev = model.evaluate(Xdv, Ydv)
    test = model.evaluate(Xte, Yte)
    print(f"dev accuracy {dev['accuracy']:.4f}  test accuracy {test['accuracy']:.4f}")
    print(f"seconds per epoch: median {np.median(times):.2f} "
          f"({', '.join(f'{t:.2f}' for t in times)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
