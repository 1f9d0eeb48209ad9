"""The named bundles the compiled entry points take instead of long argument lists.

Each is a namedtuple of arrays (and a few scalars) made once per model by the
planner; numba passes them by reference, so the compiled code reads and writes
the model's own buffers.  Their fields are documented here once.
"""
from __future__ import annotations

from collections import namedtuple

from numba.core import cgutils, types
from numba.extending import intrinsic

#: The model as tables (layout in :mod:`fastbp.engine.codes`); ``segments`` : int64
#: (n_segments, 2) the first and last node of each segment of gradient checkpointing
#: (empty without it); ``loss`` is the loss code and ``output`` the value the loss reads.
Tape = namedtuple("Tape", ["nodes", "fattrs", "operands", "values", "tables", "segments",
                           "loss", "output"])

#: ``params``, ``grads`` : the flat parameter and gradient buffers; ``emb`` : every
#: embedding table, one after another; ``pscratch`` : room for the largest layer's
#: parameter gradients, for the nodes that add theirs instead of writing them.
Weights = namedtuple("Weights", ["params", "grads", "emb", "pscratch"])

#: ``acts`` / ``agrads`` : the activation and gradient arenas; ``ids`` : the id
#: arena; ``work`` : the dense forward's partial products; ``tmp`` : a value's
#: share of a gradient before it is added; ``row_loss`` : float64 per row;
#: ``rows`` : every table's touched rows and id hash table; ``row_grads`` : their
#: gradients; ``n_rows`` : int64 (n_tables,) rows touched, -1 before the first
#: node of a backward pass opens them; ``ybf``, ``ybi``, ``ybw`` : targets and row
#: weights of a minibatch gathered by the epoch loop; ``order`` : int64 0, 1, 2, ... (rows in order);
#: ``lengths`` : int64 (batch,) the steps of each sequence of the minibatch loaded;
#: ``starts`` : int64 (batch + 1,) the row of each one's first step in a sequence value
#: (packed: no padding between), then the rows in all; ``steps`` : int64 (3,) that
#: minibatch's longest sequence, the most the arenas hold, and its rows in all;
#: ``cache`` : what the recurrent nodes keep for their backward pass; ``rwork`` : their
#: scratch space.
Work = namedtuple("Work", ["acts", "agrads", "ids", "work", "tmp", "row_loss", "rows",
                           "row_grads", "n_rows", "ybf", "ybi", "ybw", "order", "lengths", "starts",
                           "steps", "cache", "rwork"])

#: ``code`` and ``hp`` : the optimizer and its hyperparameters (layout in
#: fastbp.kernels.optim); ``state`` (k, n_params) and ``step`` (1,); ``emb_state`` :
#: the lazy state of every trainable table, one (k, vocab, dim) block each;
#: ``emb_step`` : int64 (n_tables,); ``clip_norm`` : 0 for none.
Optim = namedtuple("Optim", ["code", "hp", "state", "step", "emb_state", "emb_step",
                             "clip_norm"])

#: Whole data sets for the epoch loop and inference: ``xf`` (N, float columns) with the
#: float inputs side by side, ``xi`` (N, id columns) the id inputs, ``yf`` float targets
#: (N, n_out) and ``yi`` int64 labels (N,), each a small dummy when unused.  With
#: sequences: a sequence input takes ``steps`` times its width in columns (step after
#: step), ``lengths`` (N,) holds each row's steps, ``yi`` the per-token labels (N * steps,)
#: and ``tokens`` (N,) how many of a row's labels count in the loss.  ``w`` : float64
#: weights of the loss rows (N,), or (N * steps,) per token, as ``fit(sample_weight=,
#: class_weight=)`` make them; empty when there are none.
Data = namedtuple("Data", ["xf", "xi", "yf", "yi", "lengths", "tokens", "steps", "w"])

#: The dropout stream: ``seed`` and ``step`` : int64 (1,) training-mode passes so far.
Stream = namedtuple("Stream", ["seed", "step"])


# -- borrowing a bundle inside compiled code ---------------------------------------------
@intrinsic
def borrowed(typingctx, bundle):
    """``bundle`` with each array's reference count left out (its meminfo and parent set
    to null): numba counts a reference on every array of a tuple each time the tuple is
    passed to a function, inlined or not, with an atomic add and subtract, and those
    counts took a fifth of fig7_8's step (AMD EPYC, Zen 4).  An array without a meminfo
    is never counted.  Only for an entry point's own arguments, which its caller holds
    for the whole call, and only where nothing borrowed outlives the call (the entry
    points return numbers and write into the arrays they are given)."""
    if not isinstance(bundle, types.BaseTuple):
        return None

    def codegen(context, builder, signature, args):
        (value,) = args
        for i, ty in enumerate(signature.args[0]):
            if not isinstance(ty, types.Array):
                continue
            ary = context.make_array(ty)(context, builder, value=builder.extract_value(value, i))
            ary.meminfo = cgutils.get_null_value(ary.meminfo.type)
            ary.parent = cgutils.get_null_value(ary.parent.type)
            value = builder.insert_value(value, ary._getvalue(), i)
        return value

    return bundle(bundle), codegen
