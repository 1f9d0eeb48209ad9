"""asv benchmarks of whole training steps and epochs: the DESIGN.md workloads.

* fig. 7.8 program: 10-40-40-5 ReLU MLP, MSE, SGD(0.01, momentum 0.9), batch 10,
  100 random points, 100 epochs with StepDecay(10, 0.5);
* mlp_small: 64-128-10, batch 32, Adam, softmax cross-entropy;
* mlp_784_b128 / mlp_784_b1024: 784-512-256-10, SGD + momentum, softmax CE;
* MNIST: the 784-512-256-10 MLP on real MNIST, Adam 1e-3, batch 128;
* start-up: a fresh interpreter that imports fastbp and takes one step, with the
  compiled-kernel cache warm and with an empty one.

The window-model and 10M-parameter optimizer workloads follow with their issues.
Peer comparisons (PyTorch, JAX) are in ``compare_peers.py``, not here.
"""
from __future__ import annotations

import fastbp as fb

from .datasets import load_mnist, random_classification, random_regression

MLP_WORKLOADS = {
    # name: (layer widths, batch, optimizer, batches per epoch)
    "mlp_small": ((64, 128, 10), 32, "adam", 100),
    "mlp_784_b128": ((784, 512, 256, 10), 128, "sgd_momentum", 50),
    "mlp_784_b1024": ((784, 512, 256, 10), 1024, "sgd_momentum", 10),
}


def mlp(sizes, seed=0, dropout=0.0):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        layers.append(fb.layers.Dense(a, b, activation=None if last else "relu"))
        if dropout and not last:
            layers.append(fb.layers.Dropout(dropout))
    return fb.Sequential(layers, dtype="float32", seed=seed)


def optimizer(name):
    if name == "adam":
        return fb.optim.Adam(lr=1e-3)
    return fb.optim.SGD(lr=0.01, momentum=0.9)


def gemm_flops(sizes, batch):
    """2 m n k per GEMM of a step: forward and dW for every layer, dL/dx for all but the first."""
    fwd = sum(2 * batch * a * b for a, b in zip(sizes[:-1], sizes[1:]))
    din = sum(2 * batch * a * b for a, b in zip(sizes[1:-1], sizes[2:]))
    return 2 * fwd + din


class Fig78:
    """The fig. 7.8 program of seed 002 (per-step overhead)."""

    def setup(self):
        self.X, self.Y = random_regression(100, 10, 5, seed=0)
        self.model = mlp((10, 40, 40, 5))
        self.model.compile(fb.optim.SGD(lr=0.01, momentum=0.9), "mse")
        self.schedule = fb.schedules.StepDecay(10, 0.5)
        self.xb, self.yb = self.X[:10], self.Y[:10]
        self.model.fit(self.X, self.Y, epochs=2, batch_size=10, schedule=self.schedule)
        self.model.train_on_batch(self.xb, self.yb)

    def time_program_100_epochs(self):
        self.model.fit(self.X, self.Y, epochs=100, batch_size=10, schedule=self.schedule)

    def time_epoch(self):
        self.model.fit(self.X, self.Y, epochs=1, batch_size=10, schedule=self.schedule)

    def time_train_on_batch(self):
        self.model.train_on_batch(self.xb, self.yb)

    def peakmem_program_100_epochs(self):
        self.model.fit(self.X, self.Y, epochs=100, batch_size=10, schedule=self.schedule)


class MLPTraining:
    """One step (train_on_batch) and one epoch (fit) of the MLP workloads."""

    params = (list(MLP_WORKLOADS),)
    param_names = ["workload"]
    timeout = 300

    def setup(self, workload):
        sizes, batch, opt, n_batches = MLP_WORKLOADS[workload]
        self.sizes, self.batch, self.n_batches = sizes, batch, n_batches
        self.X, self.y = random_classification(batch * n_batches, sizes[0], sizes[-1], seed=0)
        self.xb, self.yb = self.X[:batch], self.y[:batch]
        self.model = mlp(sizes)
        self.model.compile(optimizer(opt), "softmax_cross_entropy")
        self.model.fit(self.X, self.y, epochs=1, batch_size=batch)
        self.model.train_on_batch(self.xb, self.yb)

    def time_train_on_batch(self, workload):
        self.model.train_on_batch(self.xb, self.yb)

    def time_epoch(self, workload):
        self.model.fit(self.X, self.y, epochs=1, batch_size=self.batch)

    def peakmem_epoch(self, workload):
        self.model.fit(self.X, self.y, epochs=1, batch_size=self.batch)

    def track_gflops(self, workload):
        """GEMM GFLOP/s of fit's steps (best of 3 epochs)."""
        import time
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            self.model.fit(self.X, self.y, epochs=1, batch_size=self.batch)
            best = min(best, time.perf_counter() - t0)
        return gemm_flops(self.sizes, self.batch) * self.n_batches / best / 1e9

    track_gflops.unit = "GFLOP/s"


class MLPWithDropout:
    """784-512-256-10 with Dropout(0.2) after each hidden layer, batch 128, Adam."""

    def setup(self):
        self.X, self.y = random_classification(128 * 20, 784, 10, seed=0)
        self.model = mlp((784, 512, 256, 10), dropout=0.2)
        self.model.compile(fb.optim.Adam(lr=1e-3), "softmax_cross_entropy")
        self.model.fit(self.X, self.y, epochs=1, batch_size=128)

    def time_epoch(self):
        self.model.fit(self.X, self.y, epochs=1, batch_size=128)


class Threads:
    """The batch-1024 784-512-256-10 epoch (4 steps) at 1 and 2 threads (``fb.set_num_threads``)."""

    params = ([1, 2],)
    param_names = ["threads"]

    def setup(self, threads):
        import numba
        if threads > numba.config.NUMBA_NUM_THREADS:
            raise NotImplementedError(f"only {numba.config.NUMBA_NUM_THREADS} threads here")
        self._before = fb.get_num_threads()
        fb.set_num_threads(threads)
        self.X, self.y = random_classification(1024 * 4, 784, 10, seed=0)
        self.model = mlp((784, 512, 256, 10))
        self.model.compile(fb.optim.SGD(lr=0.01, momentum=0.9), "softmax_cross_entropy")
        self.model.fit(self.X, self.y, epochs=1, batch_size=1024)

    def teardown(self, threads):
        fb.set_num_threads(self._before)

    def time_epoch_4_steps(self, threads):
        self.model.fit(self.X, self.y, epochs=1, batch_size=1024)


class MNIST:
    """An epoch of the 784-512-256-10 MLP on real MNIST (Adam 1e-3, batch 128), and the
    test accuracy after one epoch."""

    number = 1
    repeat = (1, 3, 60.0)
    warmup_time = 0.0
    timeout = 600

    def setup(self):
        try:
            self.X, self.y, self.Xt, self.yt = load_mnist()
        except FileNotFoundError as e:
            raise NotImplementedError(str(e))
        self.model = mlp((784, 512, 256, 10))
        self.model.compile(fb.optim.Adam(lr=1e-3), "softmax_cross_entropy")
        self.model.fit(self.X[:1024], self.y[:1024], epochs=1, batch_size=128)

    def time_epoch(self):
        self.model.fit(self.X, self.y, epochs=1, batch_size=128)

    def track_test_accuracy_after_1_epoch(self):
        model = mlp((784, 512, 256, 10))
        model.compile(fb.optim.Adam(lr=1e-3), "softmax_cross_entropy")
        model.fit(self.X, self.y, epochs=1, batch_size=128, seed=0)
        return model.evaluate(self.Xt, self.yt)["accuracy"]

    track_test_accuracy_after_1_epoch.unit = "accuracy"


FIRST_STEP = """
import numpy as np
import fastbp as fb
model = fb.Sequential([fb.layers.Dense(10, 40, activation="relu"),
                       fb.layers.Dense(40, 40, activation="relu"),
                       fb.layers.Dense(40, 5)], seed=0)
model.compile(fb.optim.SGD(lr=0.01, momentum=0.9), "mse")
rng = np.random.default_rng(0)
model.train_on_batch(rng.standard_normal((10, 10)), rng.standard_normal((10, 5)))
"""

# runs untimed before FIRST_STEP in the same fresh process: an empty numba cache
EMPTY_CACHE = """
import atexit, os, shutil, tempfile
_d = tempfile.mkdtemp(prefix="fastbp-asv-cold-")
os.environ["NUMBA_CACHE_DIR"] = _d
atexit.register(shutil.rmtree, _d, True)
"""


class Startup:
    """A fresh interpreter: import fastbp, build the fig. 7.8 MLP, one train_on_batch."""

    timeout = 600

    def setup_cache(self):
        # fill the on-disk cache once, so the warm runs find every kernel compiled
        import subprocess
        import sys
        subprocess.run([sys.executable, "-c", FIRST_STEP], check=True)

    def timeraw_import_and_first_step_warm_cache(self):
        return FIRST_STEP

    def timeraw_import_fastbp(self):
        return "import fastbp"

    def timeraw_import_and_first_step_empty_cache(self):
        return FIRST_STEP, EMPTY_CACHE

    timeraw_import_and_first_step_empty_cache.repeat = 1
    timeraw_import_and_first_step_empty_cache.number = 1
