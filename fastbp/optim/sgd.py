from __future__ import annotations

import numpy as np

from .._validation import check_float
from ..kernels import optim as _k
from .base import Optimizer


class SGD(Optimizer):
    """Stochastic gradient descent with momentum (torch.optim.SGD's rule).

    With g_t the (clipped) gradient and weight decay lambda::

        d_t = g_t + lambda * theta_{t-1}
        b_1 = d_1;  b_t = mu * b_{t-1} + (1 - dampening) * d_t      (momentum mu > 0)
        d_t = d_t + mu * b_t   if nesterov   else   d_t = b_t
        theta_t = theta_{t-1} - lr * d_t

    State: ``momentum_buffer`` (b), ``step``.

    Parameters
    ----------
    lr : float
        The learning rate (> 0).
    momentum : float
        mu >= 0; 0 (the default) is plain SGD.
    dampening : float
        Scales down the new gradient's share of the momentum buffer.
    nesterov : bool
        Nesterov momentum (needs momentum > 0 and dampening 0).
    weight_decay : float
        lambda >= 0, L2 weight decay added to the gradient.
    clip_norm : float, optional
        Global L2 norm clipping of the gradient (see :class:`Optimizer`).
    """

    code = _k.SGD
    state_names = ("momentum_buffer",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0, clip_norm: float | None = None):
        super().__init__(lr, clip_norm)
        self.momentum = check_float("SGD momentum", momentum, low=0.0)
        self.dampening = check_float("SGD dampening", dampening)
        self.weight_decay = check_float("SGD weight_decay", weight_decay, low=0.0)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"SGD nesterov must be a bool, got {nesterov!r}")
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("Nesterov momentum requires momentum > 0 and dampening = 0, got "
                             f"momentum={self.momentum}, dampening={self.dampening}")

    def hyperparams(self):
        return np.array([self.momentum, self.dampening, float(self.nesterov), self.weight_decay])

    def get_config(self):
        """The constructor's arguments as a JSON-able dict."""
        return {"lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
                "nesterov": self.nesterov, "weight_decay": self.weight_decay,
                "clip_norm": self.clip_norm}
