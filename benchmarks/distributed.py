"""Measurements behind docs/distributed.md.

    python -m benchmarks.distributed hogwild [--seeds 3] [--epochs 5]
        EWT POS window tagger (examples/pos_tagger.py): test accuracy and epoch time of
        the synchronous fit at 1 and 2 threads against fit(hogwild=True) on 2 threads.
    mpiexec -n R python -m benchmarks.distributed allreduce
        fastbp's timed Allreduce of a model's flat gradient buffer against a plain
        mpi4py ``Allreduce`` loop of the same buffer, for the three workloads' sizes.
    python -m benchmarks.distributed costs
        per-step cost on one thread, a + c * rows, fitted from two batch sizes, and on
        paper the Allreduce and row exchange at 8, 16 and 64 ranks over 10 and 100
        Gbit/s links: the step's time on R ranks and the global batch from which R
        ranks beat one.
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
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    from benchmarks.host import cpu_model
    return cpu_model()


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
    jobs = [j[:5] for j in _jobs(workloads)]
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


#: Links on paper: (name, bytes per second, latency per message in seconds).  10 Gbit/s
#: Ethernet with TCP, 100 Gbit/s with RDMA (InfiniBand / RoCE): usual figures.
LINKS = (("10 Gbit/s", 1.25e9, 20e-6), ("100 Gbit/s", 12.5e9, 3e-6))


def ring_allreduce(nbytes, R, bw, lat):
    """Seconds of a ring Allreduce (reduce-scatter then all-gather) of nbytes."""
    return 2 * (R - 1) * lat + 2 * (R - 1) / R * nbytes / bw


def ring_allgather(nbytes_each, R, bw, lat):
    return (R - 1) * lat + (R - 1) * nbytes_each / bw


def _jobs(workloads):
    """(name, builder, X, y, batch, rows of the table per sample, dim) per workload."""
    jobs = []
    if "mlp" in workloads:
        sys.path.insert(0, REPO)
        import fastbp as fb
        from benchmarks.datasets import load_mnist
        X, y, _, _ = load_mnist()

        def mlp():
            m = fb.Sequential([fb.layers.Dense(784, 512, activation="relu"),
                               fb.layers.Dense(512, 256, activation="relu"),
                               fb.layers.Dense(256, 10)], seed=0)
            m.compile(fb.optim.Adam(lr=1e-3), "softmax_cross_entropy")
            return m
        jobs.append(("MNIST MLP 784-512-256-10", mlp, X, y, 128, 0, 0))
    if "pos" in workloads:
        pos = _example("pos_tagger")
        arrays, vocab, tags, weights, _ = pos.load(DATA)
        Xp, yp = arrays["train"]
        jobs.append(("EWT POS window tagger (5 x 50d -> 200 -> 17)",
                     lambda: pos.build_model(len(vocab), len(tags), weights, seed=0), Xp, yp,
                     64, 5, 50))
    if "bilstm" in workloads:
        bl = _example("bilstm_tagger")
        arrays, vocab, tags, weights, sizes = bl.load(DATA)
        Xb, yb = arrays["train"]
        tokens = float((yb >= 0).sum(axis=1).mean())
        jobs.append(("EWT BiLSTM tagger (50d, LSTM 100 each way, 17 tags)",
                     lambda: bl.build_model(len(vocab), len(tags), weights, seed=0, lr=3e-3),
                     Xb, yb, 32, tokens, 50))
    return jobs


def costs(workloads):
    import fastbp as fb
    fb.set_num_threads(1)
    print(f"host: {host()}; one thread; float32")
    for name, make, X, y, batch, ids_per_row, dim in _jobs(workloads):
        n = min(len(y), 200 * 4 * batch)
        head = (lambda a: {k: v[:n] for k, v in a.items()} if isinstance(a, dict) else a[:n])
        per_step = {}
        for b in (batch // 2, 2 * batch):
            m = make()
            m.fit(head(X), y[:n], epochs=1, batch_size=b)  # warm
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                m.fit(head(X), y[:n], epochs=1, batch_size=b)
                times.append((time.perf_counter() - t0) / -(-n // b))
            per_step[b] = statistics.median(times)
        b1, b2 = batch // 2, 2 * batch
        c = (per_step[b2] - per_step[b1]) / (b2 - b1)
        a = per_step[b1] - c * b1
        params = make().n_params
        dense_bytes = 4 * params
        print(f"\n{name}: {params:,} dense parameters ({dense_bytes / 1e6:.2f} MB per "
              f"Allreduce); per step on one thread {a * 1e6:.0f} us + {c * 1e6:.1f} us per "
              f"row (batch {b1}: {per_step[b1] * 1e3:.2f} ms, {b2}: {per_step[b2] * 1e3:.2f} "
              f"ms)")
        for link, bw, lat in LINKS:
            for R in (8, 16, 64):
                comm = ring_allreduce(dense_bytes, R, bw, lat)
                if ids_per_row:  # each rank's touched rows: at most ids x rows, (8 + 4d) bytes
                    rows_each = ids_per_row * batch / R
                    comm += ring_allgather(rows_each * (8 + 4 * dim), R, bw, lat)
                step_R = a + c * batch / R + comm
                step_1 = a + c * batch
                # R ranks beat one from the global batch B with c B (1 - 1/R) > comm
                pays = comm / (c * (1 - 1 / R))
                print(f"  {link:>10}, {R:2d} ranks: exchange {comm * 1e6:8.0f} us; step of "
                      f"{batch} on {R} ranks {step_R * 1e3:6.2f} ms vs one rank "
                      f"{step_1 * 1e3:6.2f} ms ({step_1 / step_R:5.2f}x); pays from a global "
                      f"batch of {pays:,.0f} rows")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["hogwild", "allreduce", "throughput", "costs"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--workloads", default="mlp,pos,bilstm")
    args = ap.parse_args(argv)
    if args.what == "hogwild":
        hogwild(range(args.seeds), args.epochs)
    elif args.what == "allreduce":
        allreduce()
    elif args.what == "costs":
        costs(args.workloads.split(","))
    else:
        throughput(args.workloads.split(","), epochs=min(args.epochs, 2))


if __name__ == "__main__":
    main()
