"""Compile a model's build on two cores: numba compiles on one thread per process.

On an empty cache, :func:`compile_model` starts a helper process that compiles the
backward half of the model's build (the optimizer's update, the loss's gradient,
the gradient checks, the backward node loop and its kernels) into numba's
on-disk cache, while this process compiles the forward half (the forward node
loop and its kernels, the input gather).  Then, with both halves in the cache,
this process compiles the fused epoch loop while the helper compiles
``evaluate`` and ``predict``.  Each side works on its own copy of the model,
loaded from a checkpoint in a temporary folder, on a minibatch of zeros, so the
model itself is not touched.  The build compiled is the one ``fit`` picks for that
minibatch size (serial for small models: :meth:`.drivers.Compiled.build_for`).

The helper can only save time: if it fails, is slow or cannot start, this
process compiles whatever is missing itself, as it would without it.  It runs
:func:`_helper` with this process's own fastbp first on its path, and prints
``backward``, ``evaluate`` (and ``predict``) as it finishes each part.
"""
from __future__ import annotations

import os
import select
import subprocess
import sys
import tempfile
import time

import numba
import numpy as np

from ..kernels.losses import SOFTMAX_CROSS_ENTROPY

#: How long this process waits for the helper's backward half, then for its end (s).
WAIT_S = 300.0


#: The minibatch size compiled for when none is given (fit's default).
BATCH_SIZE = 32


def _zeros(model, rows):
    """``rows`` rows of zeros for every input (sequences of one step, whose ids are not
    the padding id), and a matching target."""
    X = []
    for v in model.inputs:
        shape = (rows, 1, v.width) if v.sequence else (rows, v.width)
        X.append(np.zeros(shape, dtype=np.int64 if v.is_ids else model.dtype))
        if v.sequence and v.is_ids:
            X[-1] = (X[-1] + (model._length_input[1] == 0)).reshape(rows, -1)
    if model.output.sequence:
        y = np.zeros((rows, 1), dtype=np.int64)
    elif model.loss.code == SOFTMAX_CROSS_ENTROPY:  # an integer label
        y = np.zeros(rows, dtype=np.int64)
    else:
        y = np.zeros((rows, model.n_out), dtype=model.dtype)
    return (X if len(X) > 1 else X[0]), y


def _args(model, rows):
    """The plan's bundles for one row, the way the interpreter passes them, and the
    build that fit picks for minibatches of ``rows`` rows."""
    from ..threads import parallel_enabled
    X, y = _zeros(model, 1)
    data, m = model._data(X, y)
    model._workspace(m)
    return model._plan, data, m, parallel_enabled(), model._driver.build_for(rows)


def forward_half(model, rows=BATCH_SIZE) -> None:
    """The forward node loop (the dense layers' products first) and the input gather."""
    from ..kernels.rows import gather_rows
    from . import codes as C
    from .specialize import function
    p, data, m, par, b = _args(model, rows)
    w = p.work
    b.forward_nodes(p.tape, p.weights, w, 0, p.nodes.shape[0], m, p.stream.seed, 0, False, par)
    gather = function(gather_rows, b.features)
    for n in range(len(model.inputs)):  # load_inputs' gathers
        v = int(p.nodes[n, C.OUT])
        src = data.xi if p.vtable[v, C.IS_IDS] else data.xf
        col = int(p.nodes[n, C.DATA_COL] + data.steps * p.nodes[n, C.SEQ_COL])
        gather(src, col, w.order, 0, p.slot(v, m), par)


def backward_half(model, rows=BATCH_SIZE) -> None:
    """The optimizer's update, the loss gradient, the gradient checks, then the backward
    node loop (by then the other process has usually cached the products it shares)."""
    from ..kernels import losses, optim
    from .specialize import function
    p, data, m, par, b = _args(model, rows)
    w, f = p.work, b.features
    o = p.optim_bundle()
    function(optim.apply_update, f)(o.code, p.weights.params, p.weights.grads, o.state, o.hp,
                                    0.0, o.step[0] + 1, 1.0, par)
    out = p.slot(p.value_of(p.output), m)
    g = p.slot(p.value_of(p.output), m, grad=True)
    function(losses.loss_sum_and_grad, f)(p.tape.loss, out, w.ybf, w.ybi[:m], w.ybw[:0], g,
                                          w.row_loss, m, par)
    function(optim.squared_norm, f)(p.weights.grads, par)
    optim.count_nonfinite(p.weights.grads)
    b.backward_nodes(p.tape, p.weights, w, 0, p.nodes.shape[0], m, p.stream.seed, 0, False,
                     False, par)


def compiled_build(model, batch_size=BATCH_SIZE):
    """The build a compiled model's ``fit`` runs in for minibatches of ``batch_size``
    rows, as it would pick it now (its driver is not touched)."""
    from .drivers import Compiled
    return Compiled(model._plan).build_for(batch_size)


def compile_model(model, predict: bool = True, batch_size: int = BATCH_SIZE) -> float:
    """Compile (or load) what ``fit`` on minibatches of ``batch_size`` rows,
    ``evaluate`` and (with ``predict``) ``predict`` of a compiled model run, with a
    helper process when there is a second core and the cache is empty.  Returns the
    seconds taken."""
    from .._cache import is_cached
    from ..model.persist import load
    t0 = time.perf_counter()
    fused = model.fused and model._driver is not None
    cold = fused and not is_cached(compiled_build(model, batch_size).train_epochs)
    with tempfile.TemporaryDirectory(prefix="fastbp-compile-") as tmp:
        path = os.path.join(tmp, "model.fbp")
        model.save(path)
        clone = load(path)
        proc = None
        if cold and (os.cpu_count() or 1) > 1:
            proc = _start(path, predict, batch_size)
        try:
            if proc is not None:
                forward_half(clone, batch_size)
                _wait_for(proc, "backward")
            X, y = _zeros(clone, batch_size)
            clone.fit(X, y, epochs=1, batch_size=batch_size, shuffle=False)
            if proc is not None:
                _wait_for(proc, "evaluate")
            clone.evaluate(X, y)
            if predict:
                if proc is not None:
                    _wait_for(proc, "predict")
                clone.predict(X)
        finally:
            if proc is not None:
                _stop(proc, wait=predict)
    return time.perf_counter() - t0


def _start(path, predict, batch_size):
    # The helper must import this very fastbp (its cache is where this process looks):
    # ``python -m`` would put the working folder first on the path, and a source
    # checkout there would shadow an installed fastbp.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = (f"import sys; sys.path.insert(0, {root!r}); "
            "from fastbp.engine.precompile import _helper; "
            "sys.exit(_helper(sys.argv[1], int(sys.argv[2]), sys.argv[3:] == ['predict']))")
    # the helper's thread count is this process's, so that it picks the same build
    # (numba compiles on one thread whatever the count)
    env = dict(os.environ, NUMBA_NUM_THREADS=str(numba.get_num_threads()))
    args = [sys.executable, "-c", code, path, str(batch_size)] + (["predict"] if predict else [])
    try:
        return subprocess.Popen(args,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=env, text=True)
    except OSError:
        return None


def _wait_for(proc, word) -> None:
    """Read the helper's lines until ``word``, its end, or WAIT_S seconds."""
    deadline = time.monotonic() + WAIT_S
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            return
        line = proc.stdout.readline()
        if not line or line.strip() == word:
            return


def _stop(proc, wait) -> None:
    """Wait for the helper's end (or stop it: numba writes each cache file whole, under
    a temporary name, so a helper stopped mid-way leaves nothing half-written)."""
    try:
        if not wait:
            proc.kill()
        proc.wait(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    finally:
        proc.stdout.close()


def _helper(path, batch_size, predict) -> int:
    from ..model.persist import load
    model = load(path)
    backward_half(model, batch_size)
    print("backward", flush=True)
    X, y = _zeros(model, batch_size)
    model.evaluate(X, y)
    print("evaluate", flush=True)
    if predict:
        model.predict(X)
        print("predict", flush=True)
    return 0
