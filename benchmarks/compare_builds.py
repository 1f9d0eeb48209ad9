"""Two checkouts of fastbp in one process, taking turns: a before/after comparison that
a shared machine's slow phases cannot tilt.

Each checkout's ``fastbp`` package is copied once to ``~/.cache/fastbp-compare/<hash>/``
under the names ``fb_before`` and ``fb_after`` (fastbp imports itself only
relatively, so both load side by side; each copy keeps its own numba cache there, so
only the first run compiles).  Every repeat runs each workload once with each build,
in alternating order, and the report gives the medians, the minimums and the median
of the per-repeat ratios after / before (above 1: the second build is slower).  A
host that changes speed between repeats moves both builds of a repeat alike, which
separate processes taking turns cannot promise (on a 2-vCPU AMD EPYC host the medians
swung from 16 to 28 ms within one round of ``compare_peers``).

One bias remains: with the same code under both names, the build imported first ran
1-3% faster on that host (memory placement), so run both orders (``--after-first``) and take the
mean of the two ratios.

Usage (from the repository root)::

    git worktree add /tmp/before 24ee378
    .venv/bin/python -m benchmarks.compare_builds --before /tmp/before --after . \\
        --workloads fig7_8,mlp_small --repeats 30

Workloads, built with the public API both builds share: ``fig7_8`` (seed 002's figure
7.8 program as in compare_peers: 10-40-40-5 ReLU MLP, float32, SGD with momentum, MSE,
batch 10, 100 points, 100 epochs with step decay), ``mlp_small`` (64-128-10, batch 32,
Adam, 100 minibatches, 10 epochs), ``mlp_784_b128`` (784-256-128-10, batch 128, Adam,
20 minibatches, 5 epochs), ``window`` (compare_peers' window model at V = 20,000: one
epoch of 200 minibatches of 64, the same model trained on) and ``pos`` (compare_peers'
EWT window tagger, one epoch; needs ``../shared/data`` or ``FASTBP_DATA``) and ``bilstm``
(compare_peers' BiLSTM tagger, one epoch of 2,000 EWT sentences; the same data); each
timed as one ``fit`` call.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import re
import shutil
import sys
import time

import numpy as np

CACHE = os.path.join(os.path.expanduser("~"), ".cache", "fastbp-compare")
_ABSOLUTE = re.compile(r"^\s*(from|import)\s+fastbp\b", re.M)


def _tree_hash(package: str) -> str:
    h = hashlib.sha1()
    for root, dirs, files in os.walk(package):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for f in sorted(files):
            if f.endswith(".py"):
                path = os.path.join(root, f)
                h.update(os.path.relpath(path, package).encode())
                with open(path, "rb") as fh:
                    h.update(fh.read())
    return h.hexdigest()[:16]


def load_build(checkout: str, label: str):
    """The fastbp of ``checkout`` imported as ``fb_<label>``."""
    package = os.path.join(os.path.abspath(checkout), "fastbp")
    if not os.path.isfile(os.path.join(package, "__init__.py")):
        raise ValueError(f"{checkout!r} holds no fastbp package (looked for {package})")
    for root, _, files in os.walk(package):
        for f in files:
            if f.endswith(".py"):
                with open(os.path.join(root, f), encoding="utf-8") as fh:
                    if _ABSOLUTE.search(fh.read()):
                        raise ValueError(f"{os.path.join(root, f)} imports fastbp by its "
                                         "absolute name; it cannot load beside another build")
    home = os.path.join(CACHE, f"{_tree_hash(package)}")
    target = os.path.join(home, f"fb_{label}")
    if not os.path.isdir(target):
        tmp = target + f".tmp{os.getpid()}"
        shutil.copytree(package, tmp, ignore=shutil.ignore_patterns("__pycache__"))
        os.replace(tmp, target)
    sys.path.insert(0, home)
    return importlib.import_module(f"fb_{label}")


def _regression(n, n_in, n_out, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_in)).astype(np.float32)
    W = rng.standard_normal((n_in, n_out)).astype(np.float32)
    return X, (np.tanh(X @ W) + 0.1 * rng.standard_normal((n, n_out))).astype(np.float32)


def _mlp(fb, sizes):
    layers = [fb.layers.Dense(a, b, activation="relu" if i < len(sizes) - 2 else None)
              for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]
    return fb.Sequential(layers, dtype="float32", seed=0)


def fig7_8(fb):
    X, Y = _regression(100, 10, 5)

    def run():
        model = _mlp(fb, (10, 40, 40, 5)).compile(fb.optim.SGD(lr=0.01, momentum=0.9), "mse")
        t0 = time.perf_counter()
        model.fit(X, Y, epochs=100, batch_size=10, schedule=fb.schedules.StepDecay(10, 0.5))
        return time.perf_counter() - t0
    return run


def _classifier(fb, sizes, batch, n_batches, epochs):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch * n_batches, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch * n_batches)

    def run():
        model = _mlp(fb, sizes).compile(fb.optim.Adam(lr=1e-3), "softmax_cross_entropy")
        t0 = time.perf_counter()
        model.fit(X, y, epochs=epochs, batch_size=batch, shuffle=True)
        return time.perf_counter() - t0
    return run


def window(fb, V=20_000, batch=64, n_batches=200):
    """compare_peers' window workload: ids (5 per row) into a fine-tuned 50-wide table,
    Dense 250-200 tanh, Dense 200-5, Adam, batch 64; one epoch of 200 minibatches."""
    from .peer_workloads_sparse import window_task
    ids, y, model = window_task(fb, V, batch, n_batches)

    def run():
        t0 = time.perf_counter()
        model.fit(ids, y, epochs=1, batch_size=batch)
        return time.perf_counter() - t0
    return run


_POS = {}


def pos(fb):
    """compare_peers' POS tagger on UD English EWT (GloVe 50d table fine-tuned, window 2,
    Dense 250-200 relu, Dense to the tags, Adam, batch 64): one shuffled epoch, the same
    model trained on.  The arrays are made once, by this checkout's fastbp.text."""
    if not _POS:
        from .peer_workloads_sparse import _pos_data
        data = os.environ.get("FASTBP_DATA", os.path.join(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data"))
        _POS["arrays"] = _pos_data(data)
    arrays, E, n_tags = _POS["arrays"]
    X, y = arrays["train"]
    model = fb.Sequential([fb.layers.WindowEmbedding(E.shape[0], 50, window=2, weights=E),
                           fb.layers.Dense(250, 200, activation="relu"),
                           fb.layers.Dense(200, n_tags)], seed=0)
    model.compile(fb.optim.Adam(lr=1e-3), "softmax_cross_entropy")

    def run():
        t0 = time.perf_counter()
        model.fit(X, y, epochs=1, batch_size=64, seed=0)
        return time.perf_counter() - t0
    return run


_BILSTM = {}


def bilstm(fb, sentences=2000, batch=32):
    """compare_peers' BiLSTM tagger (examples/bilstm_tagger.py: GloVe 50d table
    fine-tuned, Bidirectional(LSTM(50, 100)), Dense(200, tags) per step, Adam) on the
    first ``sentences`` EWT training sentences, one shuffled epoch of batches of 32, the
    same model trained on.  The arrays are made once, by the installed fastbp.text."""
    if not _BILSTM:
        from .peer_workloads_seq import load_task
        _, arrays, V, n_tags, E, _ = load_task()
        X, Y = arrays["train"]
        _BILSTM["task"] = X[:sentences], Y[:sentences], V, n_tags, E
    X, Y, V, n_tags, E = _BILSTM["task"]
    words = fb.Input(dtype="int64", sequence=True, name="words")
    h = fb.layers.Embedding(V, E.shape[1], weights=E, padding_id=0)(words)
    h = fb.layers.Bidirectional(fb.layers.LSTM(E.shape[1], 100))(h)
    model = fb.Model(inputs=words, outputs=fb.layers.Dense(200, n_tags)(h), dtype="float32",
                     seed=0)
    model.compile(fb.optim.Adam(lr=3e-3), "softmax_cross_entropy")

    def run():
        t0 = time.perf_counter()
        model.fit(X, Y, epochs=1, batch_size=batch, seed=0)
        return time.perf_counter() - t0
    return run


WORKLOADS = {
    "fig7_8": fig7_8,
    "bilstm": bilstm,
    "pos": pos,
    "window": window,
    "mlp_small": lambda fb: _classifier(fb, (64, 128, 10), 32, 100, 10),
    "mlp_784_b128": lambda fb: _classifier(fb, (784, 256, 128, 10), 128, 20, 5),
}


def compare(before, after, names, repeats):
    """{workload: (before times, after times)}, the builds taking turns."""
    out = {}
    for name in names:
        runs = (WORKLOADS[name](before), WORKLOADS[name](after))
        for run in runs:  # compile (or load the cache) and warm up
            run()
        times = ([], [])
        for r in range(repeats):
            order = (0, 1) if r % 2 == 0 else (1, 0)
            for i in order:
                times[i].append(runs[i]())
        out[name] = times
    return out


def report(results) -> str:
    lines = ["| workload (one fit) | before median (min) | after median (min) "
             "| after / before, median of paired ratios |", "|---|---|---|---|"]
    for name, (b, a) in results.items():
        b, a = np.array(b), np.array(a)
        lines.append(f"| {name} | {np.median(b) * 1e3:.2f} ms ({b.min() * 1e3:.2f}) "
                     f"| {np.median(a) * 1e3:.2f} ms ({a.min() * 1e3:.2f}) "
                     f"| {np.median(a / b):.3f}x |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", required=True, help="a checkout holding the first fastbp")
    p.add_argument("--after", default=".", help="a checkout holding the second (default: .)")
    p.add_argument("--workloads", default="fig7_8,mlp_small",
                   help=f"comma-separated subset of {', '.join(WORKLOADS)}")
    p.add_argument("--repeats", type=int, default=30, help="paired repeats (default 30)")
    p.add_argument("--threads", type=int, default=None, help="numba threads (default: all)")
    p.add_argument("--after-first", action="store_true",
                   help="import the second build first (the build imported first ran "
                        "1-3%% faster when both were the same code, on AMD EPYC: run "
                        "both orders)")
    args = p.parse_args(argv)
    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown or not names:
        p.error(f"unknown workloads {unknown}; choose from {', '.join(WORKLOADS)}")
    if args.repeats < 1:
        p.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.after_first:
        after = load_build(args.after, "after")
        before = load_build(args.before, "before")
    else:
        before = load_build(args.before, "before")
        after = load_build(args.after, "after")
    if args.threads:
        import numba
        numba.set_num_threads(args.threads)
    results = compare(before, after, names, args.repeats)
    first = "after" if args.after_first else "before"
    print(f"before: {args.before}; after: {args.after}; {args.repeats} paired repeats; "
          f"{first} imported first")
    print(report(results))


if __name__ == "__main__":
    main()
