"""A model's own build of the interpreter: only what it uses gets compiled.

The interpreter and the kernels branch on a few module constants (the *features*):

==================  ================================  ==========================
constant            module                            a build sets it from
==================  ================================  ==========================
``HAS_TABLES``      ``engine.interpreter``            a WINDOW node
``HAS_DROPOUT``     ``engine.interpreter``            a DROPOUT node
``HAS_MERGE``       ``engine.interpreter``            a CONCAT or ADD node
``HAS_SEGMENTS``    ``engine.interpreter``            gradient checkpointing
``HAS_SEQUENCES``   ``engine.interpreter``            a sequence value
``OPTIMIZER``       ``kernels.optim``                 the optimizer's code
``LOSS``            ``kernels.losses``                the loss's code
``PARALLEL``        (numba's ``parallel`` option)     :func:`threads_pay`
==================  ================================  ==========================

As written, every constant lets every branch through.  :func:`function` makes a
copy of a compiled function whose globals hold a model's values instead; numba
drops a branch on a constant before it types the code, so whatever sits behind a
branch the model cannot take (the embedding path of an MLP, eleven optimizers)
is never compiled.  A copy is made of every function that reads a constant,
directly or through what it calls; the others (the math kernels) stay shared.

``PARALLEL`` is read by no source line: it is numba's ``parallel`` option of the
kernels that have a threaded branch (``prange`` behind ``if parallel and <large>``).
A model whose minibatches are all too small for any such branch gets a build
compiled with ``parallel=False`` (its ``prange`` loops are plain loops, never
taken): the branch it would not have run costs no thread-pool code, and the
digits demo's cold start falls from 19-21 s to 13-15 s (AMD EPYC, Zen 4).  The
numbers are the same bits either way, as at any thread count.

A copy depends only on the constants it reads: ``forward_nodes`` is one copy
for every optimizer and loss.  Its name carries them (``forward_nodes__t0d1m0``,
and ``p0`` at the end in a serial build), and numba's on-disk cache keys on that
name, so each copy is cached beside the module it comes from.
"""
from __future__ import annotations

import types as _pytypes
from typing import NamedTuple

import numba
import numpy as np
from numba.core.dispatcher import Dispatcher

from .._config import MIN_SPLIT_WORK, PARALLEL_MIN_WORK, PARALLEL_UPDATE_MIN
from ..kernels import losses as _losses
from ..kernels import optim as _optim
from . import codes as C

#: Each feature constant and the letter that stands for it in a copy's name.
CONSTANTS = {"HAS_TABLES": "t", "HAS_DROPOUT": "d", "HAS_MERGE": "m", "HAS_SEGMENTS": "s",
             "HAS_SEQUENCES": "r",
             "OPTIMIZER": "o", "LOSS": "l", "PARALLEL": "p"}


class Features(NamedTuple):
    """What a model uses; ``optimizer``/``loss`` are codes, or ``ANY`` before compile."""
    tables: bool = True
    dropout: bool = True
    merge: bool = True
    segments: bool = True
    sequences: bool = True
    optimizer: int = _optim.ANY
    loss: int = _losses.ANY
    parallel: bool = True

    def constants(self) -> dict:
        return {"HAS_TABLES": bool(self.tables), "HAS_DROPOUT": bool(self.dropout),
                "HAS_MERGE": bool(self.merge), "HAS_SEGMENTS": bool(self.segments),
                "HAS_SEQUENCES": bool(self.sequences),
                "OPTIMIZER": int(self.optimizer), "LOSS": int(self.loss),
                "PARALLEL": bool(self.parallel)}


def features_of(plan, optimizer_code=None, loss_code=None) -> Features:
    """The features of a planned model; without an optimizer (predict before compile)
    the optimizer and loss stay ``ANY``."""
    kinds = set(int(k) for k in plan.nodes[:, C.KIND])
    return Features(tables=C.WINDOW in kinds, dropout=C.DROPOUT in kinds,
                    merge=bool(kinds & {C.CONCAT, C.ADD}),
                    segments=plan.segments.shape[0] > 0,
                    sequences=plan.has_sequences,
                    optimizer=_optim.ANY if optimizer_code is None else int(optimizer_code),
                    loss=_losses.ANY if loss_code is None else int(loss_code))


_READS: dict = {}    # dispatcher -> the feature constants it reads, directly or below
_COPIES: dict = {}   # (dispatcher, ((constant, value), ...)) -> its copy


def _callees(disp):
    py = disp.py_func
    for name in py.__code__.co_names:
        obj = py.__globals__.get(name)
        if isinstance(obj, Dispatcher) and obj.py_func.__module__.startswith("fastbp."):
            yield name, obj


def threads_pay(plan, rows: int) -> bool:
    """Whether some kernel may take its threaded branch on a minibatch of ``rows``
    rows of ``plan`` (then its build is compiled with ``parallel=True``).

    Dense and merge models only, from bounds every such branch stays under: the flat
    parameter buffer (the optimizer's update, the gradient norm) below
    PARALLEL_UPDATE_MIN, every value's rows x width (bias and activation, dropout,
    the loss, the input gather) below PARALLEL_MIN_WORK, and each dense layer's three
    products, rows x n_in x n_out multiply-adds, below MIN_SPLIT_WORK.  Embedding
    tables and sequences have kernels with thresholds of their own: always True."""
    if plan.tables.shape[0] > 0 or plan.has_sequences:
        return True
    if plan.params.shape[0] >= PARALLEL_UPDATE_MIN:
        return True
    width = plan.vtable[:, C.WIDTH]
    if rows * int(width.max()) >= PARALLEL_MIN_WORK:
        return True
    for n in np.flatnonzero(plan.nodes[:, C.KIND] == C.DENSE):
        n_in = int(width[plan.operands[plan.nodes[n, C.ARG0], C.VALUE]])
        if rows * n_in * int(width[plan.nodes[n, C.OUT]]) >= MIN_SPLIT_WORK:
            return True
    return False


def reads(disp) -> frozenset:
    """The feature constants ``disp`` reads, itself or through the functions it calls
    (``PARALLEL``: it, or a function below it, is compiled with ``parallel=True``)."""
    found = _READS.get(disp)
    if found is None:
        py = disp.py_func
        own = {n for n in py.__code__.co_names if n in CONSTANTS and n in py.__globals__}
        if disp.targetoptions.get("parallel"):
            own.add("PARALLEL")
        for _, callee in _callees(disp):
            own |= reads(callee)
        found = _READS[disp] = frozenset(own)
    return found


def function(disp, features: Features):
    """``disp`` compiled for ``features``: ``disp`` itself when it reads none of them."""
    return _function(disp, features.constants())


def _function(disp, values):
    used = reads(disp)
    chosen = tuple((c, values[c]) for c in CONSTANTS if c in used)
    if not chosen or chosen == (("PARALLEL", True),):  # the function as written
        return disp
    copy = _COPIES.get((disp, chosen))
    if copy is None:
        copy = _COPIES[(disp, chosen)] = _copy(disp, chosen, values)
    return copy


def _copy(disp, chosen, values):
    # The same code object over a copy of its module's globals, with the constants
    # replaced and every callee that reads one replaced by its own copy.
    py = disp.py_func
    scope = dict(py.__globals__)
    for name in py.__code__.co_names:
        if name in CONSTANTS and name in scope:
            scope[name] = values[name]
    for name, callee in _callees(disp):
        scope[name] = _function(callee, values)
    fn = _pytypes.FunctionType(py.__code__, scope, py.__name__, py.__defaults__, py.__closure__)
    # parallel builds keep the names (and cached code) they had before PARALLEL was
    tag = "".join(f"{CONSTANTS[c]}{_letter(v)}" for c, v in chosen
                  if c != "PARALLEL" or not v)
    fn.__qualname__ = f"{py.__qualname__}__{tag}"
    fn.__module__ = py.__module__
    fn.__doc__ = py.__doc__
    options = dict(disp.targetoptions)
    options.pop("nopython", None)
    if options.get("parallel"):
        options["parallel"] = values["PARALLEL"]
    return numba.njit(cache=True, **options)(fn)


def _letter(v) -> str:
    if isinstance(v, bool):
        return str(int(v))
    return "x" if v < 0 else str(v)


class Build:
    """The interpreter's functions for one set of features, by name
    (``build.train_step``), made on first use."""

    def __init__(self, features: Features):
        self.features = features

    def __getattr__(self, name):
        from . import interpreter
        disp = getattr(interpreter, name)
        if not isinstance(disp, Dispatcher):
            raise AttributeError(name)
        fn = function(disp, self.features)
        setattr(self, name, fn)
        return fn


_BUILDS: dict = {}


def build(features: Features) -> Build:
    """The (one per process) build for ``features``."""
    b = _BUILDS.get(features)
    if b is None:
        b = _BUILDS[features] = Build(features)
    return b


def copies() -> list:
    """Every copy made so far in this process (for tests that count compilations)."""
    return list(_COPIES.values())
