"""Thread control.

fastbp's parallel loops run on numba's worker threads.  BLAS products are split
by fastbp itself into blocks fixed by the shapes (see fastbp.kernels.gemm) and
run on those same threads, each block calling SciPy's BLAS (the BLAS behind
numba's ``np.dot``, see fastbp.kernels.blas) on one thread.  So numba threads x BLAS threads
never exceeds the thread count, and results do not depend on it.  Compiling a
model pins SciPy's OpenBLAS to one thread for the process; NumPy's own BLAS is
left alone.
"""
from __future__ import annotations

import os

import numba

from ._validation import check_int

_blas_controller = None
_requested = None  # the count a user last passed to set_num_threads


def _load_blas():
    # fastbp's products call SciPy's BLAS; import it so threadpoolctl can see it.
    import scipy.linalg.cython_blas  # noqa: F401


def pin_blas() -> None:
    """Run SciPy's BLAS on one thread (once per process); fastbp parallelises around it."""
    global _blas_controller
    if _blas_controller is not None:
        return
    _load_blas()
    from threadpoolctl import ThreadpoolController
    libs = [lib for lib in ThreadpoolController().lib_controllers
            if lib.user_api == "blas" and f"{os.sep}scipy" in lib.filepath]
    for lib in libs:
        lib.set_num_threads(1)
    _blas_controller = libs


def set_num_threads(n: int, requested: bool = True) -> None:
    """Use ``n`` threads for fastbp's parallel loops (BLAS blocks included).

    ``n`` must lie in [1, numba.config.NUMBA_NUM_THREADS] (the number of cores
    unless ``NUMBA_NUM_THREADS`` says otherwise).  The same seed gives the same
    weights at any ``n``.  (``requested=False``: fastbp's own choice, as a
    distributed fit's, not remembered as the user's.)
    """
    limit = numba.config.NUMBA_NUM_THREADS
    n = check_int("number of threads", n, 1)
    if n > limit:
        raise ValueError(f"number of threads must be <= {limit} (NUMBA_NUM_THREADS), got {n}")
    numba.set_num_threads(n)
    pin_blas()
    if requested:
        global _requested
        _requested = n


def requested() -> int | None:
    """The thread count a user asked for with set_num_threads, or None."""
    return _requested


def get_num_threads() -> int:
    """The number of threads fastbp's parallel loops use."""
    return numba.get_num_threads()


def parallel_enabled() -> bool:
    """Whether kernels may open parallel regions (more than one thread).  Every
    Python-level kernel call asks this first, so it also pins SciPy's BLAS (once):
    BLAS blocks running in parallel on a multi-threaded BLAS oversubscribe the cores
    (a 128x784x512 product took 15.7 ms instead of 0.7 ms)."""
    if _blas_controller is None:
        pin_blas()
    return numba.get_num_threads() > 1
