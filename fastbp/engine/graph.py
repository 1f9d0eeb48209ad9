"""Symbolic values and layer calls: what ``fb.Input`` and ``layer(value)`` build.

A :class:`Value` is a placeholder for a (batch, width) array: float features, or
int64 ids; a *sequence* value is a (batch, T, width) array whose T steps are right-
padded (recurrent layers read them, per-step layers such as Dense apply at every step).  Calling a layer on values records a :class:`Call` with the
:class:`NodeSpec` the layer declares for those inputs, and returns the call's
output value.  ``fb.Model(inputs, outputs)`` then collects the calls the output
depends on; :mod:`fastbp.engine.planner` lowers them to a tape.

Calls are numbered as they are made, so a value's producer always has a
smaller number than its readers: that order is a topological order.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from .._validation import check_int

_call_numbers = itertools.count()


@dataclass
class NodeSpec:
    """What a layer tells the planner about one call of it.

    kind : a node kind of :mod:`fastbp.engine.codes`
    width : the per-sample width of the output
    params : name -> shape of each array in the flat parameter buffer, in order
    tables : name -> (vocab, dim) of each embedding table (kept out of the flat buffer)
    attrs, fattrs : the node's int and float attributes by column name
        ("act", "padding", "trainable", "cell", "reverse", "last", "truncate"; "slope", "p")
    sequence : whether the output is a sequence; None: as the inputs are (all sequences
        or none)
    cache : floats per sample and step the node keeps for its backward pass
    """

    kind: int
    width: int
    params: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)
    fattrs: dict = field(default_factory=dict)
    sequence: bool | None = None
    cache: int = 0


class Value:
    """A symbolic (batch, width) array of float features or int64 ids, or with
    ``sequence`` a (batch, T, width) one (``width`` per step).

    ``producer`` is the :class:`Call` that computes it, or None for a model input.
    """

    def __init__(self, width: int, is_ids: bool, producer=None, name: str | None = None,
                 sequence: bool = False):
        self.width = width
        self.is_ids = is_ids
        self.producer = producer
        self.name = name
        self.sequence = bool(sequence)

    @property
    def kind_text(self) -> str:
        what = f"int64 ids of width {self.width}" if self.is_ids else \
            f"float features of width {self.width}"
        return f"a sequence of {what} per step" if self.sequence else what

    def __repr__(self):
        what = "ids" if self.is_ids else "float"
        seq = ", sequence=True" if self.sequence else ""
        if self.producer is None:
            return f"Input({self.width}, {what}{seq}, name={self.name!r})"
        kind = f"{what} sequence" if self.sequence else f"{what} value"
        return f"<{kind} of width {self.width} from {self.producer.layer!r}>"


class Call:
    """One application of a layer to input values (a node of the graph)."""

    def __init__(self, layer, inputs: list, spec: NodeSpec):
        self.layer = layer
        self.inputs = list(inputs)
        self.spec = spec
        self.number = next(_call_numbers)
        self.output = Value(spec.width, False, self, sequence=bool(spec.sequence))


_FLOAT_DTYPES = ("float32", "float64", "float")
_ID_DTYPES = ("int64", "int32", "int")


def Input(width: int | None = None, dtype: str = "float32", name: str | None = None,
          sequence: bool = False) -> Value:
    """A model input: ``width`` float features per sample (any float dtype given here is
    converted to the model's dtype), or ``width`` int64 ids with ``dtype="int64"``.

    name : the key of this input when fit/evaluate/predict get a dict.
    sequence : the input is a batch of right-padded sequences: int ids (batch, T)
        (``width`` 1, the default for ids; (batch, T, width) for more ids per step), or
        float features (batch, T, width).  The padding ids of the first int sequence
        input (the padding id of the embedding that reads it) give each row's length.
    """
    if width is None and not (sequence and dtype in _ID_DTYPES):
        raise TypeError("Input needs its width (features per sample, or per step of a "
                        "sequence); only an int sequence input defaults to one id per step")
    width = check_int("Input width", 1 if width is None else width, 1)
    dt = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if dt not in _FLOAT_DTYPES + _ID_DTYPES:
        raise ValueError(f"Input dtype must be one of {list(_FLOAT_DTYPES + _ID_DTYPES)}, "
                         f"got {dtype!r}")
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"Input name must be a non-empty str or None, got {name!r}")
    if not isinstance(sequence, (bool, np.bool_)):
        raise TypeError(f"Input sequence must be a bool, got {sequence!r}")
    return Value(width, dt in _ID_DTYPES, None, name, sequence=bool(sequence))


def as_values(inputs, who: str) -> list:
    """The list of Values a layer is called on (one Value or a list/tuple of them)."""
    values = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if not values:
        raise ValueError(f"{who} was called on an empty list; give it fb.Input values or "
                         f"other layers' outputs")
    for v in values:
        if not isinstance(v, Value):
            raise TypeError(f"{who} must be called on fb.Input values or other layers' "
                            f"outputs, got {type(v).__name__}")
    return values


def collect(inputs: list, output: Value) -> list:
    """The calls ``output`` depends on, in topological order (the order they were made).

    Raises ValueError for a cycle, for an input the output does not depend on, and
    for an input the output needs that is not among ``inputs``.
    """
    calls, state = {}, {}
    stack = [(output, False)]
    while stack:
        value, done = stack.pop()
        call = value.producer
        if call is None:
            continue
        key = id(call)
        if done:
            state[key] = 2
            calls[key] = call
            continue
        if state.get(key) == 2:
            continue
        if state.get(key) == 1:
            raise ValueError(f"the graph has a cycle through {call.layer!r}")
        state[key] = 1
        stack.append((value, True))
        for v in call.inputs:
            if v.producer is not None and state.get(id(v.producer)) == 1:
                raise ValueError(f"the graph has a cycle through {v.producer.layer!r}")
            stack.append((v, False))
    ordered = sorted(calls.values(), key=lambda c: c.number)
    reached = {id(v) for c in ordered for v in c.inputs if v.producer is None}
    if output.producer is None:
        reached.add(id(output))
    listed = {id(v) for v in inputs}
    for c in ordered:
        for v in c.inputs:
            if v.producer is None and id(v) not in listed:
                raise ValueError(f"{c.layer!r} reads {v!r}, which is not among the model's "
                                 f"inputs; add it to inputs=[...]")
    for v in inputs:
        if id(v) not in reached:
            raise ValueError(f"the output does not depend on the input {v.name or v!r}; "
                             f"every input must feed the output")
    return ordered
