"""Inverted dropout (seed 003)."""
from __future__ import annotations

import numpy as np

from .._validation import check_float
from ..kernels.dropout import dropout_apply
from ..kernels.engine import DROPOUT
from ..kernels.random import combine_key
from ..threads import parallel_enabled
from .base import Layer


class Dropout(Layer):
    """Zero each input with probability ``p`` during training, scaling the kept ones by
    ``1 / (1 - p)`` (inverted dropout), so nothing changes at evaluation time.

    Off in ``predict`` and ``evaluate``.  Masks come from a counter-based generator
    keyed by (fit seed, step, layer), so a seeded run is reproducible at any thread
    count.
    """

    kind = DROPOUT

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = check_float("Dropout p", p, low=0.0, high=1.0, high_open=True)
        self._key = np.uint64(0)

    def set_step(self, seed: int, step: int) -> None:
        """Key the mask of the next forward/backward pair (called by the model)."""
        self._key = np.uint64(combine_key(seed, step, self.index))

    def forward(self, x, training):
        self._training = bool(training) and self.p > 0
        out = self._buffer("out", x.shape, x.dtype)
        if self._training:
            dropout_apply(x, out, self._key, self.p, parallel_enabled())
        else:
            np.copyto(out, x)
        return out

    def backward(self, g):
        g_in = self._buffer("g_in", g.shape, g.dtype)
        if self._training:
            dropout_apply(np.ascontiguousarray(g), g_in, self._key, self.p, parallel_enabled())
        else:
            np.copyto(g_in, g)
        return g_in

    def get_config(self):
        return {"p": self.p}
