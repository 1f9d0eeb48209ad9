"""AdaGrad, RMSProp, Adadelta and Yogi (seed 001), with torch.optim's rules (Yogi: its paper)."""
from __future__ import annotations

import numpy as np

from .._validation import check_float
from ..kernels import optim as _k
from .adam import _betas
from .base import Optimizer


class AdaGrad(Optimizer):
    """AdaGrad (Duchi et al. 2011; torch.optim.Adagrad)::

        g_t = g_t + lambda theta_{t-1}
        eta_t = lr / (1 + (t - 1) lr_decay)
        G_t = G_{t-1} + g_t^2                       (G_0 = initial_accumulator_value)
        theta_t = theta_{t-1} - eta_t g_t / (sqrt(G_t) + eps)

    State: ``sum`` (G), ``step``.

    Parameters
    ----------
    lr : float
        The learning rate (> 0).
    lr_decay : float
        Decay of the learning rate with the step count (>= 0).
    weight_decay : float
        lambda >= 0, L2 weight decay added to the gradient.
    initial_accumulator_value : float
        G_0 (>= 0).
    eps : float
        Added to the denominator (>= 0).
    clip_norm : float, optional
        Global L2 norm clipping of the gradient (see :class:`Optimizer`).
    """

    code = _k.ADAGRAD
    state_names = ("sum",)

    def __init__(self, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10,
                 clip_norm: float | None = None):
        super().__init__(lr, clip_norm)
        self.lr_decay = check_float("AdaGrad lr_decay", lr_decay, low=0.0)
        self.weight_decay = check_float("AdaGrad weight_decay", weight_decay, low=0.0)
        self.initial_accumulator_value = check_float(
            "AdaGrad initial_accumulator_value", initial_accumulator_value, low=0.0)
        self.eps = check_float("AdaGrad eps", eps, low=0.0)

    def state_fill(self):
        return (self.initial_accumulator_value,)

    def hyperparams(self):
        return np.array([self.lr_decay, self.eps, self.weight_decay])

    def get_config(self):
        """The constructor's arguments as a JSON-able dict."""
        return {"lr": self.lr, "lr_decay": self.lr_decay, "weight_decay": self.weight_decay,
                "initial_accumulator_value": self.initial_accumulator_value, "eps": self.eps,
                "clip_norm": self.clip_norm}


class RMSProp(Optimizer):
    """RMSProp (Tieleman & Hinton 2012; torch.optim.RMSprop)::

        g_t = g_t + lambda theta_{t-1}
        v_t = alpha v_{t-1} + (1 - alpha) g_t^2
        centred:  gbar_t = gbar_{t-1} + (1 - alpha)(g_t - gbar_{t-1});  s_t = sqrt(v_t - gbar_t^2) + eps
        else:     s_t = sqrt(v_t) + eps
        momentum mu > 0:  b_t = mu b_{t-1} + g_t / s_t;  theta_t = theta_{t-1} - lr b_t
        else:             theta_t = theta_{t-1} - lr g_t / s_t

    State: ``square_avg`` (v), ``momentum_buffer`` (b), ``grad_avg`` (gbar), ``step``.

    Parameters
    ----------
    lr : float
        The learning rate (> 0).
    alpha : float
        The decay rate of v, in [0, 1].
    eps : float
        Added to the denominator (>= 0).
    weight_decay : float
        lambda >= 0, L2 weight decay added to the gradient.
    momentum : float
        mu >= 0; 0 (the default) keeps no momentum buffer.
    centered : bool
        Divide by the centred second moment (v minus the squared mean gradient).
    clip_norm : float, optional
        Global L2 norm clipping of the gradient (see :class:`Optimizer`).
    """

    code = _k.RMSPROP
    state_names = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(self, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
                 clip_norm: float | None = None):
        super().__init__(lr, clip_norm)
        self.alpha = check_float("RMSProp alpha", alpha, low=0.0, high=1.0)
        self.eps = check_float("RMSProp eps", eps, low=0.0)
        self.weight_decay = check_float("RMSProp weight_decay", weight_decay, low=0.0)
        self.momentum = check_float("RMSProp momentum", momentum, low=0.0)
        if not isinstance(centered, (bool, np.bool_)):
            raise TypeError(f"RMSProp centered must be a bool, got {centered!r}")
        self.centered = bool(centered)

    def hyperparams(self):
        return np.array([self.alpha, self.eps, self.weight_decay, self.momentum,
                         float(self.centered)])

    def get_config(self):
        """The constructor's arguments as a JSON-able dict."""
        return {"lr": self.lr, "alpha": self.alpha, "eps": self.eps,
                "weight_decay": self.weight_decay, "momentum": self.momentum,
                "centered": self.centered, "clip_norm": self.clip_norm}


class Adadelta(Optimizer):
    """Adadelta (Zeiler 2012; torch.optim.Adadelta)::

        g_t = g_t + lambda theta_{t-1}
        v_t = rho v_{t-1} + (1 - rho) g_t^2
        Delta_t = sqrt(u_{t-1} + eps) / sqrt(v_t + eps) * g_t
        u_t = rho u_{t-1} + (1 - rho) Delta_t^2
        theta_t = theta_{t-1} - lr Delta_t

    State: ``square_avg`` (v), ``acc_delta`` (u), ``step``.

    Parameters
    ----------
    lr : float
        Scales Delta (> 0; 1.0 by default, as in PyTorch).
    rho : float
        The decay rate of v and u, in [0, 1].
    eps : float
        Added inside both square roots (>= 0).
    weight_decay : float
        lambda >= 0, L2 weight decay added to the gradient.
    clip_norm : float, optional
        Global L2 norm clipping of the gradient (see :class:`Optimizer`).
    """

    code = _k.ADADELTA
    state_names = ("square_avg", "acc_delta")

    def __init__(self, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0.0, clip_norm: float | None = None):
        super().__init__(lr, clip_norm)
        self.rho = check_float("Adadelta rho", rho, low=0.0, high=1.0)
        self.eps = check_float("Adadelta eps", eps, low=0.0)
        self.weight_decay = check_float("Adadelta weight_decay", weight_decay, low=0.0)

    def hyperparams(self):
        return np.array([self.rho, self.eps, self.weight_decay])

    def get_config(self):
        """The constructor's arguments as a JSON-able dict."""
        return {"lr": self.lr, "rho": self.rho, "eps": self.eps,
                "weight_decay": self.weight_decay, "clip_norm": self.clip_norm}


class Yogi(Optimizer):
    """Yogi (Zaheer et al., NeurIPS 2018, algorithm 2)::

        g_t = g_t + lambda theta_{t-1}
        m_t = beta1 m_{t-1} + (1 - beta1) g_t
        v_t = v_{t-1} - (1 - beta2) sign(v_{t-1} - g_t^2) g_t^2
        theta_t = theta_{t-1} - lr m_t / (sqrt(v_t) + eps)

    As in the paper there is no bias correction; v starts at
    ``initial_accumulator_value`` (1e-6, as in the authors' implementation) and
    the defaults are the paper's (lr 1e-2, eps 1e-3).
    State: ``exp_avg`` (m), ``exp_avg_sq`` (v), ``step``.

    Parameters
    ----------
    lr : float
        The learning rate (> 0).
    betas : (float, float)
        (beta1, beta2), each in [0, 1).
    eps : float
        Added to the denominator (>= 0).
    weight_decay : float
        lambda >= 0, L2 weight decay added to the gradient.
    initial_accumulator_value : float
        v_0 (>= 0).
    clip_norm : float, optional
        Global L2 norm clipping of the gradient (see :class:`Optimizer`).
    """

    code = _k.YOGI
    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, lr: float = 1e-2, betas=(0.9, 0.999), eps: float = 1e-3,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 1e-6,
                 clip_norm: float | None = None):
        super().__init__(lr, clip_norm)
        self.betas = _betas("Yogi", betas)
        self.eps = check_float("Yogi eps", eps, low=0.0)
        self.weight_decay = check_float("Yogi weight_decay", weight_decay, low=0.0)
        self.initial_accumulator_value = check_float(
            "Yogi initial_accumulator_value", initial_accumulator_value, low=0.0)

    def state_fill(self):
        return (0.0, self.initial_accumulator_value)

    def hyperparams(self):
        return np.array([self.betas[0], self.betas[1], self.eps, self.weight_decay])

    def get_config(self):
        """The constructor's arguments as a JSON-able dict (``betas`` as a list)."""
        return {"lr": self.lr, "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay,
                "initial_accumulator_value": self.initial_accumulator_value,
                "clip_norm": self.clip_norm}

    @classmethod
    def from_config(cls, config):
        """A new optimizer, with fresh state, from ``config``, a dict from
        :meth:`get_config` (``betas`` back to a tuple)."""
        config = dict(config)
        config["betas"] = tuple(config["betas"])
        return cls(**config)
