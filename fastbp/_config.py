"""Numba options for every fastbp kernel, in one place.

Kernels are decorated with :data:`jit` (serial) or :data:`jit_parallel` (kernels
that contain a ``prange`` loop).  Nothing here changes ``numba.config``.

``fastmath`` is a set of LLVM flags that leaves out ``nnan`` and ``ninf``, so a
NaN or an infinity in a loss or a gradient stays visible to the divergence
checks, and ``contract`` (fused multiply-adds): with it, the code numba runs
right after compiling a kernel and the code it later loads from its cache fused
different multiply-adds, so the first run after the cache was filled and every
later run gave different last bits (a 250-200-5 MLP, two epochs).  ``reassoc``
lets LLVM vectorise reductions; it makes a result depend on how the loop that
computes it was compiled and where its bounds fall.  So the serial and the parallel form of
every kernel run the same chunk function over the same fixed chunks
(``REDUCE_CHUNK`` elements, rows, blocks of a product fixed by its shapes): an
element is computed by the same instructions at any thread count.  The one
reduction that runs in both contexts, the squared norm, is compiled without
fastmath (:data:`jit_strict`).  The tests
compare the serial and parallel forms bit for bit, and whole runs at 1 and 2
threads in subprocesses.
"""
from __future__ import annotations

import numba
from numba import types
from numba.extending import intrinsic

FASTMATH = {"nsz", "arcp", "reassoc", "afn"}

JIT_OPTIONS = dict(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")

jit = numba.njit(**JIT_OPTIONS)
#: Reductions whose vectorised order LLVM might choose differently in a serial and
#: a parallel context (the squared gradient norm) are compiled without fastmath
#: and keep their partial sums explicitly, so the order is the source's.
jit_strict = numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
jit_parallel = numba.njit(parallel=True, **JIT_OPTIONS)
jit_inline = numba.njit(inline="never", **JIT_OPTIONS)
#: Small helpers that numba inlines into their compiled callers (the interpreter's slot
#: and table views): a call between compiled functions takes a reference to every array
#: it passes, atomic operations that cost more than these helpers' own work.
jit_always_inline = numba.njit(inline="always", **JIT_OPTIONS)

#: A BLAS product is split along the longer side of its output into up to
#: GEMM_BLOCKS blocks (fixed, so that results do not depend on the thread count),
#: each of at least MIN_BLOCK rows or columns (see fastbp.kernels.gemm).
GEMM_BLOCKS = 2
MIN_BLOCK = 64
#: Products of fewer multiply-adds than this stay whole: waking the worker threads
#: costs more than the second core saves (batch-32 64-128-10 MLP: 32 us per step
#: on one thread, 50 us with its 32x64x128 products split over two).
MIN_SPLIT_WORK = 1 << 20

#: Element count below which elementwise work runs serially: a ``prange``
#: region costs a few microseconds to start.
PARALLEL_MIN_WORK = 1 << 15

#: Parameter count below which optimizer updates run serially (a parallel region
#: costs a few microseconds to start).  Since the update loops vectorise, a 50k-
#: parameter Adam step takes 25 us serially, so it pays to split from 32k up;
#: a lazy embedding update splits from a quarter of that (rows of ~50 floats).
PARALLEL_UPDATE_MIN = 1 << 15

#: Fixed chunk (in elements) for flat-buffer reductions: the partial sums are
#: taken per chunk and added in chunk order, whatever the thread count.
REDUCE_CHUNK = 4096


@intrinsic
def unliteral(typingctx, x):
    """x typed as a run-time value.  A compiled function called with a constant
    (``0``, ``True``) is compiled once more for that literal: the interpreter's node
    loops were compiled three times over (from fit, evaluate and the per-layer driver)
    until their callers passed their constants through this."""
    def codegen(context, builder, sig, args):
        return context.cast(builder, args[0], sig.args[0], sig.return_type)
    return types.unliteral(x)(x), codegen
