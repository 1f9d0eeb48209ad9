"""C <- A B + beta C on strided views, through the BLAS that numba already uses.

``np.dot`` inside ``@njit`` needs contiguous operands, so a block of columns of
a product (``W[:, c0:c1]``) or a transposed operand would have to be copied.
BLAS itself takes a leading dimension and a transpose flag for each operand;
this module calls it that way, through ``numba_xxgemm``, the C helper numba's
own ``np.dot`` calls (it forwards to SciPy's ``cython_blas``).  The call is an
external symbol resolved when the code is linked, so the on-disk cache works.

An operand may be any 2-D view whose rows or whose columns are contiguous (a
slice of rows or columns of a C-ordered array, or its ``.T``).
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic
from numba.np.linalg import ensure_blas

from .._config import jit

ensure_blas()

_VOIDPTR = ir.IntType(8).as_pointer()
_CHAR = ir.IntType(8)
_INTP = ir.IntType(types.intp.bitwidth)
_INT = ir.IntType(32)
# int numba_xxgemm(kind, transa, transb, m, n, k, *alpha, *a, lda, *b, ldb, *beta, *c, ldc):
# column-major ?gemm with kind 's' or 'd' (numba/_helperlib.c), declared exactly as
# numba's own np.dot declares it (numba.np.linalg.call_xxgemm).
_XXGEMM_TYPE = ir.FunctionType(_INT, [_CHAR, _CHAR, _CHAR, _INTP, _INTP, _INTP, _VOIDPTR,
                                      _VOIDPTR, _INTP, _VOIDPTR, _INTP, _VOIDPTR, _VOIDPTR,
                                      _INTP])


@intrinsic
def _xxgemm(typingctx, kind, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, _XXGEMM_TYPE, "numba_xxgemm")
        return builder.call(fn, args)
    return types.int32(kind, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc), codegen


@intrinsic
def _address(typingctx, arr):
    # The address of an array's first element.
    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        return builder.bitcast(ary.data, _VOIDPTR)
    return types.voidptr(arr), codegen


@intrinsic
def _slot(typingctx, value):
    # The address of a stack copy of a scalar (BLAS takes alpha and beta by pointer).
    def codegen(context, builder, sig, args):
        return builder.bitcast(cgutils.alloca_once_value(builder, args[0]), _VOIDPTR)
    return types.voidptr(value), codegen


@intrinsic
def any_layout(typingctx, arr):
    """The same array typed with layout 'A' (any strides): one compiled product for
    row slices, column slices and transposed views alike."""
    if not isinstance(arr, types.Array):
        return None
    def codegen(context, builder, sig, args):
        return impl_ret_borrowed(context, builder, sig.return_type, args[0])
    return arr.copy(layout="A")(arr), codegen


@jit
def _layout(X):
    """(flag, leading dimension) of a 2-D view read as a column-major BLAS operand.

    A view with contiguous rows is, to column-major BLAS, its own transpose with
    the row stride as leading dimension ('n' in the swapped call below); a view
    with contiguous columns is a transposed operand ('t')."""
    rows, cols = X.shape
    s0 = X.strides[0] // X.itemsize
    s1 = X.strides[1] // X.itemsize
    if cols == 1 or s1 == 1:
        return ord('n'), max(s0 if rows > 1 else cols, cols, 1)
    if rows == 1 or s0 == 1:
        return ord('t'), max(s1 if cols > 1 else rows, rows, 1)
    raise ValueError("gemm: an operand has neither contiguous rows nor contiguous columns")


@jit
def gemm(A, B, C, beta):
    """C <- A B + beta C.  A : (m, k); B : (k, n); C : (m, n) with contiguous rows;
    all of one float dtype (float32 or float64)."""
    m, k = A.shape
    n = B.shape[1]
    if m == 0 or n == 0:
        return
    T = C.dtype.type
    tc, ldc = _layout(C)
    if k == 0:
        # BLAS itself sets C <- beta C (zeros for beta = 0, whatever C held); a loop
        # here would be vectorised and linked into every caller for a rare case.
        # With no inner dimension the operands' flags are free: each is then read
        # as a stored k x (m or n) matrix, whose leading dimension 1 BLAS accepts.
        ta, lda = ord('n'), 1
        tb, ldb = ord('t'), 1
    else:
        ta, lda = _layout(A)
        tb, ldb = _layout(B)
    if tc != ord('n'):
        raise ValueError("gemm: the output must have contiguous rows")
    kind = ord('s') if C.itemsize == 4 else ord('d')
    # Row-major C = A B is column-major C^T = B^T A^T.
    status = _xxgemm(np.int8(kind), np.int8(tb), np.int8(ta), n, m, k, _slot(T(1)),
                     _address(B), ldb, _address(A), lda, _slot(T(beta)), _address(C), ldc)
    if status != 0:
        raise RuntimeError("gemm: the BLAS call failed")
