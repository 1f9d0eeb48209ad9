"""The fully connected layer a = f(x W + b)."""
from __future__ import annotations

import numpy as np

from .. import init as _init
from .._validation import check_float, check_int, check_weights
from ..engine import codes
from ..engine.graph import NodeSpec
from ..kernels import activations as _act
from .base import Layer, single_input


def check_activation(activation):
    if activation not in _act.CODES or isinstance(activation, bool):
        allowed = ["relu", "leaky_relu", "sigmoid", "tanh", None]
        raise ValueError(f"unknown activation {activation!r}; allowed: {allowed}")
    return _act.NAMES[_act.CODES[activation]]


class Dense(Layer):
    """Fully connected layer: ``a = f(x W + b)``.

    Parameters
    ----------
    n_in, n_out : int
        Input and output widths.  ``W`` has shape ``(n_in, n_out)``, ``b`` shape ``(n_out,)``.
    activation : {"relu", "leaky_relu", "sigmoid", "tanh", None}
        ``None`` (the default) is a linear output.
    init : str or callable, optional
        Weight initialiser (see :mod:`fastbp.init`).  Default: ``"he"`` for the
        ReLU family, ``"xavier_uniform"`` otherwise.  Biases start at zero.
    slope : float
        The negative-side slope of ``"leaky_relu"`` (>= 0; PyTorch's default 0.01).
    """

    def __init__(self, n_in: int, n_out: int, activation: str | None = None, init=None,
                 slope: float = 0.01):
        super().__init__()
        self.n_in = check_int("Dense n_in", n_in, 1)
        self.n_out = check_int("Dense n_out", n_out, 1)
        self.activation = check_activation(activation)
        self.slope = check_float("Dense slope", slope, low=0.0)
        self.init = _init.default_for(self.activation) if init is None else init
        self._init_fn = _init.get(self.init)
        self.act_code = _act.CODES[self.activation]

    def declare(self, widths, ids, sequences):
        width = single_input(self, widths, ids, want_ids=False)
        self.output_dim(width)
        return NodeSpec(codes.DENSE, self.n_out, params=self.param_shapes(width),
                        attrs={"act": self.act_code}, fattrs={"slope": self.slope})

    def output_dim(self, input_dim: int) -> int:
        if input_dim != self.n_in:
            raise ValueError(f"Dense(n_in={self.n_in}) receives inputs of width {input_dim}; "
                             f"the previous layer's output width must equal n_in")
        return self.n_out

    def param_shapes(self, input_dim: int) -> dict[str, tuple]:
        """``{"W": (n_in, n_out), "b": (n_out,)}``; ``input_dim`` equals ``n_in``."""
        return {"W": (self.n_in, self.n_out), "b": (self.n_out,)}

    def build(self, input_dim, rng, dtype):
        """Initial parameters: ``W`` from the initialiser, ``b`` zeros.

        Parameters
        ----------
        input_dim : int
            The input width (``n_in``).
        rng : numpy.random.Generator
            The model's generator, which the initialiser draws from.
        dtype : {"float32", "float64"}
            The model's dtype.

        Returns
        -------
        dict with ``"W"``: array (n_in, n_out) and ``"b"``: zeros (n_out,), of ``dtype``.
        """
        W = np.asarray(self._init_fn((self.n_in, self.n_out), rng, dtype), dtype=dtype)
        if W.shape != (self.n_in, self.n_out):
            raise ValueError(f"initialiser {self.init!r} returned shape {W.shape}, expected "
                             f"{(self.n_in, self.n_out)}")
        return {"W": W, "b": np.zeros(self.n_out, dtype=dtype)}

    # W and b read and write the model's flat buffer.
    @property
    def W(self) -> np.ndarray:
        """The weights, (n_in, n_out): a view of the model's flat buffer (assigning copies
        into it, after checking the shape and finiteness)."""
        return self.params["W"]

    @W.setter
    def W(self, value):
        _assign(self.params["W"], value, "W")

    @property
    def b(self) -> np.ndarray:
        """The bias, (n_out,): a view of the model's flat buffer, assignable like ``W``."""
        return self.params["b"]

    @b.setter
    def b(self, value):
        _assign(self.params["b"], value, "b")

    @property
    def dW(self) -> np.ndarray:
        """The gradient of the loss with respect to ``W``, (n_in, n_out), from the last
        backward pass (a view of the model's gradient buffer)."""
        return self.grads["W"]

    @property
    def db(self) -> np.ndarray:
        """The gradient of the loss with respect to ``b``, (n_out,)."""
        return self.grads["b"]

    def get_config(self):
        """The constructor's arguments as a JSON-able dict (``slope`` only for
        ``"leaky_relu"``); :meth:`from_config` rebuilds the layer from it."""
        cfg = {"n_in": self.n_in, "n_out": self.n_out, "activation": self.activation,
               "init": _init.to_config(self.init)}
        if self.activation == "leaky_relu":
            cfg["slope"] = self.slope
        return cfg

    @classmethod
    def from_config(cls, config):
        """A new layer from ``config``, a dict from :meth:`get_config` (its ``init``
        entry turned back into an initialiser)."""
        config = dict(config)
        config["init"] = _init.from_config(config.get("init"))
        return cls(**config)


def _assign(view: np.ndarray, value, name: str) -> None:
    view[...] = check_weights(name, value, view.shape, view.dtype)
