"""Measurements behind docs/distributed.md.

    python -m benchmarks.distributed hogwild [--seeds 3] [--epochs 5]
        EWT POS window tagger (examples/pos_tagger.py): test accuracy and epoch time of
        the synchronous fit at 1 and 2 threads against fit(hogwild=True) on 2 threads.
    mpiexec -n R python -m benchmarks.distributed allreduce
        fastbp's timed Allreduce of a model's flat gradient buffer against a plain
        mpi4py ``Allreduce`` loop of the same buffer, for the three workloads' sizes.
    mpiexec -n R python -m benchmarks.distributed throughput [--workloads mlp,pos,bilstm]
        training rows per second of fit(distributed=True) on R ranks (R = 1: a plain
        fit on all cores), from the same weights and global minibatches.

Needs ../shared/data (FASTBP_DATA elsewhere) for the real-data workloads.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("FASTBP_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))


def _example(name):
    import importlib.util
    folder = os.path.join(REPO, "examples")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, os.path.join(folder, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def host():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or "unknown CPU"


# -- Hogwild ------------------------------------------------------------------------------
def hogwild(seeds, epochs):
    import fastbp as fb
    pos = _example("pos_tagger")
    arrays, vocab, tags, weights, _ = pos.load(DATA)
    (Xtr, ytr), (Xte, yte) = arrays["train"], arrays["test"]
    build = lambda seed: pos.build_model(len(vocab), len(tags), weights, seed=seed)  # noqa
    warm = build(0)
    warm.fit(Xtr[:256], ytr[:256], epochs=1, batch_size=64)
    warm.fit(Xtr[:256], ytr[:256], epochs=1, batch_size=64, hogwild=True)
    print(f"host: {host()}, {os.cpu_count()} cores; EWT POS, {len(ytr)} training windows, "
          f"batch 64, {epochs} epochs, Adam 1e-3")
    rows = []
    for seed in seeds:
        result = {}
        for mode, threads, hog in (("sync, 1 thread", 1, False), ("sync, 2 threads", 2, False),
                                   ("hogwild, 2 threads", 2, True)):
            fb.set_num_threads(threads)
            m = build(seed)
            h = m.fit(Xtr, ytr, epochs=epochs, batch_size=64, seed=seed, hogwild=hog)
            acc = m.evaluate(Xte, yte)["accuracy"]
            result[mode] = (acc, statistics.median(h["time"]))
            print(f"  seed {seed} {mode:20s} test acc {acc:.4f}  epoch median "
                  f"{result[mode][1]:.3f} s ({', '.join(f'{t:.2f}' for t in h['time'])})",
                  flush=True)
        rows.append(result)
    for mode in rows[0]:
        accs = [r[mode][0] for r in rows]
        secs = [r[mode][1] for r in rows]
        print(f"{mode:20s} mean test acc {np.mean(accs):.4f} (min {min(accs):.4f}, max "
              f"{max(accs):.4f}); epoch {statistics.median(secs):.3f} s (median over seeds)")
    base = statistics.median(r["sync, 1 thread"][1] for r in rows)
    for mode in ("sync, 2 threads", "hogwild, 2 threads"):
        t = statistics.median(r[mode][1] for r in rows)
        print(f"{mode}: {base / t:.2f}x the 1-thread synchronous epoch")
    gap = np.mean([r["hogwild, 2 threads"][0] - r["sync, 2 threads"][0] for r in rows])
    print(f"hogwild - sync accuracy: {100 * gap:+.2f} points (mean over seeds)")


# -- MPI ----------------------------------------------------------------------------------
def allreduce(repeats=2000):
    from mpi4py import MPI

    from fastbp import distributed
    session = distributed.Session()
    comm = session.comm
    sizes = {"MNIST MLP 784-512-256-10": 784 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10,
             "window tagger dense (250-200-17)": 250 * 200 + 200 + 200 * 17 + 17,
             "BiLSTM tagger dense (2 x LSTM 50->100, 200->17)":
                 2 * (50 * 400 + 100 * 400 + 400) + 200 * 17 + 17}
    if session.rank == 0:
        print(f"host: {host()}; {session.size} ranks; float32; median of 7 rounds of "
              f"{repeats} calls")
    for name, n in sizes.items():
        buf = np.ones(n, dtype=np.float32)
        plain, ours = [], []
        for _ in range(7):
            comm.Barrier()
            t0 = time.perf_counter()
            for _ in range(repeats):
                comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            plain.append((time.perf_counter() - t0) / repeats)
            comm.Barrier()
            t0 = time.perf_counter()
            for _ in range(repeats):
                session.allreduce_sum(buf, "benchmark")
            ours.append((time.perf_counter() - t0) / repeats)
            buf[:] = 1
        if session.rank == 0:
            p, o = statistics.median(plain), statistics.median(ours)
            print(f"{name}: {n:,} floats ({4 * n / 1e6:.2f} MB): mpi4py Allreduce "
                  f"{p * 1e6:.1f} us, fastbp's {o * 1e6:.1f} us, ratio {o / p:.2f}")


def throughput(workloads, epochs=2):
    import fastbp as fb
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    dist = size > 1
    if not dist:
        fb.set_num_threads(min(2, os.cpu_count() or 1))
    jobs = []
    if "mlp" in workloads:
        sys.path.insert(0, REPO)
        from benchmarks.datasets import load_mnist
        X, y, _, _ = load_mnist()

        def mlp():
            m = fb.Sequential([fb.layers.Dense(784, 512, activation="relu"),
                               fb.layers.Dense(512, 256, activation="relu"),
                               fb.layers.Dense(256, 10)], seed=0)
            m.compile(fb.optim.Adam(lr=1e-3), "softmax_cross_entropy")
            return m
        jobs.append(("MNIST MLP 784-512-256-10, batch 128", mlp, X, y, 128))
    if "pos" in workloads:
        pos = _example("pos_tagger")
        arrays, vocab, tags, weights, _ = pos.load(DATA)
        Xp, yp = arrays["train"]
        jobs.append(("EWT POS window tagger, batch 64",
                     lambda: pos.build_model(len(vocab), len(tags), weights, seed=0), Xp, yp, 64))
    if "bilstm" in workloads:
        bl = _example("bilstm_tagger")
        arrays, vocab, tags, weights, sizes = bl.load(DATA)
        Xb, yb = arrays["train"]
        jobs.append(("EWT BiLSTM tagger, batch 32 sentences",
                     lambda: bl.build_model(len(vocab), len(tags), weights, seed=0, lr=3e-3),
                     Xb, yb, 32))
    for name, make, X, y, batch in jobs:
        m = make()
        head = {k: v[:4 * batch] for k, v in X.items()} if isinstance(X, dict) else X[:4 * batch]
        m.fit(head, y[:4 * batch], epochs=1, batch_size=batch, distributed=dist)
        m = make()
        h = m.fit(X, y, epochs=epochs, batch_size=batch, seed=0, distributed=dist)
        n = len(y)
        if rank == 0:
            t = statistics.median(h["time"])
            print(f"{name}: {size} rank(s) x {fb.get_num_threads()} thread(s): epoch "
                  f"{t:.2f} s ({', '.join(f'{s:.2f}' for s in h['time'])}), "
                  f"{n / t:,.0f} rows/s, final loss {h['loss'][-1]:.4f}; host {host()}",
                  flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["hogwild", "allreduce", "throughput"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--workloads", default="mlp,pos,bilstm")
    args = ap.parse_args(argv)
    if args.what == "hogwild":
        hogwild(range(args.seeds), args.epochs)
    elif args.what == "allreduce":
        allreduce()
    else:
        throughput(args.workloads.split(","), epochs=min(args.epochs, 2))


if __name__ == "__main__":
    main()
