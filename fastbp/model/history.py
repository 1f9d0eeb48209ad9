"""What training reports: the per-epoch :class:`History` and :class:`DivergenceError`."""
from __future__ import annotations

from ..engine import codes


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss or gradient.  The model keeps the weights
    and optimizer state of the last finite step."""

    def __init__(self, message: str, epoch: int | None = None, step: int | None = None):
        super().__init__(message)
        self.epoch = epoch
        self.step = step


class History:
    """Per-epoch logs of :meth:`Model.fit`: ``history["loss"][e]`` and so on."""

    def __init__(self):
        self.epoch: list[int] = []
        self.history: dict[str, list[float]] = {}

    def append(self, epoch: int, logs: dict) -> None:
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(float(v))

    def __getitem__(self, key):
        return self.history[key]

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


def divergence_message(status, loss, epoch, step) -> str:
    what = codes.STATUS_TEXT[int(status)]
    if int(status) == codes.NONFINITE_LOSS:
        what = f"{what} ({loss})"
    where = "" if epoch is None else f" in epoch {epoch} at step {step}"
    kept = ("the weights and optimizer state of the last finite step are kept"
            if status != codes.NONFINITE_UPDATE else "no weight was set to a non-finite value "
            "(the elements whose update overflowed kept their values)")
    return (f"training diverged: {what}{where}; {kept}. Lower the learning rate or set "
            f"clip_norm.")
