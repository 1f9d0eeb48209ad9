"""Ahead-of-time compilation of the common signatures, and where the cache lives.

Kernels are compiled with ``cache=True``: the machine code goes to numba's
cache, by default ``__pycache__`` folders beside fastbp's modules (or, when
those are not writable, numba's per-user cache folder; ``NUMBA_CACHE_DIR``
overrides both; when none can be written, a temporary folder for the process,
with a warning).  Delete the ``*.nbi``/``*.nbc`` files there to clear it.

Inputs reach the compiled code in one form whatever their layout: C-contiguous,
writable, of the model's dtype (int64 for ids and labels), converted at the
boundary.  So a read-only, Fortran-ordered or strided array, or int32 labels,
run the signatures a warm-up compiled.
"""
from __future__ import annotations

import numpy as np

from ._validation import check_int


def cache_dirs() -> list[str]:
    """The folders where fastbp's compiled code is cached: numba keeps one per package
    (``fastbp/kernels`` for the math, ``fastbp/engine`` for the interpreter)."""
    from ._cache import kernel_cache_dirs
    return sorted(kernel_cache_dirs())


def cache_dir() -> str:
    """The folder where fastbp's compiled kernels are cached (the first of
    :func:`cache_dirs`)."""
    dirs = cache_dirs()
    return dirs[0] if dirs else ""


def clear_cache() -> int:
    """Delete fastbp's compiled code from numba's cache (every folder of
    :func:`cache_dirs`); the next run compiles again.  Returns the files removed."""
    from ._cache import clear
    return clear()


def warmup(dtypes=("float32", "float64"), verbose: bool = False, *, model=None,
           predict: bool = True, batch_size: int = 32) -> None:
    """Compile (or load from numba's cache) ahead of time.

    With ``model`` (compiled; trained or not, it is not touched): what its ``fit``,
    ``evaluate`` and (unless ``predict`` is False) ``predict`` run, on two processes
    when the cache is empty and there is a second core
    (:mod:`fastbp.engine.precompile`).  Without: the builds
    of a few common models for each dtype (Dense and Dropout MLPs with SGD and Adam and
    every loss, a window model); other combinations of node kinds, optimizer and loss
    compile on first use (see :mod:`fastbp.engine.specialize`).

    Parameters
    ----------
    dtypes : sequence of {"float32", "float64"}
        The dtypes of the common models (without ``model``).
    verbose : bool
        Print a line as each group of common models is warm.
    model : Model or Sequential, optional
        A compiled model to warm up for, instead of the common models.
    predict : bool
        With ``model``: compile its ``predict`` too.
    batch_size : int
        With ``model``: the minibatch size its ``fit`` will use, which picks the
        build compiled (a small model's batches run in a build without threads).
    """
    if model is not None:
        from .engine.precompile import compile_model
        if model.optimizer is None:
            raise ValueError("warmup(model=...) needs a compiled model: call "
                             "model.compile(optimizer, loss) first")
        compile_model(model, predict=predict,
                      batch_size=check_int("batch_size", batch_size, 1))
        return
    from .layers import Dense, Dropout, WindowEmbedding
    from .model import Sequential
    from .optim import SGD, Adam
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3))
    for dtype in dtypes:
        for loss, y in (("mse", rng.standard_normal((4, 2))),
                        ("binary_cross_entropy", (rng.random((4, 2)) > 0.5) * 1.0),
                        ("softmax_cross_entropy", np.array([0, 1, 1, 0]))):
            for opt in (SGD(lr=0.01, momentum=0.9), Adam()):
                model = Sequential([Dense(3, 5, activation="relu"), Dropout(0.1), Dense(5, 2)],
                                   dtype=dtype)
                model.compile(opt, loss)
                model.train_on_batch(x, y)
                model.fit(x, y, epochs=1, batch_size=2)
                model.evaluate(x, y)
                model.predict(x)
            if verbose:
                print(f"warm: {dtype} {loss}")
        ids = rng.integers(0, 7, (4, 3))
        for opt in (SGD(lr=0.01, momentum=0.9), Adam()):
            model = Sequential([WindowEmbedding(7, 2, window=1), Dense(6, 4, activation="tanh"),
                                Dense(4, 2)], dtype=dtype)
            model.compile(opt, "softmax_cross_entropy")
            model.train_on_batch(ids, np.array([0, 1, 1, 0]))
            model.fit(ids, np.array([0, 1, 1, 0]), epochs=1, batch_size=2)
            model.evaluate(ids, np.array([0, 1, 1, 0]))
            model.predict(ids)
