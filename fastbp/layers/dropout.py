"""Inverted dropout (seed 003)."""
from __future__ import annotations

from .._validation import check_float
from ..engine import codes
from ..engine.graph import NodeSpec
from .base import Layer, single_input


class Dropout(Layer):
    """Zero each input with probability ``p`` during training, scaling the kept ones by
    ``1 / (1 - p)`` (inverted dropout), so nothing changes at evaluation time.

    Off in ``predict`` and ``evaluate``.  Masks come from a counter-based generator
    keyed by (fit seed, step, node), so a seeded run is reproducible at any thread
    count, and a recomputed forward pass draws the same mask.

    Parameters
    ----------
    p : float
        The probability of zeroing an input, in [0, 1).
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = check_float("Dropout p", p, low=0.0, high=1.0, high_open=True)

    def declare(self, widths, ids, sequences):
        width = single_input(self, widths, ids, want_ids=False)
        return NodeSpec(codes.DROPOUT, width, fattrs={"p": self.p})

    def get_config(self):
        """``{"p": p}``, the constructor's argument."""
        return {"p": self.p}
