"""Learning-rate schedules: pure ``(t, base_lr) -> lr`` objects.

``t`` counts epochs (``per="epoch"``, the default) or optimizer steps
(``per="step"``) from 0; ``base_lr`` is the optimizer's ``lr``.  ``fit``
evaluates the schedule before each epoch or step.
"""
from __future__ import annotations

import math
import numbers

from ._validation import check_float, check_int


class Schedule:
    """The base class of the schedules: ``schedule(t, base_lr)`` checks ``t`` and returns
    :meth:`lr`.  A schedule of your own subclasses it and implements ``lr`` (and
    ``get_config`` to be saved with a model).

    Parameters
    ----------
    per : {"epoch", "step"}
        What ``t`` counts: epochs (``fit`` evaluates the schedule before each epoch) or
        optimizer steps (before each step).
    """

    per = "epoch"

    def __init__(self, per: str = "epoch"):
        if per not in ("epoch", "step"):
            raise ValueError(f"per must be 'epoch' or 'step', got {per!r}")
        self.per = per

    def __call__(self, t: int, base_lr: float) -> float:
        t = check_int("schedule time t", t, 0)
        return self.lr(t, float(base_lr))

    def lr(self, t: int, base_lr: float) -> float:  # pragma: no cover
        """The learning rate at time ``t`` (epochs or steps from 0, an int >= 0) for the
        optimizer's base rate ``base_lr``."""
        raise NotImplementedError

    def get_config(self) -> dict:
        """The constructor's arguments as a JSON-able dict; :func:`from_config` takes
        ``{"class": type(schedule).__name__, "config": schedule.get_config()}``."""
        return {"per": self.per}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def checked_rate(schedule, t: int, base_lr: float) -> float:
    """``schedule(t, base_lr)``, refused unless it is a finite number >= 0 (a user's own
    schedule included); ``fit`` calls it for every epoch or step before running it."""
    try:
        lr = schedule(t, base_lr)
    except (OverflowError, ZeroDivisionError) as e:
        raise ValueError(f"{schedule!r} failed at {schedule.per} {t} (base lr {base_lr!r}): "
                         f"{e}") from None
    # a plain float skips the abstract-class test (fit checks one per epoch or step)
    number = type(lr) is float or (not isinstance(lr, bool) and isinstance(lr, numbers.Real))
    if not number or not math.isfinite(lr) or lr < 0:
        raise ValueError(f"{schedule!r} returned the learning rate {lr!r} at {schedule.per} "
                         f"{t}; a learning rate must be a finite number >= 0")
    return float(lr)


class StepDecay(Schedule):
    """lr_t = base_lr * gamma ** floor(t / step_size)  (torch's StepLR).

    Parameters
    ----------
    step_size : int
        Epochs (or steps) between two decays (>= 1).
    gamma : float
        The factor of each decay (> 0).
    per : {"epoch", "step"}
        What ``t`` counts (default ``"epoch"``).
    """

    def __init__(self, step_size: int, gamma: float = 0.1, per: str = "epoch"):
        super().__init__(per)
        self.step_size = check_int("StepDecay step_size", step_size, 1)
        self.gamma = check_float("StepDecay gamma", gamma, low=0.0, low_open=True)

    def lr(self, t, base_lr):
        return base_lr * self.gamma ** (t // self.step_size)

    def get_config(self):
        return {"step_size": self.step_size, "gamma": self.gamma, "per": self.per}


class ExponentialDecay(Schedule):
    """lr_t = base_lr * exp(-k t)  (seed 000).

    Parameters
    ----------
    k : float
        The decay rate (>= 0).
    per : {"epoch", "step"}
        What ``t`` counts (default ``"epoch"``).
    """

    def __init__(self, k: float, per: str = "epoch"):
        super().__init__(per)
        self.k = check_float("ExponentialDecay k", k, low=0.0)

    def lr(self, t, base_lr):
        return base_lr * math.exp(-self.k * t)

    def get_config(self):
        return {"k": self.k, "per": self.per}


class InverseTimeDecay(Schedule):
    """lr_t = base_lr / (1 + base_lr * lam * t)  (Bottou's 1/t schedule, seed 003).

    Parameters
    ----------
    lam : float
        lambda >= 0, the regularisation strength of Bottou's rule.
    per : {"epoch", "step"}
        What ``t`` counts (default ``"step"``).
    """

    def __init__(self, lam: float, per: str = "step"):
        super().__init__(per)
        self.lam = check_float("InverseTimeDecay lam", lam, low=0.0)

    def lr(self, t, base_lr):
        return base_lr / (1.0 + base_lr * self.lam * t)

    def get_config(self):
        return {"lam": self.lam, "per": self.per}


class CosineDecay(Schedule):
    """lr_t = eta_min + (base_lr - eta_min) (1 + cos(pi t / T)) / 2 for t <= T, then eta_min.

    (torch's CosineAnnealingLR over its first half-period; it does not restart.)

    Parameters
    ----------
    T : int
        The length of the decay in epochs (or steps), >= 1.
    eta_min : float
        The final learning rate (>= 0).
    per : {"epoch", "step"}
        What ``t`` counts (default ``"epoch"``).
    """

    def __init__(self, T: int, eta_min: float = 0.0, per: str = "epoch"):
        super().__init__(per)
        self.T = check_int("CosineDecay T", T, 1)
        self.eta_min = check_float("CosineDecay eta_min", eta_min, low=0.0)

    def lr(self, t, base_lr):
        if t >= self.T:
            return self.eta_min
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * t / self.T)) / 2

    def get_config(self):
        return {"T": self.T, "eta_min": self.eta_min, "per": self.per}


class LinearWarmup(Schedule):
    """Linear warm-up, then another schedule.

    For t < warmup: lr_t = base_lr * (start_factor + (1 - start_factor) * t / warmup).
    Afterwards: ``then(t - warmup, base_lr)``, or base_lr when ``then`` is None.
    The warm-up counts in the units of ``per``; ``then`` must count in the same units.

    Parameters
    ----------
    warmup : int
        The length of the warm-up (>= 1).
    then : Schedule, optional
        The schedule after the warm-up, its ``t`` counted from the warm-up's end.
    start_factor : float
        The share of base_lr at t = 0, in [0, 1].
    per : {"epoch", "step"}
        What ``t`` counts (default ``"step"``).
    """

    def __init__(self, warmup: int, then: Schedule | None = None, start_factor: float = 0.0,
                 per: str = "step"):
        super().__init__(per)
        self.warmup = check_int("LinearWarmup warmup", warmup, 1)
        self.start_factor = check_float("LinearWarmup start_factor", start_factor, low=0.0,
                                        high=1.0)
        if then is not None:
            if not isinstance(then, Schedule):
                raise TypeError(f"LinearWarmup then must be a Schedule or None, got {then!r}")
            if then.per != per:
                raise ValueError(f"LinearWarmup(per={per!r}) cannot be followed by a schedule "
                                 f"that counts per {then.per!r}")
        self.then = then

    def lr(self, t, base_lr):
        if t < self.warmup:
            return base_lr * (self.start_factor + (1 - self.start_factor) * t / self.warmup)
        return base_lr if self.then is None else self.then.lr(t - self.warmup, base_lr)

    def get_config(self):
        return {"warmup": self.warmup, "start_factor": self.start_factor, "per": self.per,
                "then": None if self.then is None else
                {"class": type(self.then).__name__, "config": self.then.get_config()}}


class CyclicLR(Schedule):
    """Cyclical learning rate (Smith 2017; torch's CyclicLR), between base_lr and max_lr.

    cycle = floor(1 + t / (2 step_size)); x = |t / step_size - 2 cycle + 1|;
    lr_t = base_lr + (max_lr - base_lr) max(0, 1 - x) scale, where scale is 1
    ("triangular"), 1 / 2^(cycle - 1) ("triangular2") or gamma^t ("exp_range").

    Parameters
    ----------
    max_lr : float
        The top of the cycle (> 0).
    step_size : int
        Half a cycle, in steps (or epochs), >= 1.
    mode : {"triangular", "triangular2", "exp_range"}
        How the amplitude changes from cycle to cycle (``scale`` above).
    gamma : float
        The decay of ``"exp_range"`` (> 0).
    per : {"epoch", "step"}
        What ``t`` counts (default ``"step"``).
    """

    MODES = ("triangular", "triangular2", "exp_range")

    def __init__(self, max_lr: float, step_size: int, mode: str = "triangular",
                 gamma: float = 1.0, per: str = "step"):
        super().__init__(per)
        self.max_lr = check_float("CyclicLR max_lr", max_lr, low=0.0, low_open=True)
        self.step_size = check_int("CyclicLR step_size", step_size, 1)
        if mode not in self.MODES:
            raise ValueError(f"CyclicLR mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode
        self.gamma = check_float("CyclicLR gamma", gamma, low=0.0, low_open=True)

    def lr(self, t, base_lr):
        cycle = math.floor(1 + t / (2 * self.step_size))
        x = abs(t / self.step_size - 2 * cycle + 1)
        if self.mode == "triangular":
            scale = 1.0
        elif self.mode == "triangular2":
            scale = 1.0 / (2.0 ** (cycle - 1))
        else:
            scale = self.gamma ** t
        return base_lr + (self.max_lr - base_lr) * max(0.0, 1.0 - x) * scale

    def get_config(self):
        return {"max_lr": self.max_lr, "step_size": self.step_size, "mode": self.mode,
                "gamma": self.gamma, "per": self.per}


SCHEDULES = {"StepDecay": StepDecay, "ExponentialDecay": ExponentialDecay,
             "InverseTimeDecay": InverseTimeDecay, "CosineDecay": CosineDecay,
             "LinearWarmup": LinearWarmup, "CyclicLR": CyclicLR}


def from_config(spec: dict) -> Schedule:
    """Rebuild a schedule from ``spec``, a dict ``{"class": name, "config":
    schedule.get_config()}`` naming one of the schedules of this module."""
    cls = SCHEDULES.get(spec.get("class")) if isinstance(spec, dict) else None
    if cls is None:
        raise ValueError(f"unknown schedule {spec!r}; known: {sorted(SCHEDULES)}")
    config = dict(spec["config"])
    if cls is LinearWarmup and config.get("then") is not None:
        config["then"] = from_config(config["then"])
    return cls(**config)
