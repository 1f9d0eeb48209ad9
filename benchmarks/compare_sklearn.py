"""fastbp.sklearn.MLPClassifier against scikit-learn's MLPClassifier, at scikit-learn's defaults.

Both estimators are built the same way: one hidden layer of 100 ReLU units, Adam with
learning rate 1e-3, minibatches of 200 ("auto"), alpha 1e-4, and the same
``numpy.random.RandomState(seed)`` as random_state (so both start from the same initial
weights, drawn by scikit-learn's Glorot rule, and each draws its shuffling from it).
They are trained the same way too: one ``partial_fit`` per epoch, timed one by one;
reported is the median epoch.  fastbp's kernels are compiled (or loaded from numba's
cache) beforehand, on a throwaway estimator, so no epoch pays for it.  The time of
``fit(max_iter=E)`` / E is reported as well (the median of 3 fits; one fit on
Fashion-MNIST), without the per-call input validation of ``partial_fit``.  The load
average is printed before and after: on a machine that other jobs share, a run on every
core waits for the core they hold, and its times say little.

Both get the same data: float32 arrays (Fashion-MNIST's pixels / 255; the others
standardised with a StandardScaler fitted on the training split), so scikit-learn
computes in float32, its faster mode, and neither converts the data on each call.
Threads: fastbp runs ``fastbp.set_num_threads(n)``; scikit-learn's products run in
NumPy's BLAS under ``threadpoolctl.threadpool_limits(n)``.

Data sets: (a) Fashion-MNIST 60k/10k, 784-100-10, from the IDX files of
``shared/data/fashion-mnist`` (read with numpy; ``--fashion-dir`` or
``FASTBP_FASHION_DIR`` elsewhere); (b) load_digits and (c) load_breast_cancer from
scikit-learn, a stratified 75/25 split.

Usage (from the repository root)::

    unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE      # when set: let OpenBLAS pick its kernels
    python -m benchmarks.compare_sklearn                      # 2 threads or the core count
    python -m benchmarks.compare_sklearn --threads 1,2 --fashion-epochs 10
    python -m benchmarks.compare_sklearn --quick              # a smoke run, ~1 min
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings

import numpy as np

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

from .datasets import read_idx  # noqa: E402
from .host import cpu_model  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))
FASHION_CANDIDATES = (
    os.path.join(_HERE, os.pardir, os.pardir, "shared", "data", "fashion-mnist"),
    os.path.join(_HERE, os.pardir, "shared", "data", "fashion-mnist"),
    "/work/shared/data/fashion-mnist",
)
FASHION_FILES = ("train-images-idx3-ubyte.xz", "train-labels-idx1-ubyte.xz",
                 "t10k-images-idx3-ubyte.xz", "t10k-labels-idx1-ubyte.xz")


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (other jobs on the machine show here)."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def load_fashion(folder: str | None):
    """Fashion-MNIST as float32 (n, 784) pixels in [0, 1] and int64 labels."""
    candidates = [folder] if folder else []
    if os.environ.get("FASTBP_FASHION_DIR"):
        candidates.append(os.environ["FASTBP_FASHION_DIR"])
    candidates.extend(FASHION_CANDIDATES)
    for c in candidates:
        if c and all(os.path.exists(os.path.join(c, f)) for f in FASHION_FILES):
            arrays = [read_idx(os.path.join(c, f)) for f in FASHION_FILES]
            X_train, X_test = (np.ascontiguousarray(a.reshape(a.shape[0], -1), np.float32) / 255
                               for a in (arrays[0], arrays[2]))
            return (X_train.astype(np.float32), arrays[1].astype(np.int64),
                    X_test.astype(np.float32), arrays[3].astype(np.int64))
    raise FileNotFoundError(f"Fashion-MNIST IDX files {FASHION_FILES} not found in {candidates}; "
                            f"pass --fashion-dir or set FASTBP_FASHION_DIR")


def load_small(name: str):
    """load_digits or load_breast_cancer: a stratified 75/25 split, standardised, float32."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    X, y = getattr(datasets, name)(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0,
                                                        stratify=y)
    scaler = StandardScaler().fit(X_train)
    return (scaler.transform(X_train).astype(np.float32), y_train,
            scaler.transform(X_test).astype(np.float32), y_test)


def make(library: str, seed: int, **kwargs):
    """An MLPClassifier of ``library`` at scikit-learn's default settings."""
    if library == "fastbp":
        from fastbp.sklearn import MLPClassifier
    else:
        from sklearn.neural_network import MLPClassifier
    return MLPClassifier(hidden_layer_sizes=(100,), solver="adam", learning_rate_init=1e-3,
                         batch_size="auto", random_state=np.random.RandomState(seed), **kwargs)


def in_threads(library: str, threads: int):
    """The context that runs ``library`` on ``threads`` threads."""
    from threadpoolctl import threadpool_limits
    import contextlib
    if library == "fastbp":
        return contextlib.nullcontext()  # fastbp.set_num_threads was called
    return threadpool_limits(limits=threads, user_api="blas")


def per_epoch(library, data, epochs, seed, threads):
    """(median seconds per partial_fit epoch, test accuracy after ``epochs``)."""
    X, y, X_test, y_test = data
    classes = np.unique(y)
    est = make(library, seed)
    times = []
    with in_threads(library, threads):
        for _ in range(epochs):
            t0 = time.perf_counter()
            est.partial_fit(X, y, classes=classes)
            times.append(time.perf_counter() - t0)
        accuracy = est.score(X_test, y_test)
    return float(np.median(times)), accuracy


def per_fit_epoch(library, data, epochs, seed, threads, repeats=3):
    """Median over ``repeats`` fits of ``fit(max_iter=epochs)`` time / epochs."""
    X, y = data[0], data[1]
    times = []
    with in_threads(library, threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: the epochs are fixed
        for _ in range(repeats):
            est = make(library, seed, max_iter=epochs, n_iter_no_change=np.inf)
            t0 = time.perf_counter()
            est.fit(X, y)
            times.append((time.perf_counter() - t0) / epochs)
    return float(np.median(times))


def warm_up(data):
    """Compile fastbp's kernels for these shapes (or load them from the cache)."""
    X, y = data[0][:400], data[1][:400]
    make("fastbp", 0, max_iter=2, n_iter_no_change=np.inf).fit(X, y)
    est = make("fastbp", 0)
    est.partial_fit(X, y, classes=np.unique(data[1]))
    est.predict(data[2][:10])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default=None,
                        help="comma-separated thread counts (default: min(2, cores))")
    parser.add_argument("--fashion-epochs", type=int, default=10)
    parser.add_argument("--small-epochs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fashion-dir", default=None)
    parser.add_argument("--datasets", default="fashion,digits,breast_cancer")
    parser.add_argument("--quick", action="store_true",
                        help="3 Fashion-MNIST epochs on 10k rows, 10 small epochs")
    args = parser.parse_args(argv)

    import numba
    import sklearn
    from threadpoolctl import threadpool_info
    import fastbp as fb

    cores = numba.config.NUMBA_NUM_THREADS
    threads = ([int(t) for t in args.threads.split(",")] if args.threads
               else [min(2, cores)])
    fashion_epochs = 3 if args.quick else args.fashion_epochs
    small_epochs = 10 if args.quick else args.small_epochs

    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs)")
    print(f"fastbp {fb.__version__}, scikit-learn {sklearn.__version__}, numpy "
          f"{np.__version__}, numba {numba.__version__}, Python {platform.python_version()}")
    fb.set_num_threads(threads[0])  # also pins SciPy's BLAS (fastbp's) to one thread
    for d in threadpool_info():
        if d.get("user_api") == "blas":
            print(f"BLAS: {d.get('internal_api')} {d.get('version')} ({d.get('architecture')}, "
                  f"{os.path.basename(d.get('filepath', ''))})")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if os.environ.get(var):
            print(f"note: {var}={os.environ[var]} is set")
    print("settings: hidden (100,) relu, adam lr 1e-3, batch 200 ('auto'), alpha 1e-4, "
          "float32 data for both; per-epoch time = median of the partial_fit epochs")

    sets = []
    for name in args.datasets.split(","):
        if name == "fashion":
            data = load_fashion(args.fashion_dir)
            if args.quick:
                data = (data[0][:10000], data[1][:10000], data[2], data[3])
            sets.append(("Fashion-MNIST 784-100-10", data, fashion_epochs, 1))
        elif name in ("digits", "breast_cancer"):
            sets.append((f"load_{name}", load_small(f"load_{name}"), small_epochs, 3))
        else:
            raise SystemExit(f"unknown data set {name!r}; known: fashion, digits, breast_cancer")

    print(f"load average before: {load_average()}")
    rows = []
    for n in threads:
        fb.set_num_threads(n)
        for title, data, epochs, repeats in sets:
            warm_up(data)
            t_fb, acc_fb = per_epoch("fastbp", data, epochs, args.seed, n)
            t_sk, acc_sk = per_epoch("sklearn", data, epochs, args.seed, n)
            row = {"data": title, "threads": n, "n": data[0].shape[0], "epochs": epochs,
                   "fb": t_fb, "sk": t_sk, "acc_fb": acc_fb, "acc_sk": acc_sk}
            row["fit_fb"] = per_fit_epoch("fastbp", data, epochs, args.seed, n, repeats)
            row["fit_sk"] = per_fit_epoch("sklearn", data, epochs, args.seed, n, repeats)
            rows.append(row)
            print(f"  done: {title}, {n} thread(s)", flush=True)

    print(f"load average after: {load_average()}")
    print()
    print("| data set | threads | train rows | epochs | fastbp ms/epoch | sklearn ms/epoch | "
          "speed-up | fastbp test acc | sklearn test acc | diff (points) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['data']} | {r['threads']} | {r['n']} | {r['epochs']} | "
              f"{r['fb'] * 1e3:.2f} | {r['sk'] * 1e3:.2f} | {r['sk'] / r['fb']:.2f}x | "
              f"{r['acc_fb'] * 100:.2f}% | {r['acc_sk'] * 100:.2f}% | "
              f"{(r['acc_fb'] - r['acc_sk']) * 100:+.2f} |")
        print(f"| {r['data']}, fit(max_iter={r['epochs']}) / {r['epochs']} | {r['threads']} | "
              f"{r['n']} | {r['epochs']} | {r['fit_fb'] * 1e3:.2f} | {r['fit_sk'] * 1e3:.2f} | "
              f"{r['fit_sk'] / r['fit_fb']:.2f}x | | | |")


if __name__ == "__main__":
    main()
