"""Embedding tables: the sliding-window layer (seed 000, CS224N window model) and the
per-token lookup that feeds recurrent layers."""
from __future__ import annotations

import numpy as np

from .._validation import check_int, check_weights
from ..engine import codes
from ..engine.graph import NodeSpec
from .base import Layer, single_input


class WindowEmbedding(Layer):
    """Look up the 2w+1 word vectors of each window and concatenate them.

    Only the rows a batch uses are read and written by the optimizer (lazy,
    row-wise updates), so a step costs the same for any vocabulary size.  The
    table is kept out of the model's flat parameter buffer (in the model's flat
    embedding buffer).  In a Sequential model it must be the first layer; in a
    functional model it reads an ``fb.Input(2 * window + 1, dtype="int64")``, and
    several of them (words, casing, suffixes) may feed one network.

    Parameters
    ----------
    vocab_size, dim : int
        The table ``E`` has shape ``(vocab_size, dim)``.
    window : int
        w: inputs are int ids of shape ``(batch, 2w+1)``, outputs float
        ``(batch, (2w+1) dim)``.
    weights : array (vocab_size, dim), optional
        Initial vectors (pretrained, e.g. from :func:`fastbp.text.load_vectors`).
        Without them rows are drawn from N(0, 1), as torch.nn.Embedding does.
    trainable : bool
        False keeps the vectors frozen (seed 000: when the training set is small,
        fine-tuning moves only the words it contains).
    padding_id : int or None
        This row takes no gradient (PyTorch's ``padding_idx``) and starts at zero
        unless ``weights`` are given.  None: no padding row.
    """

    def __init__(self, vocab_size: int, dim: int, window: int = 2, weights=None,
                 trainable: bool = True, padding_id: int | None = 0):
        super().__init__()
        who = type(self).__name__
        self.vocab_size = check_int(f"{who} vocab_size", vocab_size, 1)
        self.dim = check_int(f"{who} dim", dim, 1)
        self.window = check_int(f"{who} window", window, 0)
        if not isinstance(trainable, (bool, np.bool_)):
            raise TypeError(f"{who} trainable must be a bool, got {trainable!r}")
        self.trainable = bool(trainable)
        if padding_id is not None:
            padding_id = check_int(f"{who} padding_id", padding_id, 0)
            if padding_id >= self.vocab_size:
                raise ValueError(f"{who} padding_id must lie in [0, {self.vocab_size}), "
                                 f"got {padding_id}")
        self.padding_id = padding_id
        if weights is not None:
            check_weights(f"{who} weights", weights, (self.vocab_size, self.dim))
        self._weights = weights
        self.n_in = 2 * self.window + 1  # the model's input width: ids per window
        self._E = None
        self.state = None  # lazy optimizer state (k, V, d), a view set by the model
        self.step = np.zeros(1, dtype=np.int64)  # becomes a view of the model's counters

    def declare(self, widths, ids, sequences):
        width = single_input(self, widths, ids, want_ids=True)
        if sequences[0]:
            raise TypeError(f"{self!r} reads (batch, {self.width}) id windows, got a sequence "
                            f"of ids; a sequence goes through fb.layers.Embedding")
        self.output_dim(width)
        return NodeSpec(codes.WINDOW, self.width * self.dim,
                        tables={"E": (self.vocab_size, self.dim)},
                        attrs={"padding": self.padding_code, "trainable": int(self.trainable)})

    @property
    def width(self) -> int:
        """The ids per window, 2w + 1."""
        return 2 * self.window + 1

    def output_dim(self, input_dim: int) -> int:
        if input_dim != self.width:
            raise ValueError(f"WindowEmbedding(window={self.window}) takes windows of "
                             f"{self.width} ids, got inputs of width {input_dim}")
        return self.width * self.dim

    def build(self, input_dim, rng, dtype):
        """The initial table ``{"E": (vocab_size, dim) array of dtype}``: the ``weights``
        given to the constructor, else rows drawn from N(0, 1) with ``rng`` (a numpy
        Generator) and the padding row zero.  ``input_dim`` (the ids per window) plays no
        part."""
        if self._weights is not None:  # finite in the model's dtype too (the model copies it)
            E = check_weights(f"{type(self).__name__} weights", self._weights,
                              (self.vocab_size, self.dim), dtype)
        else:
            E = rng.standard_normal((self.vocab_size, self.dim)).astype(dtype)
            if self.padding_id is not None:
                E[self.padding_id] = 0
        return {"E": E}

    def bind_table(self, E: np.ndarray) -> None:
        """Take ``E``, the model's view of the table (in its flat embedding buffer),
        (vocab_size, dim)."""
        self._E = E

    @property
    def E(self) -> np.ndarray:
        """The embedding table, (vocab_size, dim)."""
        return self._E

    @E.setter
    def E(self, value):
        self._E[...] = check_weights("E", value, self._E.shape, self._E.dtype)

    @property
    def n_params(self) -> int:
        """The number of numbers in the table (0 before the model binds it)."""
        return 0 if self._E is None else int(self._E.size)

    @property
    def padding_code(self) -> int:
        """``padding_id`` as the kernels take it: -1 for None."""
        return -1 if self.padding_id is None else self.padding_id

    def get_config(self):
        """The constructor's arguments but ``weights`` as a JSON-able dict (the table
        itself is saved with the model's weights)."""
        return {"vocab_size": self.vocab_size, "dim": self.dim, "window": self.window,
                "trainable": self.trainable, "padding_id": self.padding_id}


class Embedding(WindowEmbedding):
    """Look up one vector per id: (batch, T) ids -> (batch, T, dim) for a sequence input
    (``fb.Input(dtype="int64", sequence=True)``), (batch, k) ids -> (batch, k dim) for a
    plain one.

    Only the rows a batch touches are updated, with every optimizer.

    Parameters
    ----------
    vocab_size, dim : int
        The table ``E`` has shape ``(vocab_size, dim)``.
    weights : array (vocab_size, dim), optional
        Initial vectors; without them rows are drawn from N(0, 1).
    trainable : bool
        False keeps the vectors frozen.
    padding_id : int or None
        This row takes no gradient and starts at zero unless ``weights`` are given.
        It also marks the end of each sequence: a row's length is the position after
        its last id that is not the padding id.  None: no padding row.
    """

    def __init__(self, vocab_size: int, dim: int, weights=None, trainable: bool = True,
                 padding_id: int | None = 0):
        super().__init__(vocab_size, dim, 0, weights, trainable, padding_id)
        self.n_in = None  # any number of ids per sample (or per step)
        self.ids_per_step = None

    def declare(self, widths, ids, sequences):
        width = single_input(self, widths, ids, want_ids=True)
        self.ids_per_step = width
        return NodeSpec(codes.WINDOW, width * self.dim, tables={"E": (self.vocab_size, self.dim)},
                        attrs={"padding": self.padding_code, "trainable": int(self.trainable)})

    @property
    def width(self) -> int:
        """The ids per sample (or per step) of the input it was called on (1 before)."""
        return self.ids_per_step or 1

    def output_dim(self, input_dim: int) -> int:
        return input_dim * self.dim

    def get_config(self):
        """The constructor's arguments but ``weights`` as a JSON-able dict."""
        return {"vocab_size": self.vocab_size, "dim": self.dim, "trainable": self.trainable,
                "padding_id": self.padding_id}
