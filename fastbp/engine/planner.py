"""The planner: a model's graph lowered once to a tape, with its arenas and workspaces.

The tape lists the nodes in topological order (the model's inputs first, then
every call in the order it was made).  Each node names its operands and its
output value explicitly; each value has a per-sample offset and width in the
activation arena (int ids: in the id arena), and its gradient sits at the same
place in the gradient arena.  The planner reads only what layers declare
(:class:`~fastbp.engine.graph.NodeSpec`), never a layer's internals.

Workspaces are allocated once for the largest batch seen so far and reused:
nothing is allocated per step.
"""
from __future__ import annotations

import numpy as np

from ..kernels.embedding import table_size
from ..kernels.gemm import forward_work_size
from ..kernels.recurrent import work_size as recurrent_work_size
from . import codes as C
from .bundles import Data, Optim, Stream, Tape, Weights, Work

_I64 = np.int64


class Layout:
    """Where every parameter and table of a graph's layers lives.

    ``param_offsets[i]`` : name -> offset in the flat buffer of ``layers[i]``;
    ``table_offsets[i]`` : name -> (table index, offset in the flat embedding buffer);
    ``n_params``, ``n_emb`` : buffer lengths.  Layers are taken in the order of their
    first call, each once however often it is called.
    """

    def __init__(self, calls):
        self.layers, self.specs = [], []
        seen = {}
        for call in calls:
            if id(call.layer) not in seen:
                seen[id(call.layer)] = len(self.layers)
                self.layers.append(call.layer)
                self.specs.append(call.spec)
        self.index = seen
        self.param_offsets, self.table_offsets = [], []
        self.tables = []  # (layer index, name, vocab, dim, attrs)
        off = emb = 0
        for i, spec in enumerate(self.specs):
            offs, toffs = {}, {}
            for name, shape in spec.params.items():
                offs[name] = off
                off += int(np.prod(shape))
            for name, (V, d) in spec.tables.items():
                toffs[name] = (len(self.tables), emb)
                self.tables.append((i, name, int(V), int(d), spec.attrs))
                emb += int(V) * int(d)
            self.param_offsets.append(offs)
            self.table_offsets.append(toffs)
        self.n_params, self.n_emb = off, emb


class Plan:
    """The tape of a model and the buffers every driver shares.

    Parameters
    ----------
    inputs : list of input Values; output : the Value the loss reads
    calls : the graph's calls in topological order; layout : their :class:`Layout`
    params, grads, emb : the model's flat buffers; dtype : their dtype
    checkpoint_every : k > 0 keeps the output of every k-th node (and whatever a later
        segment of k nodes reads); the backward pass recomputes the others segment by
        segment, so the arenas hold about n/k + k values instead of n
    """

    def __init__(self, inputs, output, calls, layout, params, grads, emb, dtype,
                 checkpoint_every: int = 0):
        self.inputs, self.output, self.calls, self.layout = inputs, output, calls, layout
        self.dtype = dtype
        self.params, self.grads, self.emb = params, grads, emb
        values = list(inputs)
        vindex = {id(v): i for i, v in enumerate(values)}
        for call in calls:
            vindex[id(call.output)] = len(values)
            values.append(call.output)
        self.values = values
        self.value_index = vindex
        n_nodes = len(inputs) + len(calls)
        nodes = np.zeros((n_nodes, C.NODE_COLS), dtype=_I64)
        fattrs = np.zeros((n_nodes, C.FLOAT_COLS), dtype=np.float64)
        vtable = np.zeros((len(values), C.VALUE_COLS), dtype=_I64)
        operands = []
        # values: offsets in their arenas, per sample
        for v, value in enumerate(values):
            vtable[v, C.WIDTH] = value.width
            vtable[v, C.IS_IDS] = int(value.is_ids)
            vtable[v, C.SEQ] = int(value.sequence)
        # input nodes: their columns in the stacked data arrays (a sequence input takes
        # its width times the data's steps)
        cols = {True: [0, 0], False: [0, 0]}  # is_ids -> [plain widths, sequence widths]
        for n, value in enumerate(inputs):
            nodes[n, C.KIND] = C.INPUT
            nodes[n, C.OUT] = n
            col = cols[bool(value.is_ids)]
            nodes[n, C.DATA_COL], nodes[n, C.SEQ_COL] = col
            col[int(value.sequence)] += value.width
        # compute nodes
        key = cache = 0
        self.node_layers = [None] * len(inputs)
        for j, call in enumerate(calls):
            n = len(inputs) + j
            spec = call.spec
            li = layout.index[id(call.layer)]
            self.node_layers.append(call.layer)
            nodes[n, C.KIND] = spec.kind
            nodes[n, C.ARG0] = len(operands)
            nodes[n, C.N_ARGS] = len(call.inputs)
            nodes[n, C.OUT] = vindex[id(call.output)]
            for v in call.inputs:
                operands.append([vindex[id(v)], 0])
            if spec.kind == C.DENSE:
                nodes[n, C.W_OFF] = layout.param_offsets[li]["W"]
                nodes[n, C.ACT] = spec.attrs["act"]
                fattrs[n, C.SLOPE] = spec.fattrs.get("slope", 0.0)
            elif spec.kind == C.DROPOUT:
                fattrs[n, C.P] = spec.fattrs["p"]
            elif spec.kind == C.WINDOW:
                nodes[n, C.TABLE] = layout.table_offsets[li]["E"][0]
            elif spec.kind == C.RECURRENT:
                nodes[n, C.W_OFF] = layout.param_offsets[li]["W"]
                nodes[n, C.ACT] = spec.attrs["act"]
                nodes[n, C.CELL] = spec.attrs["cell"]
                nodes[n, C.REVERSE] = spec.attrs["reverse"]
                nodes[n, C.LAST] = spec.attrs["last"]
                nodes[n, C.TRUNCATE] = spec.attrs["truncate"]
                nodes[n, C.CACHE_OFF] = cache
                cache += spec.cache
            if spec.kind not in (C.INPUT, C.WINDOW):
                nodes[n, C.KEY] = key  # dropout keys: the compute nodes in order
                key += 1
        operands = np.array(operands, dtype=_I64).reshape(-1, C.OPERAND_COLS)
        # Which values a gradient flows into: those with a trained parameter upstream.
        for n in range(len(inputs), n_nodes):
            spec = calls[n - len(inputs)].spec
            trains = bool(spec.params) or (spec.kind == C.WINDOW and spec.attrs["trainable"])
            a0, na = nodes[n, C.ARG0], nodes[n, C.N_ARGS]
            upstream = any(vtable[operands[a, C.VALUE], C.NEEDS_GRAD] for a in range(a0, a0 + na))
            vtable[nodes[n, C.OUT], C.NEEDS_GRAD] = int(trains or upstream)
        # A value read more than once: the reader the backward pass meets first writes its
        # gradient, the later ones add (nodes in reverse order, operands in order).
        written, first_call = set(), set()
        self.shared = False
        for n in range(n_nodes - 1, len(inputs) - 1, -1):
            a0, na = nodes[n, C.ARG0], nodes[n, C.N_ARGS]
            for a in range(a0, a0 + na):
                v = operands[a, C.VALUE]
                operands[a, C.GRAD_ACC] = int(v in written)
                written.add(v)
            layer = self.node_layers[n]
            if calls[n - len(inputs)].spec.params:
                nodes[n, C.PARAM_ACC] = int(id(layer) in first_call)
                self.shared |= id(layer) in first_call
                first_call.add(id(layer))
        # embedding tables
        tables = np.zeros((len(layout.tables), C.TABLE_COLS), dtype=_I64)
        for t, (li, name, V, d, attrs) in enumerate(layout.tables):
            tables[t, C.E_OFF] = layout.table_offsets[li][name][1]
            tables[t, C.VOCAB], tables[t, C.DIM] = V, d
            tables[t, C.PADDING] = attrs["padding"]
            tables[t, C.TRAINABLE] = attrs["trainable"]
        for n in range(len(inputs), n_nodes):
            if nodes[n, C.KIND] == C.WINDOW:
                v = operands[nodes[n, C.ARG0], C.VALUE]
                tables[nodes[n, C.TABLE], C.POSITIONS] += vtable[v, C.WIDTH]
        self.nodes, self.fattrs, self.operands, self.vtable, self.tables = (
            nodes, fattrs, operands, vtable, tables)
        self.cache_width = cache  # per sample and step, over every recurrent node
        self.has_sequences = bool(vtable[:, C.SEQ].any())
        self.steps = 1  # the longest batch (in steps) the arenas are laid out for
        self.checkpoint_every = checkpoint_every
        self.segments = self._place_values(checkpoint_every)
        self.fusable = all(c.spec.kind != C.CUSTOM for c in calls)
        self.n_out = output.width
        self.loss_code = 0
        self.capacity = 0
        self.accumulate = 1
        self.opt = None
        self.emb_state = np.zeros(1, dtype=dtype)
        self.emb_step = np.zeros(max(1, len(layout.tables)), dtype=_I64)
        self.stream = Stream(0, np.zeros(1, dtype=_I64))
        self._order = np.zeros(0, dtype=_I64)
        self._seq_buffers = [np.zeros(1, dtype=_I64), np.zeros(2, dtype=_I64),
                             np.ones(3, dtype=_I64),
                             np.empty(1, dtype=dtype), np.empty(1, dtype=dtype)]
        self.tape = None
        self.weights = None
        self.work = None
        self._retape()

    def _place_values(self, every):
        """Per-sample offsets of every value (a sequence takes its width times
        ``self.steps``); returns the segments table (first node, last node) of gradient
        checkpointing, empty without it."""
        nodes, ops, vtable = self.nodes, self.operands, self.vtable
        steps = self.steps

        def span(v):
            return int(vtable[v, C.WIDTH]) * (steps if vtable[v, C.SEQ] else 1)
        n_in = len(self.inputs)
        compute = list(range(n_in, nodes.shape[0]))
        segment = {}  # node -> its segment
        if every:
            for j, n in enumerate(compute):
                segment[n] = j // every
        kept = set(range(n_in)) | {self.value_of(self.output)}
        if every:
            for n in compute:
                last = segment[n] != segment.get(n + 1, -1)
                if last:
                    kept.add(int(nodes[n, C.OUT]))
                a0, na = nodes[n, C.ARG0], nodes[n, C.N_ARGS]
                for a in range(a0, a0 + na):
                    v = int(ops[a, C.VALUE])  # value v >= n_in is node v's output
                    if v >= n_in and segment[n] != segment[v]:
                        kept.add(v)  # read by a later segment: it cannot be recomputed
        else:
            kept = set(range(len(self.values)))
        acts = ids = 0
        for v in sorted(kept):
            if vtable[v, C.IS_IDS]:
                vtable[v, C.OFFSET] = ids
                ids += span(v)
            else:
                vtable[v, C.OFFSET] = acts
                acts += span(v)
        # values of one segment share a scratch region with every other segment's
        scratch = 0
        if every:
            used = {}
            for n in compute:
                v = int(nodes[n, C.OUT])
                if v in kept:
                    continue
                j = segment[n]
                vtable[v, C.OFFSET] = acts + used.get(j, 0)
                used[j] = used.get(j, 0) + span(v)
            scratch = max(used.values(), default=0)
        self.acts_width, self.ids_width = acts + scratch, ids
        if not every:
            return np.zeros((0, 2), dtype=_I64)
        count = max(segment.values()) + 1 if segment else 0
        segs = np.zeros((count, 2), dtype=_I64)
        for n in reversed(compute):
            segs[segment[n], 0] = n
        for n in compute:
            segs[segment[n], 1] = n
        return segs

    # -- what the tables say ----------------------------------------------------------
    def value_of(self, value) -> int:
        return self.value_index[id(value)]

    def needs_grad(self, v: int) -> bool:
        return bool(self.vtable[v, C.NEEDS_GRAD])

    def trainable_tables(self) -> list:
        return [t for t in range(self.tables.shape[0]) if self.tables[t, C.TRAINABLE]]

    def table_nodes(self, t: int) -> list:
        """The WINDOW nodes that read table t."""
        return [n for n in range(self.nodes.shape[0])
                if self.nodes[n, C.KIND] == C.WINDOW and self.nodes[n, C.TABLE] == t]

    def _retape(self):
        self.tape = Tape(self.nodes, self.fattrs, self.operands, self.vtable, self.tables,
                         self.segments, int(self.loss_code), self.value_of(self.output))

    def set_loss(self, code: int) -> None:
        self.loss_code = int(code)
        self._retape()

    # -- optimizer state of the tables ----------------------------------------------------
    def attach_optimizer(self, optimizer, tables) -> None:
        """Lay out the lazy state of the trainable tables (k rows each) and hand each
        table's layer its view; ``tables``: the layers owning tables, by table index."""
        k = optimizer.state_rows()
        off = 0
        for t in range(self.tables.shape[0]):
            self.tables[t, C.STATE_OFF] = off
            if self.tables[t, C.TRAINABLE]:
                off += k * int(self.tables[t, C.VOCAB] * self.tables[t, C.DIM])
        if self.emb_state.shape != (max(1, off),) or self.emb_state.dtype != self.dtype:
            self.emb_state = np.zeros(max(1, off), dtype=self.dtype)
            for t in self.trainable_tables():
                so, V, d = (int(self.tables[t, c]) for c in (C.STATE_OFF, C.VOCAB, C.DIM))
                view = self.emb_state[so:so + k * V * d].reshape(k, V, d)
                for r, fill in enumerate(optimizer.state_fill()):
                    view[r] = fill
            self.emb_step[:] = 0
        for t, layer in enumerate(tables):
            V, d = int(self.tables[t, C.VOCAB]), int(self.tables[t, C.DIM])
            layer.step = self.emb_step[t:t + 1]
            if self.tables[t, C.TRAINABLE]:
                so = int(self.tables[t, C.STATE_OFF])
                layer.state = self.emb_state[so:so + k * V * d].reshape(k, V, d)
            else:
                layer.state = None
        self.opt = optimizer

    def optim_bundle(self) -> Optim:
        o = self.opt
        return Optim(int(o.code), o.hyperparams(), o.state, o.step, self.emb_state,
                     self.emb_step, float(o.clip_value))

    # -- workspaces -------------------------------------------------------------------------
    def workspace(self, batch: int, accumulate: int = 1, steps: int = 1) -> None:
        """Buffers for minibatches of up to ``batch`` rows (of up to ``steps`` steps for
        sequences), ``accumulate`` of them summed."""
        steps = steps if self.has_sequences else 1
        if batch <= self.capacity and accumulate <= self.accumulate and steps <= self.steps:
            return
        batch = max(batch, self.capacity)
        accumulate = max(accumulate, self.accumulate)
        if steps > self.steps:
            self.steps = steps
            self._place_values(self.checkpoint_every)
        steps = self.steps
        dt = self.dtype
        float_widths = [v.width * (steps if v.sequence else 1)
                        for v in self.values if not v.is_ids] or [1]
        widest = max(float_widths)
        acts = np.empty(max(1, batch * self.acts_width), dtype=dt)
        agrads = np.empty_like(acts)
        ids = np.empty(max(1, batch * self.ids_width), dtype=_I64)
        work = np.empty(max(1, forward_work_size(batch, widest)), dtype=dt)
        tmp = np.empty(batch * widest, dtype=dt)
        rows_len = grads_len = 0
        for t in range(self.tables.shape[0]):
            cap = batch * accumulate * steps * int(self.tables[t, C.POSITIONS])
            self.tables[t, C.ROW_CAP] = cap
            self.tables[t, C.ROWS_OFF] = rows_len
            self.tables[t, C.HASH_SIZE] = table_size(cap)
            self.tables[t, C.GRAD_OFF] = grads_len
            rows_len += cap + table_size(cap)
            grads_len += cap * int(self.tables[t, C.DIM])
        rows = np.empty(max(1, rows_len), dtype=_I64)
        row_grads = np.empty(max(1, grads_len), dtype=dt)
        n_rows = np.zeros(max(1, self.tables.shape[0]), dtype=_I64)
        out_steps = steps if self.output.sequence else 1
        ybf = np.zeros((batch * out_steps, self.n_out), dtype=dt)
        ybi = np.zeros(batch * out_steps, dtype=_I64)
        ybw = np.zeros(batch * out_steps, dtype=np.float64)
        rwork = 1
        for n in range(self.nodes.shape[0]):
            if self.nodes[n, C.KIND] == C.RECURRENT:
                v_in = self.operands[self.nodes[n, C.ARG0], C.VALUE]
                rwork = max(rwork, recurrent_work_size(
                    int(self.nodes[n, C.CELL]), batch, steps,
                    int(self.vtable[self.nodes[n, C.OUT], C.WIDTH]), int(self.vtable[v_in, C.WIDTH])))
        self._buffers = [acts, agrads, ids, work, tmp,
                         np.empty(batch * out_steps, dtype=np.float64), rows, row_grads, n_rows,
                         ybf, ybi, ybw]
        self._seq_buffers = [np.zeros(batch, dtype=_I64), np.zeros(batch + 1, dtype=_I64),
                             np.array([1, steps, batch], dtype=_I64),
                             np.empty(max(1, batch * steps * self.cache_width), dtype=dt),
                             np.empty(rwork, dtype=dt)]
        self.capacity, self.accumulate = batch, accumulate
        self._order = np.arange(max(batch, self._order.shape[0]), dtype=_I64)
        self._rebundle()

    def _rebundle(self):
        self.work = Work(*self._buffers, self._order, *self._seq_buffers)
        size = 1
        if self.shared or self.accumulate > 1:
            for call in self.calls:
                size = max(size, sum(int(np.prod(s)) for s in call.spec.params.values()))
        if self.weights is None or self.weights.pscratch.shape[0] < size:
            self.weights = Weights(self.params, self.grads, self.emb,
                                   np.empty(size, dtype=self.dtype))

    def rows_in_order(self, n: int) -> None:
        """Make ``work.order`` 0 .. n - 1 at least (inference over n rows)."""
        if self._order.shape[0] < n:
            self._order = np.arange(n, dtype=_I64)
            self._rebundle()

    # -- views for the per-layer path and inspection -----------------------------------------
    def slot(self, v: int, m: int, grad: bool = False) -> np.ndarray:
        """Value v at batch m: its (m, width) block of the activation (or gradient) arena
        ((R, width) for a sequence, R: the steps of the last batch loaded in all, sample
        i's at rows work.starts[i] ...)."""
        off, w = int(self.vtable[v, C.OFFSET]) * m, int(self.vtable[v, C.WIDTH])
        rows = int(self.work.steps[2]) if self.vtable[v, C.SEQ] else m
        if self.vtable[v, C.IS_IDS]:
            arena = self.work.ids
        else:
            arena = self.work.agrads if grad else self.work.acts
        return arena[off:off + rows * w].reshape(rows, w)

    def row_gradients(self, t: int):
        """(rows, gradients) of table t after the last gradient phase."""
        cap, ro, go = (int(self.tables[t, c]) for c in (C.ROW_CAP, C.ROWS_OFF, C.GRAD_OFF))
        d = int(self.tables[t, C.DIM])
        n = max(0, int(self.work.n_rows[t]))
        rows = self.work.rows[ro:ro + cap][:n]
        G = self.work.row_grads[go:go + cap * d].reshape(cap, d)[:n]
        return rows, G

    def row_buffers(self, t: int):
        """(rows, gradients) of table t at full capacity, to be written (then set
        ``work.n_rows[t]``)."""
        cap, ro, go = (int(self.tables[t, c]) for c in (C.ROW_CAP, C.ROWS_OFF, C.GRAD_OFF))
        d = int(self.tables[t, C.DIM])
        return self.work.rows[ro:ro + cap], self.work.row_grads[go:go + cap * d].reshape(cap, d)

    def data(self, xf, xi, yf, yi, lengths=None, tokens=None, steps=1, w=None) -> Data:
        if lengths is None:
            lengths = np.ones(1, dtype=_I64)
        if tokens is None:
            tokens = np.ones(1, dtype=_I64)
        if w is None:
            w = np.empty(0, dtype=np.float64)
        return Data(xf, xi, yf, yi, lengths, tokens, int(steps), w)
