"""Metrics for ``model.compile(metrics=[...])``: computed in compiled code over a whole
validation set (each epoch, into History as ``val_<name>``) and by ``evaluate``.

==================== ================================================ ====================
name                 value                                            losses
==================== ================================================ ====================
``"accuracy"``       share of rows whose argmax is the label (softmax  classification
                     CE); of elements whose logit sign matches the
                     0/1 target (binary CE)
``"top_k_accuracy"`` share of rows whose label is among the k largest  softmax CE
                     outputs (``TopKAccuracy(k)``; the name: k = 5)
``"f1_macro"``       the mean over classes of F1 = 2 TP / (2 TP + FP   classification
                     + FN), a class absent from both labels and
                     predictions left out (as scikit-learn's
                     ``zero_division`` does not apply then); binary
                     CE: over the output columns, each a 0/1 label
``"mae"``            mean absolute error over all elements             mse
``"mse"``            mean squared error over all elements              mse
==================== ================================================ ====================

For a sequence output every labelled token counts once.  For reports beyond these
(per-class precision and recall, confusion matrices), take ``model.predict`` to
``sklearn.metrics``::

    from sklearn.metrics import classification_report
    print(classification_report(y_test, model.predict(X_test).argmax(axis=1)))
"""
from __future__ import annotations

import numpy as np

from ._config import jit
from ._validation import check_int

__all__ = ["Metric", "Accuracy", "TopKAccuracy", "F1Macro", "MAE", "MSE", "get"]

_SOFTMAX, _BINARY, _MSE = "softmax_cross_entropy", "binary_cross_entropy", "mse"


@jit
def top_k_hits(out, labels, k):
    """Rows i with labels[i] >= 0 whose label is among the k largest of out[i] (ties
    counted against: a label ties only the outputs above it), and how many rows count."""
    hits = 0
    rows = 0
    for i in range(out.shape[0]):
        y = labels[i]
        if y < 0:
            continue
        rows += 1
        above = 0
        for j in range(out.shape[1]):
            if out[i, j] > out[i, y] or (out[i, j] == out[i, y] and j < y):
                above += 1
        if above < k:
            hits += 1
    return hits, rows


@jit
def confusion(out, labels, n_classes):
    """(n_classes, n_classes) counts: row the label, column the argmax (first of ties),
    over the rows with labels[i] >= 0."""
    c = np.zeros((n_classes, n_classes), dtype=np.int64)
    for i in range(out.shape[0]):
        y = labels[i]
        if y < 0:
            continue
        best = 0
        for j in range(1, out.shape[1]):
            if out[i, j] > out[i, best]:
                best = j
        c[y, best] += 1
    return c


@jit
def binary_counts(out, targets):
    """Per column (TP, FP, FN, correct) of the logits' signs against 0/1 targets."""
    n = out.shape[1]
    counts = np.zeros((n, 4), dtype=np.int64)
    for i in range(out.shape[0]):
        for j in range(n):
            p = out[i, j] > 0
            t = targets[i, j] > 0.5
            if p and t:
                counts[j, 0] += 1
            elif p:
                counts[j, 1] += 1
            elif t:
                counts[j, 2] += 1
            if p == t:
                counts[j, 3] += 1
    return counts


@jit
def error_sums(out, targets):
    """(sum |o - y|, sum (o - y)^2) over all elements, in float64."""
    a = 0.0
    s = 0.0
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            d = float(out[i, j]) - float(targets[i, j])
            a += abs(d)
            s += d * d
    return a, s


def _f1(tp, fp, fn):
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    present = (tp + fp + fn) > 0
    if not present.any():
        return 0.0
    return float(np.mean(2 * tp[present] / (2 * tp[present] + fp[present] + fn[present])))


class Metric:
    """A metric: its ``name`` (the History key after ``val_``), the losses it applies
    to, and ``compute(out, yf, yi)`` over the outputs (rows, n_out) and targets (float
    targets ``yf`` or labels ``yi``, -1 for none)."""

    name = ""
    losses: tuple = ()

    def compute(self, out, yf, yi, loss):
        """The metric's value for outputs ``out`` against ``yf``/``yi`` under ``loss``
        (a loss name)."""
        raise NotImplementedError

    def check(self, loss, n_out):
        """Refuse a loss (a name) or an output width ``n_out`` the metric cannot read."""
        if loss not in self.losses:
            raise ValueError(f"metric {self.name!r} needs loss {' or '.join(self.losses)}; "
                             f"the model's loss is {loss!r}")

    def __repr__(self):
        return f"{type(self).__name__}()"


class Accuracy(Metric):
    """Share of rows (softmax CE) or elements (binary CE) predicted right."""

    name = "accuracy"
    losses = (_SOFTMAX, _BINARY)

    def compute(self, out, yf, yi, loss):
        if loss == _SOFTMAX:
            hits, rows = top_k_hits(out, yi, 1)
            return hits / max(rows, 1)
        counts = binary_counts(out, yf)
        return float(counts[:, 3].sum()) / max(out.size, 1)


class TopKAccuracy(Metric):
    """Share of rows whose label is among the ``k`` largest outputs."""

    losses = (_SOFTMAX,)

    def __init__(self, k: int = 5):
        self.k = check_int("TopKAccuracy k", k, 1)
        self.name = "top_k_accuracy" if self.k == 5 else f"top_{self.k}_accuracy"

    def check(self, loss, n_out):
        """As :meth:`Metric.check` for ``loss``; k must also be below ``n_out``, the
        number of classes."""
        super().check(loss, n_out)
        if self.k >= n_out:
            raise ValueError(f"top_k_accuracy with k={self.k} on {n_out} classes is always 1; "
                             f"k must be below {n_out}")

    def compute(self, out, yf, yi, loss):
        hits, rows = top_k_hits(out, yi, self.k)
        return hits / max(rows, 1)

    def __repr__(self):
        return f"TopKAccuracy(k={self.k})"


class F1Macro(Metric):
    """F1 averaged over the classes (unweighted)."""

    name = "f1_macro"
    losses = (_SOFTMAX, _BINARY)

    def compute(self, out, yf, yi, loss):
        if loss == _SOFTMAX:
            c = confusion(out, yi, out.shape[1])
            tp = np.diag(c)
            return _f1(tp, c.sum(axis=0) - tp, c.sum(axis=1) - tp)
        counts = binary_counts(out, yf)
        if out.shape[1] == 1:  # one 0/1 label: both classes, as scikit-learn's macro
            tp, fp, fn, right = counts[0]
            tn = right - tp
            return _f1([tp, tn], [fp, fn], [fn, fp])
        return _f1(counts[:, 0], counts[:, 1], counts[:, 2])


class MAE(Metric):
    """Mean absolute error over all elements."""

    name = "mae"
    losses = (_MSE,)

    def compute(self, out, yf, yi, loss):
        return error_sums(out, yf)[0] / max(out.size, 1)


class MSE(Metric):
    """Mean squared error over all elements."""

    name = "mse"
    losses = (_MSE,)

    def compute(self, out, yf, yi, loss):
        return error_sums(out, yf)[1] / max(out.size, 1)


METRICS = {"accuracy": Accuracy, "top_k_accuracy": TopKAccuracy, "f1_macro": F1Macro,
           "mae": MAE, "mse": MSE}


def get(metric) -> Metric:
    """The Metric ``metric`` names (a Metric is returned as it is)."""
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str) and metric in METRICS:
        return METRICS[metric]()
    raise ValueError(f"unknown metric {metric!r}; allowed: {sorted(METRICS)} or a "
                     f"fastbp.metrics.Metric such as TopKAccuracy(k=3)")
