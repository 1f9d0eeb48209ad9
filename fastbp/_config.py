"""Numba options for every fastbp kernel, in one place.

Kernels are decorated with :data:`jit` (serial) or :data:`jit_parallel` (kernels
that contain a ``prange`` loop).  Nothing here changes ``numba.config``.

``fastmath`` is given as a set of LLVM flags that leaves out ``nnan`` and
``ninf``, so that a NaN or an infinity in a loss or a gradient stays visible
to the divergence checks.  ``reassoc`` lets LLVM vectorise reductions; the
order of those reductions is fixed by the compiled code, not by the thread
count, so results stay identical for any number of threads.
"""
from __future__ import annotations

import numba

FASTMATH = {"nsz", "arcp", "contract", "reassoc"}

JIT_OPTIONS = dict(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")

jit = numba.njit(**JIT_OPTIONS)
jit_parallel = numba.njit(parallel=True, **JIT_OPTIONS)
jit_inline = numba.njit(inline="never", **JIT_OPTIONS)

#: Multiply-adds (batch * n_in * n_out) below which a product is done by the
#: hand-written loops instead of BLAS (``np.dot`` inside ``@njit``): below it
#: the BLAS call and its packing cost more than the arithmetic.
SMALL_GEMM_WORK = 1 << 16

#: Layers with fewer outputs than this are "narrow": their small products use
#: dot products over n_in on a transposed copy of W, up to SMALL_NARROW_WORK.
NARROW = 16
SMALL_NARROW_WORK = 1 << 18

#: BLAS products are split into this many row blocks (fixed, so that results do
#: not depend on the thread count), each of at least MIN_BLOCK_ROWS rows.
ROW_BLOCKS = 4
MIN_BLOCK_ROWS = 64

#: Element count below which elementwise work runs serially: a ``prange``
#: region costs a few microseconds to start.
PARALLEL_MIN_WORK = 1 << 15

#: Fixed chunk (in elements) for flat-buffer reductions: the partial sums are
#: taken per chunk and added in chunk order, whatever the thread count.
REDUCE_CHUNK = 4096
