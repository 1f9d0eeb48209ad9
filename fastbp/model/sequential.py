"""Sequential: a list of layers, each reading the one before; a Model like any other."""
from __future__ import annotations


from ..engine.graph import Input
from ..layers.base import Layer
from ..layers.embedding import Embedding, WindowEmbedding
from ..layers.recurrent import Bidirectional, _Recurrent
from .base import Model


class Sequential(Model):
    """A stack of layers trained as one network.

    Parameters
    ----------
    layers : list of Layer
        The first layer that has a fixed input width (``n_in``) sets the model's
        input width.  A :class:`~fastbp.layers.WindowEmbedding` may only come first;
        the model then takes int id windows as input.
    dtype : {"float32", "float64"}
        The dtype of every parameter, activation and gradient.
    seed : int
        Fixes the initial weights (and the dropout stream when ``fit`` gets no seed).
    checkpoint_every : int, optional
        Keep every k-th layer's output and recompute the rest during backward (see
        :class:`~fastbp.model.base.Model`).
    """

    def __init__(self, layers: list, dtype: str = "float32", seed: int = 0,
                 checkpoint_every: int | None = None):
        if not isinstance(layers, (list, tuple)) or len(layers) == 0:
            raise ValueError(f"Sequential needs a non-empty list of layers, got {layers!r}")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {i} is a {type(layer).__name__}; every layer must be a "
                                f"fastbp.layers.Layer")
            if isinstance(layer, WindowEmbedding) and i > 0:
                raise ValueError(f"an {type(layer).__name__} must be the first layer, found one "
                                 f"at position {i}")
        if len({id(l) for l in layers}) != len(layers):
            raise ValueError("the same layer object appears twice in the list")
        if isinstance(layers[0], WindowEmbedding) and len(layers) == 1:
            raise ValueError("a WindowEmbedding needs at least one Dense layer after it")
        for layer in layers:
            if layer.model is not None or layer._calls:
                raise ValueError(f"{layer!r} already belongs to a model; a layer object can "
                                 f"serve one model only")
        first = layers[0]
        if isinstance(first, Embedding):
            x = Input(dtype="int64", sequence=True, name="ids")
        elif isinstance(first, WindowEmbedding):
            x = Input(first.width, dtype="int64", name="ids")
        elif isinstance(first, (_Recurrent, Bidirectional)):
            rec = first.forward_layer if isinstance(first, Bidirectional) else first
            x = Input(rec.n_in, sequence=True, name="x")
        else:
            x = Input(_input_width(layers), name="x")
        self._composite = any(isinstance(l, Bidirectional) for l in layers)
        h = x
        for layer in layers:
            h = layer(h)
        self.n_in = x.width
        self._build([x], h, dtype, seed, checkpoint_every)
        self.widths = [c.output.width for c in self._plan.calls]

    def get_config(self) -> dict:
        if self._composite:  # a Bidirectional adds three layers: saved as the graph it made
            return super().get_config()
        return {"class": "Sequential", "dtype": self.dtype.name, "seed": self.seed,
                "checkpoint_every": self.checkpoint_every,
                "layers": [{"class": type(l).__name__, "config": l.get_config()}
                           for l in self.layers]}

    def __repr__(self):
        return f"Sequential({self.layers!r}, dtype={self.dtype.name!r}, seed={self.seed})"


def _input_width(layers) -> int:
    for layer in layers:
        n_in = getattr(layer, "n_in", None)
        if n_in is not None:
            return int(n_in)
    raise ValueError("no layer fixes the input width: the first Dense layer's n_in does")
