"""Layers: :class:`Dense`, :class:`Dropout`, and the :class:`Layer` base class."""
from .base import Layer
from .dense import Dense
from .dropout import Dropout

__all__ = ["Layer", "Dense", "Dropout"]
