"""Layers that join values: :class:`Concatenate` and :class:`Add` (seed 003's
computation graphs)."""
from __future__ import annotations

from ..engine import codes
from ..engine.graph import NodeSpec
from .base import Layer


def _floats(layer, widths, ids):
    if len(widths) < 2:
        raise ValueError(f"{layer!r} joins two or more values, got {len(widths)}")
    for i, (w, is_ids) in enumerate(zip(widths, ids)):
        if is_ids:
            raise TypeError(f"{layer!r} input {i} holds int64 ids of width {w}; it joins float "
                            f"features (look the ids up in an embedding first)")


class Concatenate(Layer):
    """Puts its inputs side by side: (batch, w1), (batch, w2), ... -> (batch, w1 + w2 + ...).
    Backward hands each input its columns of the gradient."""

    def declare(self, widths, ids, sequences):
        _floats(self, widths, ids)
        return NodeSpec(codes.CONCAT, int(sum(widths)))


class Add(Layer):
    """The elementwise sum of inputs of equal width.  Backward hands each input the
    whole gradient."""

    def declare(self, widths, ids, sequences):
        _floats(self, widths, ids)
        if len(set(widths)) != 1:
            raise ValueError(f"{self!r} adds values of equal width, got widths {list(widths)}")
        return NodeSpec(codes.ADD, int(widths[0]))
