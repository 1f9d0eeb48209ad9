"""Peak resident memory of a fit on a memory-mapped file larger than the model needs.

Writes a float32 ``.npy`` of ``--gigabytes`` (default 2) of 784-feature rows (random
pixels in [0, 1), labels from a fixed linear rule so that there is something to learn),
then, each in a fresh process so that its peak (``VmHWM``) is that run's own:

* ``memmap``: ``fit(np.load(path, mmap_mode="r"), y)`` for one epoch of a 784-100-10
  ReLU MLP (Adam, batch 256), then ``evaluate`` and ``predict`` on the same map;
* ``in-memory`` (``--in-memory``): the same with ``np.load(path)``, for comparison.

Prints the peak RSS of each, the file's size, and the epoch's time.  Usage::

    python -m benchmarks.memmap_rss                 # 2 GB in /tmp
    python -m benchmarks.memmap_rss --gigabytes 0.5 --dir /var/tmp --in-memory
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

from .host import cpu_model  # noqa: E402

FEATURES, CLASSES = 784, 10


def write(path, rows, seed=0):
    """The inputs (float32, written a block at a time) and the labels."""
    rng = np.random.default_rng(seed)
    rule = rng.standard_normal((FEATURES, CLASSES)).astype(np.float32)
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, FEATURES))
    y = np.empty(rows, dtype=np.int64)
    step = 65536
    for a in range(0, rows, step):
        b = min(rows, a + step)
        X[a:b] = rng.random((b - a, FEATURES), dtype=np.float32)
        y[a:b] = (X[a:b] @ rule).argmax(axis=1)
    X.flush()
    del X
    np.save(path + ".y.npy", y)


def run(path, how, threads):
    """One fit in this process; prints a line of key=value pairs."""
    import fastbp as fb
    fb.set_num_threads(threads)
    X = np.load(path, mmap_mode="r") if how == "memmap" else np.load(path)
    y = np.load(path + ".y.npy")
    model = fb.Sequential([fb.layers.Dense(FEATURES, 100, activation="relu"),
                           fb.layers.Dense(100, CLASSES)], seed=0)
    model.compile(fb.optim.Adam(lr=1e-3), "softmax_cross_entropy")
    t0 = time.perf_counter()
    model.fit(X, y, epochs=1, batch_size=256, seed=0)
    epoch = time.perf_counter() - t0
    acc = model.evaluate(X, y)["accuracy"]
    model.predict(X[:100000])
    # VmHWM, not ru_maxrss: a child's ru_maxrss counts the parent's memory at the fork
    peak = next(int(line.split()[1]) for line in open("/proc/self/status")
                if line.startswith("VmHWM")) / 1024
    print(f"how={how} peak_rss_mib={peak:.0f} epoch_s={epoch:.2f} train_accuracy={acc:.4f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gigabytes", type=float, default=2.0)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--in-memory", action="store_true")
    parser.add_argument("--_run", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._run:
        return run(args._run[0], args._run[1], args.threads)
    rows = int(args.gigabytes * 1e9) // (4 * FEATURES)
    cpu = cpu_model()
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = os.path.join(folder, "X.npy")
        write(path, rows)
        size = os.path.getsize(path) / 2**20
        print(f"CPU: {cpu}; file {size:.0f} MiB ({rows} rows x {FEATURES} float32)")
        for how in ["memmap"] + (["in-memory"] if args.in_memory else []):
            out = subprocess.run([sys.executable, "-m", "benchmarks.memmap_rss", "--threads",
                                  str(args.threads), "--_run", path, how],
                                 capture_output=True, text=True, check=True)
            print(out.stdout.strip())


if __name__ == "__main__":
    main()
