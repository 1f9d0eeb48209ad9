"""Layers: :class:`Dense`, :class:`Dropout`, :class:`WindowEmbedding`, and the
:class:`Layer` base class."""
from .base import Layer
from .dense import Dense
from .dropout import Dropout
from .embedding import WindowEmbedding

__all__ = ["Layer", "Dense", "Dropout", "WindowEmbedding"]
