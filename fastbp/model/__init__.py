"""Models: :class:`Model` (functional: ``fb.Input``, layer calls, ``Model(inputs,
outputs)``) and :class:`Sequential` (a list of layers), two ways of building one
graph and one way of training it; :func:`load`; :class:`History`."""
from ..engine.graph import Input
from .base import Model
from .history import DivergenceError, History
from .persist import load, model_from_config
from .sequential import Sequential

__all__ = ["Model", "Sequential", "Input", "History", "DivergenceError", "load",
           "model_from_config"]
