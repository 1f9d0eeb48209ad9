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
from ._validation import check_dtype, check_features, check_ids, check_int
from .kernels.embedding import rows_squared_norm
from .kernels.losses import loss_and_grad, loss_sum_and_correct
from .kernels.optim import apply_sparse_update, apply_update, clip_scale, squared_norm
from .layers.base import Layer
from .layers.embedding import WindowEmbedding
from .plan import Plan
from .schedules import Schedule
from .threads import parallel_enabled, pin_blas


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
        The first layer that has a fixed input width (``n_in``) sets the model's
        input width.  A :class:`~fastbp.layers.WindowEmbedding` may only come first;
        the model then takes int id windows as input.
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
            if isinstance(layer, WindowEmbedding) and i > 0:
                raise ValueError(f"a WindowEmbedding must be the first layer, found one at "
                                 f"position {i}")
        if len({id(l) for l in layers}) != len(layers):
            raise ValueError("the same layer object appears twice in the list")
        if isinstance(layers[0], WindowEmbedding) and len(layers) == 1:
            raise ValueError("a WindowEmbedding needs at least one Dense layer after it")
        self.dtype = check_dtype(dtype)
        self.seed = check_int("seed", seed, 0)
        self.layers = list(layers)
        self.window = self.layers[0] if isinstance(self.layers[0], WindowEmbedding) else None
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
        first = [i for i, l in enumerate(self.layers)
                 if l.params or (l is self.window and l.trainable)]
        self._first_param_layer = first[0] if first else len(self.layers)
        for i, layer in enumerate(self.layers):
            if hasattr(layer, "need_input_grad"):
                layer.need_input_grad = i > self._first_param_layer
        self._plan = Plan(self)
        self.optimizer: _optim.Optimizer | None = None
        self.loss: _losses.Loss | None = None
        self.fused = False
        self._rng_step = np.zeros(1, dtype=np.int64)
        self._dropout_seed = self.seed
        self._shuffle_rng = np.random.default_rng([self.seed, 1])
        self.stop_training = False
        self.epoch = 0  # epochs trained so far: per-epoch schedules continue from here
        self._last_rows = 0

    # -- construction -------------------------------------------------------------
    def _input_width(self) -> int:
        for layer in self.layers:
            n_in = getattr(layer, "n_in", None)
            if n_in is not None:
                return int(n_in)
        raise ValueError("no layer fixes the input width: the first Dense layer's n_in does")

    @property
    def n_params(self) -> int:
        """Parameters in the flat buffer (an embedding table is kept outside it)."""
        return int(self.params.shape[0])

    def compile(self, optimizer, loss, fused: bool = True) -> "Sequential":
        """Set the optimizer and the loss.

        optimizer : a fastbp.optim.Optimizer (or a name such as "sgd" or "adam")
        loss : "mse", "binary_cross_entropy" or "softmax_cross_entropy" (or a Loss)
        fused : run each step as one compiled call when every layer allows it;
            False forces the per-layer path (for comparisons and debugging).
        """
        optimizer = _optim.get(optimizer)
        loss = _losses.get(loss)
        if loss.code == _losses.SoftmaxCrossEntropy.code and self.n_out < 2:
            raise ValueError(f"softmax_cross_entropy needs at least 2 outputs, the model has "
                             f"{self.n_out}")
        if not isinstance(fused, (bool, np.bool_)):
            raise TypeError(f"fused must be a bool, got {fused!r}")
        self.optimizer, self.loss = optimizer, loss
        pin_blas()
        self.fused = bool(fused) and self._plan.fusable
        self.optimizer.build(self.n_params, self.dtype)
        self._plan.attach_optimizer(self.optimizer)
        return self

    def _require_compiled(self):
        if self.optimizer is None or self.loss is None:
            raise ValueError("call model.compile(optimizer, loss) before training or evaluating")

    # -- inputs ------------------------------------------------------------------------
    def _inputs(self, X, name="X"):
        """Validated, converted inputs: float features, or int64 id windows."""
        if self.window is not None:
            return check_ids(name, X, self.window.width, self.window.vocab_size)
        return check_features(name, X, self.n_in, self.dtype)

    def _targets(self, y, n, name="y"):
        return self.loss.targets(y, n, self.n_out, self.dtype, name)

    def _workspace(self, batch: int) -> None:
        self._plan.workspace(batch)

    # -- one step ----------------------------------------------------------------------
    def _step(self, x, yf, yi, lr, training=True, update=True):
        """One step on converted arrays; returns (loss, status) as the engine does."""
        if self.fused:
            loss, status, self._last_rows = self._plan.step(x, yf, yi, lr, training, update)
            return loss, status
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
        """The per-layer path: the same kernels as the engine, called from Python."""
        par = parallel_enabled()
        plan = self._plan
        m = x.shape[0]
        out = self._forward_layers(x, training)
        g = plan.gbuf[:m * self.n_out].reshape(m, self.n_out)
        loss = loss_and_grad(self.loss.code, out, yf, yi, g, plan.row_loss, par)
        if not math.isfinite(loss):
            return loss, 1
        for layer in reversed(self.layers[self._first_param_layer:]):
            g = layer.backward(g)
            if g is not None:
                g = np.ascontiguousarray(g)
        sq = squared_norm(self.grads, par)
        window = self.window if self.window is not None and self.window.trainable else None
        if window is not None:
            sq += rows_squared_norm(window.row_grads, window.n_rows)
        if not math.isfinite(sq):
            return loss, 2
        if training:
            self._rng_step[0] += 1
        if update:
            opt = self.optimizer
            scale = clip_scale(sq, opt.clip_value)
            opt.step[0] += 1
            hp = opt.hyperparams()
            bad = apply_update(opt.code, self.params, self.grads, opt.state, hp, lr,
                               int(opt.step[0]), scale, par)
            if window is not None:
                window.step[0] += 1
                bad += apply_sparse_update(opt.code, window.E, window.row_grads, window.rows,
                                           window.n_rows, window.state, hp, lr,
                                           int(window.step[0]), scale, par)
            if bad:
                return loss, 3
        return loss, 0

    def train_on_batch(self, x, y) -> float:
        """Exactly one optimizer step on the batch (x, y); returns the batch loss."""
        self._require_compiled()
        x = self._inputs(x, "x")
        yf, yi = self._targets(y, x.shape[0])
        self._workspace(x.shape[0])
        loss, status = self._step(x, yf, yi, self.optimizer.lr)
        if status:
            raise DivergenceError(_divergence_message(status, loss, None, None))
        return float(loss)

    def compute_gradients(self, x, y) -> float:
        """Fill ``model.grads`` (and, for a window model, the embedding's row gradients)
        with the gradient of the batch loss in inference mode (no dropout), without
        updating anything; returns the loss."""
        self._require_compiled()
        x = self._inputs(x, "x")
        yf, yi = self._targets(y, x.shape[0])
        self._workspace(x.shape[0])
        loss, status = self._step(x, yf, yi, 0.0, training=False, update=False)
        return float(loss)

    def embedding_gradient(self) -> np.ndarray:
        """The dense (vocab_size, dim) gradient of the embedding table left by the last
        ``compute_gradients`` (zero rows where the batch used no id)."""
        w = self.window
        if w is None:
            raise ValueError("the model has no WindowEmbedding layer")
        out = np.zeros_like(w.E)
        if self.fused:
            n = int(self._last_rows)
            rows, G = self._plan.emb_rows, self._plan.emb_grad
        else:
            n, rows, G = w.n_rows, w.rows, w.row_grads
        out[rows[:n]] = G[:n]
        return out

    # -- fit -----------------------------------------------------------------------------
    def fit(self, X, y, epochs: int = 1, batch_size: int = 32, shuffle: bool = True,
            seed: int | None = None, validation_data=None, schedule: Schedule | None = None,
            verbose: int = 0, callbacks=None, initial_epoch: int | None = None) -> History:
        """Train for ``epochs`` passes over (X, y) in minibatches.

        seed fixes the shuffling order and the dropout masks; ``None`` continues
        the model's own stream.  schedule sets the learning rate per epoch or per
        step from the optimizer's ``lr``.  verbose: 0 silent, 1 a progress bar per
        epoch (tqdm), 2 one line per epoch.  callbacks: see :mod:`fastbp.callbacks`.
        Returns a :class:`History`.
        """
        self._require_compiled()
        X = self._inputs(X, "X")
        yf, yi = self._targets(y, X.shape[0])
        epochs = check_int("epochs", epochs, 0)
        batch_size = check_int("batch_size", batch_size, 1)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be a bool, got {shuffle!r}")
        if schedule is not None and not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a fastbp.schedules.Schedule, got {schedule!r}")
        if verbose not in (0, 1, 2) or isinstance(verbose, bool):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (X_val, y_val)")
            Xv = self._inputs(validation_data[0], "validation X")
            yvf, yvi = self._targets(validation_data[1], Xv.shape[0], "validation y")
        if initial_epoch is not None:
            self.epoch = check_int("initial_epoch", initial_epoch, 0)
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
        history = History()
        self.stop_training = False
        callbacks = list(callbacks or [])
        for cb in callbacks:
            if not all(callable(getattr(cb, name, None)) for name in
                       ("set_model", "on_train_begin", "on_epoch_end", "on_train_end")):
                raise TypeError(f"callback {cb!r} must provide set_model, on_train_begin, "
                                f"on_epoch_end and on_train_end (subclass "
                                f"fastbp.callbacks.Callback)")
        for cb in callbacks:
            cb.set_model(self)
            cb.on_train_begin()
        per_epoch = bool(callbacks) or validation_data is not None or verbose != 0
        # Without per-epoch hooks, many epochs go into one compiled call.
        group = 1 if per_epoch else max(1, min(epochs, (1 << 22) // n))
        epoch = 0
        while epoch < epochs and not self.stop_training:
            count = min(group, epochs - epoch)
            if per_epoch:
                for cb in callbacks:
                    if hasattr(cb, "on_epoch_begin"):
                        cb.on_epoch_begin(epoch)
            t0 = time.perf_counter()
            perms = self._permutations(count, n, shuffle)
            lrs = self._learning_rates(schedule, self.epoch, count, n_batches)
            losses = np.zeros((count, n_batches))
            if verbose == 1:
                done, step, status = self._run_epoch_with_bar(
                    X, yf, yi, perms, batch_size, lrs, losses, sizes, epoch, epochs)
            else:
                done, step, status = self._run_epochs(X, yf, yi, perms, batch_size, lrs, losses)
            elapsed = (time.perf_counter() - t0) / count  # training time, per epoch
            # a row sum is taken the same way whatever the number of rows
            epoch_losses = ((losses[:done] * sizes).sum(axis=1) / n).tolist()
            last_lrs = lrs[:done, -1].tolist()
            for e in range(done):
                self.epoch += 1
                logs = {"loss": epoch_losses[e], "lr": last_lrs[e]}
                if validation_data is not None:
                    for k, v in self._evaluate_converted(Xv, yvf, yvi, 1024).items():
                        logs["val_" + k] = v
                logs["time"] = elapsed
                history.append(self.epoch - 1, logs)
                if verbose == 2:
                    shown = "  ".join(f"{k}={v:.4g}" for k, v in logs.items() if k != "time")
                    print(f"epoch {self.epoch} ({epoch + e + 1}/{epochs})  {shown}  "
                          f"({logs['time'] * 1e3:.1f} ms)", flush=True)
                for cb in callbacks:
                    cb.on_epoch_end(self.epoch - 1, logs)
            if status:
                e = epoch + done
                raise DivergenceError(_divergence_message(status, losses[done, step], e, step),
                                      e, step)
            epoch += count
        for cb in callbacks:
            cb.on_train_end()
        return history

    def _permutations(self, count, n, shuffle):
        """(count, n) sample orders, one row an epoch.  ``permuted`` shuffles the rows
        one after another, drawing what ``count`` calls of ``permutation(n)`` would."""
        order = np.tile(np.arange(n, dtype=np.int64), (count, 1))
        return self._shuffle_rng.permuted(order, axis=1) if shuffle else order

    def _learning_rates(self, schedule, epoch, count, n_batches):
        """(count, n_batches) learning rates of the steps of epochs epoch, epoch + 1, ..."""
        base = self.optimizer.lr
        if schedule is None:
            return np.full((count, n_batches), base)
        if schedule.per == "epoch":
            per_epoch = np.array([schedule(epoch + e, base) for e in range(count)])
            return np.repeat(per_epoch[:, None], n_batches, axis=1)
        t0 = int(self.optimizer.step[0])
        steps = range(t0, t0 + count * n_batches)
        return np.array([schedule(t, base) for t in steps]).reshape(count, n_batches)

    def _run_epoch_with_bar(self, X, yf, yi, perms, batch_size, lrs, losses, sizes, epoch,
                            epochs):
        """One epoch in about 20 compiled calls, with a tqdm bar over its batches."""
        from tqdm.auto import tqdm
        n_batches = losses.shape[1]
        n = perms.shape[1]
        chunk = max(1, -(-n_batches // 20))
        with tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                  leave=True, dynamic_ncols=True) as bar:
            for s0 in range(0, n_batches, chunk):
                s1 = min(n_batches, s0 + chunk)
                part = perms[:, s0 * batch_size:min(n, s1 * batch_size)]
                done, step, status = self._run_epochs(X, yf, yi, np.ascontiguousarray(part),
                                                      batch_size, lrs[:, s0:s1],
                                                      losses[:, s0:s1])
                if status:
                    return 0, s0 + step, status
                bar.update(s1 - s0)
                seen = sizes[:s1]
                bar.set_postfix(loss=f"{np.dot(losses[0, :s1], seen) / seen.sum():.4g}")
        return 1, 0, 0

    def _run_epochs(self, X, yf, yi, perms, batch_size, lrs, losses):
        """Run len(perms) epochs; returns (epochs done, failing step, status)."""
        if self.fused:
            done, step, status = self._plan.epochs(X, yf, yi, perms, batch_size, lrs, losses)
            return int(done), int(step), int(status)
        plan = self._plan
        float_targets = self.loss.code != _losses.SoftmaxCrossEntropy.code
        xbuf = plan.idsb if self.window is not None else plan.xb
        for e in range(perms.shape[0]):
            for s in range(losses.shape[1]):
                idx = perms[e, s * batch_size:(s + 1) * batch_size]
                m = idx.shape[0]
                xb = np.take(X, idx, axis=0, out=xbuf[:m])
                if float_targets:
                    ybf, ybi = np.take(yf, idx, axis=0, out=plan.ybf[:m]), plan.ybi[:m]
                else:
                    ybf, ybi = plan.ybf, np.take(yi, idx, out=plan.ybi[:m])
                losses[e, s], status = self._step(xb, ybf, ybi, lrs[e, s])
                if status:
                    return e, s, status
        return perms.shape[0], 0, 0

    # -- inference ---------------------------------------------------------------------------
    def predict(self, X, batch_size: int = 1024) -> np.ndarray:
        """The last layer's output for every row of X (logits for the logit losses)."""
        X = self._inputs(X, "X")
        batch_size = min(check_int("batch_size", batch_size, 1), X.shape[0])
        self._workspace(batch_size)
        out = np.empty((X.shape[0], self.n_out), dtype=self.dtype)
        if self._plan.fusable:
            self._plan.predict(X, out, batch_size)
        else:
            for s in range(0, X.shape[0], batch_size):
                out[s:s + batch_size] = self._forward_layers(X[s:s + batch_size], False)
        return out

    def evaluate(self, X, y, batch_size: int = 1024) -> dict:
        """{"loss": mean loss, "accuracy": ...} (accuracy for the classification losses)."""
        self._require_compiled()
        X = self._inputs(X, "X")
        yf, yi = self._targets(y, X.shape[0])
        batch_size = check_int("batch_size", batch_size, 1)
        return self._evaluate_converted(X, yf, yi, batch_size)

    def _evaluate_converted(self, X, yf, yi, batch_size):
        n = X.shape[0]
        batch_size = min(batch_size, n)
        self._workspace(batch_size)
        code = self.loss.code
        if self._plan.fusable:
            total, correct = self._plan.evaluate(X, yf, yi, batch_size)
        else:
            total, correct = 0.0, 0
            float_targets = self.loss.code != _losses.SoftmaxCrossEntropy.code
            for s in range(0, n, batch_size):
                o = self._forward_layers(X[s:s + batch_size], False)
                m = o.shape[0]
                scratch = self._plan.gbuf[:o.size].reshape(o.shape)
                t, c = loss_sum_and_correct(code, o, yf[s:s + m] if float_targets else yf,
                                            yi if float_targets else yi[s:s + m], scratch)
                total += t
                correct += c
        per_row = code == _losses.SoftmaxCrossEntropy.code
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
        lines = [f"Sequential ({self.dtype.name}, {self.n_params} parameters in the flat buffer, "
                 f"{'fused engine' if self._plan.fusable else 'per-layer path'})"]
        width = self.n_in
        for layer, out in zip(self.layers, self.widths):
            lines.append(f"  {layer!r}: {width} -> {out}, {layer.n_params} parameters")
            width = out
        return "\n".join(lines)

    def __repr__(self):
        return f"Sequential({self.layers!r}, dtype={self.dtype.name!r}, seed={self.seed})"


def _divergence_message(status, loss, epoch, step):
    what = {1: f"non-finite loss ({loss})", 2: "non-finite gradient",
            3: "an update that would make weights non-finite"}[int(status)]
    where = "" if epoch is None else f" in epoch {epoch} at step {step}"
    kept = ("the weights and optimizer state of the last finite step are kept"
            if status != 3 else "no weight was set to a non-finite value (the elements whose "
            "update overflowed kept their values)")
    return (f"training diverged: {what}{where}; {kept}. Lower the learning rate or set "
            f"clip_norm.")
