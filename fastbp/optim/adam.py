from __future__ import annotations

import numpy as np

from .._validation import check_float
from ..kernels import optim as _k
from .base import Optimizer


def _betas(name, betas):
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"{name} betas must be a pair (beta1, beta2), got {betas!r}")
    b1 = check_float(f"{name} beta1", betas[0], low=0.0, high=1.0, high_open=True)
    b2 = check_float(f"{name} beta2", betas[1], low=0.0, high=1.0, high_open=True)
    return b1, b2


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with torch.optim.Adam's conventions.

    With g_t the (clipped) gradient, step t counted from 1::

        g_t = g_t + lambda * theta_{t-1}                    (L2 weight decay lambda)
        m_t = beta1 m_{t-1} + (1 - beta1) g_t
        v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
        v^_t = max(v^_{t-1}, v_t) if amsgrad else v_t
        theta_t = theta_{t-1} - lr / (1 - beta1^t) * m_t / (sqrt(v^_t) / sqrt(1 - beta2^t) + eps)

    eps is added *after* the bias-corrected square root, as PyTorch does.
    State: ``exp_avg`` (m), ``exp_avg_sq`` (v), ``max_exp_avg_sq`` (AMSGrad only), ``step``.

    On a WindowEmbedding table the update is lazy and follows torch.optim.SparseAdam:
    only the rows a batch uses are updated, and eps is added to sqrt(v) before the
    bias correction: theta -= lr sqrt(1 - beta2^t) / (1 - beta1^t) m / (sqrt(v) + eps).

    Parameters
    ----------
    lr : float
        The learning rate (> 0).
    betas : (float, float)
        (beta1, beta2), each in [0, 1): the decay rates of m and v.
    eps : float
        Added to the denominator (>= 0).
    weight_decay : float
        lambda >= 0, L2 weight decay added to the gradient.
    amsgrad : bool
        Keep the running maximum of v (AMSGrad).
    clip_norm : float, optional
        Global L2 norm clipping of the gradient (see :class:`Optimizer`).
    """

    code = _k.ADAM
    state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    decoupled = False

    def __init__(self, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, clip_norm: float | None = None):
        super().__init__(lr, clip_norm)
        name = type(self).__name__
        self.betas = _betas(name, betas)
        self.eps = check_float(f"{name} eps", eps, low=0.0)
        self.weight_decay = check_float(f"{name} weight_decay", weight_decay, low=0.0)
        if not isinstance(amsgrad, (bool, np.bool_)):
            raise TypeError(f"{name} amsgrad must be a bool, got {amsgrad!r}")
        self.amsgrad = bool(amsgrad)

    def state_rows(self):
        return 3 if self.amsgrad else 2

    def hyperparams(self):
        return np.array([self.betas[0], self.betas[1], self.eps, self.weight_decay,
                         float(self.amsgrad), float(self.decoupled)])

    def get_config(self):
        """The constructor's arguments as a JSON-able dict (``betas`` as a list)."""
        return {"lr": self.lr, "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay, "amsgrad": self.amsgrad,
                "clip_norm": self.clip_norm}

    @classmethod
    def from_config(cls, config):
        """A new optimizer, with fresh state, from ``config``, a dict from
        :meth:`get_config` (``betas`` back to a tuple)."""
        config = dict(config)
        config["betas"] = tuple(config["betas"])
        return cls(**config)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter; torch.optim.AdamW)::

        theta_{t-1} <- theta_{t-1} (1 - lr lambda)      before the Adam step, which
                                                         then sees the plain gradient.

    Parameters
    ----------
    lr : float
        The learning rate (> 0).
    betas : (float, float)
        (beta1, beta2), each in [0, 1).
    eps : float
        Added to the denominator (>= 0).
    weight_decay : float
        lambda >= 0, decoupled: 0.01 by default, as in PyTorch.
    amsgrad : bool
        Keep the running maximum of v (AMSGrad).
    clip_norm : float, optional
        Global L2 norm clipping of the gradient (see :class:`Optimizer`).
    """

    decoupled = True

    def __init__(self, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, amsgrad: bool = False, clip_norm: float | None = None):
        super().__init__(lr, betas, eps, weight_decay, amsgrad, clip_norm)
