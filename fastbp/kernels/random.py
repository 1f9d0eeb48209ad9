"""Counter-based random numbers for dropout masks.

A mask element is a pure function of (key, index): ``uniform(key, i)`` hashes
the pair with the SplitMix64 finaliser.  No state is carried between calls, so
the backward pass regenerates the forward mask instead of storing it, and the
numbers do not depend on how rows are split among threads.
"""
from __future__ import annotations

import numpy as np

from .._config import jit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@jit
def mix64(z):
    """SplitMix64 finaliser of a uint64."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@jit
def combine_key(seed, step, layer):
    """A uint64 key for (seed, step, layer); all three are non-negative ints."""
    k = mix64(np.uint64(seed) + _GOLDEN)
    k = mix64(k ^ (np.uint64(step) * _GOLDEN))
    return mix64(k ^ (np.uint64(layer) + _M2))


@jit
def uniform(key, index):
    """A float64 in [0, 1) from (key, index)."""
    z = mix64(key + (np.uint64(index) + np.uint64(1)) * _GOLDEN)
    return float(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)
