"""fastbp: fast neural-network training on the CPU with Numba-compiled kernels.

>>> import fastbp as fb
>>> model = fb.Sequential([fb.layers.Dense(4, 8, activation="relu"),
...                        fb.layers.Dense(8, 3)], dtype="float64", seed=0)
>>> _ = model.compile(optimizer=fb.optim.Adam(lr=1e-2), loss="softmax_cross_entropy")
"""
from . import (callbacks, datasets, diagnostics, distributed, init, interop, layers, losses,
               metrics, optim, schedules, text)
from .gradcheck import gradcheck
from .model import DivergenceError, History, Input, Model, Sequential, load
from .threads import get_num_threads, set_num_threads
from .warmup import cache_dir, cache_dirs, clear_cache, warmup
from . import _cache

_cache.ensure_fresh()

__version__ = "0.1.0"

__all__ = [
    "Model", "Sequential", "Input", "History", "DivergenceError", "layers", "losses", "optim", "schedules", "init",
    "text", "callbacks", "metrics", "datasets", "diagnostics", "distributed", "interop",
    "gradcheck", "load", "set_num_threads", "get_num_threads", "warmup", "cache_dir", "cache_dirs", "clear_cache",
    "__version__",
]
