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
"""
from __future__ import annotations

import math

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
