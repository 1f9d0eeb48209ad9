"""The two drivers of a tape: compiled (one call a step or a group of epochs) and
per-layer (each node called from Python, for models with a user's NumPy layer).

Both offer the same calls -- ``gradients`` and ``update`` (the two phases),
``step``, ``epochs``, ``predict``, ``evaluate``, ``loss_only`` -- over the same
plan, buffers and compiled node functions, so they give the same numbers, bit for
bit.  The per-layer path differs only in that a CUSTOM node runs its layer's
``forward``/``backward`` between the compiled ones.
"""
from __future__ import annotations

import math

import numpy as np

from .._config import THREADED_INFERENCE_MIN_WORK
from ..threads import parallel_enabled
from . import codes as C
from .specialize import build, features_of, threads_pay


class Compiled:
    """Drives a plan through the compiled interpreter, in the plan's own build
    (:mod:`.specialize`: only the node kinds, optimizer and loss it uses are compiled,
    and threads only where they pay: :meth:`build_for`)."""

    def __init__(self, plan):
        self.plan = plan
        opt = getattr(plan, "opt", None)
        self.features = features_of(plan, None if opt is None else opt.code,
                                    None if opt is None else plan.loss_code)
        self.build = build(self.features)
        self.serial = build(self.features._replace(parallel=False))
        self.threaded = False  # whether a call has needed self.build yet

    def build_for(self, rows, total=None):
        """The build for a call on minibatches of up to ``rows`` rows.

        :attr:`serial` (compiled without threads) until a call could use threads:
        some kernel's threaded branch within reach (:func:`.specialize.threads_pay`),
        and for an inference call of ``total`` rows of a dense model, ``total`` x the
        parameter count (about its multiply-adds) at least THREADED_INFERENCE_MIN_WORK.
        From then on :attr:`build` (threaded), which serves every size, so a model
        compiles or loads at most these two builds and most models only one: the
        digits demo's batches of 32 rows and its 360 test rows run serial.

        The choice reads shapes only, never the thread count: the two builds are
        compiled apart (numba's ``parallel=True`` outlines loops, and LLVM then
        vectorises them differently), so a model with tables or sequences, whose
        kernels can give other bits in the serial build, always runs threaded, and a
        run at one thread takes the same builds, hence the same bits, as at two."""
        if not self.threaded:
            p = self.plan
            work = None if total is None else total * p.params.shape[0]
            self.threaded = threads_pay(p, rows) and (
                work is None or work >= THREADED_INFERENCE_MIN_WORK
                or p.tables.shape[0] > 0 or p.has_sequences)
        return self.build if self.threaded else self.serial

    def _training(self):
        # the calls apart from a step: the build of the workspace's batch
        return self.build_for(self.plan.capacity)

    def gradients(self, data, m, count, training, add):
        p = self.plan
        return self.build_for(m).gradients(p.tape, p.weights, p.work,
                                           p.optim_bundle().clip_norm, data.yf, data.yi,
                                           data.w, m, count, p.stream, training, add,
                                           parallel_enabled())

    def load(self, data, m):
        p = self.plan
        self.build_for(m).load_inputs(p.tape, p.work, data, p.work.order, 0, m,
                                      parallel_enabled())

    def status(self):
        """(status, squared norm) of the gradients the last gradient phase left."""
        p = self.plan
        return self._training().gradient_status(p.tape, p.weights, p.work,
                                                p.optim_bundle().clip_norm, parallel_enabled())

    def update(self, lr, sq):
        p = self.plan
        return self._training().update(p.tape, p.weights, p.work, p.optim_bundle(), lr, sq,
                                       parallel_enabled())

    def step(self, data, m, lr, training=True, do_update=True):
        p = self.plan
        return self.build_for(m).train_step(p.tape, p.weights, p.work, p.optim_bundle(), data,
                                            m, lr, p.stream, training, do_update,
                                            parallel_enabled())

    def epochs(self, data, perms, batch_size, accumulate, lrs, losses):
        p = self.plan
        return self.build_for(batch_size).train_epochs(p.tape, p.weights, p.work,
                                                       p.optim_bundle(), data, perms,
                                                       batch_size, accumulate, lrs, p.stream,
                                                       parallel_enabled(), losses)

    def predict(self, data, out, batch_size, total=None):
        p = self.plan
        n = out.shape[0]
        p.rows_in_order(n)
        b = self.build_for(min(batch_size, n), n if total is None else total)
        b.predict(p.tape, p.weights, p.work, data, out, batch_size, parallel_enabled())

    def evaluate(self, data, n, batch_size, total=None):
        p = self.plan
        p.rows_in_order(n)
        b = self.build_for(min(batch_size, n), n if total is None else total)
        return b.evaluate(p.tape, p.weights, p.work, data, n, batch_size, parallel_enabled())

    def loss_only(self, data, m):
        p = self.plan
        return self.build_for(m).loss_only(p.tape, p.weights, p.work, data, m,
                                           parallel_enabled())


class Layerwise(Compiled):
    """Drives a plan node by node from Python; CUSTOM nodes call their layer (in the
    threaded build throughout)."""

    def __init__(self, plan):
        super().__init__(plan)
        self.threaded = True

    def forward_node(self, n, m, training, drop_step):
        """Node n's forward pass (its operands are in place)."""
        p = self.plan
        if p.nodes[n, C.KIND] != C.CUSTOM:
            self.build.forward_nodes(p.tape, p.weights, p.work, n, n + 1, m, p.stream.seed,
                                     drop_step, training, parallel_enabled())
            return
        layer = p.node_layers[n]
        x = p.slot(int(p.operands[p.nodes[n, C.ARG0], C.VALUE]), m)
        out = p.slot(int(p.nodes[n, C.OUT]), m)
        h = layer.forward(x, bool(training))
        _check_array(h, out.shape, p.dtype, f"{layer!r}.forward")
        out[...] = h

    def _forward(self, m, training, drop_step):
        p = self.plan
        for n in range(len(p.inputs), p.nodes.shape[0]):
            self.forward_node(n, m, training, drop_step)
        return p.slot(p.value_of(p.output), m)

    def backward_node(self, n, m, training, drop_step, add):
        """Node n's backward pass (its output's gradient is complete)."""
        p = self.plan
        if p.nodes[n, C.KIND] != C.CUSTOM:
            self.build.backward_nodes(p.tape, p.weights, p.work, n, n + 1, m, p.stream.seed,
                                      drop_step, training, add, parallel_enabled())
            return
        out_v = int(p.nodes[n, C.OUT])
        if not p.needs_grad(out_v):
            return
        layer = p.node_layers[n]
        held = [g.copy() for g in layer.grads.values()] if add else []
        a = int(p.nodes[n, C.ARG0])
        v = int(p.operands[a, C.VALUE])
        g_in = layer.backward(p.slot(out_v, m, grad=True))
        for g, before in zip(layer.grads.values(), held):
            g += before
        if p.needs_grad(v):
            target = p.slot(v, m, grad=True)
            _check_array(g_in, target.shape, p.dtype, f"{layer!r}.backward")
            if p.operands[a, C.GRAD_ACC]:
                target += g_in
            else:
                target[...] = g_in

    def _backward(self, m, training, drop_step, add):
        p = self.plan
        segs = p.segments
        if segs.shape[0] == 0:
            for n in range(p.nodes.shape[0] - 1, len(p.inputs) - 1, -1):
                self.backward_node(n, m, training, drop_step, add)
            return
        for s in range(segs.shape[0] - 1, -1, -1):  # as interpreter.backward
            first, last = int(segs[s, 0]), int(segs[s, 1])
            if s < segs.shape[0] - 1:
                for n in range(first, last + 1):
                    self.forward_node(n, m, training, drop_step)
            for n in range(last, first - 1, -1):
                self.backward_node(n, m, training, drop_step, add)

    def forward(self, data, m, training=False):
        """Load the first m rows and run the forward pass; returns the output's slot."""
        self.load(data, m)
        return self._forward(m, training, int(self.plan.stream.step[0]))

    def gradients(self, data, m, count, training, add):
        p = self.plan
        par = parallel_enabled()
        drop_step = int(p.stream.step[0])
        self._forward(m, training, drop_step)
        total = self.build.output_gradient(p.tape, p.work, data.yf, data.yi, data.w, m, count,
                                           par)
        if not math.isfinite(total):
            return total, C.NONFINITE_LOSS, 0.0
        if not add:
            self.build.open_rows(p.tape, p.work)
        self._backward(m, training, drop_step, add)
        self.build.close_rows(p.tape, p.work)
        status, sq = self.build.gradient_status(p.tape, p.weights, p.work,
                                                p.optim_bundle().clip_norm, par)
        if status == C.OK and training:
            p.stream.step[0] += 1
        return total, status, sq

    def _targets(self, data, idx, start, m):
        """data with the minibatch's targets and row weights gathered (per step for
        sequences)."""
        p = self.plan
        yf, yi, w = self.build.load_targets(p.tape, p.work, data, idx, start, m,
                                            parallel_enabled())
        return data._replace(yf=yf, yi=yi, w=w)

    def step(self, data, m, lr, training=True, do_update=True):
        p = self.plan
        self.load(data, m)
        count = self.build.batch_count(p.tape, data, p.work.order, 0, m)
        if p.has_sequences:
            data = self._targets(data, p.work.order, 0, m)
        total, status, sq = self.gradients(data, m, count, training, False)
        loss = total / count
        if status != C.OK or not do_update:
            return loss, status
        return loss, self.update(lr, sq)

    def epochs(self, data, perms, batch_size, accumulate, lrs, losses):
        p = self.plan
        par = parallel_enabled()
        n = perms.shape[1]
        n_batches = losses.shape[1]
        for e in range(perms.shape[0]):
            for s in range(n_batches):
                start = s * batch_size
                m = min(batch_size, n - start)
                self.build.load_inputs(p.tape, p.work, data, perms[e], start, m, par)
                step_data = self._targets(data, perms[e], start, m)
                j = s % accumulate
                g0 = (s - j) * batch_size
                group = min(g0 + accumulate * batch_size, n) - g0
                count = self.build.batch_count(p.tape, data, perms[e], g0, group)
                total, status, sq = self.gradients(step_data, m, count, True, j > 0)
                losses[e, s] = total / self.build.batch_count(p.tape, data, perms[e], start, m)
                if status != C.OK:
                    return e, s, status
                if j == accumulate - 1 or s == n_batches - 1:
                    status = self.update(lrs[e, s], sq)
                    if status != C.OK:
                        return e, s, status
        return perms.shape[0], 0, C.OK

    def predict(self, data, out, batch_size, total=None):
        p = self.plan
        n = data.lengths.shape[0] if p.has_sequences else out.shape[0]
        p.rows_in_order(n)
        for start in range(0, n, batch_size):
            m = min(n, start + batch_size) - start
            self.build.load_inputs(p.tape, p.work, data, p.work.order, start, m, parallel_enabled())
            o = self._forward(m, False, 0)
            if p.output.sequence:
                for i in range(m):
                    r, L = (start + i) * data.steps, int(p.work.lengths[i])
                    r0 = int(p.work.starts[i])
                    out[r:r + L] = o[r0:r0 + L]
            else:
                out[start:start + m] = o

    def evaluate(self, data, n, batch_size, total=None):
        p = self.plan
        p.rows_in_order(n)
        total, correct = 0.0, 0
        for start in range(0, n, batch_size):
            m = min(n, start + batch_size) - start
            self.build.load_inputs(p.tape, p.work, data, p.work.order, start, m, parallel_enabled())
            self._forward(m, False, 0)
            s, c = self.build.score_batch(p.tape, p.work, data, start, m)
            total += s
            correct += c
        return total, correct

    def loss_only(self, data, m):
        p = self.plan
        self.load(data, m)
        self._forward(m, False, 0)
        count = self.build.batch_count(p.tape, data, p.work.order, 0, m)
        if p.has_sequences:
            data = self._targets(data, p.work.order, 0, m)
        return self.build.output_gradient(p.tape, p.work, data.yf, data.yi, data.w, m, count,
                                          parallel_enabled()) / count


def _check_array(h, shape, dtype, who):
    if not isinstance(h, np.ndarray) or h.shape != shape:
        raise TypeError(f"{who} returned {type(h).__name__} of shape "
                        f"{getattr(h, 'shape', None)}; expected an array of shape {shape}")
    if h.dtype != dtype:
        raise TypeError(f"{who} returned dtype {h.dtype}; the model computes in {dtype}")
