"""Numba options for every fastbp kernel, in one place.

Kernels are decorated with :data:`jit` (serial) or :data:`jit_parallel` (kernels
that contain a ``prange`` loop).  Nothing here changes ``numba.config``.

fastmath is off.  Its ``contract`` (fused multiply-add) and ``reassoc``
(reordered sums) flags let LLVM compile the same source line differently in a
loop's vector body, its scalar remainder and a parallel copy of the loop, so an
element's result would depend on where a chunk boundary falls, that is on the
thread count.  Without them every sum is evaluated in source order; the
reductions that need vectorising keep several partial sums explicitly
(``dot`` in kernels/dense.py), in a fixed order.  NaN and Inf stay visible too.
"""
from __future__ import annotations

import numba

FASTMATH = False

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

#: Small products (hand-written loops) of at least this many multiply-adds run in
#: parallel over fixed chunks of ROW_CHUNK rows (or K_BLOCK rows of a weight
#: gradient); each row's arithmetic is the same in any chunk.
SMALL_PARALLEL_WORK = 1 << 17
ROW_CHUNK = 16
K_BLOCK = 16

#: BLAS products are split into this many row blocks (fixed, so that results do
#: not depend on the thread count), each of at least MIN_BLOCK_ROWS rows.
ROW_BLOCKS = 4
MIN_BLOCK_ROWS = 32

#: Element count below which elementwise work runs serially: a ``prange``
#: region costs a few microseconds to start.
PARALLEL_MIN_WORK = 1 << 15

#: Fixed chunk (in elements) for flat-buffer reductions: the partial sums are
#: taken per chunk and added in chunk order, whatever the thread count.
REDUCE_CHUNK = 4096
