"""The Model: a graph of layer calls, compiled, fitted, evaluated, saved.

``fb.Model(inputs, outputs)`` takes the graph a user built with ``fb.Input`` and
layer calls; :class:`~fastbp.model.sequential.Sequential` builds the same kind of
graph from a list.  Either way the graph is lowered once to a tape
(:mod:`fastbp.engine.planner`) that every driver walks: the compiled
interpreter when every node is one the engine knows, the per-layer path when a
user's NumPy layer is among them.

Every parameter lives in one flat buffer (``model.params``), every gradient in
another (``model.grads``), every embedding table in a third (``model.tables``);
layers hold views into them.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import signal
import threading
import time
import warnings

import numpy as np

from .. import losses as _losses
from .. import optim as _optim
from .._validation import (check_class_weight, check_dtype, check_features, check_float,
                           check_ids, check_int, check_sample_weight, check_seed, check_sequence,
                           check_sequence_labels)
from ..engine import codes as C
from ..engine.drivers import Compiled, Layerwise
from ..engine.graph import Value, collect
from ..engine.planner import Layout, Plan
from ..schedules import Schedule, checked_rate
from ..threads import get_num_threads, pin_blas
from .history import DivergenceError, History, divergence_message
from .streaming import Stream, file_backed, gather

_I64 = np.int64

#: While a checkpoint is restored: (parameters, embedding-table entries) its file holds,
#: so that a crafted architecture is refused before its buffers are allocated.
SIZE_LIMITS = contextvars.ContextVar("fastbp_size_limits", default=None)


def _exclusive(method):
    """Run ``method`` holding the model's lock.  The compiled kernels release the GIL
    and every call works in the model's own buffers, so calls on one model from
    several threads take turns (a callback calling the model from inside ``fit``
    re-enters the same lock)."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return locked


class Model:
    """A network given by its inputs and its output value.

    Parameters
    ----------
    inputs : an ``fb.Input`` value or a list of them (the order fit/evaluate/predict
        take lists in; dicts are keyed by the inputs' names)
    outputs : the value the loss is computed on (one output)
    dtype : {"float32", "float64"}
        The dtype of every parameter, activation and gradient.
    seed : int
        Fixes the initial weights (and the dropout stream when ``fit`` gets no seed).
    checkpoint_every : int, optional
        Gradient checkpointing (seed 002, problem 7.11): keep the output of every k-th
        layer call and recompute the others during the backward pass, segment by
        segment.  The gradients are the same bits; the activations take about n/k + k
        layers' worth of memory instead of n, for one more forward pass per step.
    """

    def __init__(self, inputs, outputs, dtype: str = "float32", seed: int = 0,
                 checkpoint_every: int | None = None):
        inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if isinstance(outputs, (list, tuple)):
            if len(outputs) != 1:
                raise ValueError(f"a Model has one output (the loss reads it), got "
                                 f"{len(outputs)}")
            outputs = outputs[0]
        self._build(inputs, outputs, dtype, seed, checkpoint_every)

    # -- construction ---------------------------------------------------------------
    def _build(self, inputs, output, dtype, seed, checkpoint_every=None):
        self._lock = threading.RLock()
        if not inputs:
            raise ValueError("a Model needs at least one fb.Input")
        for v in inputs:
            if not isinstance(v, Value) or v.producer is not None:
                raise TypeError(f"Model inputs must be fb.Input values, got {v!r}")
        if len({id(v) for v in inputs}) != len(inputs):
            raise ValueError("the same fb.Input is listed twice in inputs")
        names = [v.name for v in inputs if v.name is not None]
        if len(set(names)) != len(names):
            raise ValueError(f"input names must be distinct, got {names}")
        if not isinstance(output, Value):
            raise TypeError(f"outputs must be a layer's output value, got {output!r}")
        if output.is_ids:
            raise TypeError("the output holds int64 ids; the loss needs float outputs")
        self.dtype = check_dtype(dtype)
        self.seed = check_seed("seed", seed)
        if checkpoint_every is not None:
            checkpoint_every = check_int("checkpoint_every", checkpoint_every, 1)
        self.checkpoint_every = checkpoint_every
        calls = collect(inputs, output)
        for call in calls:
            owner = call.layer.model
            if owner is not None and owner is not self:
                raise ValueError(f"{call.layer!r} already belongs to another model; a layer "
                                 f"object can serve one model only")
        layout = Layout(calls)
        limits = SIZE_LIMITS.get()
        if limits is not None and (layout.n_params > limits[0] or layout.n_emb > limits[1]):
            raise ValueError(f"the architecture needs {layout.n_params} parameters and "
                             f"{layout.n_emb} table entries; the file holds {limits[0]} and "
                             f"{limits[1]}")
        self.inputs, self.output, self.layers = inputs, output, layout.layers
        rng = np.random.default_rng(self.seed)
        self.params = np.zeros(layout.n_params, dtype=self.dtype)
        self.grads = np.zeros(layout.n_params, dtype=self.dtype)
        self.tables = np.zeros(max(1, layout.n_emb), dtype=self.dtype)
        self._table_layers = [None] * len(layout.tables)
        for i, (layer, spec) in enumerate(zip(layout.layers, layout.specs)):
            layer.index = i
            values = layer.build(layer.input_dim, rng, self.dtype)
            pv, gv = {}, {}
            for name, shape in spec.params.items():
                off, size = layout.param_offsets[i][name], int(np.prod(shape))
                pv[name] = self.params[off:off + size].reshape(shape)
                gv[name] = self.grads[off:off + size].reshape(shape)
                pv[name][...] = values[name]
            layer.bind(pv, gv)
            for name, (V, d) in spec.tables.items():
                t, off = layout.table_offsets[i][name]
                view = self.tables[off:off + V * d].reshape(V, d)
                view[...] = values[name]
                layer.bind_table(view)
                self._table_layers[t] = layer
        self._plan = Plan(inputs, output, calls, layout, self.params, self.grads, self.tables,
                          self.dtype, checkpoint_every or 0)
        self._vocab_bounds = self._input_vocab_bounds()
        self._length_input = self._lengths_source()
        for layer in layout.layers:
            layer.model = self
        self.n_out = output.width
        self.optimizer: _optim.Optimizer | None = None
        self.loss: _losses.Loss | None = None
        self.metrics = []  # compile(metrics=...) beyond the loss and accuracy
        self.fused = False
        self._driver = None
        self._rng_step = self._plan.stream.step
        self._dropout_seed = self.seed
        self._shuffle_rng = np.random.default_rng([self.seed, 1])
        self.stop_training = False
        self.epoch = 0  # epochs trained so far: per-epoch schedules continue from here
        self.metadata = None  # the user's JSON document saved with the model (save(metadata=))
        self._partial = None  # an epoch Ctrl-C stopped inside (see _keep_partial)

    def _input_vocab_bounds(self):
        """For each id input, the smallest vocabulary among the tables that read it."""
        p = self._plan
        bounds = {}
        for n in range(len(self.inputs), p.nodes.shape[0]):
            if p.nodes[n, C.KIND] == C.WINDOW:
                v = int(p.operands[p.nodes[n, C.ARG0], C.VALUE])
                V = int(p.tables[p.nodes[n, C.TABLE], C.VOCAB])
                bounds[v] = min(bounds.get(v, V), V)
        return bounds

    def _lengths_source(self):
        """(input index, padding id) of the input whose padding ids give each row's
        length: the first int sequence input read by an embedding with a padding id (the
        first such embedding's); (-1, -1) when there is none (every row is as long as the
        array); None for a model without sequences."""
        p = self._plan
        if not p.has_sequences:
            return None
        for i, v in enumerate(self.inputs):
            if v.sequence and v.is_ids:
                for n in range(len(self.inputs), p.nodes.shape[0]):
                    if (p.nodes[n, C.KIND] == C.WINDOW
                            and int(p.operands[p.nodes[n, C.ARG0], C.VALUE]) == i
                            and p.tables[p.nodes[n, C.TABLE], C.PADDING] >= 0):
                        return i, int(p.tables[p.nodes[n, C.TABLE], C.PADDING])
        return -1, -1

    @property
    def n_params(self) -> int:
        """Parameters in the flat buffer (embedding tables are kept outside it)."""
        return int(self.params.shape[0])

    @property
    def embeddings(self) -> list:
        """The layers that own embedding tables, in table order."""
        return list(self._table_layers)

    @property
    def window(self):
        """The first embedding layer, or None."""
        return self._table_layers[0] if self._table_layers else None

    @_exclusive
    def compile(self, optimizer, loss, fused: bool = True, metrics=None) -> "Model":
        """Set the optimizer and the loss.

        optimizer : a fastbp.optim.Optimizer (or a name such as "sgd" or "adam")
        loss : "mse", "binary_cross_entropy" or "softmax_cross_entropy" (or a Loss)
        fused : run each step as one compiled call when every layer allows it;
            False forces the per-layer path (for comparisons and debugging).
        metrics : names or :class:`fastbp.metrics.Metric` objects ("accuracy",
            "top_k_accuracy", "f1_macro", "mae", "mse"; see :mod:`fastbp.metrics`),
            computed by ``evaluate`` and on the validation data after every epoch
            (History keys ``val_<name>``).
        """
        from .. import metrics as _metrics
        optimizer = _optim.get(optimizer)
        loss = _losses.get(loss)
        if metrics is None:
            metrics = []
        if isinstance(metrics, (str, _metrics.Metric)):
            metrics = [metrics]
        if not isinstance(metrics, (list, tuple)):
            raise TypeError(f"metrics must be a list of metric names or Metric objects, got "
                            f"{type(metrics).__name__}")
        metrics = [_metrics.get(m) for m in metrics]
        for m in metrics:
            m.check(loss.name, self.n_out)
        names = [m.name for m in metrics]
        if len(set(names)) != len(names):
            raise ValueError(f"metrics lists a metric twice: {names}")
        if loss.code == _losses.SoftmaxCrossEntropy.code and self.n_out < 2:
            raise ValueError(f"softmax_cross_entropy needs at least 2 outputs, the model has "
                             f"{self.n_out}")
        if self.output.sequence and loss.code != _losses.SoftmaxCrossEntropy.code:
            raise ValueError(f"the model outputs a sequence, which takes per-token labels: "
                             f"loss='softmax_cross_entropy' (got {loss.name!r}); for one "
                             f"target per sequence end with return_sequences=False")
        if not isinstance(fused, (bool, np.bool_)):
            raise TypeError(f"fused must be a bool, got {fused!r}")
        self.optimizer, self.loss = optimizer, loss
        self.metrics = [m for m in metrics if m.name != "accuracy"]  # evaluate gives that
        pin_blas()
        self.fused = bool(fused) and self._plan.fusable
        self.optimizer.build(self.n_params, self.dtype)
        self._plan.set_loss(loss.code)
        self._plan.attach_optimizer(self.optimizer, self._table_layers)
        self._driver = Compiled(self._plan) if self.fused else Layerwise(self._plan)
        return self

    def _require_compiled(self):
        if self.optimizer is None or self.loss is None:
            raise ValueError("call model.compile(optimizer, loss) before training or evaluating")

    # -- inputs ------------------------------------------------------------------------
    def _input_label(self, i, name):
        v = self.inputs[i]
        if len(self.inputs) == 1:
            return name
        return f"{name}[{v.name!r}]" if v.name else f"{name}[{i}]"

    def _split_inputs(self, X, name):
        """The user's inputs as a list in ``self.inputs`` order."""
        k = len(self.inputs)
        if isinstance(X, dict):
            names = [v.name for v in self.inputs]
            if None in names:
                raise ValueError(f"{name} is a dict, but not every fb.Input has a name; name "
                                 f"them all or pass a list in inputs order")
            missing = [n for n in names if n not in X]
            extra = [key for key in X if key not in names]
            if missing or extra:
                raise ValueError(f"{name} has keys {sorted(map(str, X))}; the model's inputs "
                                 f"are {names} (missing {missing}, unknown {extra})")
            return [X[n] for n in names]
        if k == 1:
            if isinstance(X, (list, tuple)) and len(X) == 1 and isinstance(X[0], np.ndarray):
                return [X[0]]
            return [X]
        if not isinstance(X, (list, tuple)):
            raise TypeError(f"the model has {k} inputs "
                            f"{[v.name for v in self.inputs]}; {name} must be a list of {k} "
                            f"arrays in that order or a dict by name, got {type(X).__name__}")
        if len(X) != k:
            raise ValueError(f"the model has {k} inputs {[v.name for v in self.inputs]}; "
                             f"{name} has {len(X)} arrays")
        return list(X)

    def _data_inputs(self, X, name="X"):
        """Validated inputs stacked for the engine: (float columns, id columns, rows,
        lengths, steps).  A sequence input of T steps takes T times its width in columns;
        ``lengths`` (rows,) is None without sequences."""
        parts = self._split_inputs(X, name)
        floats, ids, rows, steps = [], [], [], []
        lengths = None
        for i, (v, arr) in enumerate(zip(self.inputs, parts)):
            label = self._input_label(i, name)
            bound = self._vocab_bounds.get(self._plan.value_of(v)) if v.is_ids else None
            if v.sequence:
                padding = self._length_input[1] if i == self._length_input[0] else None
                a, found = check_sequence(label, arr, v.width, v.is_ids,
                                          _I64 if v.is_ids else self.dtype, bound, padding)
                steps.append((label, a.shape[1] // v.width))
                if found is not None:
                    lengths = found
            elif v.is_ids:
                a = check_ids(label, arr, v.width, bound)
            else:
                a = check_features(label, arr, v.width, self.dtype)
            (ids if v.is_ids else floats).append(a)
            rows.append((label, a.shape[0]))
        if len({r for _, r in rows}) != 1:
            raise ValueError(f"inputs must have the same number of rows, got "
                             f"{', '.join(f'{l}: {r}' for l, r in rows)}")
        if len({t for _, t in steps}) > 1:
            raise ValueError(f"sequence inputs must have the same number of steps, got "
                             f"{', '.join(f'{l}: {t}' for l, t in steps)}")
        n = rows[0][1]
        T = steps[0][1] if steps else 1
        if steps and lengths is None:  # no padding ids: every row is T steps long
            lengths = np.full(n, T, dtype=_I64)
        xf = _stack(floats, self.dtype)
        xi = _stack(ids, _I64)
        return xf, xi, n, lengths, T

    def _targets(self, y, n, name="y"):
        return self.loss.targets(y, n, self.n_out, self.dtype, name)

    def _data(self, X, y, name="X", yname="y", sample_weight=None, class_weight=None):
        """The engine's Data bundle of validated inputs, targets and row weights, and the
        row count."""
        xf, xi, n, lengths, T = self._data_inputs(X, name)
        tokens = None
        if self.output.sequence:
            yi, tokens = check_sequence_labels(yname, y, n, T, lengths, self.n_out, name)
            yf = np.zeros((1, 1), dtype=self.dtype)
        else:
            yf, yi = self._targets(y, n, yname)
        w = self._row_weights(yf, yi, n, T, sample_weight, class_weight)
        return self._plan.data(xf, xi, yf, yi, lengths, tokens, T, w), n

    def _row_weights(self, yf, yi, n, T, sample_weight, class_weight):
        """float64 weights of the loss rows (per token for a sequence output), or None:
        sample_weight per row times class_weight looked up by the row's label."""
        if sample_weight is None and class_weight is None:
            return None
        w = np.ones(n) if sample_weight is None else check_sample_weight(
            "sample_weight", sample_weight, n)
        if self.output.sequence:  # a sequence's weight on each of its tokens
            w = np.repeat(w, T)
        if class_weight is not None:
            code = self.loss.code
            if code == _losses.SoftmaxCrossEntropy.code:
                table = check_class_weight("class_weight", class_weight, self.n_out)
                w = w * table[np.maximum(yi, 0)]  # a -1 label carries no loss anyway
            elif code == _losses.BinaryCrossEntropy.code and self.n_out == 1:
                table = check_class_weight("class_weight", class_weight, 2)
                t = yf[:, 0]
                if not np.isin(t, (0, 1)).all():
                    raise ValueError(f"class_weight looks a row's weight up by its 0/1 target; "
                                     f"y holds {t[~np.isin(t, (0, 1))][0]!r}")
                w = w * table[t.astype(np.int64)]
            else:
                raise ValueError(f"class_weight weighs rows by their class label, which needs "
                                 f"loss='softmax_cross_entropy' or binary_cross_entropy with "
                                 f"one output; this model's loss is {self.loss.name!r} with "
                                 f"{self.n_out} outputs (use sample_weight)")
        return np.ascontiguousarray(w, dtype=np.float64)

    def _stream(self, X, y, sample_weight=None, class_weight=None, names=("X", "y"),
                parallel=False):
        """A :class:`~fastbp.model.streaming.Stream` over (X, y) when an input or y is a
        memory-mapped file and the model can take its rows a block at a time (no
        sequences; not distributed or Hogwild, which read the whole arrays), else None."""
        if parallel or self.output.sequence or any(v.sequence for v in self.inputs):
            return None
        parts = self._split_inputs(X, names[0])
        if not file_backed(parts + [y]):
            return None
        return Stream(self, parts, y, sample_weight, class_weight, names)

    def _workspace(self, batch: int, accumulate: int = 1, steps: int = 1) -> None:
        self._plan.workspace(batch, accumulate, steps)

    # -- one step ----------------------------------------------------------------------
    def _seed_stream(self):
        """Key the dropout stream with the current seed (its step count is kept)."""
        if self._plan.stream.seed != self._dropout_seed:
            self._plan.stream = self._plan.stream._replace(seed=int(self._dropout_seed))

    def _raise_on(self, status, loss, epoch=None, step=None):
        if status:
            raise DivergenceError(divergence_message(status, loss, epoch, step), epoch, step)

    @_exclusive
    def train_on_batch(self, x, y, sample_weight=None, class_weight=None) -> float:
        """Exactly one optimizer step on the batch (x, y); returns the batch loss.
        sample_weight, class_weight: as for :meth:`fit`."""
        self._require_compiled()
        data, m = self._data(x, y, "x", "y", sample_weight, class_weight)
        self._workspace(m, steps=data.steps)
        self._seed_stream()
        loss, status = self._driver.step(data, m, self.optimizer.lr)
        self._raise_on(status, loss)
        return float(loss)

    @_exclusive
    def compute_gradients(self, x, y, sample_weight=None, class_weight=None) -> float:
        """Phase one alone: fill ``model.grads`` (and the embedding tables' row gradients)
        with the gradient of the loss of the batch (x, y) in inference mode (no dropout), without
        updating anything; returns the loss.  A non-finite loss or gradient raises
        :class:`DivergenceError` (the gradients are then not those of this batch).
        sample_weight, class_weight: as for :meth:`fit`."""
        self._require_compiled()
        data, m = self._data(x, y, "x", "y", sample_weight, class_weight)
        self._workspace(m, steps=data.steps)
        loss, status = self._driver.step(data, m, 0.0, training=False, do_update=False)
        self._raise_on(status, loss)
        return float(loss)

    @_exclusive
    def apply_gradients(self, lr: float | None = None) -> None:
        """Phase two alone: clip, then update the weights from ``model.grads`` and the
        row gradients the last ``compute_gradients`` left, at rate ``lr`` (None: the
        optimizer's own)."""
        self._require_compiled()
        lr = self.optimizer.lr if lr is None else check_float("lr", lr, low=0.0, low_open=True)
        status, sq = self._driver.status()
        self._raise_on(status, float("nan"))
        self._raise_on(self._driver.update(lr, sq), float("nan"))

    @_exclusive
    def embedding_gradient(self, layer=None) -> np.ndarray:
        """The dense (vocab_size, dim) gradient of an embedding table (the first, unless
        ``layer`` names one) left by the last ``compute_gradients`` (zero rows where the
        batch used no id)."""
        if not self._table_layers:
            raise ValueError("the model has no embedding layer")
        layer = self._table_layers[0] if layer is None else layer
        if layer not in self._table_layers:
            raise ValueError(f"{layer!r} is not an embedding layer of this model")
        t = self._table_layers.index(layer)
        out = np.zeros_like(layer.E)
        if self._plan.work is not None and self._plan.tables[t, C.TRAINABLE]:
            rows, G = self._plan.row_gradients(t)
            out[rows] = G
        return out

    # -- fit -----------------------------------------------------------------------------
    @_exclusive
    def fit(self, X, y, epochs: int = 1, batch_size: int = 32, shuffle: bool = True,
            seed: int | None = None, validation_data=None, schedule: Schedule | None = None,
            verbose: int = 0, callbacks=None, initial_epoch: int | None = None,
            accumulate: int = 1, distributed: bool = False, hogwild: bool = False,
            validation_split: float | None = None, sample_weight=None,
            class_weight: dict | None = None) -> History:
        """Train for ``epochs`` passes over (X, y) in minibatches of ``batch_size`` rows,
        shuffled each epoch when ``shuffle``; ``initial_epoch`` sets the epoch count
        the schedule and the callbacks continue from (default: the epochs trained).

        X : an array (one input), a list of arrays in ``inputs`` order, or a dict by
        input name.  seed fixes the shuffling order and the dropout masks; ``None``
        continues the model's own stream.  schedule sets the learning rate per epoch
        or per optimizer step from the optimizer's ``lr``.  verbose: 0 silent, 1 a
        progress bar per epoch (tqdm), 2 one line per epoch.  callbacks: see
        :mod:`fastbp.callbacks`.  accumulate = k sums the gradients of k consecutive
        minibatches and updates once (one step on a k-times larger batch).
        distributed: synchronous data parallelism over the ranks of ``mpiexec -n R``
        (extra ``fastbp[mpi]``; see :mod:`fastbp.distributed`): each global minibatch
        is split across the ranks, the gradients summed, the same update made on every
        rank; rank 0 alone runs the callbacks and prints.  hogwild: minibatches dealt to
        ``get_num_threads()`` threads that update the shared weights without locks (not
        deterministic; compiled models without accumulation).
        validation_split: the last fraction f of the rows (before shuffling, as Keras
        takes them) held out as validation data; ``validation_data`` overrides it.
        sample_weight : (rows,) weights >= 0, one per row; class_weight : {class label:
        weight} (softmax_cross_entropy, or binary_cross_entropy with one output, by the
        0/1 target), 1 for the classes it leaves out.  As in Keras, each row's loss is
        multiplied by its weight (the product of the two) and the batch's sum divided
        by its rows (by its labelled tokens for a sequence output, where a sequence's
        sample weight applies to each of its tokens and class_weight per token); the
        validation loss stays unweighted.
        Returns a :class:`History`.
        """
        self._require_compiled()
        if validation_split is not None:
            X, y, held, sample_weight = self._hold_out(X, y, validation_split, sample_weight)
            if validation_data is None:
                validation_data = held
            else:
                warnings.warn("fit: validation_data overrides validation_split (as in Keras)",
                              RuntimeWarning, stacklevel=3)
        stream = self._stream(X, y, sample_weight, class_weight,
                              parallel=any(isinstance(f, (bool, np.bool_)) and f
                                           for f in (distributed, hogwild)))
        if stream is not None:
            stream.check()
            data, n = stream, stream.n
        else:
            data, n = self._data(X, y, "X", "y", sample_weight, class_weight)
        epochs = check_int("epochs", epochs, 0)
        batch_size = check_int("batch_size", batch_size, 1)
        accumulate = check_int("accumulate", accumulate, 1)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be a bool, got {shuffle!r}")
        if schedule is not None and not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a fastbp.schedules.Schedule, got {schedule!r}")
        if verbose not in (0, 1, 2) or isinstance(verbose, bool):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (X_val, y_val)")
            vdata = self._stream(validation_data[0], validation_data[1],
                                 names=("validation X", "validation y"))
            if vdata is not None:
                vdata.check()
                nv = vdata.n
            else:
                vdata, nv = self._data(validation_data[0], validation_data[1],
                                       "validation X", "validation y")
        for name, flag in (("distributed", distributed), ("hogwild", hogwild)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        if distributed and hogwild:
            raise ValueError("fit: distributed=True and hogwild=True exclude each other (one "
                             "is synchronous over ranks, the other lock-free over threads)")
        if hogwild and (accumulate != 1 or isinstance(self._driver, Layerwise)):
            kind = "per-layer" if isinstance(self._driver, Layerwise) else "compiled"
            raise ValueError(f"fit(hogwild=True) runs the compiled engine without "
                             f"accumulation; got accumulate={accumulate} and a {kind} model")
        callbacks = list(callbacks or [])
        for cb in callbacks:
            if not all(callable(getattr(cb, name, None)) for name in
                       ("set_model", "on_train_begin", "on_epoch_end", "on_train_end")):
                raise TypeError(f"callback {cb!r} must provide set_model, on_train_begin, "
                                f"on_epoch_end and on_train_end (subclass "
                                f"fastbp.callbacks.Callback)")
        if initial_epoch is not None:
            self.epoch = check_int("initial_epoch", initial_epoch, 0)
        if seed is not None:
            seed = check_seed("seed", seed)
            self._shuffle_rng = np.random.default_rng([seed, 1])
            self._dropout_seed = seed
        self._seed_stream()
        batch_size = min(batch_size, n)
        n_batches = -(-n // batch_size)
        accumulate = min(accumulate, n_batches)
        steps = data.steps if validation_data is None else max(data.steps, vdata.steps)
        self._workspace(batch_size, accumulate, steps)
        driver, session = self._driver, None
        if distributed:
            from .. import distributed as _dist
            fit_args = {"epochs": epochs, "batch_size": batch_size, "accumulate": accumulate,
                        "shuffle": bool(shuffle), "seed": seed, "initial_epoch": initial_epoch,
                        "schedule": repr(schedule), "validation": validation_data is not None,
                        "weighted": int(data.w.shape[0]) > 0}
            session = _dist.begin(self, data, n, batch_size, fit_args)
            if session is not None:
                self._seed_stream()
                driver = _dist.DataParallel(self._driver, session)
                if session.rank != 0:  # rank 0 alone runs the callbacks and prints
                    callbacks, verbose = None, 0
        elif hogwild:
            from .. import distributed as _dist
            driver = _dist.Hogwild(self._driver, get_num_threads())
        sizes = np.full(n_batches, batch_size, dtype=np.float64)
        sizes[-1] = n - batch_size * (n_batches - 1)
        history = History()
        self.stop_training = False
        callbacks = list(callbacks or [])
        for cb in callbacks:
            cb.set_model(self)
            cb.on_train_begin()
        # every rank of a distributed fit runs an epoch per call (rank 0's stop_training
        # is broadcast after each)
        per_epoch = (bool(callbacks) or validation_data is not None or verbose != 0
                     or session is not None)
        held, self._driver = self._driver, driver
        try:
            self._fit_loop(data, n, epochs, batch_size, accumulate, shuffle, schedule,
                           verbose, callbacks, validation_data and (vdata, nv), session,
                           n_batches, sizes, per_epoch, history)
        finally:
            self._driver = held
        for cb in callbacks:
            cb.on_train_end()
        return history

    def _fit_loop(self, data, n, epochs, batch_size, accumulate, shuffle, schedule, verbose,
                  callbacks, validation, session, n_batches, sizes, per_epoch, history):
        """fit's epochs (arguments checked, workspace sized, callbacks begun)."""
        validation_data = validation
        streamed = isinstance(data, Stream)
        if validation:
            vdata, nv = validation
        # Compiled calls of about FIRST_CALL_STEPS minibatches first, then of as many as
        # take CALL_SECONDS: whole epochs per call without per-epoch hooks, an epoch cut
        # into calls when it is longer, so that Ctrl-C (looked at between calls) stops a
        # fit soon after the call in progress.  (Under mpiexec Ctrl-C ends the job.)
        cap = max(1, (1 << 22) // n)
        per_call = FIRST_CALL_STEPS  # minibatches per compiled call, then as measured
        guard = _deferred_interrupt() if session is None else contextlib.nullcontext(
            lambda: False)
        with guard as interrupted:
            epoch = 0
            while epoch < epochs and not self.stop_training:
                partial = self._take_partial(n, batch_size, accumulate)
                whole = max(1, min(cap, per_call // n_batches))
                count = (1 if per_epoch or partial is not None or streamed
                         else min(whole, epochs - epoch))
                if per_epoch:
                    for cb in callbacks:
                        if hasattr(cb, "on_epoch_begin"):
                            cb.on_epoch_begin(self.epoch)  # counted over every fit
                t0 = time.perf_counter()
                start = 0 if partial is None else partial["next"]
                lrs = self._learning_rates(schedule, self.epoch, count, n_batches, accumulate,
                                           start // accumulate)
                losses = np.zeros((count, n_batches))
                if partial is not None:
                    perms = partial["perm"][None, :]
                    losses[0, :start] = partial["losses"][:start]
                else:
                    perms = self._permutations(count, n, shuffle)
                chunked = count == 1 and (start > 0 or verbose == 1 or per_call < n_batches
                                          or streamed)
                if chunked:
                    # whole accumulation groups per call, so that each group updates once
                    size = -(-n_batches // 20) if verbose == 1 else per_call
                    if streamed:  # the minibatches of one gathered block of rows
                        size = min(size, max(1, data.block_rows // batch_size))
                    size = accumulate * max(1, -(-min(size, per_call) // accumulate))
                    bar = None
                    if verbose == 1:
                        from tqdm.auto import tqdm
                        bar = tqdm(total=n_batches, initial=start, unit="batch", leave=True,
                                   desc=f"epoch {epoch + 1}/{epochs}", dynamic_ncols=True)
                    try:
                        done, step, status, stopped, per_step = self._run_epoch_in_chunks(
                            data, perms, batch_size, accumulate, lrs, losses, start, size,
                            interrupted, bar, sizes)
                    finally:
                        if bar is not None:
                            bar.close()
                    if stopped is not None:
                        self._keep_partial(perms[0], stopped, losses[0], n, batch_size,
                                           accumulate)
                        raise KeyboardInterrupt(
                            f"fit interrupted in epoch {self.epoch + 1} before minibatch "
                            f"{stopped} of {n_batches} (optimizer step "
                            f"{int(self.optimizer.step[0])}); the next fit, or a save and a "
                            f"load, continues that epoch there")
                else:
                    done, step, status = self._run_epochs(data, perms, batch_size, accumulate,
                                                          lrs, losses)
                    per_step = (time.perf_counter() - t0) / (count * n_batches)
                elapsed = (time.perf_counter() - t0) / count  # training time, per epoch
                per_call = max(accumulate, int(CALL_SECONDS / max(per_step, 1e-9)))
                # a row sum is taken the same way whatever the number of rows
                if self.output.sequence:  # each minibatch weighs its tokens
                    weights = _batch_tokens(data.tokens, perms[:done], batch_size)
                    epoch_losses = ((losses[:done] * weights).sum(axis=1)
                                    / np.maximum(weights.sum(axis=1), 1)).tolist()
                else:
                    epoch_losses = ((losses[:done] * sizes).sum(axis=1) / n).tolist()
                last_lrs = lrs[:done, -1].tolist()
                for e in range(done):
                    self.epoch += 1
                    logs = {"loss": epoch_losses[e], "lr": last_lrs[e]}
                    if validation_data is not None:
                        for k, v in self._evaluate_data(vdata, nv, 1024).items():
                            logs["val_" + k] = v
                    logs["time"] = elapsed
                    history.append(self.epoch - 1, logs)
                    if verbose == 2:
                        shown = "  ".join(f"{k}={v:.4g}" for k, v in logs.items() if k != "time")
                        print(f"epoch {self.epoch} ({epoch + e + 1}/{epochs})  {shown}  "
                              f"({logs['time'] * 1e3:.1f} ms)", flush=True)
                    for cb in callbacks:
                        cb.on_epoch_end(self.epoch - 1, logs)
                if session is not None:  # rank 0's decision, for every rank
                    flag = np.array([1 if self.stop_training else 0], dtype=np.int64)
                    session.bcast(flag, "the broadcast of stop_training")
                    self.stop_training = bool(flag[0])
                if status:
                    e = epoch + done
                    self._raise_on(status, losses[done, step], e, step)
                epoch += count
                if interrupted():
                    raise KeyboardInterrupt(f"fit interrupted after epoch {self.epoch} (optimizer "
                                            f"step {int(self.optimizer.step[0])}); the model is "
                                            f"as those epochs left it")

    def _hold_out(self, X, y, fraction, sample_weight=None):
        """(X, y) of the first rows, (X, y) of the last ``fraction`` of them, and the
        first rows' sample weights."""
        f = check_float("validation_split", fraction, low=0.0, high=1.0, low_open=True,
                        high_open=True)
        parts = [np.asarray(a) for a in self._split_inputs(X, "X")]
        y = np.asarray(y)
        n = len(y)
        split_at = int(n * (1.0 - f))
        if not 0 < split_at < n:
            raise ValueError(f"validation_split={f} of {n} rows leaves {split_at} for training "
                             f"and {n - split_at} for validation; both need at least one")
        for i, a in enumerate(parts):
            if a.ndim == 0 or a.shape[0] != n:
                raise ValueError(f"{self._input_label(i, 'X')} has "
                                 f"{a.shape[0] if a.ndim else 'no'} rows; y has {n}")
        if sample_weight is not None:
            sample_weight = check_sample_weight("sample_weight", sample_weight, n)[:split_at]
        return ([a[:split_at] for a in parts], y[:split_at],
                ([a[split_at:] for a in parts], y[split_at:]), sample_weight)

    def _permutations(self, count, n, shuffle):
        """(count, n) sample orders, one row an epoch.  ``permuted`` shuffles the rows
        one after another, drawing what ``count`` calls of ``permutation(n)`` would."""
        order = np.tile(np.arange(n, dtype=np.int64), (count, 1))
        return self._shuffle_rng.permuted(order, axis=1) if shuffle else order

    def _learning_rates(self, schedule, epoch, count, n_batches, accumulate=1, done=0):
        """(count, n_batches) learning rates of the minibatches of epochs epoch, epoch + 1,
        ...; with accumulate = k, a minibatch gets the rate of the update its group of k
        ends in (the only one read).  done: updates of the first epoch already made (an
        interrupted epoch continued)."""
        base = self.optimizer.lr
        if schedule is None:
            return np.full((count, n_batches), base)
        if schedule.per == "epoch":
            per_epoch = np.array([checked_rate(schedule, epoch + e, base) for e in range(count)])
            return np.repeat(per_epoch[:, None], n_batches, axis=1)
        t0 = int(self.optimizer.step[0]) - done
        updates = -(-n_batches // accumulate)  # per epoch
        steps = (t0 + np.arange(count)[:, None] * updates
                 + np.arange(n_batches)[None, :] // accumulate)
        rates = {t: checked_rate(schedule, t, base) for t in np.unique(steps).tolist()}
        return np.vectorize(rates.__getitem__, otypes=[np.float64])(steps)

    def _run_epoch_in_chunks(self, data, perm, batch_size, accumulate, lrs, losses, start,
                             chunk, interrupted, bar=None, sizes=None):
        """One epoch (perm: (1, n)) from minibatch ``start`` on, ``chunk`` minibatches (a
        multiple of ``accumulate``) per compiled call, stopping early when ``interrupted()``.
        Returns (epochs done: 0 or 1, failing step, status, the minibatch it stopped
        before or None, seconds per minibatch)."""
        n_batches = losses.shape[1]
        n = perm.shape[1]
        t0, ran = time.perf_counter(), 0
        for s0 in range(start, n_batches, chunk):
            if s0 > start and interrupted():
                return 0, 0, 0, s0, (time.perf_counter() - t0) / max(ran, 1)
            s1 = min(n_batches, s0 + chunk)
            part = np.ascontiguousarray(perm[:, s0 * batch_size:min(n, s1 * batch_size)])
            if isinstance(data, Stream):  # the block's rows gathered in the epoch's order
                block = data.data(part[0])
                part = np.arange(part.shape[1], dtype=np.int64)[None, :]
            else:
                block = data
            done, step, status = self._run_epochs(block, part, batch_size, accumulate,
                                                  lrs[:, s0:s1], losses[:, s0:s1])
            ran += s1 - s0
            if status:
                return 0, s0 + step, status, None, 0.0
            if bar is not None:
                bar.update(s1 - s0)
                seen = sizes[:s1]
                bar.set_postfix(loss=f"{np.dot(losses[0, :s1], seen) / seen.sum():.4g}")
        return 1, 0, 0, None, (time.perf_counter() - t0) / max(ran, 1)

    def _keep_partial(self, perm, next_step, losses, n, batch_size, accumulate):
        """Remember an epoch stopped at minibatch ``next_step`` (Ctrl-C), so that the next
        fit (or a save and a load) continues it where it stopped."""
        self._partial = {"perm": perm.copy(), "next": int(next_step), "losses": losses.copy(),
                         "n": int(n), "batch_size": int(batch_size),
                         "accumulate": int(accumulate)}

    def _take_partial(self, n, batch_size, accumulate):
        """The interrupted epoch to continue, if it was over the same rows and minibatches."""
        partial, self._partial = self._partial, None
        if partial is None:
            return None
        if (partial["n"], partial["batch_size"], partial["accumulate"]) != (n, batch_size,
                                                                            accumulate):
            warnings.warn(f"fit: the epoch interrupted at minibatch {partial['next']} was over "
                          f"{partial['n']} rows in minibatches of {partial['batch_size']} "
                          f"(accumulate {partial['accumulate']}); this fit's differ, so it "
                          f"starts a new epoch", RuntimeWarning, stacklevel=3)
            return None
        return partial

    def _run_epochs(self, data, perms, batch_size, accumulate, lrs, losses):
        """Run len(perms) epochs; returns (epochs done, failing step, status).  ``losses``
        may be a column block of a larger array: the engine writes a contiguous copy."""
        out = losses if losses.flags.c_contiguous else np.ascontiguousarray(losses)
        done, step, status = self._driver.epochs(data, perms, batch_size, accumulate,
                                                 np.ascontiguousarray(lrs), out)
        if out is not losses:
            losses[...] = out
        return int(done), int(step), int(status)

    # -- inference ---------------------------------------------------------------------------
    @_exclusive
    def predict(self, X, batch_size: int = 1024) -> np.ndarray:
        """The output for every row of X (logits for the logit losses), computed
        ``batch_size`` rows at a time; for a sequence output (rows, T, width), zero at
        the padded steps."""
        return self._predict(X, batch_size)[0]

    @_exclusive
    def predict_proba(self, X, batch_size: int = 1024) -> np.ndarray:
        """Class probabilities of the rows of X (``batch_size`` at a time): the softmax of
        the logits (softmax_cross_entropy) or their
        sigmoid (binary_cross_entropy), in the model's dtype; for a sequence output
        (rows, T, classes), zero at the padded steps."""
        self._require_compiled()
        name = self.loss.name
        if name not in ("softmax_cross_entropy", "binary_cross_entropy"):
            raise ValueError(f"predict_proba needs a model trained with softmax_cross_entropy "
                             f"or binary_cross_entropy (its outputs are logits); this one's "
                             f"loss is {name!r}, whose outputs predict gives as they are")
        logits, lengths = self._predict(X, batch_size)
        z = logits.astype(np.float64)
        if name == "softmax_cross_entropy":
            z -= z.max(axis=-1, keepdims=True)
            np.exp(z, out=z)
            z /= z.sum(axis=-1, keepdims=True)
        else:
            z = 0.5 * (1.0 + np.tanh(0.5 * z))  # the sigmoid, without overflow
        if self.output.sequence:
            z[np.arange(z.shape[1])[None, :] >= lengths[:, None]] = 0
        return z.astype(self.dtype)

    def _predict(self, X, batch_size):
        """(predict's output, the rows' lengths or None)."""
        if not self.output.sequence and not any(v.sequence for v in self.inputs):
            parts = self._split_inputs(X, "X")
            if file_backed(parts):  # a block of rows at a time (the same minibatches)
                stream = Stream(self, parts, np.zeros(0))
                batch_size = min(check_int("batch_size", batch_size, 1), max(stream.n, 1))
                blocks = stream.blocks(batch_size)
                if not blocks:
                    self._data_inputs([p[:0] for p in parts], "X")  # refuses, as for arrays
                out = np.zeros((stream.n, self.n_out), dtype=self.dtype)
                for a, b in blocks:
                    rows = [gather(p, slice(a, b), m) for p, m in zip(parts, stream.maps)]
                    out[a:b] = self._predict(rows, batch_size)[0]
                return out, None
        xf, xi, n, lengths, T = self._data_inputs(X, "X")
        batch_size = min(check_int("batch_size", batch_size, 1), n)
        self._workspace(batch_size, steps=T)
        steps = T if self.output.sequence else 1
        out = np.zeros((n * steps, self.n_out), dtype=self.dtype)
        dummy = np.zeros((1, 1), dtype=self.dtype)
        driver = self._driver or _inference_driver(self)
        driver.predict(self._plan.data(xf, xi, dummy, np.zeros(1, dtype=_I64), lengths, None,
                                       T), out, batch_size)
        if self.output.sequence:
            return out.reshape(n, T, self.n_out), lengths
        return out, lengths

    @_exclusive
    def evaluate(self, X, y, batch_size: int = 1024) -> dict:
        """{"loss": mean loss, "accuracy": ...} of the model on (X, y), in batches of
        ``batch_size`` rows (accuracy for the classification losses)."""
        self._require_compiled()
        data = self._stream(X, y)
        if data is not None:
            data.check()
            n = data.n
        else:
            data, n = self._data(X, y)
        batch_size = check_int("batch_size", batch_size, 1)
        return self._evaluate_data(data, n, batch_size)

    def _evaluate_data(self, data, n, batch_size):
        if isinstance(data, Stream):
            return self._evaluate_stream(data, batch_size)
        batch_size = min(batch_size, n)
        self._workspace(batch_size, steps=data.steps)
        total, correct = self._driver.evaluate(data, n, batch_size)
        count = self._loss_count(n)
        if self.output.sequence:  # per token that carries a label
            count = max(1, int(data.tokens.sum()))
        result = self._loss_and_accuracy(total, correct, count)
        if getattr(self, "metrics", None):
            result.update(self._metric_values(data, n, batch_size))
        return result

    def _loss_count(self, n):
        """What evaluate's loss sum over n rows is divided by: the rows for softmax
        cross-entropy, the rows times the outputs for the elementwise losses."""
        return n if self.loss.code == _losses.SoftmaxCrossEntropy.code else n * self.n_out

    def _loss_and_accuracy(self, total, correct, count):
        """evaluate's {"loss", "accuracy"} from the sums over ``count`` loss rows."""
        result = {"loss": float(total / count)}
        if self.loss.classification:
            result["accuracy"] = float(correct / count)
        return result

    def _evaluate_stream(self, stream, batch_size):
        """evaluate's dict over a Stream: the loss and accuracy sums of its blocks, the
        metrics over their outputs (non-sequence models only, as streams are)."""
        batch_size = min(batch_size, stream.n)
        self._workspace(batch_size)
        total = correct = 0.0
        outs, yfs, yis = [], [], []
        for a, b in stream.blocks(batch_size):
            data = stream.data(slice(a, b))
            t, c = self._driver.evaluate(data, b - a, batch_size)
            total, correct = total + t, correct + c
            if getattr(self, "metrics", None):
                out = np.zeros((b - a, self.n_out), dtype=self.dtype)
                self._driver.predict(data, out, batch_size)
                outs.append(out)
                yfs.append(data.yf)
                yis.append(data.yi)
        result = self._loss_and_accuracy(total, correct, self._loss_count(stream.n))
        if outs:
            out, yf, yi = np.concatenate(outs), np.concatenate(yfs), np.concatenate(yis)
            result.update({m.name: float(m.compute(out, yf, yi, self.loss.name))
                           for m in self.metrics})
        return result

    def _metric_values(self, data, n, batch_size):
        """{name: value} of the compiled metrics over the n rows of ``data``."""
        T = data.steps
        rows = n * T if self.output.sequence else n
        out = np.zeros((rows, self.n_out), dtype=self.dtype)
        self._driver.predict(data, out, batch_size)
        yf, yi = data.yf, data.yi
        if self.output.sequence:  # the labelled tokens: yi is -1 elsewhere
            inside = (np.arange(T)[None, :] < data.lengths[:, None]).reshape(-1)
            yi = np.where(inside, yi, -1)
        return {m.name: float(m.compute(out, yf, yi, self.loss.name)) for m in self.metrics}

    # -- persistence -------------------------------------------------------------------------
    def get_config(self) -> dict:
        """The architecture as JSON-ready data (layers, inputs and the calls between)."""
        values = {id(v): i for i, v in enumerate(self.inputs)}
        calls = []
        for call in self._plan.calls:
            values[id(call.output)] = len(values)
            calls.append({"layer": self.layers.index(call.layer),
                          "inputs": [values[id(v)] for v in call.inputs]})
        return {"class": "Model", "dtype": self.dtype.name, "seed": self.seed,
                "checkpoint_every": self.checkpoint_every,
                "inputs": [{"width": v.width, "dtype": "int64" if v.is_ids else "float",
                            "name": v.name, **({"sequence": True} if v.sequence else {})}
                           for v in self.inputs],
                "layers": [{"class": type(l).__name__, "config": l.get_config()}
                           for l in self.layers],
                "calls": calls, "output": values[id(self.output)]}

    @_exclusive
    def save(self, path, metadata=None) -> None:
        """Save architecture, weights and optimizer state, atomically (see
        :func:`fastbp.load`): a ``.fbp`` checkpoint, or with a path ending in
        ``.safetensors`` a safetensors file whose tensors are the layers' weights by
        name (``layers.<index>.W``, ``layers.<index>.E``) and the training state, the
        config in its metadata.  ``metadata``: a JSON-ready document (a tagger's
        vocabularies and tag set, say) kept with the model; ``fb.load`` gives it back as
        ``model.metadata``.  None keeps the model's own ``metadata``."""
        from .persist import save_model
        save_model(self, path, metadata)

    @_exclusive
    def export_onnx(self, path, opset: int = 17) -> None:
        """Write the model's predict as an ONNX graph of opset ``opset`` to ``path``
        (extra ``fastbp[onnx]``; see :func:`fastbp.interop.export_onnx`)."""
        from ..interop import export_onnx
        export_onnx(self, path, opset)

    @_exclusive
    def copy(self) -> "Model":
        """An independent model: the same architecture, weights, optimizer state and
        training counters, in buffers (and layer objects) of its own, as a save and a
        load would give (a user's own layer classes included)."""
        from .persist import copy_model
        return copy_model(self)

    def __deepcopy__(self, memo):
        return self.copy()

    def __copy__(self):
        # a shallow copy would share the buffers and the layers: give a whole one
        return self.copy()

    def __reduce_ex__(self, protocol):
        raise TypeError(f"a fastbp {type(self).__name__} cannot be pickled (its layers are "
                        f"views of its buffers); use model.save(path) and fastbp.load(path), "
                        f"or model.copy() / copy.deepcopy(model) for a copy in memory")

    def summary(self) -> str:
        """The layers, their widths and parameter counts, one line each."""
        path = "fused engine" if self._plan.fusable else "per-layer path"
        lines = [f"{type(self).__name__} ({self.dtype.name}, {self.n_params} parameters in the "
                 f"flat buffer, {path})"]
        for call in self._plan.calls:
            widths = ", ".join(str(v.width) for v in call.inputs)
            n = call.layer.n_params if call is call.layer._calls[0] else 0
            shared = "" if call is call.layer._calls[0] else " (shared)"
            lines.append(f"  {call.layer!r}: {widths} -> {call.output.width}, {n} "
                         f"parameters{shared}")
        return "\n".join(lines)

    def __repr__(self):
        names = [v.name for v in self.inputs]
        return (f"Model(inputs={names}, {len(self.layers)} layers, dtype={self.dtype.name!r}, "
                f"seed={self.seed})")


#: Minibatches in the first compiled call of a fit, and the seconds the later calls aim
#: at (whole epochs per call, or an epoch cut into calls; Ctrl-C is looked at between).
FIRST_CALL_STEPS = 1024
CALL_SECONDS = 0.25


@contextlib.contextmanager
def _deferred_interrupt():
    """Hold SIGINT back while fit runs a compiled call and keeps its books: yields a
    function telling whether one came.  Only in the main thread, and only while
    Python's own handler is installed (a program's own handler is left alone)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield lambda: False
        return
    came = []
    signal.signal(signal.SIGINT, lambda signum, frame: came.append(signum))
    try:
        yield lambda: bool(came)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _inference_driver(model):
    """A driver for predict before compile (no optimizer or loss needed)."""
    return Compiled(model._plan) if model._plan.fusable else Layerwise(model._plan)


def _batch_tokens(tokens, perms, batch_size):
    """(epochs, minibatches) the labelled tokens of each minibatch of each order."""
    n = perms.shape[1]
    starts = np.arange(0, n, batch_size)
    return np.add.reduceat(tokens[perms], starts, axis=1).astype(np.float64)


def _stack(parts, dtype):
    if not parts:
        return np.zeros((1, 1), dtype=dtype)
    if len(parts) == 1:
        return parts[0]
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=dtype)
