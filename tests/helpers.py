"""Shared helpers for the fastbp tests (no tests in here)."""
from __future__ import annotations

import inspect

import numpy as np

DTYPES = (np.float32, np.float64)

#: Relative accuracy asked of a kernel against its float64 twin, per dtype.
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def rtol_for(dtype) -> float:
    return RTOL[np.dtype(dtype)]


def call_kernel(kernel, **kwargs):
    """Call a compiled kernel with arguments given by name.

    Private kernels change their signatures as they are optimised; naming the
    arguments makes a changed signature fail loudly instead of silently.
    """
    names = list(inspect.signature(kernel.py_func).parameters)
    args = []
    for name in names:
        if name in kwargs:
            args.append(kwargs.pop(name))
        else:
            raise TypeError(f"{kernel.__name__} takes an argument {name!r} the test does not "
                            f"supply; signature: {names}")
    if kwargs:
        raise TypeError(f"{kernel.__name__} has no argument(s) {sorted(kwargs)}; "
                        f"signature: {names}")
    return kernel(*args)


def assert_within(actual, desired, tol, what=""):
    """|actual - desired| <= tol elementwise (tol broadcast), actual finite, shapes equal.

    The message gives the worst element, its error and its tolerance.
    """
    actual = np.asarray(actual)
    desired = np.asarray(desired, dtype=np.float64)
    assert actual.shape == desired.shape, f"{what}: shape {actual.shape} != {desired.shape}"
    assert np.all(np.isfinite(actual)), f"{what}: non-finite values in {actual}"
    err = np.abs(actual.astype(np.float64) - desired)
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), err.shape)
    if err.size and not np.all(err <= tol):
        i = np.unravel_index(np.argmax(err - tol), err.shape)
        raise AssertionError(f"{what}: {np.count_nonzero(err > tol)} of {err.size} elements "
                             f"out of tolerance; worst at {i}: got {actual[i]!r}, expected "
                             f"{desired[i]!r}, error {err[i]:.3g} > tol {tol[i]:.3g}")


def max_abs_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def make_targets(loss, rng, n, n_out):
    """Random targets for ``loss`` (float targets or integer labels)."""
    if loss == "softmax_cross_entropy":
        return rng.integers(0, n_out, size=n)
    if loss == "binary_cross_entropy":
        return rng.random((n, n_out))
    return rng.standard_normal((n, n_out))
