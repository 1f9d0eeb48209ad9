"""The fully connected layer a = f(x W + b)."""
from __future__ import annotations

import numpy as np

from .. import init as _init
from .._validation import check_float, check_int
from ..kernels import activations as _act
from ..kernels.dense import dense_backward, dense_forward
from ..kernels.gemm import forward_work_size
from ..kernels.engine import DENSE
from ..threads import parallel_enabled
from .base import Layer


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

    kind = DENSE

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
        self._x = None
        self._a = None
        self.need_input_grad = True

    def output_dim(self, input_dim: int) -> int:
        if input_dim != self.n_in:
            raise ValueError(f"Dense(n_in={self.n_in}) receives inputs of width {input_dim}; "
                             f"the previous layer's output width must equal n_in")
        return self.n_out

    def param_shapes(self, input_dim: int) -> dict[str, tuple]:
        return {"W": (self.n_in, self.n_out), "b": (self.n_out,)}

    def build(self, input_dim, rng, dtype):
        W = np.asarray(self._init_fn((self.n_in, self.n_out), rng, dtype), dtype=dtype)
        if W.shape != (self.n_in, self.n_out):
            raise ValueError(f"initialiser {self.init!r} returned shape {W.shape}, expected "
                             f"{(self.n_in, self.n_out)}")
        return {"W": W, "b": np.zeros(self.n_out, dtype=dtype)}

    # W and b read and write the model's flat buffer.
    @property
    def W(self) -> np.ndarray:
        return self.params["W"]

    @W.setter
    def W(self, value):
        _assign(self.params["W"], value, "W")

    @property
    def b(self) -> np.ndarray:
        return self.params["b"]

    @b.setter
    def b(self, value):
        _assign(self.params["b"], value, "b")

    @property
    def dW(self) -> np.ndarray:
        return self.grads["W"]

    @property
    def db(self) -> np.ndarray:
        return self.grads["b"]

    def forward(self, x, training):
        out = self._buffer("a", (x.shape[0], self.n_out), x.dtype)
        work = self._buffer("work", (forward_work_size(x.shape[0], self.n_out),), x.dtype)
        dense_forward(x, self.W, self.b, out, work, self.act_code, self.slope,
                      parallel_enabled())
        self._x = x
        self._a = out
        return out

    def backward(self, g):
        m = g.shape[0]
        delta = self._buffer("delta", (m, self.n_out), self._a.dtype)
        np.copyto(delta, g)
        g_in = self._buffer("g_in", (m, self.n_in), self._a.dtype)
        dense_backward(self._x, self._a, self.W, delta, self.dW, self.db, g_in, self.act_code,
                       self.slope, self.need_input_grad, parallel_enabled())
        return g_in

    def get_config(self):
        cfg = {"n_in": self.n_in, "n_out": self.n_out, "activation": self.activation,
               "init": _init.to_config(self.init)}
        if self.activation == "leaky_relu":
            cfg["slope"] = self.slope
        return cfg

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["init"] = _init.from_config(config.get("init"))
        return cls(**config)


def _assign(view: np.ndarray, value, name: str) -> None:
    arr = np.asarray(value)
    if arr.shape != view.shape:
        raise ValueError(f"{name} must have shape {view.shape}, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite")
    view[...] = arr
