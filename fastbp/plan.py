"""The Python side of the compiled engine: a model's layer tables, its workspaces and
the calls into :mod:`fastbp.kernels.engine`.

A :class:`Plan` is made once per model.  Workspaces are allocated once for the
largest batch seen so far and reused; nothing is allocated per step.
"""
from __future__ import annotations

import numpy as np

from .kernels import engine as _engine
from .kernels.embedding import table_size
from .kernels.gemm import forward_work_size
from .layers.embedding import WindowEmbedding
from .threads import parallel_enabled

_I64 = np.int64


class Plan:
    """Tables and buffers of a Sequential model for the compiled engine.

    ``table`` is None when a layer is unknown to the engine (the model then takes
    the per-layer path; the buffers are still used by it).
    """

    def __init__(self, model):
        self.model = model
        layers = model.layers
        self.window = layers[0] if isinstance(layers[0], WindowEmbedding) else None
        start = 1 if self.window is not None else 0
        self.start = start
        self.dtype = model.dtype
        self.table, self.ftable = self._tables(model, start)
        self.widths = model.widths[start:]
        self.input_width = model.widths[0] if self.window is not None else model.n_in
        self.capacity = 0
        dt = self.dtype
        self.dummy_x = np.zeros((1, 1), dtype=dt)
        self.dummy_ids = np.zeros((1, 1), dtype=_I64)
        if self.window is None:
            self.E = np.zeros((1, 1), dtype=dt)
            self.emb_cfg = np.zeros(3, dtype=_I64)
            self.emb_state = np.zeros((1, 1, 1), dtype=dt)
            self.emb_step = np.zeros(1, dtype=_I64)
        else:
            w = self.window
            self.E = w.E
            self.emb_cfg = np.array([1, w.padding_code, int(w.trainable)], dtype=_I64)
            self.emb_state = np.zeros((1, 1, 1), dtype=dt)  # set by attach_optimizer
            self.emb_step = w.step

    @staticmethod
    def _tables(model, start):
        layers = model.layers[start:]
        if any(layer.kind not in (_engine.DENSE, _engine.DROPOUT) for layer in layers):
            return None, None
        table = np.zeros((len(layers), 6), dtype=_I64)
        ftable = np.zeros((len(layers), 2), dtype=np.float64)
        width = model.widths[start - 1] if start else model.n_in
        for i, layer in enumerate(layers):
            out = model.widths[start + i]
            table[i, _engine.KIND] = layer.kind
            table[i, _engine.N_IN] = width
            table[i, _engine.N_OUT] = out
            if layer.kind == _engine.DENSE:
                offsets = model._offsets[start + i]
                table[i, _engine.W_OFF] = offsets["W"]
                table[i, _engine.B_OFF] = offsets["b"]
                table[i, _engine.ACT] = layer.act_code
                ftable[i, _engine.SLOPE] = layer.slope
            else:
                ftable[i, _engine.P] = layer.p
            width = out
        return table, ftable

    @property
    def fusable(self) -> bool:
        return self.table is not None

    def attach_optimizer(self, optimizer) -> None:
        """Create the lazy optimizer state of the embedding table."""
        w = self.window
        if w is None:
            return
        if w.trainable:
            shape = w.E.shape
            if (w.state is None or w.state.shape != (optimizer.state_rows(),) + shape
                    or w.state.dtype != self.dtype):
                w.state = optimizer.new_state(shape, self.dtype)
                w.step[0] = 0
            self.emb_state = w.state

    # -- workspaces -----------------------------------------------------------------
    def workspace(self, batch: int) -> None:
        if batch <= self.capacity:
            return
        dt = self.dtype
        widest = max([self.input_width] + list(self.widths))
        self.acts = np.empty(batch * sum(self.widths), dtype=dt)
        # Two halves for the gradient flowing down; in the forward pass, the dense
        # layers' work array (gemm.forward_product).
        self.gbuf = np.empty(max(2 * batch * widest, forward_work_size(batch, widest)), dtype=dt)
        self.row_loss = np.empty(batch, dtype=np.float64)
        n_out = self.model.n_out
        self.ybf = np.empty((batch, n_out), dtype=dt)
        self.ybi = np.empty(batch, dtype=_I64)
        if self.window is None:
            self.xb = np.empty((batch, self.model.n_in), dtype=dt)
            self.idsb = self.dummy_ids
            self.xwin = self.dummy_x
            self.emb_rows = np.zeros(1, dtype=_I64)
            self.emb_grad = np.zeros((1, 1), dtype=dt)
        else:
            w = self.window
            self.xb = self.dummy_x
            self.idsb = np.empty((batch, w.width), dtype=_I64)
            self.xwin = np.empty((batch, w.width * w.dim), dtype=dt)
            positions = batch * w.width
            self.emb_rows = np.empty(positions + table_size(positions), dtype=_I64)
            self.emb_grad = np.empty((batch * w.width, w.dim), dtype=dt)
        self.capacity = batch

    def split(self, inputs):
        """(features, ids) arguments for the kernels: one real, one dummy."""
        if self.window is None:
            return inputs, self.dummy_ids
        return self.dummy_x, inputs

    # -- calls -------------------------------------------------------------------------
    def step(self, inputs, yf, yi, lr, training, update):
        m, opt = self.model, self.model.optimizer
        x, ids = self.split(inputs)
        return _engine.train_step(
            self.table, self.ftable, m.params, m.grads, x, ids, yf, yi, self.acts, self.gbuf,
            self.row_loss, self.xwin, self.E, self.emb_state, self.emb_step, self.emb_rows,
            self.emb_grad, self.emb_cfg, m.loss.code, opt.code, opt.hyperparams(), opt.state,
            opt.step, m._rng_step, lr, opt.clip_value, m._dropout_seed, training, update,
            parallel_enabled())

    def epochs(self, inputs, yf, yi, perms, batch_size, lrs, losses):
        m, opt = self.model, self.model.optimizer
        x, ids = self.split(inputs)
        return _engine.train_epochs(
            self.table, self.ftable, m.params, m.grads, x, ids, yf, yi, perms, batch_size, lrs,
            self.xb, self.idsb, self.ybf, self.ybi, self.acts, self.gbuf, self.row_loss, self.xwin,
            self.E, self.emb_state, self.emb_step, self.emb_rows, self.emb_grad, self.emb_cfg,
            m.loss.code, opt.code, opt.hyperparams(), opt.state, opt.step, m._rng_step,
            opt.clip_value, m._dropout_seed, parallel_enabled(), losses)

    def predict(self, inputs, out, batch_size):
        x, ids = self.split(inputs)
        _engine.predict(self.table, self.ftable, self.model.params, x, ids, out, self.acts,
                        self.gbuf, self.xwin, self.E, self.emb_cfg, batch_size, parallel_enabled())

    def evaluate(self, inputs, yf, yi, batch_size):
        x, ids = self.split(inputs)
        return _engine.evaluate(self.table, self.ftable, self.model.params, x, ids, yf, yi,
                                self.model.loss.code, self.acts, self.gbuf, self.xwin, self.E,
                                self.emb_cfg, batch_size, parallel_enabled())

    def loss_only(self, inputs, yf, yi):
        x, ids = self.split(inputs)
        return _engine.loss_only(self.table, self.ftable, self.model.params, x, ids, yf, yi,
                                 self.acts, self.gbuf, self.row_loss, self.xwin, self.E,
                                 self.emb_cfg, self.model.loss.code, parallel_enabled())
