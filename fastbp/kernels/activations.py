"""Elementwise activations and their derivatives, as scalar compiled functions.

An activation is named by an integer code so that one compiled kernel serves
every activation.  The derivative is written in terms of the activation's
*output* ``a`` (not its input ``z``), so that the forward pass stores only
``a``:

=========== ================================= ===================================
code        a = f(z)                          f'(z) from a
=========== ================================= ===================================
IDENTITY    z                                 1
RELU        max(z, 0)                         1 if a > 0 else 0
LEAKY_RELU  z if z > 0 else slope * z         1 if a > 0 else slope  (slope >= 0)
SIGMOID     1 / (1 + exp(-z))                 a (1 - a)
TANH        tanh(z)                           1 - a^2
=========== ================================= ===================================

float32 tanh uses :func:`tanh32`, a rational approximation that LLVM can
vectorise (``math.tanh`` is a scalar libm call: 210 of the 430 us of a window
model step went to it); float64 keeps ``math.tanh``.  For the same reason the
float32 softmax takes :func:`exp32` (3.0 of the 33 us of a batch-32 MLP step
went to libm's exp).
"""
from __future__ import annotations

import math

import numpy as np
from numba import types
from numba.extending import intrinsic

from .._config import jit

IDENTITY = 0
RELU = 1
LEAKY_RELU = 2
SIGMOID = 3
TANH = 4

CODES = {None: IDENTITY, "linear": IDENTITY, "identity": IDENTITY, "relu": RELU,
         "leaky_relu": LEAKY_RELU, "sigmoid": SIGMOID, "tanh": TANH}
NAMES = {IDENTITY: None, RELU: "relu", LEAKY_RELU: "leaky_relu", SIGMOID: "sigmoid", TANH: "tanh"}


@jit
def sigmoid(z):
    """Logistic sigmoid without overflow: exp is only taken of -|z|."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


# tanh(x) ~ x P(x^2) / Q(x^2) on [-TANH_CLAMP, TANH_CLAMP], where float32 tanh is
# already +-1 beyond; the minimax coefficients of Eigen's float tanh.  Measured
# against float64 tanh on 2.1M points in [-12, 12] and down to 1e-30: at most 5.7
# float32 ulp (3.4e-7 absolute).
TANH_CLAMP = 7.90531110763549805
TANH_P = (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05,
          5.12229709037114e-08, -8.60467152213735e-11, 2.00018790482477e-13,
          -2.76076847742355e-16)
TANH_Q = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04,
          1.19825839466702e-06)


@jit
def horner32(x, coeffs):
    """sum_k coeffs[k] x^k in float32 arithmetic (Horner's rule); coeffs : a tuple of
    floats, lowest power first.  The loop has a constant trip count, so it unrolls."""
    p = np.float32(coeffs[len(coeffs) - 1])
    for k in range(len(coeffs) - 2, -1, -1):
        p = p * x + np.float32(coeffs[k])
    return p


@jit
def tanh32(x):
    """tanh of a float32, branch-free (a clamp and two Horner polynomials).
    NaN stays NaN: both clamp comparisons are False for it."""
    c = np.float32(TANH_CLAMP)
    x = c if x > c else x
    x = -c if x < -c else x
    x2 = x * x
    return x * horner32(x2, TANH_P) / horner32(x2, TANH_Q)


@intrinsic
def _float32_from_bits(typingctx, bits):
    # The float32 whose IEEE bits are the int32 ``bits``.
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))
    return types.float32(types.int32), codegen


# exp(x) = 2^n exp(r) with n = round(x / ln 2) and r = x - n ln 2 (taken in float64,
# which keeps r exact enough for any n), |r| <= ln(2) / 2; exp(r) ~ 1 + r + r^2 P(r)
# with Cephes' expf coefficients.  Measured against float64 exp on 2M points in
# [-87.3, 0] and down to -1e-30: at most EXP_ULP float32 ulp.
EXP_LOW = -87.33654  # exp below it is under float32's smallest normal number
EXP_ULP = 2
LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453
EXP_P = (5.0000001201e-1, 1.6666665459e-1, 4.1665795894e-2, 8.3334519073e-3,
         1.3981999507e-3, 1.9875691500e-4)


@jit
def exp32(x):
    """exp of a float32 x <= 0 (all that softmax and log-sum-exp take), branch-free,
    so that LLVM vectorises loops over it.  0 below EXP_LOW; NaN stays NaN."""
    low = np.float32(EXP_LOW)
    underflow = x < low
    x = low if underflow else x
    n = np.floor(x * np.float32(LOG2E) + np.float32(0.5))
    n = n if n == n else np.float32(0)  # NaN
    r = np.float32(np.float64(x) - np.float64(n) * LN2)
    y = (horner32(r, EXP_P) * r * r + r + np.float32(1)) * _float32_from_bits(
        (np.int32(n) + 127) << 23)
    return np.float32(0) if underflow else y


@jit
def activate(z, code, slope):
    """f(z) for the activation ``code``."""
    if code == RELU:
        return z if z > 0 else z * 0
    if code == LEAKY_RELU:
        return z if z > 0 else z * slope
    if code == SIGMOID:
        return sigmoid(z)
    if code == TANH:
        return math.tanh(z)
    return z


@jit
def derivative_from_output(a, code, slope):
    """f'(z) written with the stored output a = f(z)."""
    if code == RELU:
        return 1.0 if a > 0 else 0.0
    if code == LEAKY_RELU:
        return 1.0 if a > 0 else slope
    if code == SIGMOID:
        return a * (1.0 - a)
    if code == TANH:
        return 1.0 - a * a
    return 1.0
