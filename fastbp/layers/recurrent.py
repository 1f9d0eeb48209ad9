"""Recurrent layers over padded sequences (seed 004): RNN, LSTM, GRU and Bidirectional.

A recurrent layer reads a sequence value (batch, T, n_in) and keeps a state h_t
of ``n_hidden`` numbers that every step updates from the step's input and the
state before (zero at the start).  Backward is backpropagation through time:
the weights are shared over the steps, so their gradients are sums over the
steps.  Gate layouts and equations are PyTorch's (``nn.RNN``, ``nn.LSTM``,
``nn.GRU``), with the weights transposed to fastbp's ``x @ W`` convention:

* RNN:  h_t = f(x_t W + h_{t-1} U + b)
* LSTM: [i, f, g, o] = x_t W + h_{t-1} U + b;
  c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g);  h_t = sigmoid(o) tanh(c_t)
* GRU:  a = x_t W + b,  q = h_{t-1} U + b_rec  (gates r, z, n);
  r = sigmoid(a_r + q_r),  z = sigmoid(a_z + q_z),  n = tanh(a_n + r q_n);
  h_t = (1 - z) n + z h_{t-1}

(PyTorch's two biases b_ih + b_hh are one ``b`` for RNN and LSTM; a GRU keeps
both, as ``b`` and ``b_rec``, since its reset gate multiplies b_hh's n part.)

Each sequence stops at its own last token: the state is not updated past it,
the reverse direction starts there, and the padded steps output zeros, take no
gradient and carry no loss.  The time loop, the products and BPTT all run in
compiled code (:mod:`fastbp.kernels.recurrent`).
"""
from __future__ import annotations

import math

import numpy as np

from .._validation import check_int, check_weights
from ..engine import codes
from ..engine.graph import NodeSpec, as_values
from ..kernels import activations as _act
from ..kernels import recurrent as _rec
from .base import Layer
from .merge import Concatenate


class _Recurrent(Layer):
    """What RNN, LSTM and GRU share: a cell, its weights W, U, b, and the options."""

    cell = -1
    gates = 1

    def __init__(self, n_in: int, n_hidden: int, return_sequences: bool = True,
                 truncate: int = 0, reverse: bool = False):
        super().__init__()
        who = type(self).__name__
        self.n_in = check_int(f"{who} n_in", n_in, 1)
        self.n_hidden = check_int(f"{who} n_hidden", n_hidden, 1)
        for name, flag in (("return_sequences", return_sequences), ("reverse", reverse)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"{who} {name} must be a bool, got {flag!r}")
        self.return_sequences = bool(return_sequences)
        self.reverse = bool(reverse)
        self.truncate = check_int(f"{who} truncate", truncate, 0)
        self.act_code = _act.CODES["tanh"]

    def declare(self, widths, ids, sequences):
        name = repr(self)
        if len(widths) != 1:
            raise ValueError(f"{name} takes one input, got {len(widths)}")
        if ids[0]:
            raise TypeError(f"{name} takes float features per step, got int64 ids (look them "
                            f"up in fb.layers.Embedding first)")
        if not sequences[0]:
            raise TypeError(f"{name} reads a sequence (batch, T, {self.n_in}), got a "
                            f"non-sequence value of width {widths[0]}; use "
                            f"fb.Input({self.n_in}, sequence=True) or a sequence layer's output")
        if widths[0] != self.n_in:
            raise ValueError(f"{name} has n_in={self.n_in} but receives {widths[0]} features "
                             f"per step")
        h = self.n_hidden
        cache = _rec.cache_width(self.cell, h) + (0 if self.return_sequences else 2 * h)
        return NodeSpec(codes.RECURRENT, h, params=self.param_shapes(self.n_in),
                        attrs={"cell": self.cell, "act": self.act_code,
                               "reverse": int(self.reverse), "last": int(not self.return_sequences),
                               "truncate": self.truncate},
                        sequence=self.return_sequences, cache=cache)

    def output_dim(self, input_dim: int) -> int:
        return self.n_hidden

    def param_shapes(self, input_dim: int) -> dict:
        """``{"W": (n_in, G), "U": (h, G), "b": (G,)}`` with G = gates * h (1, 4 or 3
        gates); ``input_dim`` is ``n_in``, the features per step."""
        G, h = self.gates * self.n_hidden, self.n_hidden
        return {"W": (self.n_in, G), "U": (h, G), "b": (G,)}

    def build(self, input_dim, rng, dtype):
        """Initial parameters, PyTorch's: every weight and bias drawn from
        U(-1/sqrt(h), 1/sqrt(h)) with ``rng`` (a numpy Generator), cast to ``dtype``, in
        the shapes of :meth:`param_shapes` for ``input_dim`` features per step."""
        # PyTorch's default: every weight and bias from U(-1/sqrt(h), 1/sqrt(h))
        k = 1.0 / math.sqrt(self.n_hidden)
        return {name: rng.uniform(-k, k, shape).astype(dtype)
                for name, shape in self.param_shapes(self.n_in).items()}

    def get_config(self):
        """The constructor's arguments as a JSON-able dict (``truncate`` and ``reverse``
        only when set); ``type(layer).from_config`` rebuilds the layer from it."""
        cfg = {"n_in": self.n_in, "n_hidden": self.n_hidden,
               "return_sequences": self.return_sequences}
        if self.truncate:
            cfg["truncate"] = self.truncate
        if self.reverse:
            cfg["reverse"] = True
        return cfg

    # the weights, as views of the model's flat buffer
    def _param(self, name):
        return self.params[name]

    def _set(self, name, value):
        view = self.params[name]
        view[...] = check_weights(name, value, view.shape, view.dtype)

    W = property(lambda self: self._param("W"), lambda self, v: self._set("W", v))
    """The input weights, (n_in, gates * h): a view of the model's flat buffer, assignable
    (the value is checked and copied in)."""
    U = property(lambda self: self._param("U"), lambda self, v: self._set("U", v))
    """The recurrent weights, (h, gates * h), a view like ``W``."""
    b = property(lambda self: self._param("b"), lambda self, v: self._set("b", v))
    """The bias, (gates * h,), a view like ``W``."""


class RNN(_Recurrent):
    """The vanilla RNN of seed 004: ``h_t = f(x_t W + h_{t-1} U + b)``.

    Parameters
    ----------
    n_in, n_hidden : features per step in, state size.  W (n_in, h), U (h, h), b (h,).
    activation : "tanh" (default) or "relu" (PyTorch's ``nonlinearity``).
    return_sequences : True (default) outputs h_t at every step, (batch, T, h); False
        outputs the state after each sequence's last step, (batch, h).
    truncate : k > 0 carries each step's gradient back at most k steps (truncated
        BPTT, seed 004); 0 (default) goes back to the first step.
    reverse : read each sequence from its last token to its first (what
        :class:`Bidirectional` sets on its backward layer).
    """

    cell = _rec.RNN
    gates = 1

    def __init__(self, n_in: int, n_hidden: int, activation: str = "tanh",
                 return_sequences: bool = True, truncate: int = 0, reverse: bool = False):
        super().__init__(n_in, n_hidden, return_sequences, truncate, reverse)
        if activation not in ("tanh", "relu"):
            raise ValueError(f"RNN activation must be 'tanh' or 'relu', got {activation!r}")
        self.activation = activation
        self.act_code = _act.CODES[activation]

    def get_config(self):
        """The constructor's arguments as a JSON-able dict, ``activation`` included."""
        return {**super().get_config(), "activation": self.activation}


class LSTM(_Recurrent):
    """Long short-term memory (PyTorch's ``nn.LSTM``): gates i, f, g, o side by side in
    W (n_in, 4h), U (h, 4h) and b (4h,).

    The options are :class:`RNN`'s, without its ``activation`` (the gates are sigmoids,
    the cell a tanh).

    Parameters
    ----------
    n_in, n_hidden : features per step in, state size h.
    return_sequences : True (default) outputs h_t at every step, (batch, T, h); False
        outputs the state after each sequence's last step, (batch, h).
    truncate : k > 0 carries each step's gradient back at most k steps (truncated
        BPTT); 0 (default) goes back to the first step.
    reverse : read each sequence from its last token to its first.
    """

    cell = _rec.LSTM
    gates = 4


class GRU(_Recurrent):
    """Gated recurrent unit (PyTorch's ``nn.GRU``, which applies the reset gate after the
    recurrent product): gates r, z, n in W (n_in, 3h), U (h, 3h), b (3h,) (PyTorch's
    b_ih) and b_rec (3h,) (its b_hh).

    The options are :class:`RNN`'s, without its ``activation`` (sigmoid gates, a tanh
    candidate).

    Parameters
    ----------
    n_in, n_hidden : features per step in, state size h.
    return_sequences : True (default) outputs h_t at every step, (batch, T, h); False
        outputs the state after each sequence's last step, (batch, h).
    truncate : k > 0 carries each step's gradient back at most k steps (truncated
        BPTT); 0 (default) goes back to the first step.
    reverse : read each sequence from its last token to its first.
    """

    cell = _rec.GRU
    gates = 3

    def param_shapes(self, input_dim: int) -> dict:
        """W (n_in, 3h), U (h, 3h), b (3h,) and b_rec (3h,); ``input_dim`` is ``n_in``."""
        return {**super().param_shapes(input_dim), "b_rec": (3 * self.n_hidden,)}

    b_rec = property(lambda self: self._param("b_rec"), lambda self, v: self._set("b_rec", v))
    """The recurrent bias, (3h,) (PyTorch's b_hh), a view like ``W``."""


class Bidirectional(Layer):
    """A recurrent layer read both ways: ``forward_layer`` from each sequence's first token,
    ``backward_layer`` (a copy of its configuration with ``reverse=True``, weights of its
    own) from its last; their outputs side by side, (batch, T, 2h) (or (batch, 2h) with
    ``return_sequences=False``: the forward state after the last token and the backward
    state after the first), as PyTorch's ``bidirectional=True``.

    Calling it adds the two directions and a :class:`Concatenate` to the graph; a model
    lists those three layers.

    Parameters
    ----------
    layer : RNN, LSTM or GRU
        The forward direction, not yet called and not reversed.
    """

    def __init__(self, layer):
        super().__init__()
        if not isinstance(layer, _Recurrent):
            raise TypeError(f"Bidirectional wraps an RNN, LSTM or GRU, got {layer!r}")
        if layer.reverse:
            raise ValueError(f"Bidirectional makes the reverse direction itself; give it a "
                             f"forward layer, got {layer!r}")
        if layer._calls:
            raise ValueError(f"{layer!r} was already called; give Bidirectional a new layer")
        self.forward_layer = layer
        self.backward_layer = type(layer).from_config({**layer.get_config(), "reverse": True})
        self.merge = Concatenate()

    def __call__(self, inputs):
        values = as_values(inputs, repr(self))
        if len(values) != 1:
            raise ValueError(f"{self!r} takes one input, got {len(values)}")
        return self.merge([self.forward_layer(values[0]), self.backward_layer(values[0])])

    @property
    def n_params(self) -> int:
        """The number of trainable numbers in both directions."""
        return self.forward_layer.n_params + self.backward_layer.n_params

    def __repr__(self):
        return f"Bidirectional({self.forward_layer!r})"
