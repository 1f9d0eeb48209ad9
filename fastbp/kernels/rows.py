"""Gathering a minibatch's rows: dst[i] <- src[idx[start + i], col:col + width].

A shuffled epoch reads every row of the data once, in random order, from an array
far larger than the caches (Fashion-MNIST: 188 MB).  Copied one after another, each
row waits for memory before the hardware prefetcher has seen enough of it to run
ahead: 200 rows of 784 float32 took 140-195 us (3-4.5 GB/s, against 17 GB/s for a
sequential read).  Asking for row i + D while row i is copied keeps rows in flight.
Into the L2 cache (``prefetcht1``) it measured 87-90 us at D = 4; into L1 (``t0``)
130-140 us, too many lines for L1's miss buffers; D = 1, 2, 8 and 16 did no better
(one thread, AMD EPYC, Zen 4 with AVX-512).  A prefetch only hints: it never faults
and changes no value, so the copies are the same bits with and without it.
"""
from __future__ import annotations

from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .._config import PARALLEL_MIN_WORK, jit, jit_parallel

#: Rows requested ahead of the one being copied.
PREFETCH_DISTANCE = 4
#: Rows per parallel chunk (each chunk runs its own prefetches ahead).
ROW_CHUNK = 32
_LINE = 64  # bytes in a cache line

_I8P = ir.IntType(8).as_pointer()
_I32 = ir.IntType(32)
# llvm.prefetch(address, rw = 0 read, locality = 2 (x86 prefetcht1: into L2), cache = 1 data)
_PREFETCH_TYPE = ir.FunctionType(ir.VoidType(), [_I8P, _I32, _I32, _I32])


@intrinsic
def prefetch_span(typingctx, arr, r, c0, width):
    """Ask the cache for arr[r, c0:c0 + width] (a 2-D array with contiguous rows)."""
    if not (isinstance(arr, types.Array) and arr.ndim == 2):
        return None

    def codegen(context, builder, sig, args):
        aty = sig.args[0]
        ary = context.make_array(aty)(context, builder, args[0])
        row, col, w = (context.cast(builder, a, t, types.intp)
                       for a, t in zip(args[1:], sig.args[1:]))
        ptr = cgutils.get_item_pointer2(context, builder, data=ary.data,
                                        shape=cgutils.unpack_tuple(builder, ary.shape),
                                        strides=cgutils.unpack_tuple(builder, ary.strides),
                                        layout=aty.layout, inds=[row, col])
        base = builder.bitcast(ptr, _I8P)
        itemsize = context.get_abi_sizeof(context.get_data_type(aty.dtype))
        nbytes = builder.mul(w, context.get_constant(types.intp, itemsize))
        fn = cgutils.get_or_insert_function(builder.module, _PREFETCH_TYPE, "llvm.prefetch.p0i8")
        flags = [ir.Constant(_I32, 0), ir.Constant(_I32, 2), ir.Constant(_I32, 1)]
        with cgutils.for_range_slice(builder, context.get_constant(types.intp, 0), nbytes,
                                     context.get_constant(types.intp, _LINE)) as (off, _):
            builder.call(fn, [builder.gep(base, [off])] + flags)
        return context.get_dummy_value()
    return types.void(arr, r, c0, width), codegen


@jit
def _gather_span(src, col, idx, start, dst, i0, i1):
    # rows i0 .. i1 - 1 of dst, each row PREFETCH_DISTANCE rows ahead requested first
    w = dst.shape[1]
    for i in range(i0, min(i1, i0 + PREFETCH_DISTANCE)):
        prefetch_span(src, idx[start + i], col, w)
    for i in range(i0, i1):
        if i + PREFETCH_DISTANCE < i1:
            prefetch_span(src, idx[start + i + PREFETCH_DISTANCE], col, w)
        r = idx[start + i]
        # an element loop, not ``dst[i] = src[r, col:col + w]``: numba's slice
        # assignment compiles a formatted shape-mismatch error, 2.4 s of a cold start
        for j in range(w):
            dst[i, j] = src[r, col + j]


@jit_parallel
def gather_rows(src, col, idx, start, dst, parallel):
    """dst[i] <- src[idx[start + i], col:col + width] for every row i of dst (width =
    dst.shape[1]).  src : (n, d) with contiguous rows; idx : int64 row numbers."""
    m = dst.shape[0]
    if parallel and dst.size >= PARALLEL_MIN_WORK:
        chunks = (m + ROW_CHUNK - 1) // ROW_CHUNK
        for c in prange(chunks):
            _gather_span(src, col, idx, start, dst, c * ROW_CHUNK, min(m, (c + 1) * ROW_CHUNK))
    else:
        _gather_span(src, col, idx, start, dst, 0, m)
