"""Numba options for every fastbp kernel, in one place.

Kernels are decorated with :data:`jit` (serial) or :data:`jit_parallel` (kernels
that contain a ``prange`` loop).  Nothing here changes ``numba.config``, except
where numba could cache the kernels nowhere (:func:`ensure_cache_location`).

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

import os
import tempfile
import warnings

import numba
from numba import types
from numba.extending import intrinsic

_HERE = os.path.dirname(os.path.abspath(__file__))
#: The package folders holding compiled functions (numba caches each beside its module).
_KERNEL_DIRS = ("kernels", "engine")


def _writable_dir(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


def ensure_cache_location() -> str | None:
    """Give numba a kernel cache it can write, before any kernel is decorated.

    numba caches beside each module (``__pycache__``) or, failing that, in the
    user-wide cache (``~/.cache/numba``); when it can write neither (a read-only
    install for a user without a writable home) it refuses to decorate at all
    (``RuntimeError: cannot cache function``).  Then the kernels are cached in a new
    temporary folder for this process, also named in ``NUMBA_CACHE_DIR`` so that
    fastbp's compile helper (:mod:`fastbp.engine.precompile`) shares it, with one
    warning.  Returns that folder, or None when numba has a place of its own."""
    if numba.config.CACHE_DIR and _writable_dir(numba.config.CACHE_DIR):
        return None
    if all(_writable_dir(os.path.join(_HERE, d, "__pycache__")) for d in _KERNEL_DIRS):
        return None
    from numba.misc.appdirs import AppDirs
    if _writable_dir(AppDirs(appname="numba", appauthor=False).user_cache_dir):
        return None
    folder = tempfile.mkdtemp(prefix="fastbp-kernels-")
    numba.config.CACHE_DIR = folder
    os.environ["NUMBA_CACHE_DIR"] = folder
    warnings.warn(f"fastbp: neither the package folder ({_HERE}) nor numba's user cache can be "
                  f"written; compiled kernels are cached in {folder} for this process only "
                  f"(set NUMBA_CACHE_DIR to a writable folder to keep them between runs)",
                  RuntimeWarning, stacklevel=2)
    return folder


FALLBACK_CACHE_DIR = ensure_cache_location()

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

#: The recurrent kernels are compiled without ``reassoc`` and ``arcp``: numba links a
#: copy of each function a kernel calls into the kernel and LLVM optimises every copy
#: in its caller's context, and a process that has just compiled the LSTM backward ran
#: another copy of its time loop than a process that loaded it from the cache.  With
#: ``reassoc`` the copies multiplied the gate factors in other orders (a BiLSTM tagger
#: trained to other bits on the run that filled the cache than on later runs); with
#: only the flags below every copy computes the source's expression.  Their loops are
#: elementwise, so they vectorise the same without ``reassoc``: an epoch of the BiLSTM
#: tagger on 2,000 EWT sentences took 1.01x the time (0.99x and 1.04x, the two import
#: orders of benchmarks/compare_builds.py, 2-vCPU AMD EPYC Zen 4).
EXACT_FASTMATH = {"nsz", "afn"}
EXACT_OPTIONS = dict(JIT_OPTIONS, fastmath=EXACT_FASTMATH)
jit_exact = numba.njit(**EXACT_OPTIONS)
jit_exact_parallel = numba.njit(parallel=True, **EXACT_OPTIONS)
jit_exact_always_inline = numba.njit(inline="always", **EXACT_OPTIONS)

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

#: An inference call of fewer rows x parameters than this (about its multiply-adds:
#: 2^32, a few tenths of a second on one core) runs in a model's serial build even
#: where a threaded branch would be taken: a second build would cost more to load
#: from the cache (or to compile) than its threads save (fastbp.engine.drivers).
THREADED_INFERENCE_MIN_WORK = 1 << 32

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
