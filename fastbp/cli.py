"""The ``fastbp`` command: ``demo``, ``warmup``, ``info``; on a saved model ``tag``,
``predict``, ``evaluate`` and ``summary``; ``conlleval`` and ``cache clear``.

``main(argv)`` returns the exit status: 0 on success, 1 when a command fails
(the demo missing its accuracy bar included), 2 for bad command-line
arguments (argparse's convention), 130 when interrupted.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

from ._validation import MAX_SEED

DEMO_HIDDEN = (128, 64)


class CommandError(Exception):
    """A command failed in a way the user can act on; main prints it and exits 1."""


class UsageError(CommandError):
    """An argument the parser could not judge alone (``--threads`` above the cores):
    main prints it and exits 2, as for any bad argument."""


def _integer(low: int, high: int | None, what: str):
    """An argparse type: an int in [low, high] (argparse turns a refusal into exit 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value
    return parse


_at_least_one = _integer(1, None, "an integer >= 1")
_seed = _integer(0, MAX_SEED, f"a seed in [0, 2**63 - 1] = [0, {MAX_SEED}]")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def _build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = argparse.ArgumentParser(
        prog="fastbp",
        description="fastbp: fast neural-network training on the CPU with Numba-compiled kernels.")
    parser.add_argument("--version", action="version", version=f"fastbp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    demo = sub.add_parser(
        "demo", help="train an MLP on the bundled 8x8 digits and report test accuracy and speed",
        description="Train a 64-128-64-10 ReLU MLP (Adam, softmax cross-entropy, batch 32) on "
                    "the UCI handwritten digits that ship with fastbp, holding out a stratified "
                    "20%% test split, and print the test accuracy and training steps per second.")
    demo.add_argument("--epochs", type=_at_least_one, default=30, help="passes over the training set "
                      "(default: %(default)s)")
    demo.add_argument("--threads", type=_at_least_one, default=None,
                      help="threads for fastbp's kernels and BLAS (default: numba's, all cores)")
    demo.add_argument("--seed", type=_seed, default=0,
                      help="seeds the split, the initial weights and the shuffling "
                           "(default: %(default)s)")
    demo.add_argument("--batch-size", type=_at_least_one, default=32, help="minibatch size "
                      "(default: %(default)s)")
    demo.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                      help="(default: %(default)s)")
    demo.add_argument("--min-accuracy", type=_fraction, default=0.95,
                      help="exit with status 1 when the test accuracy is below this "
                           "(default: %(default)s; 0 turns the check off)")
    demo.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    demo.set_defaults(run=_demo)

    warm = sub.add_parser(
        "warmup", help="compile (or load from the cache) the kernels of common models",
        description="Compile the engine's build for a few common models (Dense and Dropout "
                    "MLPs with SGD and Adam and every loss, a window model) in float32 and "
                    "float64, so that later programs start from numba's cache. A model with "
                    "other node kinds, optimizer or loss compiles its own build on first use "
                    "(fb.warmup(model=...) does it ahead of time).")
    warm.add_argument("--dtype", choices=("float32", "float64", "both"), default="both",
                      help="(default: %(default)s)")
    warm.add_argument("--threads", type=_at_least_one, default=None, help="threads to warm up with")
    warm.set_defaults(run=_warmup)

    info = sub.add_parser(
        "info", help="print versions, threads, the kernel cache and the BLAS in use",
        description="Print fastbp's version, numba's threads and threading layer, where the "
                    "compiled kernels are cached and which BLAS libraries are loaded.")
    info.set_defaults(run=_info)

    tag = sub.add_parser(
        "tag", help="tag sentences with a saved tagger: one token and its tag per line",
        description="Read sentences (one per line, tokens separated by white space) from FILE "
                    "or standard input and write each token and its tag, tab-separated, one "
                    "per line, a blank line after each sentence (CoNLL style). The model must "
                    "have been saved with fastbp.text.Tagger(...).save(path), which keeps its "
                    "vocabularies and tag set; unknown words map to <unk>.")
    tag.add_argument("model", help="the saved tagger (.fbp or .safetensors)")
    tag.add_argument("input", nargs="?", default="-", help="sentences (default: standard input)")
    tag.set_defaults(run=_tag)

    pred = sub.add_parser(
        "predict", help="write a saved model's outputs for the rows of a .npy file",
        description="Load a saved model and an array (.npy, read without pickles) and save "
                    "its outputs (logits for the logit losses; --proba: probabilities) as .npy.")
    pred.add_argument("model")
    pred.add_argument("input", help="a .npy array of inputs (a single-input model)")
    pred.add_argument("output", help="where the .npy of outputs goes (written atomically)")
    pred.add_argument("--proba", action="store_true", help="probabilities (predict_proba)")
    pred.set_defaults(run=_predict)

    ev = sub.add_parser(
        "evaluate", help="a saved model's loss and accuracy on .npy inputs and labels",
        description="Load a saved model, inputs and labels (.npy files) and print the mean "
                    "loss and the accuracy.")
    ev.add_argument("model")
    ev.add_argument("input")
    ev.add_argument("labels")
    ev.set_defaults(run=_evaluate)

    summ = sub.add_parser("summary", help="print a saved model's layers, parameters and "
                                          "training state")
    summ.add_argument("model")
    summ.set_defaults(run=_summary)

    cev = sub.add_parser(
        "conlleval", help="entity-level precision, recall and F1 of predicted tags",
        description="Compare two CoNLL files (one token per line, its tag in the last column, "
                    "blank lines between sentences), gold first, with conlleval's rules "
                    "(BIO/IOB2 chunks).")
    cev.add_argument("gold")
    cev.add_argument("pred")
    cev.set_defaults(run=_conlleval)

    cache = sub.add_parser("cache", help="the compiled-kernel cache: cache clear empties it")
    cache.add_argument("action", choices=("clear", "show"))
    cache.set_defaults(run=_cache)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``fastbp`` command line; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    from .model import DivergenceError
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("fastbp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`fastbp info | head`): stop quietly, and point stdout at
        # devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except UsageError as exc:
        print(f"fastbp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (CommandError, DivergenceError, ValueError, TypeError, OSError) as exc:
        print(f"fastbp {args.command}: error: {exc}", file=sys.stderr)
        return 1


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        from .threads import set_num_threads
        try:
            set_num_threads(threads)
        except ValueError as exc:
            raise UsageError(f"--threads: {exc}") from None


# -- demo -------------------------------------------------------------------------------------
class _EpochPrinter:
    """A fit() callback that prints one line per epoch."""

    def __init__(self, epochs: int, steps_per_epoch: int):
        self.epochs = epochs
        self.steps = steps_per_epoch
        self.model = None

    def set_model(self, model) -> None:
        self.model = model

    def on_train_begin(self) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        width = len(str(self.epochs))
        seconds = logs["time"]
        print(f"epoch {epoch + 1:>{width}}/{self.epochs}  loss {logs['loss']:.4f}  "
              f"{seconds * 1e3:7.1f} ms  ({self.steps / seconds:,.0f} steps/s)", flush=True)

    def on_train_end(self) -> None:
        pass


def _demo_model(dtype: str, seed: int):
    from .layers import Dense
    from .model import Sequential
    from .optim import Adam
    widths = (64,) + DEMO_HIDDEN
    layers = [Dense(a, b, activation="relu") for a, b in zip(widths[:-1], widths[1:])]
    layers.append(Dense(widths[-1], 10))
    model = Sequential(layers, dtype=dtype, seed=seed)
    model.compile(optimizer=Adam(lr=1e-3), loss="softmax_cross_entropy")
    return model


def _demo(args) -> int:
    from . import __version__
    from .datasets import load_digits, train_test_split
    from .threads import get_num_threads
    _set_threads(args.threads)

    X, y = load_digits(args.dtype)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, seed=args.seed)
    # Pixels are counts from 0 to 16: scale them to [0, 1].
    X_train /= 16.0
    X_test /= 16.0
    steps = -(-X_train.shape[0] // args.batch_size)
    arch = "-".join(str(w) for w in (64,) + DEMO_HIDDEN + (10,))
    print(f"fastbp {__version__} demo: UCI 8x8 digits, {X_train.shape[0]} training and "
          f"{X_test.shape[0]} test images (stratified split, seed {args.seed})")
    print(f"model: {arch} ReLU MLP, {args.dtype}, Adam(lr=1e-3), softmax cross-entropy, "
          f"batch {args.batch_size}, {args.epochs} epoch(s) of {steps} steps, "
          f"{get_num_threads()} thread(s)")

    # numba compiles the kernels on first use (seconds with an empty cache, well under a
    # second from the cache); do it before training, so the timing below is training.
    from ._cache import is_cached
    from .engine.precompile import compiled_build
    from .warmup import warmup
    t0 = time.perf_counter()
    model = _demo_model(args.dtype, args.seed)
    if not is_cached(compiled_build(model, args.batch_size).train_epochs):
        print("compiling kernels (first run only; numba caches them for later runs) ...",
              flush=True)
    warmup(model=model, predict=False, batch_size=args.batch_size)
    print(f"kernels ready in {time.perf_counter() - t0:.1f} s (compiled or loaded from the "
          f"cache)", flush=True)

    callbacks = [] if args.quiet else [_EpochPrinter(args.epochs, steps)]
    t0 = time.perf_counter()
    history = model.fit(X_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        shuffle=True, seed=args.seed, callbacks=callbacks)
    wall = time.perf_counter() - t0
    n_steps = steps * len(history.epoch)
    metrics = model.evaluate(X_test, y_test)
    accuracy = metrics["accuracy"]
    print(f"test accuracy: {accuracy:.2%} ({round(accuracy * X_test.shape[0])}/"
          f"{X_test.shape[0]}), test loss {metrics['loss']:.4f}")
    print(f"training: {n_steps} steps in {wall:.2f} s = {n_steps / wall:,.0f} steps/s "
          f"({wall / n_steps * 1e6:.0f} us/step, fit() wall time)")
    if accuracy < args.min_accuracy:
        raise CommandError(f"test accuracy {accuracy:.2%} is below --min-accuracy "
                           f"{args.min_accuracy:.2%} (train longer with --epochs, or pass "
                           f"--min-accuracy 0 to skip the check)")
    return 0


# -- warmup ----------------------------------------------------------------------------------
def _warmup(args) -> int:
    from .warmup import cache_dir, warmup
    _set_threads(args.threads)
    dtypes = ("float32", "float64") if args.dtype == "both" else (args.dtype,)
    print(f"compiling fastbp's kernels for {', '.join(dtypes)} (minutes with an empty cache)",
          flush=True)
    t0 = time.perf_counter()
    warmup(dtypes=dtypes, verbose=True)
    print(f"done in {time.perf_counter() - t0:.1f} s; cache: {cache_dir()}")
    return 0


# -- info ------------------------------------------------------------------------------------
def _threading_layer() -> str:
    import numba
    try:
        return numba.threading_layer()
    except ValueError:
        pass
    try:
        # Starting numba's thread pool picks the layer without compiling anything.
        from numba.np.ufunc import parallel
        parallel._launch_threads()
        return numba.threading_layer()
    except Exception as exc:  # a private numba API: report rather than fail
        return f"unknown ({type(exc).__name__}: {exc})"


def _cache_summary(path: str) -> str:
    if not os.path.isdir(path):
        return "empty (the folder does not exist yet)"
    files = [f for f in os.listdir(path) if f.endswith((".nbi", ".nbc"))]
    size = sum(os.path.getsize(os.path.join(path, f)) for f in files)
    return f"{len(files)} files, {size / 2**20:.1f} MiB"


def _info(args) -> int:
    import numba
    import scipy

    from . import __version__
    from .threads import _load_blas, get_num_threads
    from .warmup import cache_dirs
    print(f"fastbp      {__version__}  ({os.path.dirname(os.path.abspath(__file__))})")
    print(f"python      {platform.python_version()}  ({sys.executable})")
    print(f"numpy       {np.__version__}")
    print(f"scipy       {scipy.__version__}")
    print(f"numba       {numba.__version__}")
    print(f"platform    {platform.platform()}, {os.cpu_count()} logical CPUs")
    print(f"threads     {get_num_threads()} in use, NUMBA_NUM_THREADS="
          f"{numba.config.NUMBA_NUM_THREADS}")
    print(f"threading   {_threading_layer()} (requested: {numba.config.THREADING_LAYER})")
    for cache in cache_dirs():
        print(f"cache dir   {cache}: {_cache_summary(cache)}")
    for name in ("NUMBA_NUM_THREADS", "NUMBA_CACHE_DIR", "NUMBA_THREADING_LAYER",
                 "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        if name in os.environ:
            print(f"env         {name}={os.environ[name]}")
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        print("blas        threadpoolctl is not installed")
        return 0
    _load_blas()
    pools = threadpool_info()
    if not pools:
        print("blas        no thread pool found by threadpoolctl")
    for pool in pools:
        detail = ", ".join(f"{k} {pool[k]}" for k in ("version", "threading_layer",
                                                      "architecture") if pool.get(k))
        print(f"{pool['user_api']:<11} {pool['internal_api']} ({detail}), "
              f"{pool['num_threads']} threads: {pool['filepath']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


# -- commands on saved models -------------------------------------------------------------
def _load_model(path):
    from .model import load
    return load(path)


def _load_array(path, what):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CommandError(f"cannot read the {what} {path!r} as a .npy array without pickles "
                           f"({e})") from None


def _tag(args) -> int:
    from .text import Tagger
    tagger = Tagger.from_model(_load_model(args.model))
    stream = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")
    try:
        sentences = [line.split() for line in stream]
    finally:
        if stream is not sys.stdin:
            stream.close()
    out = []
    for tokens, tags in zip(sentences, tagger.tag(sentences)):
        out += [f"{t}\t{g}" for t, g in zip(tokens, tags)]
        out.append("")
    sys.stdout.write("\n".join(out) + ("\n" if out else ""))
    return 0


def _predict(args) -> int:
    from .io import write_atomically
    model = _load_model(args.model)
    X = _load_array(args.input, "input")
    out = model.predict_proba(X) if args.proba else model.predict(X)
    write_atomically(args.output, lambda f: np.save(f, out))
    print(f"{out.shape[0]} rows -> {args.output} {out.shape} {out.dtype}")
    return 0


def _evaluate(args) -> int:
    model = _load_model(args.model)
    scores = model.evaluate(_load_array(args.input, "input"), _load_array(args.labels, "labels"))
    print("  ".join(f"{k} {v:.6g}" for k, v in scores.items()))
    return 0


def _summary(args) -> int:
    model = _load_model(args.model)
    print(model.summary())
    opt = model.optimizer
    print(f"trained: {model.epoch} epoch(s), "
          + (f"{int(opt.step[0])} optimizer step(s) of {type(opt).__name__}, loss "
             f"{model.loss.name}" if opt is not None else "not compiled"))
    if isinstance(model.metadata, dict):
        print(f"metadata: {sorted(model.metadata)}")
    return 0


def _conlleval(args) -> int:
    from .text import conlleval, read_conll
    gold = [tags for _, tags in read_conll(args.gold)]
    pred = [tags for _, tags in read_conll(args.pred)]
    if len(gold) != len(pred):
        raise CommandError(f"{args.gold} has {len(gold)} sentences, {args.pred} {len(pred)}")
    s = conlleval(gold, pred)
    print(f"entities: {s['n_true']} gold, {s['n_pred']} predicted, {s['n_correct']} correct; "
          f"precision {100 * s['precision']:.2f}%  recall {100 * s['recall']:.2f}%  F1 "
          f"{100 * s['f1']:.2f}%  token accuracy {100 * s['accuracy']:.2f}%")
    for kind, t in s["per_type"].items():
        print(f"  {kind}: precision {100 * t['precision']:.2f}%  recall {100 * t['recall']:.2f}%"
              f"  F1 {100 * t['f1']:.2f}%")
    return 0


def _cache(args) -> int:
    from . import cache_dirs, clear_cache
    if args.action == "clear":
        removed = clear_cache()
        print(f"removed {removed} file(s) from " + ", ".join(cache_dirs()))
    else:
        print("\n".join(cache_dirs()))
    return 0
