"""The Optimizer base class: hyperparameters, explicit state, one fused kernel call."""
from __future__ import annotations

import numpy as np

from .._validation import check_float
from ..kernels.optim import apply_update, clip_scale, squared_norm
from ..threads import parallel_enabled


class Optimizer:
    """Updates a flat parameter buffer from a flat gradient buffer.

    State is explicit: ``step`` (updates taken, an int64 array of one element so
    that compiled code can advance it) and ``state`` (an array with one row per
    state vector, each as long as the parameter buffer; named views are given by
    ``state_names``).

    Parameters
    ----------
    lr : float
        The learning rate (> 0); a schedule, or ``update``'s ``lr``, overrides it per step.
    clip_norm : float, optional
        When given (> 0), the gradient is rescaled so its global L2 norm is at most
        ``clip_norm`` (as ``torch.nn.utils.clip_grad_norm_``).  None: no clipping.
    """

    code: int = -1
    state_names: tuple[str, ...] = ()

    def __init__(self, lr: float, clip_norm: float | None = None):
        self.lr = check_float(f"{type(self).__name__} lr", lr, low=0.0, low_open=True)
        if clip_norm is not None:
            clip_norm = check_float("clip_norm", clip_norm, low=0.0, low_open=True)
        self.clip_norm = clip_norm
        self.step = np.zeros(1, dtype=np.int64)
        self.state: np.ndarray | None = None

    def hyperparams(self) -> np.ndarray:
        """The float64 array the kernel reads (layout in fastbp.kernels.optim)."""
        raise NotImplementedError

    def state_rows(self) -> int:
        """How many state vectors this configuration keeps."""
        return max(1, len(self.state_names))

    def state_fill(self) -> tuple:
        """The initial value of each state vector."""
        return (0.0,) * self.state_rows()

    def new_state(self, shape: tuple, dtype) -> np.ndarray:
        """Freshly initialised state of shape ``(rows,) + shape`` and dtype ``dtype`` (used
        for embedding tables)."""
        state = np.empty((self.state_rows(),) + tuple(shape), dtype=dtype)
        for k, value in enumerate(self.state_fill()):
            state[k] = value
        return state

    def build(self, n_params: int, dtype) -> None:
        """Allocate initial state for ``n_params`` parameters of dtype ``dtype`` (kept when
        already that size and dtype)."""
        rows = self.state_rows()
        if self.state is None or self.state.shape != (rows, n_params) or self.state.dtype != dtype:
            self.state = self.new_state((n_params,), dtype)
            self.step[0] = 0

    def __getattr__(self, name):
        names = type(self).state_names
        state = self.__dict__.get("state")
        if name in names and state is not None and names.index(name) < state.shape[0]:
            return state[names.index(name)]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    @property
    def clip_value(self) -> float:
        """``clip_norm`` as the kernel takes it: 0.0 for no clipping."""
        return 0.0 if self.clip_norm is None else self.clip_norm

    def update(self, params: np.ndarray, grads: np.ndarray, lr: float | None = None) -> None:
        """One step on flat arrays ``params`` and ``grads`` (same length and dtype), in
        place, at learning rate ``lr`` (default: the optimizer's ``lr``).

        Raises ``FloatingPointError`` when an updated element is not finite (that
        element keeps its value)."""
        if params.ndim != 1 or grads.shape != params.shape or grads.dtype != params.dtype:
            raise ValueError("params and grads must be 1-d arrays of equal length and dtype, got "
                             f"{params.shape}/{params.dtype} and {grads.shape}/{grads.dtype}")
        self.build(params.shape[0], params.dtype)
        lr = self.lr if lr is None else check_float("lr", lr, low=0.0, low_open=True)
        par = parallel_enabled()
        scale = clip_scale(squared_norm(grads, par), self.clip_value) if self.clip_norm else 1.0
        self.step[0] += 1
        bad = apply_update(self.code, params, grads, self.state, self.hyperparams(), lr,
                           int(self.step[0]), scale, par)
        if bad:
            raise FloatingPointError(f"{type(self).__name__}: the update of {bad} element(s) "
                                     f"was not finite; those elements kept their values")

    def get_config(self) -> dict:
        """The constructor's arguments as a JSON-able dict (state not included: it is
        saved with the model's checkpoint)."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict):
        """A new optimizer, with fresh state, from ``config``, a dict from
        :meth:`get_config`."""
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
