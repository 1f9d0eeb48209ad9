"""The Layer base class.

Life cycle (after Keras): configuration in ``__init__``; calling the layer on a
value (``layer(x)``, or a Sequential doing it) makes it *declare* its node
(:meth:`Layer.declare`: kind, output width, parameter shapes, attributes);
``build`` gives the initial parameter values; the model then packs every
parameter into one flat buffer and hands each layer views into it with
``bind``.  Afterwards ``layer.W`` and friends read and write the model's buffer
directly.  The planner reads nothing but the declaration.

A layer the engine does not know can still be trained: subclass
:class:`Layer`, implement ``output_dim``, ``param_shapes`` and ``build`` when it
has parameters, and ``forward(x, training)`` and ``backward(g)`` with NumPy,
writing parameter gradients into ``self.grads[name]``.  The model then takes
the per-layer path, calling those two methods from Python for this layer and
the compiled node functions for the others.  Such a layer takes one float input
and may be called once per model.
"""
from __future__ import annotations

import numpy as np

from ..engine import codes
from ..engine.graph import Call, NodeSpec, as_values


#: Every Layer subclass by class name, filled as the classes are defined, so that a
#: checkpoint naming a user's own layer class can be loaded (see ``Layer.__init_subclass__``).
REGISTRY: dict = {}


class Layer:
    """A step of a model.

    A user's subclass registers itself by its class name when it is defined, so that
    ``fb.load`` can rebuild a model that uses it (define or import the class before
    loading; ``get_config`` returns the keyword arguments ``from_config`` passes back
    to the constructor).  A class named as one of fastbp's own layers is refused; of
    two user classes of one name, the one defined last is the one loaded.

    Attributes
    ----------
    params, grads : dict of name -> array views into the model's flat buffers
        (empty for layers without parameters), set by ``bind``.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        name = cls.__name__
        held = REGISTRY.get(name)
        if (held is not None and held.__module__.startswith("fastbp.")
                and not cls.__module__.startswith("fastbp.")):
            raise TypeError(f"{cls.__module__}.{cls.__qualname__}: a layer class named "
                            f"{name!r} is fastbp's own ({held.__module__}); give yours another "
                            f"name so that saved models can tell them apart")
        REGISTRY[name] = cls  # a class defined again (a module reloaded) replaces itself

    def __init__(self):
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.index = -1          # position in its model's layer list
        self.input_dim: int | None = None
        self.model = None        # the model that owns this layer, once built
        self._calls: list = []   # the calls made on it (shared weights across them)

    # -- the node this layer declares ---------------------------------------------
    def declare(self, widths: list, ids: list, sequences: list) -> NodeSpec:
        """The node of a call on inputs of these widths (``ids[i]``: input i holds int
        ids; ``sequences[i]``: input i is a sequence).  The default serves a user's NumPy
        layer: one float input, parameters from ``param_shapes``, run by the per-layer
        path."""
        name = type(self).__name__
        if len(widths) != 1:
            raise ValueError(f"{name} takes one input, got {len(widths)}")
        if ids[0]:
            raise TypeError(f"{name} takes float features, got int64 ids of width {widths[0]}")
        if sequences[0]:
            raise TypeError(f"{name} is a NumPy layer of the per-layer path, which takes "
                            f"(batch, width) values, got a sequence")
        return NodeSpec(codes.CUSTOM, int(self.output_dim(widths[0])),
                        params=dict(self.param_shapes(widths[0])))

    def __call__(self, inputs):
        """Apply the layer to one value (or a list of values); returns its output value."""
        values = as_values(inputs, repr(self))
        if self.model is not None:
            raise ValueError(f"{self!r} already belongs to a built model; a layer object can "
                             f"serve one model only (make a new layer, or copy weights)")
        widths = [v.width for v in values]
        ids = [v.is_ids for v in values]
        seqs = [v.sequence for v in values]
        spec = self.declare(widths, ids, seqs)
        if spec.sequence is None:
            if len(set(seqs)) > 1:
                raise ValueError(f"{self!r} got sequences and non-sequence values together "
                                 f"({', '.join(v.kind_text for v in values)}); give it one "
                                 f"kind (a recurrent layer with return_sequences=False turns a "
                                 f"sequence into one value per sample)")
            spec.sequence = seqs[0]
        if self._calls:
            first = self._calls[0]
            before = [(v.width, v.is_ids, v.sequence) for v in first.inputs]
            if before != list(zip(widths, ids, seqs)):
                raise ValueError(f"{self!r} is shared between calls, so every call must get "
                                 f"inputs like the first one: {before} (width, is_ids, "
                                 f"sequence), got {list(zip(widths, ids, seqs))}")
            if spec.kind == codes.CUSTOM:
                raise ValueError(f"{self!r} is a NumPy layer of the per-layer path and keeps "
                                 f"one forward cache, so it can be called only once")
        call = Call(self, values, spec)
        self._calls.append(call)
        if len(self._calls) == 1:
            self.input_dim = widths[0]
        return call.output

    # -- shapes and parameters -------------------------------------------------
    def output_dim(self, input_dim: int) -> int:
        """The width of the output for an input of width ``input_dim``."""
        return input_dim

    def param_shapes(self, input_dim: int) -> dict[str, tuple]:
        """Name -> shape of each parameter array, in buffer order, for an input of
        width ``input_dim``."""
        return {}

    def build(self, input_dim: int, rng: np.random.Generator, dtype) -> dict[str, np.ndarray]:
        """Initial values of the parameters (same names and shapes as declared) for an
        input of width ``input_dim``, drawn from ``rng``, in ``dtype``."""
        return {}

    def bind(self, params: dict, grads: dict) -> None:
        """Take the model's views: ``params`` and ``grads``, name -> array."""
        self.params = params
        self.grads = grads

    @property
    def n_params(self) -> int:
        """The number of parameters (entries of the arrays in ``params``)."""
        return int(sum(p.size for p in self.params.values()))

    # -- the per-layer path ------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:  # pragma: no cover
        """A NumPy layer's output for the batch ``x`` (``training``: fit's passes, where
        dropout-like layers act); kept for its backward pass."""
        raise NotImplementedError(f"{type(self).__name__}.forward: a NumPy layer implements "
                                  f"forward(x, training) and backward(g)")

    def backward(self, g: np.ndarray) -> np.ndarray:  # pragma: no cover
        """A NumPy layer's gradient with respect to its input, from ``g``, the gradient
        with respect to its output of the last forward; fills ``self.grads``."""
        raise NotImplementedError(f"{type(self).__name__}.backward: a NumPy layer implements "
                                  f"forward(x, training) and backward(g)")

    # -- configuration -------------------------------------------------------------
    def get_config(self) -> dict:
        """The constructor's keyword arguments, JSON-ready (saved with the model)."""
        return {}

    @classmethod
    def from_config(cls, config: dict):
        """The layer ``cls(**config)``, from what ``get_config`` returned."""
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def single_input(layer, widths, ids, want_ids: bool):
    """The width of a one-input layer's input, after checking its count and kind."""
    name = repr(layer)
    if len(widths) != 1:
        raise ValueError(f"{name} takes one input, got {len(widths)}")
    if ids[0] and not want_ids:
        raise TypeError(f"{name} takes float features, got int64 ids of width {widths[0]} "
                        f"(ids go to an embedding layer first)")
    if want_ids and not ids[0]:
        raise TypeError(f"{name} takes int64 ids, got float features of width {widths[0]}")
    return widths[0]
