"""Losses, averaged over the batch as PyTorch's ``reduction="mean"`` does.

========================== ============================================= =====================
name                       loss                                          targets
========================== ============================================= =====================
``"mse"``                  mean over all elements of (o - y)^2           float (n, n_out)
``"binary_cross_entropy"`` mean of max(o,0) - o y + log(1 + e^-|o|),     floats in [0, 1]
                           from logits o                                 (n, n_out)
``"softmax_cross_entropy"`` mean over rows of logsumexp(o) - o[y],       int labels (n,) in
                           from logits o                                 [0, n_out)
========================== ============================================= =====================

The model's last layer gives the logits; ``predict`` returns them.
"""
from __future__ import annotations

import numpy as np

from ._validation import check_dtype, check_labels, check_targets
from .kernels import losses as _k
from .threads import parallel_enabled


class Loss:
    """A loss: its name, its kernel code, and how it takes targets.  Called as
    ``loss(out, y)`` it gives (batch-mean loss, dL/dout) outside a model."""

    name: str = ""
    code: int = -1
    classification: bool = False

    def targets(self, y, n: int, n_out: int, dtype, name: str = "y"):
        """Validate and convert targets ``y`` for ``n`` rows of ``n_out`` outputs in
        ``dtype`` (``name`` labels the messages): returns (float targets, int labels),
        one of them a dummy."""
        raise NotImplementedError

    def __call__(self, out, y):
        """(loss, dL/dout) for outputs ``out`` (n, n_out) and targets ``y``."""
        out = np.asarray(out)
        dtype = check_dtype(out.dtype if out.dtype.kind == "f" else np.float64)
        if out.ndim != 2 or out.shape[0] == 0:
            raise ValueError(f"outputs must be a non-empty 2-d array (n, n_out), got shape "
                             f"{out.shape}")
        out = np.ascontiguousarray(out, dtype=dtype)
        yf, yi = self.targets(y, out.shape[0], out.shape[1], dtype)
        grad = np.empty_like(out)
        row_loss = np.empty(out.shape[0])
        loss = _k.loss_and_grad(self.code, out, yf, yi, grad, row_loss, parallel_enabled())
        return float(loss), grad

    def __repr__(self):
        return f"{type(self).__name__}()"


def _dummy_float(dtype):
    return np.zeros((1, 1), dtype=dtype)


def _dummy_int():
    return np.zeros(1, dtype=np.int64)


class MSE(Loss):
    """Mean squared error over all elements; float targets (n, n_out)."""

    name = "mse"
    code = _k.MSE

    def targets(self, y, n, n_out, dtype, name="y"):
        return check_targets(name, y, n, n_out, dtype, binary=False), _dummy_int()


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy from logits, mean over all elements; targets in [0, 1]."""

    name = "binary_cross_entropy"
    code = _k.BINARY_CROSS_ENTROPY
    classification = True

    def targets(self, y, n, n_out, dtype, name="y"):
        return check_targets(name, y, n, n_out, dtype, binary=True), _dummy_int()


class SoftmaxCrossEntropy(Loss):
    """Softmax cross-entropy from logits, mean over rows; integer labels (n,)."""

    name = "softmax_cross_entropy"
    code = _k.SOFTMAX_CROSS_ENTROPY
    classification = True

    def targets(self, y, n, n_out, dtype, name="y"):
        if n_out < 2:
            raise ValueError("softmax_cross_entropy needs a last layer with at least 2 outputs, "
                             f"got {n_out}")
        return _dummy_float(dtype), check_labels(name, y, n, n_out)


LOSSES = {"mse": MSE, "binary_cross_entropy": BinaryCrossEntropy,
          "softmax_cross_entropy": SoftmaxCrossEntropy}


def get(loss) -> Loss:
    """The Loss ``loss`` names (a Loss is returned as it is)."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str) and loss in LOSSES:
        return LOSSES[loss]()
    raise ValueError(f"unknown loss {loss!r}; allowed: {sorted(LOSSES)}")
