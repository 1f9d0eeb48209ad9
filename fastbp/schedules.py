"""Learning-rate schedules: pure ``(t, base_lr) -> lr`` objects.

``t`` counts epochs (``per="epoch"``, the default) or optimizer steps
(``per="step"``) from 0; ``base_lr`` is the optimizer's ``lr``.  ``fit``
evaluates the schedule before each epoch or step.
"""
from __future__ import annotations

import math

from ._validation import check_float, check_int


class Schedule:
    per = "epoch"

    def __init__(self, per: str = "epoch"):
        if per not in ("epoch", "step"):
            raise ValueError(f"per must be 'epoch' or 'step', got {per!r}")
        self.per = per

    def __call__(self, t: int, base_lr: float) -> float:
        t = check_int("schedule time t", t, 0)
        return self.lr(t, float(base_lr))

    def lr(self, t: int, base_lr: float) -> float:  # pragma: no cover
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"per": self.per}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class StepDecay(Schedule):
    """lr_t = base_lr * gamma ** floor(t / step_size)  (torch's StepLR)."""

    def __init__(self, step_size: int, gamma: float = 0.1, per: str = "epoch"):
        super().__init__(per)
        self.step_size = check_int("StepDecay step_size", step_size, 1)
        self.gamma = check_float("StepDecay gamma", gamma, low=0.0, low_open=True)

    def lr(self, t, base_lr):
        return base_lr * self.gamma ** (t // self.step_size)

    def get_config(self):
        return {"step_size": self.step_size, "gamma": self.gamma, "per": self.per}


class ExponentialDecay(Schedule):
    """lr_t = base_lr * exp(-k t)  (seed 000)."""

    def __init__(self, k: float, per: str = "epoch"):
        super().__init__(per)
        self.k = check_float("ExponentialDecay k", k, low=0.0)

    def lr(self, t, base_lr):
        return base_lr * math.exp(-self.k * t)

    def get_config(self):
        return {"k": self.k, "per": self.per}


SCHEDULES = {"StepDecay": StepDecay, "ExponentialDecay": ExponentialDecay}
