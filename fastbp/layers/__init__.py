"""Layers: :class:`Dense`, :class:`Dropout`, :class:`WindowEmbedding`, :class:`Embedding`,
:class:`Concatenate`, :class:`Add`, the recurrent :class:`RNN`, :class:`LSTM`, :class:`GRU`
and :class:`Bidirectional`, and the :class:`Layer` base class."""
from .base import Layer
from .dense import Dense
from .dropout import Dropout
from .embedding import Embedding, WindowEmbedding
from .merge import Add, Concatenate
from .recurrent import GRU, LSTM, RNN, Bidirectional

__all__ = ["Layer", "Dense", "Dropout", "WindowEmbedding", "Embedding", "Concatenate", "Add",
           "RNN", "LSTM", "GRU", "Bidirectional"]
