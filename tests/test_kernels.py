"""Every compiled kernel against its NumPy twin in tests/reference.py.

Kernels are called directly (``fastbp.kernels.*``), serially and with
``parallel=True``, on random shapes that include batch 1, odd sizes and products
that BLAS gets whole or in blocks, in float32 (rtol 1e-5) and float64
(rtol 1e-12).  Tolerances are relative to the natural scale of each result
(for a product x W that is |x| |W|, the scale of its rounding error), so a
cancelling sum does not demand more than floating point can give.

Output buffers are filled with NaN before each call: a kernel that leaves part
of its output unwritten fails.
"""
from __future__ import annotations

import zlib

import numba
import numpy as np
import pytest

import fastbp
import reference as ref
from fastbp import _config
from fastbp.kernels import activations as kact
from fastbp.kernels import dense as kdense
from fastbp.kernels import dropout as kdropout
from fastbp.kernels import elementwise as kelem
from fastbp.kernels import losses as kloss
from fastbp.kernels import optim as koptim
from fastbp.kernels import random as krandom
from fastbp.kernels import rowgemm as krowgemm
from helpers import DTYPES, assert_within, call_kernel, rtol_for

ACTIVATIONS = ref.ACTIVATIONS
PARALLEL = [False, True]
SLOPE = 0.1  # not the default, so a kernel that ignores the slope argument fails


def rng_for(*parts) -> np.random.Generator:
    """A generator seeded from the test's parameters (stable across runs and processes)."""
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


def code(act):
    return kact.CODES[None if act == "identity" else act]


# (batch, n_in, n_out): batch 1, odd sizes, narrow and wide outputs, products that stay
# whole and products split into blocks, and outputs big enough for a parallel epilogue.
DENSE_SHAPES = [
    (1, 1, 1), (1, 7, 3), (3, 33, 65), (7, 65, 1), (33, 7, 130), (64, 33, 20),
    (130, 65, 7), (65, 130, 33), (1, 600, 130), (300, 20, 130), (130, 130, 130),
    (600, 65, 7), (40, 300, 200),
]


def shape_id(s):
    return "x".join(map(str, s))


def test_dense_shapes_cover_whole_and_split_products():
    work = [m * k * n for m, k, n in DENSE_SHAPES]
    assert min(work) < _config.MIN_SPLIT_WORK <= max(work)
    # split by rows (130x130x130) and by columns of the output (40x300x200)
    assert any(w >= _config.MIN_SPLIT_WORK and m >= n for (m, _, n), w in zip(DENSE_SHAPES, work))
    assert any(w >= _config.MIN_SPLIT_WORK and m < n for (m, _, n), w in zip(DENSE_SHAPES, work))
    assert any(m * n >= _config.PARALLEL_MIN_WORK for m, _, n in DENSE_SHAPES)


def _dense_inputs(shape, act, dtype):
    m, n_in, n_out = shape
    rng = rng_for("dense", shape, act, np.dtype(dtype).name)
    x = rng.standard_normal((m, n_in)).astype(dtype)
    W = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
    b = (0.5 * rng.standard_normal(n_out)).astype(dtype)
    return rng, x, W, b


# -- scalar activations ---------------------------------------------------------------------


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_scalar_activation_and_derivative(act):
    z = np.array([-1e4, -30.0, -2.5, -1e-3, 0.0, 1e-3, 0.7, 3.0, 40.0, 1e4])
    for zi in z:
        a = kact.activate(zi, code(act), SLOPE)
        assert np.isfinite(a)
        np.testing.assert_allclose(a, ref.activate(zi, act, SLOPE), rtol=1e-14, atol=1e-300)
        d = kact.derivative_from_output(a, code(act), SLOPE)
        np.testing.assert_allclose(d, ref.derivative_from_output(a, act, SLOPE), rtol=1e-14,
                                   atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_scalar_sigmoid_no_overflow(dtype):
    for z in (-1e4, -745.0, -88.0, -1.0, 0.0, 1.0, 88.0, 745.0, 1e4):
        s = kact.sigmoid(dtype(z))
        assert np.isfinite(s) and 0.0 <= s <= 1.0
        np.testing.assert_allclose(s, ref.sigmoid(dtype(z)), rtol=rtol_for(dtype), atol=1e-300)


# -- dense forward / backward ------------------------------------------------------------------


@pytest.mark.parametrize("parallel", PARALLEL)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=shape_id)
def test_dense_forward(shape, act, dtype, parallel):
    m, n_in, n_out = shape
    _, x, W, b = _dense_inputs(shape, act, dtype)
    x0, W0, b0 = x.copy(), W.copy(), b.copy()
    out = np.full((m, n_out), np.nan, dtype=dtype)
    call_kernel(kdense.dense_forward, x=x, W=W, b=b, out=out, work=np.empty(m * n_out, dtype),
                act=code(act), slope=SLOPE, parallel=parallel)
    expected = ref.dense_forward(x, W, b, act, SLOPE)
    tol = rtol_for(dtype) * (ref.dense_forward_bound(x, W, b) + np.abs(expected))
    assert out.dtype == dtype
    assert_within(out, expected, tol, f"dense_forward {act} {shape}")
    for before, after in ((x0, x), (W0, W), (b0, b)):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("need_input_grad", [True, False])
@pytest.mark.parametrize("parallel", PARALLEL)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=shape_id)
def test_dense_backward(shape, act, dtype, parallel, need_input_grad):
    m, n_in, n_out = shape
    rng, x, W, b = _dense_inputs(shape, act, dtype)
    a = ref.dense_forward(x, W, b, act, SLOPE).astype(dtype)  # the stored output
    g = rng.standard_normal((m, n_out)).astype(dtype)
    g0, x0, W0, a0 = g.copy(), x.copy(), W.copy(), a.copy()
    dW = np.full((n_in, n_out), np.nan, dtype=dtype)
    db = np.full(n_out, np.nan, dtype=dtype)
    g_in = np.full((m, n_in), np.nan, dtype=dtype)
    call_kernel(kdense.dense_backward, x=x, a=a, W=W, g=g,
                dW=dW, db=db, g_in=g_in, act=code(act), slope=SLOPE,
                need_input_grad=need_input_grad, parallel=parallel)
    delta, dW_ref, db_ref, g_in_ref = ref.dense_backward(x, a, W, g0, act, SLOPE)
    rtol = rtol_for(dtype)
    abs_g = np.abs(g0.astype(np.float64))  # |f'| <= 1 for every activation: |delta| <= |g|
    what = f"dense_backward {act} {shape}"
    # g is documented to be overwritten with delta = dL/dz
    assert_within(g, delta, rtol * abs_g, what + " delta (in g)")
    assert_within(dW, dW_ref, rtol * (np.abs(x0.astype(np.float64)).T @ abs_g), what + " dW")
    assert_within(db, db_ref, rtol * abs_g.sum(axis=0), what + " db")
    if need_input_grad:
        assert_within(g_in, g_in_ref, rtol * (abs_g @ np.abs(W0.astype(np.float64)).T),
                      what + " g_in")
    for before, after in ((x0, x), (W0, W), (a0, a)):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_forward_is_deterministic_and_parallel_equals_serial(dtype):
    """The same inputs give bit-identical outputs, with or without a parallel region."""
    for shape in DENSE_SHAPES:
        m, n_in, n_out = shape
        _, x, W, b = _dense_inputs(shape, "tanh", dtype)
        outs = []
        for parallel in (False, True, True):
            out = np.full((m, n_out), np.nan, dtype=dtype)
            call_kernel(kdense.dense_forward, x=x, W=W, b=b, out=out,
                        work=np.empty(m * n_out, dtype), act=code("tanh"), slope=SLOPE,
                        parallel=parallel)
            outs.append(out)
        np.testing.assert_array_equal(outs[0], outs[1], err_msg=str(shape))
        np.testing.assert_array_equal(outs[1], outs[2], err_msg=str(shape))


def test_float32_tanh_is_within_6_ulp_and_keeps_nan():
    """activate_row's float32 tanh (the vectorised rational approximation) against
    float64 tanh on a dense grid, tiny values and the non-finite ones."""
    from fastbp.kernels import elementwise
    x = np.concatenate([np.linspace(-12, 12, 400_001), 10.0 ** np.linspace(-30, 1, 2001),
                        -(10.0 ** np.linspace(-30, 1, 2001)), [0.0, -0.0]]).astype(np.float32)
    a = x.copy()
    elementwise.activate_row(a, kact.TANH, 0.0)
    exact = np.tanh(x.astype(np.float64))
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert (np.abs(a - exact) / ulp).max() <= 6
    assert np.all(np.abs(a) <= 1) and np.all(np.sign(a) == np.sign(x))
    odd = np.array([np.nan, np.inf, -np.inf], dtype=np.float32)
    elementwise.activate_row(odd, kact.TANH, 0.0)
    assert np.isnan(odd[0]) and odd[1] > 0.9999997 and odd[2] < -0.9999997

def test_float32_softmax_exp_is_within_2_ulp_underflows_to_zero_and_keeps_nan():
    """The float32 softmax's exp (a vectorisable polynomial) against float64 exp on a
    dense grid of its domain x <= 0 and tiny values; below the smallest normal it is 0."""
    import numba

    @numba.njit
    def exp32(x, out):
        for i in range(x.shape[0]):
            out[i] = kact.exp32(x[i])

    x = np.concatenate([np.linspace(-87.3, 0, 1_000_001), -(10.0 ** np.linspace(-30, 1.9, 4001)),
                        [0.0, -0.0]]).astype(np.float32)
    out = np.empty_like(x)
    exp32(x, out)
    exact = np.exp(x.astype(np.float64))
    ulp = np.spacing(exact.astype(np.float32)).astype(np.float64)
    assert (np.abs(out - exact) / ulp).max() <= kact.EXP_ULP
    odd = np.array([np.nan, -np.inf, -87.4, -1e4], dtype=np.float32)
    exp32(odd, out[:4])
    assert np.isnan(out[0]) and np.all(out[1:4] == 0)



@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_on_strided_and_transposed_views(dtype):
    """blas.gemm reads row slices, column slices and transposes in place, honours beta,
    and leaves everything outside the output view alone."""
    from fastbp.kernels import blas
    rng = rng_for("gemm", np.dtype(dtype).name)
    X = rng.standard_normal((20, 30)).astype(dtype)
    W = rng.standard_normal((30, 40)).astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    cases = [
        (X, W, np.s_[:, :]),                          # contiguous
        (X[:, 3:13], W[3:13, 5:25], np.s_[:, 5:25]),  # column blocks
        (X[4:9], W, np.s_[4:9, :]),                   # row block
        (X[:1, :1], W[:1, :1], np.s_[:1, :1]),        # 1 x 1
        (X[:, 7:8], W[7:8, :], np.s_[:, :]),          # inner dimension 1
    ]
    for A, B, where in cases:
        C = np.full((20, 40), 7.0, dtype=dtype)
        blas.gemm(A, B, C[where], 0.0)
        expect = np.full((20, 40), 7.0, dtype=dtype)
        expect[where] = A.astype(np.float64) @ B
        np.testing.assert_allclose(C, expect, rtol=tol, atol=tol * 10)
    G = rng.standard_normal((20, 40)).astype(dtype)
    dW = np.ones((30, 40), dtype=dtype)
    blas.gemm(X[:, 10:20].T, G, dW[10:20], 1.0)       # x^T g on a column slice of x, beta 1
    expect = np.ones((30, 40))
    expect[10:20] += X[:, 10:20].T.astype(np.float64) @ G
    np.testing.assert_allclose(dW, expect, rtol=tol, atol=tol * 10)
    gin = np.zeros((20, 30), dtype=dtype)
    blas.gemm(G, W.T, gin, 0.0)                        # g W^T
    np.testing.assert_allclose(gin, G.astype(np.float64) @ W.T, rtol=tol, atol=tol * 10)
    with pytest.raises(ValueError, match="contiguous"):
        blas.gemm(X[::2, ::2], W[:15, :], np.zeros((10, 40), dtype=dtype), 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_with_no_inner_dimension_scales_the_output_by_beta(dtype):
    """k = 0 (the weight gradient of an empty batch): C <- beta C through BLAS itself,
    zeros for beta 0 even where C held NaN, on row blocks and transposed operands."""
    from fastbp.kernels import blas
    empty = np.ones((0, 30), dtype=dtype)
    for A, B in ((np.ones((6, 0), dtype=dtype), np.ones((0, 8), dtype=dtype)),
                 (empty[:, 2:8].T, empty[:, :8])):          # x^T g of a batch of 0 rows
        for beta, fill, expect in ((0.0, np.nan, 0.0), (1.0, 3.0, 3.0), (0.5, 3.0, 1.5)):
            C = np.full((10, 8), fill, dtype=dtype)
            C[8:] = -1.0
            blas.gemm(A, B, C[2:8], beta)
            np.testing.assert_array_equal(C[2:8], np.full((6, 8), expect, dtype=dtype))
            np.testing.assert_array_equal(C[8:], -1.0)
            assert np.isnan(C[:2]).all() if np.isnan(fill) else (C[:2] == fill).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(128, 784, 512), (1024, 300, 256), (64, 250, 200),
                                   (64, 200, 250), (130, 129, 131), (5, 300, 700)],
                         ids=shape_id)
def test_matmul_blocks_parallel_equals_serial_bitwise(shape, dtype):
    """The three products of a dense layer, split into blocks fixed by the shapes, give
    the same bits with and without a parallel region, and the right numbers."""
    from fastbp.kernels import gemm
    m, k, n = shape
    rng = rng_for("matmul", shape, np.dtype(dtype).name)
    x = rng.standard_normal((m, k)).astype(dtype)
    W = rng.standard_normal((k, n)).astype(dtype)
    g = rng.standard_normal((m, n)).astype(dtype)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    for A, B, expect in [(x, W, x.astype(np.float64) @ W), (x.T, g, x.T.astype(np.float64) @ g),
                         (g, W.T, g.astype(np.float64) @ W.T)]:
        outs = []
        for parallel in (False, True):
            out = np.full(expect.shape, np.nan, dtype=dtype)
            gemm.matmul(A, B, out, parallel)
            outs.append(out)
        np.testing.assert_array_equal(outs[0], outs[1])
        scale = np.sqrt(A.shape[1])
        np.testing.assert_allclose(outs[0], expect, rtol=tol * scale, atol=tol * scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_step_product_rows_by_u_and_u_transposed(dtype):
    """A recurrence's per-step product, out = A U forward and A U^T (U^T as the backward
    copies it) backward: every row count from 0 to SMALL_ROWS + 3 (the loops' four-row
    blocks and their remainders, then BLAS), inner sizes that are and are not multiples
    of 4, odd output widths; rows of a larger array as the recurrent kernels pass them;
    the numbers numpy gives, the same bits from a serial and a parallel caller, and
    nothing outside the rows written."""
    tol = (1e-5 if dtype == np.float32 else 1e-13)
    for h, G in [(1, 1), (3, 7), (4, 12), (13, 39), (100, 400)]:
        rng = rng_for("step-product", h, G, np.dtype(dtype).name)
        U = rng.standard_normal((h, G)).astype(dtype)
        Ut = np.ascontiguousarray(U.T)
        H = rng.standard_normal((krowgemm.SMALL_ROWS + 5, h)).astype(dtype)
        D = rng.standard_normal((krowgemm.SMALL_ROWS + 5, G)).astype(dtype)
        for n in range(krowgemm.SMALL_ROWS + 4):
            for A, B in [(H, U), (D, Ut)]:
                out = np.full((krowgemm.SMALL_ROWS + 5, B.shape[1]), 7.0, dtype=dtype)
                krowgemm.step_product(A[:n], B, out[:n], False)
                expect = A[:n].astype(np.float64) @ B
                scale = tol * np.sqrt(A.shape[1]) * (1 + np.abs(expect))
                assert_within(out[:n], expect, scale, f"n={n} h={h} G={G} B={B.shape}")
                assert np.all(out[n:] == 7.0)
                again = np.full_like(out, 7.0)
                _step_products_in_prange(A[:n], B, again[:n])
                np.testing.assert_array_equal(again, out)


@numba.njit(parallel=True, fastmath=_config.FASTMATH)
def _step_products_in_prange(A, B, out):
    # the recurrent kernels call step_product inside prange (2 threads) or not (1 thread)
    for _ in numba.prange(1):
        krowgemm.step_product(A, B, out, False)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(64, 250, 200), (128, 784, 512), (130, 300, 131),
                                   (1024, 300, 256), (64, 200, 250)], ids=shape_id)
def test_forward_product_parallel_equals_serial_bitwise(shape, dtype):
    """A layer's forward product, cut along the inputs where its backward is (partial
    products added in block order) and along the output elsewhere: the same bits with
    and without a parallel region, and the product numpy gives."""
    from fastbp.kernels import gemm
    m, k, n = shape
    rng = rng_for("forward-product", shape, np.dtype(dtype).name)
    x = rng.standard_normal((m, k)).astype(dtype)
    W = rng.standard_normal((k, n)).astype(dtype)
    outs = []
    for parallel in (False, True):
        out = np.full((m, n), np.nan, dtype=dtype)
        gemm.forward_product(x, W, out, np.empty(gemm.forward_work_size(m, n), dtype), parallel)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    tol = (1e-4 if dtype == np.float32 else 1e-12) * np.sqrt(k)
    np.testing.assert_allclose(outs[0], x.astype(np.float64) @ W, rtol=tol, atol=tol)


def test_forward_product_splits_inputs_where_the_backward_does():
    from fastbp.kernels import gemm

    def splits(m, k, n):
        return gemm.splits_inputs(np.empty((m, k)), np.empty((k, n)), np.empty((m, n)))
    assert splits(64, 250, 200) and splits(128, 784, 512) and splits(128, 512, 256)
    assert not splits(1024, 784, 512)   # g_in (1024, 784) is cut by rows
    assert not splits(64, 200, 250)     # dW (200, 250) is cut by columns
    assert not splits(32, 128, 64)      # too small to split at all


def test_block_size_is_fixed_by_the_shape():
    from fastbp.kernels import gemm
    assert gemm.block_size(_config.MIN_BLOCK * _config.GEMM_BLOCKS - 1) == \
        _config.MIN_BLOCK * _config.GEMM_BLOCKS - 1
    for length in (128, 143, 200, 250, 257, 784, 1024):
        nb, size = gemm.n_blocks(length), gemm.block_size(length)
        last = length - (nb - 1) * size
        assert nb == _config.GEMM_BLOCKS
        assert size % 16 == 0 and size >= _config.MIN_BLOCK
        # The multiple of 16 nearest an equal share; the last block takes the rest.
        assert abs(size - length / nb) <= 8 and last >= _config.MIN_BLOCK
    assert [gemm.block_size(n) for n in (200, 250, 1024)] == [96, 128, 512]


@pytest.mark.parametrize("dtype", DTYPES)
def test_other_kernels_parallel_equals_serial_bitwise(dtype):
    """Row-parallel kernels give the same bits with and without a parallel region."""
    rng = rng_for("bitwise-other", np.dtype(dtype).name)
    m, n = 4100, 12  # m * n >= PARALLEL_MIN_WORK
    out = (3 * rng.standard_normal((m, n))).astype(dtype)
    yf = rng.random((m, n)).astype(dtype)
    yi = rng.integers(0, n, m).astype(np.int64)
    key = np.uint64(rng.integers(0, 2**63))
    b = rng.standard_normal(n).astype(dtype)
    results = {}
    for parallel in (False, True):
        r = []
        for loss in LOSS_CODES:
            f, i = (np.zeros((1, 1), dtype), yi) if loss == "softmax_cross_entropy" else (
                yf, np.zeros(1, dtype=np.int64))
            value, grad = _run_loss(loss, out, f, i, parallel)
            r += [np.array([value]), grad.ravel()]
        for act in ACTIVATIONS:
            z = out.copy()
            call_kernel(kelem.bias_activate, out=z, b=b, act=code(act), slope=SLOPE,
                        parallel=parallel)
            g = yf.copy()
            call_kernel(kelem.scale_by_derivative, g=g, a=z, act=code(act), slope=SLOPE,
                        parallel=parallel)
            r += [z.ravel(), g.ravel()]
        d = np.empty_like(out)
        call_kernel(kdropout.dropout_apply, x=out, out=d, key=key, p=0.3, parallel=parallel)
        r.append(d.ravel())
        results[parallel] = np.concatenate([a.astype(np.float64) for a in r])
    assert results[False].tobytes() == results[True].tobytes()


# -- elementwise passes ---------------------------------------------------------------------------

ELEMENTWISE_SHAPES = [(1, 1), (1, 7), (3, 33), (65, 130), (300, 130)]  # the last >= PARALLEL_MIN_WORK


@pytest.mark.parametrize("parallel", PARALLEL)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_bias_activate(act, dtype, parallel):
    for shape in ELEMENTWISE_SHAPES:
        rng = rng_for("bias_activate", shape, act, np.dtype(dtype).name)
        z = (3 * rng.standard_normal(shape)).astype(dtype)
        b = rng.standard_normal(shape[1]).astype(dtype)
        out = z.copy()
        call_kernel(kelem.bias_activate, out=out, b=b, act=code(act), slope=SLOPE,
                    parallel=parallel)
        expected = ref.bias_activate(z, b, act, SLOPE)
        tol = rtol_for(dtype) * (np.abs(z) + np.abs(b) + np.abs(expected))
        assert_within(out, expected, tol, f"bias_activate {act} {shape}")


@pytest.mark.parametrize("parallel", PARALLEL)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_scale_by_derivative(act, dtype, parallel):
    for shape in ELEMENTWISE_SHAPES:
        rng = rng_for("scale_by_derivative", shape, act, np.dtype(dtype).name)
        a = ref.activate(2 * rng.standard_normal(shape), act, SLOPE).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        out = g.copy()
        call_kernel(kelem.scale_by_derivative, g=out, a=a, act=code(act), slope=SLOPE,
                    parallel=parallel)
        expected = ref.scale_by_derivative(g, a, act, SLOPE)
        assert_within(out, expected, rtol_for(dtype) * np.abs(g), f"scale_by_derivative {act}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_column_sums_and_finiteness(dtype):
    for shape in ELEMENTWISE_SHAPES:
        rng = rng_for("column_sums", shape, np.dtype(dtype).name)
        g = rng.standard_normal(shape).astype(dtype)
        out = np.full(shape[1], np.nan, dtype=dtype)
        call_kernel(kelem.column_sums, g=g, out=out)
        assert_within(out, ref.column_sums(g), rtol_for(dtype) * np.abs(g).sum(0), "column_sums")
        assert kelem.is_finite_array(g)
        for bad in (np.nan, np.inf, -np.inf):
            h = g.copy()
            h[shape[0] // 2, shape[1] - 1] = bad
            assert not kelem.is_finite_array(h)


# -- losses --------------------------------------------------------------------------------------

LOSS_CODES = {"mse": kloss.MSE, "binary_cross_entropy": kloss.BINARY_CROSS_ENTROPY,
              "softmax_cross_entropy": kloss.SOFTMAX_CROSS_ENTROPY}
LOSS_SHAPES = [(1, 1), (1, 2), (3, 7), (33, 5), (130, 65), (4100, 8)]  # the last is parallel


def _loss_inputs(loss, out, rng):
    m, n = out.shape
    dtype = out.dtype
    if loss == "softmax_cross_entropy":
        yi = rng.integers(0, n, size=m).astype(np.int64)
        return np.zeros((1, 1), dtype=dtype), yi, yi
    yf = (rng.random((m, n)) if loss == "binary_cross_entropy"
          else rng.standard_normal((m, n))).astype(dtype)
    return yf, np.zeros(1, dtype=np.int64), yf


def _run_loss(loss, out, yf, yi, parallel):
    grad = np.full(out.shape, np.nan, dtype=out.dtype)
    row_loss = np.full(out.shape[0], np.nan)
    value = call_kernel(kloss.loss_and_grad, code=LOSS_CODES[loss], out=out, yf=yf, yi=yi,
                        grad=grad, row_loss=row_loss, parallel=parallel)
    return value, grad


def _check_loss(loss, out, y, value, grad, dtype, what):
    expected, expected_grad = ref.LOSSES[loss](out, y)
    rtol = rtol_for(dtype)
    m, n = out.shape
    count = m if loss == "softmax_cross_entropy" else m * n
    assert np.isfinite(value), f"{what}: loss {value}"
    # the loss of a batch is a mean of terms of size ~ |o|, |y|, log n
    scale = abs(expected) + np.mean(np.abs(out.astype(np.float64))) + 1.0
    assert abs(value - expected) <= rtol * scale, f"{what}: loss {value} != {expected}"
    if loss == "mse":
        gscale = 2 * (np.abs(out.astype(np.float64)) + np.abs(np.asarray(y, np.float64))) / count
    else:
        gscale = 1.0 / count  # softmax and sigmoid terms are at most 1 in size
    assert grad.dtype == dtype
    assert_within(grad, expected_grad, rtol * (np.abs(expected_grad) + gscale), what + " grad")


@pytest.mark.parametrize("parallel", PARALLEL)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", list(LOSS_CODES))
@pytest.mark.parametrize("shape", LOSS_SHAPES, ids=shape_id)
def test_loss_and_grad(shape, loss, dtype, parallel):
    rng = rng_for("loss", shape, loss, np.dtype(dtype).name)
    out = (2 * rng.standard_normal(shape)).astype(dtype)
    yf, yi, y = _loss_inputs(loss, out, rng)
    out0 = out.copy()
    value, grad = _run_loss(loss, out, yf, yi, parallel)
    _check_loss(loss, out0, y, value, grad, dtype, f"{loss} {shape}")
    np.testing.assert_array_equal(out, out0)


@pytest.mark.parametrize("parallel", PARALLEL)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", list(LOSS_CODES))
def test_loss_large_logits(loss, dtype, parallel):
    """|logit| = 1e4: no overflow, no NaN; loss and gradient finite and correct."""
    rng = rng_for("large", loss, np.dtype(dtype).name)
    m, n = 9, 4
    signs = rng.choice([-1.0, 1.0], size=(m, n))
    out = (1e4 * signs).astype(dtype)
    out[0] = [1e4, -1e4, 1e4, -1e4]
    out[1] = [-1e4, -1e4, -1e4, -1e4]
    out[2] = [1e4, 1e4 - 2, -1e4, 0.0]  # a near-tie at the top of the softmax
    yf, yi, y = _loss_inputs(loss, out, rng)
    if loss == "binary_cross_entropy":
        yf[:] = (rng.random((m, n)) > 0.5).astype(dtype)  # hard targets: the largest losses
        y = yf
    if loss == "softmax_cross_entropy":
        yi[:3] = [1, 2, 3]  # labels on a losing logit: loss ~ 2e4
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        ref.LOSSES[loss](out, y)  # the twin itself must not overflow
    value, grad = _run_loss(loss, out, yf, yi, parallel)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    _check_loss(loss, out, y, value, grad, dtype, f"{loss} |logit|=1e4")
    if loss != "mse":
        assert value > 1e3  # the losing logits are really counted, not lost to overflow


# -- optimizers ----------------------------------------------------------------------------------
#
# Every optimizer goes through the one dispatching kernel, apply_update(code, p, g, state, hp,
# lr, step, grad_scale, parallel), with hp laid out by the constants of fastbp.kernels.optim
# and one state row per state vector.

OPT_SIZES = [1, 3, 7, 33, 130, 4097, 40000]  # 40000 >= PARALLEL_MIN_WORK: chunked prange
OPT_STEPS = [(1, 1.0), (2, 1.0), (7, 0.3)]  # (1-based step, grad_scale)


def _hp(*pairs):
    hp = np.zeros(max(i for i, _ in pairs) + 1)
    for i, v in pairs:
        hp[i] = float(v)
    return hp


class OptCase:
    """One optimizer configuration: its kernel code, hp array, state and NumPy twin."""

    def __init__(self, name, code, hp, n_state, twin, init=None):
        self.name, self.code, self.hp, self.n_state, self.twin = name, code, hp, n_state, twin
        self.init = init

    def state(self, n, dtype, rng):
        rows = [rng.standard_normal(n) for _ in range(self.n_state)]
        if self.init is not None:
            rows = self.init(rows, rng)
        return np.stack(rows).astype(dtype)

    def __repr__(self):
        return self.name


def _sgd_case(momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    cfg = dict(momentum=momentum, dampening=dampening, nesterov=nesterov,
               weight_decay=weight_decay)
    hp = _hp((koptim.SGD_MOMENTUM, momentum), (koptim.SGD_DAMPENING, dampening),
             (koptim.SGD_NESTEROV, nesterov), (koptim.SGD_WEIGHT_DECAY, weight_decay))

    def twin(p, g, st, lr, step, gs):
        p, buf = ref.sgd_update(p, g, st[0], lr, step=step, grad_scale=gs, **cfg)
        return p, [buf]
    return OptCase("sgd(" + ",".join(f"{k}={v}" for k, v in cfg.items()) + ")", koptim.SGD,
                   hp, 1, twin)


def _adam_case(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False,
               decoupled=False):
    cfg = dict(beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
               decoupled=decoupled)
    hp = _hp((koptim.ADAM_BETA1, beta1), (koptim.ADAM_BETA2, beta2), (koptim.ADAM_EPS, eps),
             (koptim.ADAM_WEIGHT_DECAY, weight_decay), (koptim.ADAM_AMSGRAD, amsgrad),
             (koptim.ADAM_DECOUPLED, decoupled))

    def twin(p, g, st, lr, step, gs):
        p, m, v, vmax = ref.adam_update(p, g, st[0], st[1], st[2], lr, step=step,
                                        grad_scale=gs, **cfg)
        return p, [m, v, vmax]

    def init(rows, rng):
        m, v, _ = rows
        v = 0.1 * rng.random(v.shape)
        return [0.1 * m, v, v * (0.5 + rng.random(v.shape))]  # vmax above v in half the places
    name = "adamw" if decoupled else "adam"
    return OptCase(f"{name}(" + ",".join(f"{k}={v}" for k, v in cfg.items()) + ")", koptim.ADAM,
                   hp, 3, twin, init)


def _adagrad_case(lr_decay=0.0, eps=1e-10, weight_decay=0.0):
    hp = _hp((koptim.ADAGRAD_LR_DECAY, lr_decay), (koptim.ADAGRAD_EPS, eps),
             (koptim.ADAGRAD_WEIGHT_DECAY, weight_decay))

    def twin(p, g, st, lr, step, gs):
        p, acc = ref.adagrad_update(p, g, st[0], lr, lr_decay, eps, weight_decay, step, gs)
        return p, [acc]
    return OptCase(f"adagrad(lr_decay={lr_decay},eps={eps},weight_decay={weight_decay})",
                   koptim.ADAGRAD, hp, 1, twin, lambda rows, rng: [rng.random(rows[0].shape)])


def _rmsprop_case(alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
    hp = _hp((koptim.RMSPROP_ALPHA, alpha), (koptim.RMSPROP_EPS, eps),
             (koptim.RMSPROP_WEIGHT_DECAY, weight_decay), (koptim.RMSPROP_MOMENTUM, momentum),
             (koptim.RMSPROP_CENTERED, centered))

    def twin(p, g, st, lr, step, gs):
        p, sq, buf, gavg = ref.rmsprop_update(p, g, st[0], st[1], st[2], lr, alpha, eps,
                                              weight_decay, momentum, centered, gs)
        return p, [sq, buf, gavg]

    def init(rows, rng):
        gavg = 0.3 * rows[2]
        return [gavg * gavg + 0.1 + rng.random(gavg.shape), rows[1], gavg]
    return OptCase(f"rmsprop(alpha={alpha},weight_decay={weight_decay},momentum={momentum},"
                   f"centered={centered})", koptim.RMSPROP, hp, 3, twin, init)


def _adadelta_case(rho=0.9, eps=1e-6, weight_decay=0.0):
    hp = _hp((koptim.ADADELTA_RHO, rho), (koptim.ADADELTA_EPS, eps),
             (koptim.ADADELTA_WEIGHT_DECAY, weight_decay))

    def twin(p, g, st, lr, step, gs):
        p, sq, acc = ref.adadelta_update(p, g, st[0], st[1], lr, rho, eps, weight_decay, gs)
        return p, [sq, acc]
    return OptCase(f"adadelta(rho={rho},eps={eps},weight_decay={weight_decay})",
                   koptim.ADADELTA, hp, 2, twin,
                   lambda rows, rng: [rng.random(rows[0].shape), 0.1 * rng.random(rows[0].shape)])


def _yogi_case(beta1=0.9, beta2=0.999, eps=1e-3, weight_decay=0.0):
    hp = _hp((koptim.YOGI_BETA1, beta1), (koptim.YOGI_BETA2, beta2), (koptim.YOGI_EPS, eps),
             (koptim.YOGI_WEIGHT_DECAY, weight_decay))

    def twin(p, g, st, lr, step, gs):
        p, m, v = ref.yogi_update(p, g, st[0], st[1], lr, beta1, beta2, eps, weight_decay, gs)
        return p, [m, v]
    return OptCase(f"yogi(betas=({beta1},{beta2}),weight_decay={weight_decay})", koptim.YOGI, hp,
                   2, twin, lambda rows, rng: [0.1 * rows[0], rng.random(rows[0].shape)])


OPT_CASES = [
    _sgd_case(),
    _sgd_case(weight_decay=0.1),
    _sgd_case(momentum=0.9),
    _sgd_case(momentum=0.9, dampening=0.3),
    _sgd_case(momentum=0.9, nesterov=True),
    _sgd_case(momentum=0.8, nesterov=True, weight_decay=0.05),
    _sgd_case(momentum=0.5, dampening=0.5, weight_decay=0.05),
    _adam_case(),
    _adam_case(weight_decay=0.1),
    _adam_case(beta1=0.8, beta2=0.9, eps=1e-6, amsgrad=True),
    _adam_case(weight_decay=0.1, decoupled=True),
    _adam_case(beta2=0.99, weight_decay=0.01, amsgrad=True, decoupled=True),
    _adagrad_case(),
    _adagrad_case(lr_decay=0.1, eps=1e-6, weight_decay=0.05),
    _rmsprop_case(),
    _rmsprop_case(alpha=0.9, momentum=0.5),
    _rmsprop_case(alpha=0.9, centered=True),
    _rmsprop_case(alpha=0.9, weight_decay=0.05, momentum=0.9, centered=True),
    _adadelta_case(),
    _adadelta_case(rho=0.95, eps=1e-4, weight_decay=0.05),
    _yogi_case(),
    _yogi_case(beta1=0.8, beta2=0.99, weight_decay=0.05),
]


def _apply_update(case, p, g, state, lr, step, grad_scale, parallel):
    call_kernel(koptim.apply_update, code=case.code, p=p, g=g, state=state, hp=case.hp, lr=lr,
                step=step, grad_scale=grad_scale, parallel=parallel)


@pytest.mark.parametrize("parallel", PARALLEL)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", OPT_CASES, ids=repr)
def test_optimizer_update(case, dtype, parallel):
    """One step from random parameters, gradients and state, at several step counts."""
    rtol = rtol_for(dtype)
    lr = 0.05
    for n in OPT_SIZES:
        for step, grad_scale in OPT_STEPS:
            rng = rng_for("opt", case.name, n, step, np.dtype(dtype).name)
            p = rng.standard_normal(n).astype(dtype)
            g = rng.standard_normal(n).astype(dtype)
            state = case.state(n, dtype, rng)
            p0, g0, state0 = p.copy(), g.copy(), state.copy()
            _apply_update(case, p, g, state, lr, step, grad_scale, parallel)
            p_ref, states_ref = case.twin(p0, g, state0, lr, step, grad_scale)
            what = f"{case.name} n={n} step={step}"
            # an update new = a old + b x rounds at the scale of |old| + |new|
            assert_within(p, p_ref, rtol * (np.abs(p0) + np.abs(p_ref)), what + " p")
            for k, s_ref in enumerate(states_ref):
                assert_within(state[k], s_ref, rtol * (np.abs(state0[k]) + np.abs(s_ref)),
                              f"{what} state[{k}]")
            np.testing.assert_array_equal(g, g0)  # the gradient is only read


def test_sgd_first_step_starts_the_momentum_buffer_at_the_gradient():
    case = _sgd_case(momentum=0.9, dampening=0.5)
    p = np.zeros(5)
    g = np.arange(5.0)
    state = np.full((1, 5), 100.0)  # stale contents must be ignored at step 1
    _apply_update(case, p, g, state, 1.0, 1, 1.0, False)
    np.testing.assert_array_equal(state[0], g)
    np.testing.assert_array_equal(p, -g)


# Every optimizer gives the same bits serially and in parallel (fastmath is off: see
# fastbp/_config.py), and the tests below check it case by case.
BITWISE_CASES = OPT_CASES

BITWISE_CHILD = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import test_kernels as tk
differ = {}
for case in tk.OPT_CASES:
    for dtype in tk.DTYPES:
        for step, grad_scale in tk.OPT_STEPS:
            rng = tk.rng_for("bitwise", case.name, step, np.dtype(dtype).name)
            # above the size at which updates go parallel, so both forms really run
            from fastbp._config import PARALLEL_UPDATE_MIN
            n = PARALLEL_UPDATE_MIN + 4_099
            p = rng.standard_normal(n).astype(dtype)
            g = rng.standard_normal(n).astype(dtype)
            state = case.state(n, dtype, rng)
            results = []
            for parallel in (False, True):
                pp, ss = p.copy(), state.copy()
                tk._apply_update(case, pp, g, ss, 0.05, step, grad_scale, parallel)
                results.append(np.concatenate([pp, ss.ravel()]))
            count = int(np.count_nonzero(results[0] != results[1]))
            if count:
                differ.setdefault(case.name, []).append(
                    f"{np.dtype(dtype).name} step {step}: {count} elements differ")
print(json.dumps(differ))
"""


@pytest.fixture(scope="module")
def bitwise_differences():
    """Run every optimizer case serially and in parallel, in a fresh process that loads the
    compiled kernels from numba's cache, as a user's process does.  (A kernel compiled in
    the running process happens to agree with itself; the cached one does not.)"""
    import json
    import os
    import subprocess
    import sys
    for dtype in DTYPES:  # make sure both signatures are compiled and cached
        for case in (OPT_CASES[0], OPT_CASES[7]):
            p = np.zeros(3, dtype)
            _apply_update(case, p, p.copy(), case.state(3, dtype, rng_for("warm")), 0.1, 1, 1.0,
                          True)
    here = os.path.dirname(os.path.abspath(__file__))
    # the child imports the same fastbp as this process
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastbp.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    proc = subprocess.run([sys.executable, "-c", BITWISE_CHILD, here], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", BITWISE_CASES, ids=repr)
def test_optimizer_update_parallel_equals_serial_bitwise(bitwise_differences, case):
    """Elementwise updates give the same bits whatever the partition (design: results are
    identical for any thread count)."""
    assert case.name not in bitwise_differences, bitwise_differences[case.name]


@pytest.mark.parametrize("parallel", PARALLEL)
@pytest.mark.parametrize("dtype", DTYPES)
def test_squared_norm(dtype, parallel):
    for n in OPT_SIZES + [_config.REDUCE_CHUNK, _config.REDUCE_CHUNK + 1, 70001]:
        rng = rng_for("squared_norm", n, np.dtype(dtype).name)
        g = (rng.standard_normal(n) * rng.choice([1e-3, 1.0, 1e3], n)).astype(dtype)
        got = call_kernel(koptim.squared_norm, g=g, parallel=parallel)
        expected = ref.squared_norm(g)
        assert isinstance(got, float)
        assert abs(got - expected) <= rtol_for(dtype) * expected, (n, got, expected)


def test_squared_norm_does_not_depend_on_parallel():
    """The documented fixed-chunk reduction: the same sum at any thread count."""
    rng = rng_for("sqn")
    mismatches = []
    from fastbp._config import PARALLEL_UPDATE_MIN
    n = PARALLEL_UPDATE_MIN + 4_099  # large enough for the parallel form to run
    for trial in range(4):
        for dtype in DTYPES:
            g = (rng.standard_normal(n) * rng.choice([1e-3, 1.0, 1e3], n)).astype(dtype)
            serial, parallel = koptim.squared_norm(g, False), koptim.squared_norm(g, True)
            if serial != parallel:
                mismatches.append((trial, np.dtype(dtype).name, serial - parallel))
    assert not mismatches, mismatches


@pytest.mark.parametrize("sq,clip", [(0.0, 1.0), (4.0, 1.0), (1e6, 5.0), (0.25, 1.0),
                                     (9.0, 0.0), (9.0, -1.0), (1e-14, 1e-3), (100.0, 10.0)])
def test_clip_scale(sq, clip):
    got = call_kernel(koptim.clip_scale, sq_norm=sq, clip_norm=clip)
    assert got == pytest.approx(ref.clip_scale(sq, clip), rel=1e-15, abs=0)
    assert 0 < got <= 1


# -- random numbers and dropout -------------------------------------------------------------------


def test_uniform_and_combine_key_match_twin():
    for seed, step, layer in [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (12345, 678, 9),
                              (2**40, 2**33, 3)]:
        # (called from Python the uint64 result comes back as an int; kernels get uint64)
        key = np.uint64(krandom.combine_key(seed, step, layer))
        assert int(key) == int(ref.combine_key(seed, step, layer))
        idx = np.array([0, 1, 2, 1000, 2**31, 2**40], dtype=np.uint64)
        got = np.array([krandom.uniform(key, int(i)) for i in idx])
        np.testing.assert_array_equal(got, ref.uniform(key, idx))
        assert np.all((got >= 0) & (got < 1))


@pytest.mark.parametrize("parallel", PARALLEL)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_apply(p, dtype, parallel):
    # the last shape has >= PARALLEL_MIN_WORK elements
    for shape in [(1, 1), (1, 7), (3, 33), (65, 130), (300, 130)]:
        rng = rng_for("dropout", shape, p, np.dtype(dtype).name)
        x = rng.standard_normal(shape).astype(dtype)
        key = np.uint64(rng.integers(0, 2**63))
        out = np.full(shape, np.nan, dtype=dtype)
        call_kernel(kdropout.dropout_apply, x=x, out=out, key=key, p=p, parallel=parallel)
        expected = ref.dropout_apply(x, key, p)
        mask = ref.dropout_mask(shape, key, p)
        np.testing.assert_array_equal(out != 0, mask, err_msg=f"mask {shape}")
        assert_within(out, expected, rtol_for(dtype) * np.abs(expected), f"dropout {shape}")


def test_dropout_mask_statistics_and_keys():
    shape = (400, 250)
    x = np.ones(shape)
    for p in (0.2, 0.5):
        outs = []
        for key in (np.uint64(1), np.uint64(2)):
            out = np.empty(shape)
            kdropout.dropout_apply(x, out, key, p, False)
            kept = np.mean(out != 0)
            sigma = np.sqrt(p * (1 - p) / x.size)
            assert abs(kept - (1 - p)) < 6 * sigma, (p, kept)
            np.testing.assert_allclose(out[out != 0], 1 / (1 - p), rtol=1e-15)
            outs.append(out)
        assert np.mean(outs[0] != outs[1]) > 0.1  # another key, another mask
