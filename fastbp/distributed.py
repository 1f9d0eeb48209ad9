"""Data-parallel training over MPI, and lock-free Hogwild training on threads.

Synchronous data parallelism (seed 002): every rank holds the whole model and the
whole data set and runs the same ``fit``; each global minibatch of the epoch's
permutation is cut into one contiguous shard per rank; each rank computes the
gradient of its shard's loss, averaged over the *global* minibatch (or accumulated
group), so that the sum over ranks is the gradient a single process would take::

    g = sum over ranks r of (1 / |B|) sum over i in shard r of dl_i/dw

The dense gradients are summed by one in-place ``Allreduce`` of the flat gradient
buffer per update; an embedding table's touched rows are exchanged as (ids, rows)
with ``Allgatherv`` and merged in rank order (an id's row is the sum of the ranks'
rows, in rank order; the ids in the order they first occur), so every rank holds
the same gradients and makes the same update: the replicas stay identical.  Since
the shards are contiguous, the merged rows are listed in the order one process
lists them.

Started with ``mpiexec -n R python train.py``; ``model.fit(..., distributed=True)``
is the only change to the script.  Before the first step the ranks check that they
agree on the model, the data's shape and fit's arguments (a named error otherwise)
and take rank 0's weights, optimizer state and random streams.  Rank 0 alone runs
the callbacks (checkpoints) and prints progress; its ``stop_training`` is broadcast
after every epoch.  A rank that raises inside ``fit`` tells the others, which raise
:class:`DistributedError`; a rank that vanishes leaves the others waiting at most
:data:`TIMEOUT` seconds (environment ``FASTBP_MPI_TIMEOUT``) before they raise it, and
such a process ends the whole job with ``MPI_Abort`` when it exits rather than
hanging in ``MPI_Finalize``.

Dropout: rank 0 keys its masks as one process would; rank r > 0 folds r into the key,
so the ranks draw different masks (a 1-rank run equals a plain fit; with dropout an
R-rank run is not the same draw as one process).
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import sys
import time
import warnings

import numpy as np

from .engine import codes as C

#: Seconds a rank waits for the others at one collective before it gives up.
TIMEOUT = float(os.environ.get("FASTBP_MPI_TIMEOUT", "300"))

#: Seconds a rank polls a pending collective without sleeping (then it sleeps 0.1 ms
#: between polls, leaving the cores to ranks that still compute).
SPIN = 0.005

_I64 = np.int64


class DistributedError(RuntimeError):
    """The ranks of a distributed fit could not go on together: one failed, vanished
    or disagrees with the others."""


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(f"fit(distributed=True) needs mpi4py and an MPI library: "
                          f"pip install 'fastbp[mpi]' ({e})") from None
    return MPI


def shard(m: int, size: int, rank: int) -> tuple[int, int]:
    """Rows [lo, hi) of an m-row minibatch that ``rank`` of ``size`` takes: contiguous,
    the first m % size ranks one row more."""
    base, extra = divmod(m, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


_abandoned = []


def _abort_at_exit():
    # a collective left pending (a rank vanished): MPI_Finalize would wait for it forever.
    # mpiexec forwards the ranks' output on its own time and drops what it still holds
    # when the job is aborted: let it pass the traceback on first.
    if _abandoned:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        time.sleep(1.0)
        _abandoned[0].Abort(1)


atexit.register(_abort_at_exit)


class Session:
    """The ranks of COMM_WORLD and their collectives, each waited on for at most
    ``timeout`` seconds (non-blocking calls, polled)."""

    def __init__(self, timeout: float | None = None):
        self.MPI = _mpi()
        self.comm = self.MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.timeout = TIMEOUT if timeout is None else float(timeout)
        self.where = "before the first step"

    # -- collectives ------------------------------------------------------------------
    def _wait(self, request, what):
        if request.Test():
            return
        now = time.monotonic()
        deadline, spin_until = now + self.timeout, now + SPIN
        while not request.Test():
            now = time.monotonic()
            if now > spin_until:  # then let the other ranks' processes have the cores
                time.sleep(1e-4)
            if now > deadline:
                _abandoned.append(self.comm)
                error = DistributedError(
                    f"rank {self.rank} of {self.size} waited {self.timeout:g} s for the other "
                    f"ranks at {what} ({self.where}); one of them has stopped or is stuck.  "
                    f"The job is aborted when this process exits (FASTBP_MPI_TIMEOUT sets the "
                    f"wait)")
                print(f"fastbp.distributed.DistributedError: {error}", file=sys.stderr,
                      flush=True)
                raise error

    def allgather(self, row, what):
        """(size, len(row)) float64: every rank's row, in rank order.  ``what`` names
        the exchange in the error raised when a rank does not come."""
        row = np.ascontiguousarray(row, dtype=np.float64)
        out = np.empty((self.size, row.shape[0]), dtype=np.float64)
        self._wait(self.comm.Iallgather(row, out), what)
        return out

    def allreduce_sum(self, buf, what):
        """buf <- the sum of every rank's buf, in place (``what``: as for
        :meth:`allgather`)."""
        if buf.size:
            self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM), what)

    def allgatherv(self, send, counts, what):
        """Every rank's ``send`` (counts[r] elements from rank r) end to end (``what``: as
        for :meth:`allgather`)."""
        counts = np.asarray(counts, dtype=_I64)
        out = np.empty(int(counts.sum()), dtype=send.dtype)
        displs = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(_I64)
        self._wait(self.comm.Iallgatherv(np.ascontiguousarray(send).reshape(-1),
                                         [out, counts, displs, _mpi_type(self.MPI, send)]),
                   what)
        return out

    def barrier(self, what):
        """Wait until every rank is here, at most ``timeout`` seconds (``what``: as for
        :meth:`allgather`)."""
        self._wait(self.comm.Ibarrier(), what)

    def bcast(self, buf, what):
        """buf <- rank 0's buf, in place (``what``: as for :meth:`allgather`)."""
        if buf.size:
            self._wait(self.comm.Ibcast(buf, root=0), what)

    def bcast_json(self, obj, what):
        """Rank 0's JSON-ready object ``obj`` (sent as UTF-8 text: never a pickle); the
        other ranks' ``obj`` is ignored.  ``what``: as for :meth:`allgather`."""
        raw = json.dumps(obj, sort_keys=True).encode() if self.rank == 0 else b""
        n = np.array([len(raw)], dtype=_I64)
        self.bcast(n, what)
        buf = np.frombuffer(raw, dtype=np.uint8).copy() if self.rank == 0 else \
            np.empty(int(n[0]), dtype=np.uint8)
        self.bcast(buf, what)
        return json.loads(buf.tobytes().decode())


def raise_together(session, error):
    """Print ``error`` (flushed), wait at a timed barrier until every rank has, then raise
    it: mpiexec stops every rank once one exits with an error, and may drop output it
    has not forwarded yet, so each rank's message is out before any of them ends.
    ``session`` is the fit's :class:`Session`."""
    name = type(error).__name__
    if type(error).__module__ not in ("builtins", "__main__"):
        name = f"{type(error).__module__}.{name}"
    print(f"{name}: {error}", file=sys.stderr, flush=True)
    session.barrier("the report of an error every rank raises")
    raise error


def _mpi_type(MPI, a):
    return {np.dtype(np.float64): MPI.DOUBLE, np.dtype(np.float32): MPI.FLOAT,
            np.dtype(np.int64): MPI.INT64_T}[a.dtype]


def _digest(obj) -> float:
    """A 48-bit digest of a JSON-ready object, exact as a float64."""
    raw = json.dumps(obj, sort_keys=True, default=str).encode()
    return float(int.from_bytes(hashlib.sha256(raw).digest()[:6], "little"))


# ---------------------------------------------------------------------------------------
# Threads: ranks x threads never exceed the cores
# ---------------------------------------------------------------------------------------
def threads_per_rank(session, cores=None):
    """(threads each rank of this node may use, ranks on the node, cores): cores // ranks
    on the node, at least 1.  The ranks of a node are those whose processor name
    matches (a timed Allgather of its digest, not MPI's own blocking split), over the
    ranks of ``session``.  ``cores``: this node's cores (default: those this process may
    run on)."""
    host = _digest(session.MPI.Get_processor_name())
    names = session.allgather(np.array([host]), "the count of ranks per node")
    on_node = int(np.sum(names[:, 0] == host))
    if cores is None:
        cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else os.cpu_count() or 1)
    return max(1, cores // on_node), on_node, cores


def _set_threads(session):
    from . import threads
    allowed, on_node, cores = threads_per_rank(session)
    if on_node > cores and session.rank == 0:
        warnings.warn(f"fit(distributed=True): {on_node} ranks share this node's {cores} "
                      f"cores (oversubscribed); each runs on 1 thread", RuntimeWarning,
                      stacklevel=5)
    asked = threads.requested()
    if asked is not None and asked > allowed and session.rank == 0:
        warnings.warn(f"fit(distributed=True): set_num_threads({asked}) with {on_node} ranks "
                      f"on {cores} cores would run {asked * on_node} threads; each rank uses "
                      f"{allowed}", RuntimeWarning, stacklevel=5)
    if threads.get_num_threads() > allowed:
        threads.set_num_threads(allowed, requested=False)


# ---------------------------------------------------------------------------------------
# Before the first step: agree, then take rank 0's state
# ---------------------------------------------------------------------------------------
def _fields(model, data, n, fit_args):
    """What every rank must agree on, field by field."""
    opt = model.optimizer
    return {
        "the model (its config)": model.get_config(),
        "the optimizer and loss": [type(opt).__name__, opt.get_config(), model.loss.name,
                                   model.fused],
        "the number of training rows": n,
        "the data's arrays (shapes and dtypes)": [[list(a.shape), str(a.dtype)]
                                                  for a in (data.xf, data.xi, data.yf,
                                                            data.yi, data.lengths)],
        "fit's arguments": fit_args,
    }


def agree(session, model, data, n, fit_args):
    """Raise the same named error on every rank of ``session`` when the ranks differ on
    the ``model``, the shapes of ``data`` (the fit's data bundle), its row count ``n``
    or fit's arguments ``fit_args`` (a JSON-ready dict)."""
    fields = _fields(model, data, n, fit_args)
    mine = np.array([_digest(v) for v in fields.values()])
    table = session.allgather(mine, "the ranks' check of model and data")
    for k, name in enumerate(fields):
        differ = [r for r in range(session.size) if table[r, k] != table[0, k]]
        if differ:
            shown = ""
            if name == "the number of training rows":
                counts = session.allgather(np.array([n], dtype=np.float64), "the row counts")
                shown = " (" + ", ".join(f"rank {r}: {int(c)}" for r, c in
                                         enumerate(counts[:, 0])) + ")"
            raise_together(session, DistributedError(
                f"fit(distributed=True): rank(s) {differ} differ from rank 0 on {name}{shown}; "
                f"every rank must run the same script on the same data"))


def take_rank0_state(session, model):
    """Every rank's weights, optimizer state, step counts and random streams <- rank 0's,
    for ``model`` over the ranks of ``session``."""
    plan = model._plan
    for a in (model.params, model.tables, model.optimizer.state, model.optimizer.step,
              plan.emb_state, plan.emb_step, plan.stream.step, model._rng_step):
        session.bcast(a, "the copy of rank 0's state")
    state = session.bcast_json({"epoch": int(model.epoch),
                                "dropout_seed": int(model._dropout_seed),
                                "shuffle": model._shuffle_rng.bit_generator.state},
                               "the copy of rank 0's state")
    model.epoch = state["epoch"]
    model._dropout_seed = state["dropout_seed"]
    model._shuffle_rng.bit_generator.state = state["shuffle"]


def rank_seed(seed: int, rank: int) -> int:
    """Rank r's dropout key from the model's ``seed``: that seed for rank 0, one of its
    own for the others (``rank`` folded into it)."""
    if rank == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), rank]).generate_state(1, np.uint64)[0] >> 1)


# ---------------------------------------------------------------------------------------
# The driver: the inner driver's two phases with the exchange between them
# ---------------------------------------------------------------------------------------
# control row of a minibatch: error flag, status, summed loss, then each table's rows
_ERROR, _STATUS, _TOTAL, _ROWS = 0, 1, 2, 3


class DataParallel:
    """The epochs of a fit run over the ranks: the inner driver (compiled or per-layer)
    computes a shard's gradients, this one sums them over the ranks, and the inner
    driver updates.  Everything else is the inner driver's.

    Parameters
    ----------
    inner : the model's driver (compiled or per-layer)
    session : Session
        The ranks of the fit.
    """

    def __init__(self, inner, session):
        self.inner = inner
        self.session = session
        self.plan = inner.plan

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _clear(self):
        p = self.plan
        p.grads[:] = 0
        p.work.n_rows[:] = 0

    def epochs(self, data, perms, batch_size, accumulate, lrs, losses):
        """Run the epochs, the gradients of every update summed over the ranks.

        Parameters
        ----------
        data : the fit's data bundle (inputs, targets, lengths).
        perms : int64 array (epochs, n): each epoch's row order.
        batch_size : rows per minibatch.
        accumulate : minibatches whose gradients are summed into one update.
        lrs : float64 array (epochs, minibatches): the learning rate of each step.
        losses : float64 array (epochs, minibatches), filled with each minibatch's loss.

        Returns
        -------
        (epochs done, step, status): ``status`` is OK (``fastbp.engine.codes``), or the
        divergence met at that epoch and step.
        """
        from .threads import parallel_enabled
        p, inner, s_ = self.plan, self.inner, self.session
        build = inner.build_for(batch_size)
        par = parallel_enabled()
        tables = p.trainable_tables()
        own = p.stream
        p.stream = own._replace(seed=rank_seed(own.seed, s_.rank))
        try:
            n = perms.shape[1]
            n_batches = losses.shape[1]
            row = np.zeros(_ROWS + p.tables.shape[0])  # this rank's control row, reused
            for e in range(perms.shape[0]):
                perm = perms[e]
                for s in range(n_batches):
                    s_.where = f"minibatch {s} of {n_batches}"
                    start = s * batch_size
                    m = min(batch_size, n - start)
                    j = s % accumulate
                    g0 = (s - j) * batch_size
                    group = min(g0 + accumulate * batch_size, n) - g0
                    count = build.batch_count(p.tape, data, perm, g0, group)
                    lo, hi = shard(m, s_.size, s_.rank)
                    row[:] = 0
                    try:
                        if hi > lo:
                            build.load_inputs(p.tape, p.work, data, perm, start + lo, hi - lo,
                                              par)
                            yf, yi, yw = build.load_targets(p.tape, p.work, data, perm,
                                                            start + lo, hi - lo, par)
                            total, status, _ = inner.gradients(data._replace(yf=yf, yi=yi,
                                                                             w=yw),
                                                               hi - lo, count, True, j > 0)
                        else:  # a last minibatch smaller than the ranks: nothing here
                            if j == 0:
                                self._clear()
                            p.stream.step[0] += 1
                            total, status = 0.0, C.OK
                    except BaseException:
                        row[_ERROR] = 1
                        s_.allgather(row, "the exchange of a failed rank's error")
                        # the others print their error before this process may end (mpiexec
                        # stops every rank once one exits with an error)
                        s_.barrier("the report of an error every rank raises")
                        raise
                    row[_STATUS], row[_TOTAL] = status, total
                    row[_ROWS:] = np.maximum(p.work.n_rows, 0)
                    ctl = s_.allgather(row, "the minibatch's losses and statuses")
                    failed = np.flatnonzero(ctl[:, _ERROR])
                    if failed.size:
                        error = DistributedError(
                            f"rank(s) {failed.tolist()} raised an error in minibatch {s} of "
                            f"epoch {e + 1} of this fit (see their output); rank {s_.rank} "
                            f"stops with them")
                        raise_together(s_, error)
                    losses[e, s] = float(np.sum(ctl[:, _TOTAL])) / build.batch_count(
                        p.tape, data, perm, start, m)
                    bad = np.flatnonzero(ctl[:, _STATUS])
                    if bad.size:
                        return e, s, int(ctl[bad[0], _STATUS])
                    if j == accumulate - 1 or s == n_batches - 1:
                        s_.allreduce_sum(p.grads, "the Allreduce of the gradients")
                        for t in tables:
                            self._merge_rows(t, ctl[:, _ROWS + t].astype(_I64))
                        status, sq = inner.status()
                        if status == C.OK:
                            status = inner.update(lrs[e, s], sq)
                        if status != C.OK:
                            return e, s, status
            return perms.shape[0], 0, C.OK
        finally:
            p.stream = p.stream._replace(seed=own.seed)

    def _merge_rows(self, t, counts):
        """Table t's row gradients <- the sum over ranks, rows in first-occurrence order
        over the ranks in order (the same on every rank)."""
        p, s_ = self.plan, self.session
        rows, G = p.row_gradients(t)
        d = G.shape[1]
        ids = s_.allgatherv(rows, counts, "the exchange of embedding rows")
        grads = s_.allgatherv(G, counts * d, "the exchange of embedding rows").reshape(-1, d)
        uniq, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")
        place = np.empty_like(order)
        place[order] = np.arange(order.size)
        k = uniq.size
        rows_all, G_all = p.row_buffers(t)
        if k > rows_all.shape[0]:
            raise DistributedError(f"table {t}: {k} distinct rows in an update, room for "
                                   f"{rows_all.shape[0]}")
        rows_all[:k] = uniq[order]
        merged = G_all[:k]
        merged[:] = 0
        target = place[inverse]
        lo = 0
        for r in range(s_.size):  # a rank's ids are distinct: one vector add per rank,
            hi = lo + int(counts[r])  # in rank order
            merged[target[lo:hi]] += grads[lo:hi]
            lo = hi
        p.work.n_rows[t] = k


def begin(model, data, n, batch_size, fit_args):
    """The session of a distributed fit, or None (with a warning) when this process is
    the only rank.  Checks, agrees and copies rank 0's state before the first step.

    ``model`` is the model being fit, ``data`` its data bundle of ``n`` rows,
    ``batch_size`` the minibatch size (at least one row per rank) and ``fit_args``
    the fit's arguments the ranks must agree on (a JSON-ready dict)."""
    session = Session()
    if session.size == 1:
        warnings.warn("fit(distributed=True) in a process that is the only MPI rank (not "
                      "started by mpiexec -n R, R > 1): training on this process alone",
                      RuntimeWarning, stacklevel=4)
        return None
    if batch_size < session.size:
        raise_together(session, ValueError(
            f"fit(distributed=True): batch_size {batch_size} is smaller than the "
            f"{session.size} ranks; each rank needs at least one row of every minibatch"))
    _set_threads(session)
    agree(session, model, data, n, fit_args)
    take_rank0_state(session, model)
    return session


# ---------------------------------------------------------------------------------------
# Hogwild: threads on disjoint minibatches, updating shared weights without locks
# ---------------------------------------------------------------------------------------
class Hogwild:
    """The epochs of a fit on ``threads`` Python threads (the compiled kernels release
    the GIL): minibatch s goes to thread s % threads, each thread runs the fused epoch
    loop on its own minibatches with its own workspace and gradients, reading and
    writing the shared weights and optimizer state without locks.  Not deterministic.

    Parameters
    ----------
    inner : the model's driver (its compiled ``build`` runs each thread's epochs)
    threads : int
        The number of threads.
    """

    def __init__(self, inner, threads):
        self.inner = inner
        self.plan = inner.plan
        self.threads = threads
        p = self.plan
        self._bundles = []
        for k in range(threads):
            w = p.weights
            weights = w._replace(grads=w.grads.copy(), pscratch=w.pscratch.copy())
            work = type(p.work)(*[a.copy() for a in p.work])
            self._bundles.append((weights, work))

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def epochs(self, data, perms, batch_size, accumulate, lrs, losses):
        """Run the epochs on the threads (``accumulate`` is not used: each minibatch is
        one update).

        Parameters
        ----------
        data : the fit's data bundle (inputs, targets, lengths).
        perms : int64 array (epochs, n): each epoch's row order.
        batch_size : rows per minibatch.
        accumulate : minibatches whose gradients are summed into one update.
        lrs : float64 array (epochs, minibatches): the learning rate of each step.
        losses : float64 array (epochs, minibatches), filled with each minibatch's loss.

        Returns
        -------
        (epochs done, step, status): ``status`` is OK (``fastbp.engine.codes``), or the
        divergence met at that epoch and step.
        """
        from concurrent.futures import ThreadPoolExecutor
        # each worker thread runs its minibatches without threads of its own
        p, build, T = self.plan, self.inner.serial, self.threads
        n = perms.shape[1]
        n_batches = losses.shape[1]
        opt = p.optim_bundle()
        for e in range(perms.shape[0]):
            mine = [np.arange(k, n_batches, T) for k in range(T)]

            def run(k):
                batches = mine[k]
                if batches.size == 0:
                    return 0, C.OK, np.zeros(0)
                idx = np.concatenate([perms[e, b * batch_size:min(n, (b + 1) * batch_size)]
                                      for b in batches])
                weights, work = self._bundles[k]
                stream = p.stream._replace(seed=rank_seed(p.stream.seed, k),
                                           step=p.stream.step.copy())
                out = np.zeros((1, batches.size))
                done, step, status = build.train_epochs(
                    p.tape, weights, work, opt, data, idx[None, :].astype(_I64), batch_size, 1,
                    np.ascontiguousarray(lrs[e:e + 1, batches]), stream, False, out)
                return step, status, out[0]

            with ThreadPoolExecutor(max_workers=T) as pool:
                results = list(pool.map(run, range(T)))
            p.stream.step[0] += n_batches
            for k, (step, status, out) in enumerate(results):
                losses[e, mine[k]] = out
                if status != C.OK:
                    return e, int(mine[k][step]), int(status)
        return perms.shape[0], 0, C.OK
