"""Layers: :class:`Dense`, :class:`Dropout`, :class:`WindowEmbedding`,
:class:`Concatenate`, :class:`Add`, and the :class:`Layer` base class."""
from .base import Layer
from .dense import Dense
from .dropout import Dropout
from .embedding import WindowEmbedding
from .merge import Add, Concatenate

__all__ = ["Layer", "Dense", "Dropout", "WindowEmbedding", "Concatenate", "Add"]
