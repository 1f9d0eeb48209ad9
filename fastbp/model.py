"""Sequential models: build, compile, fit, evaluate, predict.

Every parameter of a model lives in one flat buffer (``model.params``) and every
gradient in another (``model.grads``); layers hold views into them.  When every
layer is one the engine knows (Dense, Dropout), a training step is a single
compiled call (:mod:`fastbp.kernels.engine`) and an epoch is another; otherwise
the model takes the per-layer path, calling each layer from Python with the
same kernels, so both paths give the same numbers.
"""
from __future__ import annotations

import math
import time

import numpy as np

from . import losses as _losses
from . import optim as _optim
from ._config import NARROW
from ._validation import check_dtype, check_features, check_int
from .kernels import engine as _engine
from .kernels.losses import loss_and_grad, loss_sum_and_correct
from .kernels.optim import apply_update, clip_scale, squared_norm
from .layers.base import Layer
from .schedules import Schedule
from .threads import parallel_enabled


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss or gradient.  The model keeps the weights
    and optimizer state of the last finite step."""

    def __init__(self, message: str, epoch: int | None = None, step: int | None = None):
        super().__init__(message)
        self.epoch = epoch
        self.step = step


class History:
    """Per-epoch logs of :meth:`Sequential.fit`: ``history["loss"][e]`` and so on."""

    def __init__(self):
        self.epoch: list[int] = []
        self.history: dict[str, list[float]] = {}

    def append(self, epoch: int, logs: dict) -> None:
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(float(v))

    def __getitem__(self, key):
        return self.history[key]

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


class Sequential:
    """A stack of layers trained as one network.

    Parameters
    ----------
    layers : list of Layer
        The first layer that has a fixed input width (``n_in``) sets the model's input width.
    dtype : {"float32", "float64"}
        The dtype of every parameter, activation and gradient.
    seed : int
        Fixes the initial weights (and the dropout stream when ``fit`` gets no seed).
    """

    def __init__(self, layers: list, dtype: str = "float32", seed: int = 0):
        if not isinstance(layers, (list, tuple)) or len(layers) == 0:
            raise ValueError(f"Sequential needs a non-empty list of layers, got {layers!r}")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {i} is a {type(layer).__name__}; every layer must be a "
                                f"fastbp.layers.Layer")
        if len({id(l) for l in layers}) != len(layers):
            raise ValueError("the same layer object appears twice in the list")
        self.dtype = check_dtype(dtype)
        self.seed = check_int("seed", seed, 0)
        self.layers = list(layers)
        self.n_in = self._input_width()
        rng = np.random.default_rng(self.seed)

        widths, shapes, width = [], [], self.n_in
        for i, layer in enumerate(self.layers):
            layer.index = i
            layer.input_dim = width
            shapes.append(layer.param_shapes(width))
            width = layer.output_dim(width)
            widths.append(width)
        self.widths = widths
        self.n_out = widths[-1]
        sizes = [int(np.prod(s)) for d in shapes for s in d.values()]
        self.params = np.zeros(sum(sizes), dtype=self.dtype)
        self.grads = np.zeros(sum(sizes), dtype=self.dtype)
        self._offsets: list[dict[str, int]] = []
        off, width = 0, self.n_in
        for layer, layer_shapes in zip(self.layers, shapes):
            values = layer.build(width, rng, self.dtype)
            pv, gv, offs = {}, {}, {}
            for name, shape in layer_shapes.items():
                n = int(np.prod(shape))
                pv[name] = self.params[off:off + n].reshape(shape)
                gv[name] = self.grads[off:off + n].reshape(shape)
                pv[name][...] = values[name]
                offs[name] = off
                off += n
            layer.bind(pv, gv)
            self._offsets.append(offs)
            width = layer.output_dim(width)
        first = [i for i, l in enumerate(self.layers) if l.params]
        self._first_param_layer = first[0] if first else len(self.layers)
        for i, layer in enumerate(self.layers):
            if hasattr(layer, "need_input_grad"):
                layer.need_input_grad = i > self._first_param_layer
        self._table, self._ftable = self._plan()
        self.optimizer: _optim.Optimizer | None = None
        self.loss: _losses.Loss | None = None
        self.fused = False
        self._capacity = 0
        narrow = [l.n_in * l.n_out for l in self.layers
                  if l.kind == _engine.DENSE and l.n_out < NARROW]
        self._scratch = np.empty(max(narrow + [1]), dtype=self.dtype)
        self._rng_step = np.zeros(1, dtype=np.int64)
        self._dropout_seed = self.seed
        self._shuffle_rng = np.random.default_rng([self.seed, 1])
        self.stop_training = False

    # -- construction -------------------------------------------------------------
    def _input_width(self) -> int:
        for layer in self.layers:
            n_in = getattr(layer, "n_in", None)
            if n_in is not None:
                return int(n_in)
        raise ValueError("no layer fixes the input width: the first Dense layer's n_in does")

    def _plan(self):
        """The engine's layer tables, or (None, None) when a layer is unknown to it."""
        if any(layer.kind is None for layer in self.layers):
            return None, None
        table = np.zeros((len(self.layers), 6), dtype=np.int64)
        ftable = np.zeros((len(self.layers), 2), dtype=np.float64)
        width = self.n_in
        for i, layer in enumerate(self.layers):
            out = self.widths[i]
            table[i, _engine.KIND] = layer.kind
            table[i, _engine.N_IN] = width
            table[i, _engine.N_OUT] = out
            if layer.kind == _engine.DENSE:
                table[i, _engine.W_OFF] = self._offsets[i]["W"]
                table[i, _engine.B_OFF] = self._offsets[i]["b"]
                table[i, _engine.ACT] = layer.act_code
                ftable[i, _engine.SLOPE] = layer.slope
            else:
                ftable[i, _engine.P] = layer.p
            width = out
        return table, ftable

    @property
    def n_params(self) -> int:
        return int(self.params.shape[0])

    def compile(self, optimizer, loss, fused: bool = True) -> "Sequential":
        """Set the optimizer and the loss.

        optimizer : a fastbp.optim.Optimizer (or a name: "sgd", "adam", "adamw")
        loss : "mse", "binary_cross_entropy" or "softmax_cross_entropy" (or a Loss)
        fused : run each step as one compiled call when every layer allows it;
            False forces the per-layer path (for comparisons and debugging).
        """
        self.optimizer = _optim.get(optimizer)
        self.loss = _losses.get(loss)
        if self.loss.code == _losses.SoftmaxCrossEntropy.code and self.n_out < 2:
            raise ValueError(f"softmax_cross_entropy needs at least 2 outputs, the model has "
                             f"{self.n_out}")
        if not isinstance(fused, (bool, np.bool_)):
            raise TypeError(f"fused must be a bool, got {fused!r}")
        self.fused = bool(fused) and self._table is not None
        self.optimizer.build(self.n_params, self.dtype)
        return self

    def _require_compiled(self):
        if self.optimizer is None or self.loss is None:
            raise ValueError("call model.compile(optimizer, loss) before training or evaluating")

    # -- workspaces ------------------------------------------------------------------
    def _workspace(self, batch: int) -> None:
        """Allocate the step's buffers for batches of up to ``batch`` rows (once)."""
        if batch <= self._capacity:
            return
        widest = max([self.n_in] + self.widths)
        self._acts = np.empty(batch * sum(self.widths), dtype=self.dtype)
        self._gbuf = np.empty(2 * batch * widest, dtype=self.dtype)
        self._row_loss = np.empty(batch, dtype=np.float64)
        self._xb = np.empty((batch, self.n_in), dtype=self.dtype)
        self._ybf = np.empty((batch, self.n_out), dtype=self.dtype)
        self._ybi = np.empty(batch, dtype=np.int64)
        self._capacity = batch

    def _targets(self, y, n, name="y"):
        return self.loss.targets(y, n, self.n_out, self.dtype, name)

    # -- one step ----------------------------------------------------------------------
    def _step(self, x, yf, yi, lr, training=True, update=True):
        """One step on converted arrays; returns (loss, status) as the engine does."""
        opt = self.optimizer
        if self.fused:
            return _engine.train_step(
                self._table, self._ftable, self.params, self.grads, x, yf, yi, self._acts,
                self._gbuf, self._scratch, self._row_loss, self.loss.code, opt.code, opt.hyperparams(),
                opt.state, opt.step, self._rng_step, lr, opt.clip_value, self._dropout_seed,
                training, update, parallel_enabled())
        return self._layers_step(x, yf, yi, lr, training, update)

    def _forward_layers(self, x, training):
        for layer in self.layers:
            if hasattr(layer, "set_step"):
                layer.set_step(self._dropout_seed, int(self._rng_step[0]))
        h = x
        for layer in self.layers:
            h = layer.forward(h, training)
            if not isinstance(h, np.ndarray) or h.dtype != self.dtype or h.ndim != 2:
                raise TypeError(f"layer {layer.index} ({type(layer).__name__}) returned "
                                f"{type(h).__name__} {getattr(h, 'dtype', '')}; layers must "
                                f"return 2-d {self.dtype} arrays")
        return np.ascontiguousarray(h)

    def _layers_step(self, x, yf, yi, lr, training, update):
        par = parallel_enabled()
        m = x.shape[0]
        out = self._forward_layers(x, training)
        g = self._gbuf[:m * self.n_out].reshape(m, self.n_out)
        loss = loss_and_grad(self.loss.code, out, yf, yi, g, self._row_loss, par)
        if not math.isfinite(loss):
            return loss, 1
        for layer in reversed(self.layers[self._first_param_layer:]):
            g = np.ascontiguousarray(layer.backward(g))
        sq = squared_norm(self.grads, par)
        if not math.isfinite(sq):
            return loss, 2
        if training:
            self._rng_step[0] += 1
        if update:
            opt = self.optimizer
            opt.step[0] += 1
            apply_update(opt.code, self.params, self.grads, opt.state, opt.hyperparams(), lr,
                         int(opt.step[0]), clip_scale(sq, opt.clip_value), par)
        return loss, 0

    def train_on_batch(self, x, y) -> float:
        """Exactly one optimizer step on the batch (x, y); returns the batch loss."""
        self._require_compiled()
        x = check_features("x", x, self.n_in, self.dtype)
        yf, yi = self._targets(y, x.shape[0])
        self._workspace(x.shape[0])
        loss, status = self._step(x, yf, yi, self.optimizer.lr)
        if status:
            raise DivergenceError(_divergence_message(status, loss, None, None))
        return float(loss)

    def compute_gradients(self, x, y) -> float:
        """Fill ``model.grads`` with the gradient of the batch loss (inference mode: no
        dropout) without updating anything; returns the loss."""
        self._require_compiled()
        x = check_features("x", x, self.n_in, self.dtype)
        yf, yi = self._targets(y, x.shape[0])
        self._workspace(x.shape[0])
        loss, status = self._step(x, yf, yi, 0.0, training=False, update=False)
        return float(loss)

    # -- fit -----------------------------------------------------------------------------
    def fit(self, X, y, epochs: int = 1, batch_size: int = 32, shuffle: bool = True,
            seed: int | None = None, validation_data=None, schedule: Schedule | None = None,
            verbose: int = 0, callbacks=None) -> History:
        """Train for ``epochs`` passes over (X, y) in minibatches.

        seed fixes the shuffling order and the dropout masks; ``None`` continues
        the model's own stream.  schedule sets the learning rate per epoch or per
        step from the optimizer's ``lr``.  verbose: 0 silent, 1 or 2 one line per epoch.
        Returns a :class:`History`.
        """
        self._require_compiled()
        X = check_features("X", X, self.n_in, self.dtype)
        yf, yi = self._targets(y, X.shape[0])
        epochs = check_int("epochs", epochs, 0)
        batch_size = check_int("batch_size", batch_size, 1)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be a bool, got {shuffle!r}")
        if schedule is not None and not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a fastbp.schedules.Schedule, got {schedule!r}")
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (X_val, y_val)")
            Xv = check_features("validation X", validation_data[0], self.n_in, self.dtype)
            yvf, yvi = self._targets(validation_data[1], Xv.shape[0], "validation y")
        if seed is not None:
            seed = check_int("seed", seed, 0)
            self._shuffle_rng = np.random.default_rng([seed, 1])
            self._dropout_seed = seed
        n = X.shape[0]
        batch_size = min(batch_size, n)
        n_batches = -(-n // batch_size)
        self._workspace(batch_size)
        sizes = np.full(n_batches, batch_size, dtype=np.float64)
        sizes[-1] = n - batch_size * (n_batches - 1)
        losses = np.empty(n_batches)
        history = History()
        opt = self.optimizer
        self.stop_training = False
        callbacks = list(callbacks or [])
        for cb in callbacks:
            cb.set_model(self)
            cb.on_train_begin()
        if not callbacks and validation_data is None and verbose == 0:
            self._fit_silent(X, yf, yi, epochs, batch_size, shuffle, schedule, sizes, history)
        for epoch in range(len(history.epoch), epochs):
            t0 = time.perf_counter()
            perm = self._permutation(n, shuffle)
            lrs = self._learning_rates(schedule, epoch, n_batches)
            done, status = self._run_epoch(X, yf, yi, perm, batch_size, lrs, losses)
            if status:
                raise DivergenceError(
                    _divergence_message(status, losses[done], epoch, done), epoch, done)
            logs = {"loss": float(np.dot(losses, sizes) / n), "lr": float(lrs[-1])}
            if validation_data is not None:
                for k, v in self._evaluate_converted(Xv, yvf, yvi, 1024).items():
                    logs["val_" + k] = v
            logs["time"] = time.perf_counter() - t0
            history.append(epoch, logs)
            if verbose:
                shown = "  ".join(f"{k}={v:.4g}" for k, v in logs.items() if k != "time")
                print(f"epoch {epoch + 1}/{epochs}  {shown}  ({logs['time'] * 1e3:.1f} ms)",
                      flush=True)
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        for cb in callbacks:
            cb.on_train_end()
        return history

    def _permutation(self, n, shuffle):
        return self._shuffle_rng.permutation(n) if shuffle else np.arange(n, dtype=np.int64)

    def _fit_silent(self, X, yf, yi, epochs, batch_size, shuffle, schedule, sizes, history):
        """All epochs in as few compiled calls as memory allows (no per-epoch hooks)."""
        n = X.shape[0]
        n_batches = sizes.shape[0]
        group = max(1, min(epochs, (1 << 22) // n))
        epoch = 0
        while epoch < epochs:
            count = min(group, epochs - epoch)
            t0 = time.perf_counter()
            perms = np.stack([self._permutation(n, shuffle) for _ in range(count)])
            lrs = np.stack([self._learning_rates(schedule, epoch + e, n_batches, e * n_batches)
                            for e in range(count)])
            losses = np.zeros((count, n_batches))
            if self.fused:
                opt = self.optimizer
                done, step, status = _engine.train_epochs(
                    self._table, self._ftable, self.params, self.grads, X, yf, yi, perms,
                    batch_size, lrs, self._xb, self._ybf, self._ybi, self._acts, self._gbuf,
                    self._scratch, self._row_loss, self.loss.code, opt.code, opt.hyperparams(),
                    opt.state, opt.step, self._rng_step, opt.clip_value, self._dropout_seed,
                    parallel_enabled(), losses)
            else:
                done, step, status = count, 0, 0
                for e in range(count):
                    step, status = self._run_epoch(X, yf, yi, perms[e], batch_size, lrs[e],
                                                   losses[e])
                    if status:
                        done = e
                        break
            elapsed = (time.perf_counter() - t0) / count
            for e in range(int(done)):
                history.append(epoch + e, {"loss": float(np.dot(losses[e], sizes) / n),
                                           "lr": float(lrs[e, -1]), "time": elapsed})
            if status:
                e = epoch + int(done)
                raise DivergenceError(_divergence_message(
                    status, losses[int(done), int(step)], e, int(step)), e, int(step))
            epoch += count

    def _learning_rates(self, schedule, epoch, n_batches, offset=0):
        base = self.optimizer.lr
        if schedule is None:
            return np.full(n_batches, base)
        if schedule.per == "epoch":
            return np.full(n_batches, schedule(epoch, base))
        t0 = int(self.optimizer.step[0]) + offset
        return np.array([schedule(t0 + s, base) for s in range(n_batches)])

    def _run_epoch(self, X, yf, yi, perm, batch_size, lrs, losses):
        opt = self.optimizer
        if self.fused:
            done, status = _engine.train_epoch(
                self._table, self._ftable, self.params, self.grads, X, yf, yi, perm, batch_size,
                lrs, self._xb, self._ybf, self._ybi, self._acts, self._gbuf, self._scratch,
                self._row_loss,
                self.loss.code, opt.code, opt.hyperparams(), opt.state, opt.step, self._rng_step,
                opt.clip_value, self._dropout_seed, parallel_enabled(), losses)
            return int(done), int(status)
        n = perm.shape[0]
        float_targets = yf.shape[0] == n
        for s in range(losses.shape[0]):
            idx = perm[s * batch_size:(s + 1) * batch_size]
            m = idx.shape[0]
            xb = np.take(X, idx, axis=0, out=self._xb[:m])
            if float_targets:
                ybf, ybi = np.take(yf, idx, axis=0, out=self._ybf[:m]), self._ybi[:m]
            else:
                ybf, ybi = self._ybf, np.take(yi, idx, out=self._ybi[:m])
            losses[s], status = self._step(xb, ybf, ybi, lrs[s])
            if status:
                return s, status
        return losses.shape[0], 0

    # -- inference ---------------------------------------------------------------------------
    def predict(self, X, batch_size: int = 1024) -> np.ndarray:
        """The last layer's output for every row of X (logits for the logit losses)."""
        X = check_features("X", X, self.n_in, self.dtype)
        batch_size = min(check_int("batch_size", batch_size, 1), X.shape[0])
        self._workspace(batch_size)
        out = np.empty((X.shape[0], self.n_out), dtype=self.dtype)
        if self._table is not None:
            _engine.predict(self._table, self._ftable, self.params, X, out, self._acts, self._scratch,
                            batch_size, parallel_enabled())
        else:
            for s in range(0, X.shape[0], batch_size):
                out[s:s + batch_size] = self._forward_layers(X[s:s + batch_size], False)
        return out

    def evaluate(self, X, y, batch_size: int = 1024) -> dict:
        """{"loss": mean loss, "accuracy": ...} (accuracy for the classification losses)."""
        self._require_compiled()
        X = check_features("X", X, self.n_in, self.dtype)
        yf, yi = self._targets(y, X.shape[0])
        batch_size = check_int("batch_size", batch_size, 1)
        return self._evaluate_converted(X, yf, yi, batch_size)

    def _evaluate_converted(self, X, yf, yi, batch_size):
        n = X.shape[0]
        batch_size = min(batch_size, n)
        self._workspace(batch_size)
        code = self.loss.code
        if self._table is not None:
            total, correct = _engine.evaluate(self._table, self._ftable, self.params, X, yf, yi,
                                              code, self._acts, self._gbuf, self._scratch,
                                              batch_size,
                                              parallel_enabled())
        else:
            total, correct = 0.0, 0
            float_targets = yf.shape[0] == n
            for s in range(0, n, batch_size):
                o = self._forward_layers(X[s:s + batch_size], False)
                m = o.shape[0]
                scratch = self._gbuf[:o.size].reshape(o.shape)
                t, c = loss_sum_and_correct(code, o, yf[s:s + m] if float_targets else yf,
                                            yi if float_targets else yi[s:s + m], scratch)
                total += t
                correct += c
        per_row = self.loss.code == _losses.SoftmaxCrossEntropy.code
        count = n if per_row else n * self.n_out
        result = {"loss": float(total / count)}
        if self.loss.classification:
            result["accuracy"] = float(correct / count)
        return result

    # -- persistence -------------------------------------------------------------------------
    def get_config(self) -> dict:
        return {"dtype": self.dtype.name, "seed": self.seed,
                "layers": [{"class": type(l).__name__, "config": l.get_config()}
                           for l in self.layers]}

    def save(self, path) -> None:
        """Save architecture, weights and optimizer state (see :func:`fastbp.load`)."""
        from .io import save_model
        save_model(self, path)

    def summary(self) -> str:
        lines = [f"Sequential ({self.dtype.name}, {self.n_params} parameters, "
                 f"{'fused engine' if self._table is not None else 'per-layer path'})"]
        width = self.n_in
        for layer, out in zip(self.layers, self.widths):
            lines.append(f"  {layer!r}: {width} -> {out}, {layer.n_params} parameters")
            width = out
        return "\n".join(lines)

    def __repr__(self):
        return f"Sequential({self.layers!r}, dtype={self.dtype.name!r}, seed={self.seed})"


def _divergence_message(status, loss, epoch, step):
    what = f"non-finite loss ({loss})" if status == 1 else "non-finite gradient"
    where = "" if epoch is None else f" in epoch {epoch} at step {step}"
    return (f"training diverged: {what}{where}; the weights and optimizer state of the last "
            f"finite step are kept. Lower the learning rate or set clip_norm.")
