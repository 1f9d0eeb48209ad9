"""The Layer base class.

Life cycle (after Keras): configuration in ``__init__``; ``build`` gives the
initial parameter values; the model then packs every parameter into one flat
buffer and hands each layer views into it with ``bind``.  Afterwards
``layer.W`` and friends read and write the model's buffer directly.

A layer the engine does not know can still be trained: subclass
:class:`Layer`, implement ``forward(x, training)`` and ``backward(g)`` with
NumPy, and write parameter gradients into ``self.grads[name]``.  The model then
takes the per-layer path, calling each layer from Python.
"""
from __future__ import annotations

import numpy as np


class Layer:
    """A step of a :class:`fastbp.Sequential` model.

    Attributes
    ----------
    params, grads : dict of name -> array views into the model's flat buffers
        (empty for layers without parameters), set by ``bind``.
    """

    #: the engine's layer kind, or None for a layer only the per-layer path runs
    kind: int | None = None

    def __init__(self):
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.index = -1
        self.input_dim: int | None = None
        self._ws: dict[str, np.ndarray] = {}  # work arrays of the per-layer path

    # -- shapes and parameters -------------------------------------------------
    def output_dim(self, input_dim: int) -> int:
        """The width of the output for an input of width ``input_dim``."""
        return input_dim

    def param_shapes(self, input_dim: int) -> dict[str, tuple]:
        """Name -> shape of each parameter array, in buffer order."""
        return {}

    def build(self, input_dim: int, rng: np.random.Generator, dtype) -> dict[str, np.ndarray]:
        """Initial values of the parameters (same names and shapes as param_shapes)."""
        return {}

    def _buffer(self, name: str, shape: tuple, dtype) -> np.ndarray:
        """A per-layer work array of ``shape``, allocated once for the largest batch seen
        (the first dimension) and reused; a view of its first ``shape[0]`` rows."""
        ws = self._ws
        buf = ws.get(name)
        if (buf is None or buf.shape[0] < shape[0] or buf.shape[1:] != tuple(shape[1:])
                or buf.dtype != dtype):
            buf = ws[name] = np.empty(shape, dtype=dtype)
        return buf[:shape[0]]

    def bind(self, params: dict, grads: dict) -> None:
        self.params = params
        self.grads = grads

    @property
    def n_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    # -- the per-layer path ------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def backward(self, g: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    # -- configuration -------------------------------------------------------------
    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
