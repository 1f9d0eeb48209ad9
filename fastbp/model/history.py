"""What training reports: the per-epoch :class:`History` and :class:`DivergenceError`."""
from __future__ import annotations

from ..engine import codes


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss or gradient.  The model keeps the weights
    and optimizer state of the last finite step.

    Parameters
    ----------
    message : str
        What diverged and where, with advice.
    epoch, step : int, optional
        Where it happened (the epoch, counted over every fit, and the step within it),
        kept as the attributes ``epoch`` and ``step``; None when not known.
    """

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
        """Record one epoch: its number ``epoch`` and ``logs``, a dict of name -> number
        (each value appended to ``history[name]``)."""
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(float(v))

    def __getitem__(self, key):
        return self.history[key]

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"

    def plot(self, path, keys=None):
        """Save the curves of ``keys`` (default: every loss and accuracy logged) against
        the epoch as a PNG (extra ``fastbp[plot]``): the losses on the left, the
        accuracies on the right.  Returns the path."""
        from ..plotting import pyplot, save
        keys = list(keys) if keys is not None else [
            k for k in self.history if "loss" in k or "accuracy" in k]
        unknown = [k for k in keys if k not in self.history]
        if unknown or not keys:
            raise ValueError(f"History.plot: keys {unknown or keys} not logged; logged: "
                             f"{sorted(self.history)}")
        plt = pyplot()
        groups = [[k for k in keys if "accuracy" not in k], [k for k in keys if "accuracy" in k]]
        groups = [g for g in groups if g]
        fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4), squeeze=False)
        epochs = [e + 1 for e in self.epoch]
        for ax, group in zip(axes[0], groups):
            for k in group:
                ax.plot(epochs, self.history[k], marker="o", markersize=3, label=k)
            ax.set_xlabel("epoch")
            ax.legend()
        return save(fig, path)


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
