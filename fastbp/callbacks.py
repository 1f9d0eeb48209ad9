"""Callbacks for :meth:`fastbp.Sequential.fit` (after Keras).

A callback gets ``set_model(model)`` once, then ``on_train_begin()``,
``on_epoch_begin(epoch)`` and ``on_epoch_end(epoch, logs)`` around every epoch
(``logs`` holds ``loss``, ``lr``, ``time`` and the ``val_*`` metrics), and
``on_train_end()``.  Setting ``model.stop_training = True`` ends ``fit`` after
the current epoch.
"""
from __future__ import annotations

import math
import os
import string
from typing import Callable

from ._validation import check_float, check_int


class Callback:
    """The base class of the callbacks: every hook does nothing, so a subclass overrides
    only those it needs.  ``self.model`` is the model being trained (set by
    :meth:`set_model`)."""

    def __init__(self):
        self.model = None

    def set_model(self, model) -> None:
        """Called once by ``fit`` before training with ``model``, the model it trains."""
        self.model = model

    def on_train_begin(self) -> None:
        """Called at the start of each ``fit``, after :meth:`set_model`."""
        pass

    def on_epoch_begin(self, epoch: int) -> None:
        """Called before each epoch; ``epoch`` counts from 0 over every ``fit`` of the
        model."""
        pass

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        """Called after each epoch with its number ``epoch`` (as in
        :meth:`on_epoch_begin`) and ``logs``, a dict of the epoch's ``loss``, ``lr``,
        ``time`` and, with validation data, ``val_loss`` and ``val_accuracy``."""
        pass

    def on_train_end(self) -> None:
        """Called once ``fit`` has run its last epoch (or was stopped)."""
        pass


def _check_mode(monitor: str, mode: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if "acc" in monitor else "min"
    return mode


def _monitored(logs: dict, monitor: str, who: str) -> float:
    if monitor not in logs:
        raise ValueError(f"{who} monitors {monitor!r}, which fit did not log; logged: "
                         f"{sorted(logs)} (val_* metrics need validation_data)")
    return float(logs[monitor])


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    Parameters
    ----------
    monitor : str
        The key of the epoch's logs to watch (``"val_loss"`` by default).
    patience : int
        Epochs without an improvement before stopping (>= 0).
    min_delta : float
        The least change that counts as an improvement (>= 0).
    mode : {"auto", "min", "max"}
        Whether lower or higher is better; ``"auto"``: higher for a key holding
        ``"acc"``, lower otherwise.
    restore_best_weights : bool
        End with the parameters (and embedding tables) of the best epoch.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = False):
        super().__init__()
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a string, got {monitor!r}")
        self.monitor = monitor
        self.patience = check_int("EarlyStopping patience", patience, 0)
        self.min_delta = check_float("EarlyStopping min_delta", min_delta, low=0.0)
        self.mode = _check_mode(monitor, mode)
        self.restore_best_weights = bool(restore_best_weights)

    def on_train_begin(self):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = -1
        self.wait = 0
        self.stopped_epoch = None
        self._best_weights = None

    def _improved(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs):
        value = _monitored(logs, self.monitor, "EarlyStopping")
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self._best_weights = _snapshot(self.model)
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self):
        if self.restore_best_weights and self._best_weights is not None:
            _restore(self.model, self._best_weights)


def _snapshot(model):
    return model.params.copy(), model.tables.copy()


def _restore(model, snapshot):
    params, tables = snapshot
    model.params[...] = params
    model.tables[...] = tables


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate before each epoch: ``lr = schedule(epoch, lr)``.

    Parameters
    ----------
    schedule : callable (epoch, lr) -> lr
        Gets the epoch (from 0) and the current rate; must return a rate > 0.
    """

    def __init__(self, schedule: Callable[[int, float], float]):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler needs a callable (epoch, lr) -> lr, got "
                            f"{schedule!r}")
        self.schedule = schedule

    def on_epoch_begin(self, epoch):
        lr = self.schedule(epoch, self.model.optimizer.lr)
        self.model.optimizer.lr = check_float("the scheduled learning rate", lr, low=0.0,
                                              low_open=True)


#: The names a ModelCheckpoint path may hold: the epoch and the keys of fit's logs.
TEMPLATE_FIELDS = ("epoch", "loss", "lr", "time", "val_loss", "val_accuracy")


def _check_template(path: str) -> str:
    """A Keras-style path template: ``{epoch:03d}``, ``{val_loss:.2f}``, ... (named fields
    of TEMPLATE_FIELDS only, each format spec valid for a number)."""
    try:
        fields = [(name, spec) for _, name, spec, _ in string.Formatter().parse(path)
                  if name is not None]
    except ValueError as e:
        raise ValueError(f"ModelCheckpoint path {path!r} is not a valid template: {e}") from None
    for name, spec in fields:
        if name not in TEMPLATE_FIELDS:
            raise ValueError(f"ModelCheckpoint path {path!r} names the field {{{name}}}; a path "
                             f"may name {', '.join(TEMPLATE_FIELDS)}")
        try:
            format(1 if name == "epoch" else 0.5, spec)
        except ValueError as e:
            raise ValueError(f"ModelCheckpoint path {path!r}: the format {{{name}:{spec}}} does "
                             f"not take a number ({e})") from None
    return path


class ModelCheckpoint(Callback):
    """Save the model every ``every`` epochs, or (``save_best_only``) whenever
    ``monitor`` improves.  ``path`` may be a template of the epoch (1-based) and the
    epoch's logs, as in Keras: ``"m-{epoch:03d}-{val_loss:.2f}.fbp"``.  Each save is
    atomic (see :func:`fastbp.load`).

    Parameters
    ----------
    path : str or path-like
        Where to save; may name the fields of ``TEMPLATE_FIELDS``.  The paths written
        are listed in ``saved``.
    every : int
        Save every ``every`` epochs (>= 1), when not ``save_best_only``.
    monitor : str
        The key of the logs that ``save_best_only`` watches.
    save_best_only : bool
        Save only when ``monitor`` improves on its best value so far.
    mode : {"auto", "min", "max"}
        Whether lower or higher is better, as for :class:`EarlyStopping`.
    """

    def __init__(self, path, every: int = 1, monitor: str = "val_loss",
                 save_best_only: bool = False, mode: str = "auto"):
        super().__init__()
        self.path = _check_template(os.fspath(path))
        self.every = check_int("ModelCheckpoint every", every, 1)
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        self.mode = _check_mode(monitor, mode)
        self.saved: list[str] = []

    def on_train_begin(self):
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, epoch, logs):
        if self.save_best_only:
            value = _monitored(logs, self.monitor, "ModelCheckpoint")
            better = value < self.best if self.mode == "min" else value > self.best
            if not better:
                return
            self.best = value
        elif (epoch + 1) % self.every:
            return
        fields = {k: v for k, v in logs.items() if k != "epoch"}
        try:
            path = self.path.format(**fields, epoch=epoch + 1)
        except KeyError as e:
            raise ValueError(f"ModelCheckpoint path {self.path!r} names {e.args[0]!r}, which "
                             f"this epoch's logs lack (they hold {sorted(logs)}; val_ keys "
                             f"need fit(validation_data=...))") from None
        self.model.save(path)
        self.saved.append(path)


class LambdaCallback(Callback):
    """A callback from plain functions: ``LambdaCallback(on_epoch_end=lambda e, logs: ...)``.

    Parameters
    ----------
    on_train_begin, on_train_end : callable (), optional
        Called at the start and the end of ``fit``.
    on_epoch_begin : callable (epoch), optional
        Called before each epoch.
    on_epoch_end : callable (epoch, logs), optional
        Called after each epoch.
    """

    def __init__(self, on_train_begin=None, on_epoch_begin=None, on_epoch_end=None,
                 on_train_end=None):
        super().__init__()
        for name, fn in (("on_train_begin", on_train_begin), ("on_epoch_begin", on_epoch_begin),
                         ("on_epoch_end", on_epoch_end), ("on_train_end", on_train_end)):
            if fn is not None and not callable(fn):
                raise TypeError(f"LambdaCallback {name} must be callable, got {fn!r}")
        self._begin, self._epoch_begin = on_train_begin, on_epoch_begin
        self._epoch_end, self._end = on_epoch_end, on_train_end

    def on_train_begin(self):
        if self._begin:
            self._begin()

    def on_epoch_begin(self, epoch):
        if self._epoch_begin:
            self._epoch_begin(epoch)

    def on_epoch_end(self, epoch, logs):
        if self._epoch_end:
            self._epoch_end(epoch, logs)

    def on_train_end(self):
        if self._end:
            self._end()


class ReduceLROnPlateau(Callback):
    """Multiply the optimizer's learning rate by ``factor`` when ``monitor`` has not
    improved by ``min_delta`` for ``patience`` epochs, then wait ``cooldown`` epochs
    before counting again; never below ``min_lr``.  Keras's rule, argument for argument.
    The rate it lowers is the optimizer's ``lr``, the base a ``schedule`` scales.

    Parameters
    ----------
    monitor : str
        The key of the epoch's logs to watch.
    factor : float
        The multiplier of each reduction, in (0, 1).
    patience : int
        Epochs without an improvement before a reduction.
    mode : {"auto", "min", "max"}
        Whether lower or higher is better, as for :class:`EarlyStopping`.
    min_delta : float
        The least change that counts as an improvement.
    cooldown : int
        Epochs to wait after a reduction before counting again.
    min_lr : float
        The rate is never lowered below this.
    verbose : int
        1 (or more) prints a line at each reduction.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0,
                 min_lr: float = 0.0, verbose: int = 0):
        super().__init__()
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a string, got {monitor!r}")
        self.monitor = monitor
        self.factor = check_float("ReduceLROnPlateau factor", factor, low=0.0, high=1.0,
                                  low_open=True, high_open=True)
        self.patience = check_int("ReduceLROnPlateau patience", patience, 0)
        self.mode = _check_mode(monitor, mode)
        self.min_delta = check_float("ReduceLROnPlateau min_delta", min_delta, low=0.0)
        self.cooldown = check_int("ReduceLROnPlateau cooldown", cooldown, 0)
        self.min_lr = check_float("ReduceLROnPlateau min_lr", min_lr, low=0.0)
        self.verbose = check_int("ReduceLROnPlateau verbose", verbose, 0)

    def on_train_begin(self):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0
        self.cooldown_counter = 0

    def on_epoch_end(self, epoch, logs):
        value = _monitored(logs, self.monitor, "ReduceLROnPlateau")
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        better = (value < self.best - self.min_delta if self.mode == "min"
                  else value > self.best + self.min_delta)
        if better:
            self.best, self.wait = value, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = self.model.optimizer.lr
                if old > self.min_lr:
                    new = max(old * self.factor, self.min_lr)
                    self.model.optimizer.lr = new
                    if self.verbose:
                        print(f"epoch {epoch + 1}: ReduceLROnPlateau lowers the learning rate "
                              f"from {old:.4g} to {new:.4g}", flush=True)
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class CSVLogger(Callback):
    """Append each epoch's logs to a CSV file: a header ``epoch`` then the logs' keys
    (sorted, from the first epoch written), one row per epoch (0-based, counted over
    every fit), written and closed at once so that a fit that stops leaves whole rows.
    ``append=False`` empties the file when training begins.

    Parameters
    ----------
    filename : str or path-like
        The CSV file.
    separator : str
        One character other than a quote or a newline.
    append : bool
        Keep the rows already in the file (and its header's columns).
    """

    def __init__(self, filename, separator: str = ",", append: bool = False):
        super().__init__()
        self.filename = os.fspath(filename)
        if not isinstance(separator, str) or len(separator) != 1 or separator in '"\n\r':
            raise ValueError(f"CSVLogger separator must be one character other than a quote "
                             f"or a newline, got {separator!r}")
        self.separator = separator
        self.append = bool(append)
        self.keys = None

    def on_train_begin(self):
        import csv
        self.keys = None
        if self.append and os.path.exists(self.filename) and os.path.getsize(self.filename):
            with open(self.filename, newline="") as f:
                header = next(csv.reader(f, delimiter=self.separator), None)
            self.keys = header[1:] if header and header[0] == "epoch" else None
            return
        with open(self.filename, "w", newline=""):
            pass

    def on_epoch_end(self, epoch, logs):
        import csv
        if self.keys is None:
            self.keys = sorted(logs)
            rows = [["epoch"] + self.keys]
        else:
            rows = []
        rows.append([epoch] + [logs.get(k, "") for k in self.keys])
        with open(self.filename, "a", newline="") as f:
            csv.writer(f, delimiter=self.separator).writerows(rows)
