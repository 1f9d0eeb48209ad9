"""One scenario of a distributed fit, run by tests/test_distributed.py as
``mpiexec -n R python tests/mpi_worker.py SCENARIO OUT`` (or plainly, as one process,
for the reference run).  Each rank writes its weights to OUT/<scenario>-<rank>.npz
(plain arrays, read back without pickles) and prints what the test looks for."""
from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

import fastbp as fb
from fastbp import layers as L


def mlp():
    m = fb.Sequential([L.Dense(6, 8, activation="tanh"), L.Dense(8, 3)], dtype="float64",
                      seed=3)
    m.compile(optimizer=fb.optim.Adam(lr=1e-2, clip_norm=0.5), loss="softmax_cross_entropy")
    rng = np.random.default_rng(0)
    return m, rng.standard_normal((101, 6)), rng.integers(0, 3, 101)


def window():
    """Two fine-tuned tables (words and casing) read through windows, float64."""
    w = fb.Input(5, dtype="int64", name="words")
    c = fb.Input(5, dtype="int64", name="casing")
    h = L.Concatenate()([L.WindowEmbedding(30, 6, window=2)(w),
                         L.WindowEmbedding(4, 2, window=2)(c)])
    h = L.Dense(40, 12, activation="tanh")(h)
    m = fb.Model(inputs=[w, c], outputs=L.Dense(12, 3)(h), dtype="float64", seed=1)
    m.compile(optimizer=fb.optim.Adam(lr=1e-2, clip_norm=1.0), loss="softmax_cross_entropy")
    rng = np.random.default_rng(5)
    X = [rng.integers(0, 30, (83, 5)), rng.integers(0, 4, (83, 5))]
    return m, X, rng.integers(0, 3, 83)


def bilstm():
    """A BiLSTM tagger over padded sentences of different lengths (the loss averaged
    over the real tokens of the global minibatch), float64."""
    ids = fb.Input(dtype="int64", sequence=True, name="ids")
    h = L.Bidirectional(L.LSTM(5, 4))(L.Embedding(20, 5, padding_id=0)(ids))
    m = fb.Model(ids, L.Dense(8, 3)(h), dtype="float64", seed=2)
    m.compile(optimizer=fb.optim.Adam(lr=1e-2), loss="softmax_cross_entropy")
    rng = np.random.default_rng(4)
    lengths = rng.integers(1, 9, 37)
    words = fb.text.pad_sequences([rng.integers(1, 20, n) for n in lengths])
    tags = fb.text.pad_sequences([rng.integers(0, 3, n) for n in lengths], padding_id=-1)
    return m, words, tags


class Faulty(L.Layer):
    """The identity, as a user's NumPy layer (the per-layer path), that raises or kills
    its process on one rank at its ``at``-th forward pass."""

    def __init__(self, how, rank, at=5):
        super().__init__()
        self.how, self.rank, self.at, self.calls = how, rank, at, 0

    def forward(self, x, training):
        self.calls += 1
        if self.rank == 1 and self.calls == self.at:
            # when it fails (the kernels are compiled by now: the test times what follows)
            print(f"rank 1 fails at {time.time():.3f}", flush=True)
            if self.how == "raise":
                raise ValueError("rank 1's layer failed on purpose")
            if self.how == "killed":  # as the kernel's OOM killer would
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(3)  # the process ends without a word
        return x

    def backward(self, g):
        return g


def faulty(how, rank):
    m = fb.Sequential([L.Dense(6, 8, activation="tanh"), Faulty(how, rank), L.Dense(8, 3)],
                      dtype="float64", seed=3)
    m.compile(optimizer=fb.optim.SGD(lr=0.1), loss="softmax_cross_entropy")
    rng = np.random.default_rng(0)
    return m, rng.standard_normal((101, 6)), rng.integers(0, 3, 101)


def main(scenario, out):
    from mpi4py import MPI
    rank, size = MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()
    dist = size > 1
    fit = dict(epochs=3, batch_size=16, seed=5, distributed=dist)
    if scenario in ("mlp", "accumulate", "threads"):
        m, X, y = mlp()
        if scenario == "accumulate":
            fit["accumulate"] = 2
        if scenario == "threads" and rank == 0:
            fb.set_num_threads(2)
    elif scenario == "window":
        m, X, y = window()
    elif scenario == "bilstm":
        m, X, y = bilstm()
        fit["batch_size"] = 8
    elif scenario in ("raise", "die", "killed"):
        m, X, y = faulty(scenario, rank)
    elif scenario == "vanish":
        m, X, y = mlp()
        if rank == 1:
            print("rank 1 leaves before fit", flush=True)
            return
    elif scenario == "disagree":
        m, X, y = mlp()
        if rank == 1:
            X, y = X[:-1], y[:-1]
    elif scenario == "disagree_model":
        m, X, y = mlp()
        if rank == 1:
            m = fb.Sequential([L.Dense(6, 9, activation="tanh"), L.Dense(9, 3)],
                              dtype="float64", seed=3)
            m.compile(optimizer=fb.optim.Adam(lr=1e-2, clip_norm=0.5),
                      loss="softmax_cross_entropy")
    elif scenario == "small_batch":
        m, X, y = mlp()
        fit["batch_size"] = size - 1
    elif scenario == "resume_first":
        m, X, y = window()
        fit.update(epochs=1, callbacks=[fb.callbacks.ModelCheckpoint(
            os.path.join(out, "resume.fbp"))])
    elif scenario == "resume_second":
        _, X, y = window()
        m = fb.load(os.path.join(out, "resume.fbp"))
        fit.update(epochs=1, seed=None)
    elif scenario == "uninterrupted":
        m, X, y = window()
        fit.update(epochs=2)
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    history = m.fit(X, y, **fit)
    np.savez(os.path.join(out, f"{scenario}-{rank}.npz"), params=m.params, tables=m.tables,
             state=m.optimizer.state, loss=np.array(history["loss"]))
    print(f"rank {rank} of {size}: threads {fb.get_num_threads()}, loss {history['loss']}",
          flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
