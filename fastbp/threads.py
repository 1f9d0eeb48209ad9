"""Thread control: numba's worker threads and the BLAS threads, set together.

fastbp never calls BLAS from inside a ``prange`` region, so the two pools never
nest; keeping both at the same count means at most ``n`` threads compute at
any moment.
"""
from __future__ import annotations

import os

import numba

from ._validation import check_int

_blas_controller = None


def _load_blas():
    # numba's np.dot calls SciPy's BLAS; import it so threadpoolctl can see it.
    import scipy.linalg.cython_blas  # noqa: F401


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for fastbp's parallel loops and for BLAS.

    ``n`` must lie in [1, numba.config.NUMBA_NUM_THREADS] (the number of cores
    unless ``NUMBA_NUM_THREADS`` says otherwise).
    """
    global _blas_controller
    limit = numba.config.NUMBA_NUM_THREADS
    n = check_int("number of threads", n, 1)
    if n > limit:
        raise ValueError(f"number of threads must be <= {limit} (NUMBA_NUM_THREADS), got {n}")
    numba.set_num_threads(n)
    _load_blas()
    from threadpoolctl import threadpool_limits
    _blas_controller = threadpool_limits(limits=n, user_api="blas")


def get_num_threads() -> int:
    """The number of threads fastbp's parallel loops use."""
    return numba.get_num_threads()


def parallel_enabled() -> bool:
    """Whether kernels may open parallel regions (more than one thread)."""
    return numba.get_num_threads() > 1
