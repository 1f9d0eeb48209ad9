"""Optimizers over the flat parameter buffer, with torch.optim's names and rules."""
from .adam import Adam, AdamW
from .adaptive import Adadelta, AdaGrad, RMSProp, Yogi
from .base import Optimizer
from .sgd import SGD

OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "adagrad": AdaGrad, "rmsprop": RMSProp,
              "adadelta": Adadelta, "yogi": Yogi}


def get(optimizer) -> Optimizer:
    """The optimizer ``optimizer`` names: an :class:`Optimizer` is returned as it is, a
    name from ``OPTIMIZERS`` (``"sgd"``, ``"adam"``, ..., any case) gives a new one with
    the default hyperparameters; anything else raises ``ValueError``."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in OPTIMIZERS:
        return OPTIMIZERS[optimizer.lower()]()
    raise ValueError(f"unknown optimizer {optimizer!r}; pass an instance such as "
                     f"fastbp.optim.Adam(lr=1e-3) or one of {sorted(OPTIMIZERS)}")


__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "AdaGrad", "RMSProp", "Adadelta", "Yogi", "get"]
