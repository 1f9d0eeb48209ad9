"""A model's own build of the interpreter (fastbp.engine.specialize)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastbp as fb
from fastbp.engine import interpreter as I
from fastbp import _config
from fastbp.engine.specialize import Features, build, features_of, function, reads, threads_pay
from fastbp.kernels import dense, elementwise, gemm, losses, optim


def _mlp(dropout=0.0, dtype="float64", **kw):
    layers = [fb.layers.Dense(6, 12, activation="relu")]
    if dropout:
        layers.append(fb.layers.Dropout(dropout))
    layers.append(fb.layers.Dense(12, 3))
    return fb.Sequential(layers, dtype=dtype, seed=0, **kw)


def test_what_each_function_reads():
    nodes = {"HAS_TABLES", "HAS_DROPOUT", "HAS_MERGE", "HAS_SEQUENCES", "PARALLEL"}
    assert reads(I.forward_nodes) == nodes
    assert reads(I.backward_nodes) == nodes
    assert reads(optim.apply_update) == {"OPTIMIZER", "PARALLEL"}
    assert reads(losses.loss_sum_and_grad) == {"LOSS", "PARALLEL"}
    assert reads(I.train_epochs) == nodes | {"HAS_SEGMENTS", "OPTIMIZER", "LOSS"}
    assert reads(I.predict) == nodes
    # a kernel with a threaded branch, or one that calls one, reads PARALLEL (numba's
    # option) only; the others read nothing: one compiled copy serves every build
    assert reads(dense.dense_forward) == {"PARALLEL"}
    assert reads(elementwise.activate_row) == frozenset()
    assert build(Features(tables=False)).forward_nodes is not I.forward_nodes


def test_a_serial_build_compiles_its_kernels_without_threads():
    assert function(dense.dense_forward, Features()) is dense.dense_forward
    assert function(elementwise.activate_row, Features(parallel=False)) is \
        elementwise.activate_row
    serial = function(gemm._matmul, Features(parallel=False))
    assert serial.py_func.__qualname__ == "_matmul__p0"
    assert serial.targetoptions["parallel"] is False
    assert gemm._matmul.targetoptions["parallel"] is True
    assert function(dense.dense_forward, Features(parallel=False)).py_func.__qualname__ == \
        "dense_forward__p0"
    # a threaded build keeps the names (and the cached code) it had before
    b = build(Features(False, True, False, False, False, optim.SGD, losses.MSE))
    assert b.forward_nodes.py_func.__qualname__ == "forward_nodes__t0d1m0r0"
    assert build(b.features._replace(parallel=False)).forward_nodes.py_func.__qualname__ == \
        "forward_nodes__t0d1m0r0p0"


def test_threads_pay_from_the_shapes():
    """threads_pay says whether any kernel's threaded branch is within reach, from the
    parameter count, the widest value and the batch rows (fastbp._config's limits)."""
    def plan(*widths):
        layers = [fb.layers.Dense(a, b) for a, b in zip(widths[:-1], widths[1:])]
        return fb.Sequential(layers, dtype="float32", seed=0)._plan

    demo = plan(64, 128, 64, 10)                      # 17,290 parameters
    assert demo.params.shape[0] < _config.PARALLEL_UPDATE_MIN
    assert not threads_pay(demo, 32)    # products 32 x 64 x 128 < 2^20, values 32 x 128
    assert not threads_pay(demo, 127)
    assert threads_pay(demo, 128)       # 128 x 64 x 128 = 2^20 multiply-adds
    linear = plan(784, 10)              # 7,850 parameters
    assert not threads_pay(linear, 41)  # 41 x 784 < 2^15 values, 41 x 784 x 10 < 2^20
    assert threads_pay(linear, 42)      # 42 x 784 >= 2^15 (the input gather)
    assert threads_pay(plan(300, 300), 1)             # 90,300 parameters
    w = fb.Input(3, dtype="int64")
    window = fb.Model(inputs=w, outputs=fb.layers.Dense(12, 2)(
        fb.layers.WindowEmbedding(10, 4, window=1)(w)), dtype="float32", seed=0)
    assert threads_pay(window._plan, 1)               # tables: their own thresholds


def test_features_of_models():
    m = _mlp(dropout=0.5).compile(fb.optim.Adam(), "softmax_cross_entropy")
    assert m._driver.features == Features(tables=False, dropout=True, merge=False,
                                          segments=False, sequences=False,
                                          optimizer=optim.ADAM,
                                          loss=losses.SOFTMAX_CROSS_ENTROPY)
    m = _mlp(checkpoint_every=1).compile(fb.optim.SGD(lr=0.1), "mse")
    assert m._driver.features == Features(False, False, False, True, False, optim.SGD, losses.MSE)
    w = fb.Input(3, dtype="int64", name="w")
    x = fb.Input(2, name="x")
    h = fb.layers.Concatenate()([fb.layers.WindowEmbedding(10, 4, window=1)(w), x])
    f = fb.Model(inputs=[w, x], outputs=fb.layers.Dense(14, 2)(h), dtype="float64", seed=0)
    assert features_of(f._plan) == Features(tables=True, dropout=False, merge=True,
                                            segments=False, sequences=False)
    f.compile(fb.optim.RMSProp(), "binary_cross_entropy")
    assert f._driver.features == Features(True, False, True, False, False, optim.RMSPROP,
                                          losses.BINARY_CROSS_ENTROPY)


def test_copies_are_shared_by_what_they_read():
    a = build(Features(False, True, False, False, False, optim.ADAM, losses.MSE))
    b = build(Features(False, True, False, False, False, optim.SGD,
                       losses.SOFTMAX_CROSS_ENTROPY))
    assert a.forward_nodes is b.forward_nodes  # no optimizer or loss in the node loop
    assert a.train_step is not b.train_step
    assert a.train_step.py_func.__qualname__ == "train_step__t0d1m0s0r0o1l0"
    assert b.forward_nodes.py_func.__qualname__ == "forward_nodes__t0d1m0r0"
    assert build(a.features) is a


def test_serial_and_threaded_builds_give_the_same_numbers(monkeypatch):
    """A model with products and values large enough for threads trains to the same bits
    in its threaded build and in its serial one (its prange loops plain loops), and a
    driver moves to the threaded build once a call needs it, then stays there."""
    from fastbp.engine import drivers
    if fb.threads.get_num_threads() < 2:
        pytest.skip("one thread: every call runs the serial build")
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((300, 40)), rng.integers(0, 3, 300)

    def trained(serial):
        with monkeypatch.context() as mp:
            if serial:
                mp.setattr(drivers, "threads_pay", lambda plan, rows: False)
            m = fb.Sequential([fb.layers.Dense(40, 300, activation="relu"),
                               fb.layers.Dense(300, 3)], dtype="float64", seed=0)
            m.compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy")
            m.fit(X, y, epochs=2, batch_size=128, seed=1)  # 128 x 300 values, 1.5M products
            assert m._driver.threaded is not serial
            return m.params.copy(), m.predict(X)

    (p0, out0), (p1, out1) = trained(True), trained(False)
    np.testing.assert_array_equal(p0, p1)
    np.testing.assert_array_equal(out0, out1)

    m = fb.Sequential([fb.layers.Dense(40, 300, activation="relu"), fb.layers.Dense(300, 3)],
                      dtype="float64", seed=0).compile(fb.optim.Adam(), "softmax_cross_entropy")
    m.fit(X, y, epochs=1, batch_size=8)
    m.predict(X)  # 300 rows x 13,203 parameters: too little work to load a second build
    assert not m._driver.threaded
    monkeypatch.setattr(drivers, "THREADED_INFERENCE_MIN_WORK", 300 * m.params.shape[0])
    m.predict(X)
    assert m._driver.threaded
    m.fit(X, y, epochs=1, batch_size=8)
    assert m._driver.threaded


def test_a_wider_build_gives_the_same_numbers():
    """Dropping branches changes what is compiled, not the arithmetic: an MLP trained in
    its own build and in one that keeps the embedding, merge and checkpointing branches
    ends with the same bits."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((70, 6)), rng.integers(0, 3, 70)
    runs = []
    for wide in (False, True):
        m = _mlp(dropout=0.3).compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy")
        if wide:
            f = m._driver.features._replace(tables=True, merge=True, segments=True)
            m._driver.features, m._driver.build = f, build(f)
            m._driver.serial = build(f._replace(parallel=False))
        m.fit(X, y, epochs=2, batch_size=16, seed=1)
        m.train_on_batch(X[:9], y[:9])
        runs.append((m.params.copy(), m.predict(X), m.evaluate(X, y)["loss"]))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert runs[0][2] == runs[1][2]


CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    from numba.core import event
    with event.install_recorder("numba:compile") as rec:
        import fastbp as fb
        rng = np.random.default_rng(0)
        X, y = rng.standard_normal((40, 5)).astype(np.float32), rng.integers(0, 3, 40)
        m = fb.Sequential([fb.layers.Dense(5, 8, activation="relu"), fb.layers.Dense(8, 3)],
                          dtype="float32", seed=0)
        m.compile(fb.optim.Adam(), "softmax_cross_entropy")
        m.fit(X, y, epochs=1, batch_size=16)
        m.train_on_batch(X[:8], y[:8])
        m.evaluate(X, y)
        m.predict(X)
        m.compute_gradients(X[:4], y[:4])
    names = sorted({ev.data["dispatcher"].py_func.__qualname__ for _, ev in rec.buffer
                    if ev.is_start})
    b = m._driver.serial
    print(json.dumps({"compiled": names, "threaded": m._driver.threaded,
                      "forward_nodes": len(b.forward_nodes.signatures),
                      "backward_nodes": len(b.backward_nodes.signatures)}))
""")


def test_an_mlp_compiles_only_what_it_uses(tmp_path):
    """On an empty cache, an Adam MLP compiles no embedding, dropout, merge or sparse
    kernel and no other optimizer's or loss's, and each node loop once, whatever entry
    point (fit, train_on_batch, evaluate, predict) reached it.  It is too small for
    threads to pay, so all of it is its serial build: no parallel region either."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    compiled = set(got["compiled"])
    for used in ("dense_forward__p0", "dense_backward__p0", "_adam_chunk", "_softmax_ce_row",
                 "train_epochs__t0d0m0s0r0o1l2p0", "forward_nodes__t0d0m0r0p0"):
        assert used in compiled, (used, sorted(compiled))
    assert not got["threaded"]
    assert not [n for n in compiled if "parfor" in n or n in ("dense_forward", "_matmul")]
    for unused in ("gather_windows", "add_row_gradients", "apply_sparse_update",
                   "_sparse_adam_rows", "dropout_apply", "columns_into", "copy_columns",
                   "_sgd_chunk", "_rmsprop_chunk", "_adagrad_chunk", "_adadelta_chunk",
                   "_yogi_chunk", "_mse_row", "_bce_row", "recurrent_forward",
                   "recurrent_backward"):
        assert unused not in compiled, unused
    assert got["forward_nodes"] == 1
    assert got["backward_nodes"] == 1


# -- compiling on two processes (fastbp.engine.precompile) -------------------------------------

WARM_CHILD = textwrap.dedent("""
    import json
    import numpy as np
    from numba.core import event
    import fastbp as fb
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 5)).astype(np.float32), rng.integers(0, 3, 40)
    m = fb.Sequential([fb.layers.Dense(5, 8, activation="tanh"), fb.layers.Dropout(0.1),
                       fb.layers.Dense(8, 3)], dtype="float32", seed=0)
    m.compile(fb.optim.SGD(lr=0.1, momentum=0.9), "softmax_cross_entropy")
    before = m.params.copy()
    with event.install_recorder("numba:compile") as rec:
        fb.warmup(model=m)
    during = sorted({ev.data["dispatcher"].py_func.__qualname__ for _, ev in rec.buffer
                     if ev.is_start})
    untouched = bool(np.array_equal(before, m.params)) and int(m.optimizer.step[0]) == 0
    with event.install_recorder("numba:compile") as rec:
        m.fit(X, y, epochs=2, batch_size=16)
        m.evaluate(X, y)
        m.predict(X)
    after = sorted({ev.data["dispatcher"].py_func.__qualname__ for _, ev in rec.buffer
                    if ev.is_start})
    print(json.dumps({"during": during, "after": after, "untouched": untouched}))
""")


def test_warmup_of_a_model_compiles_on_two_processes(tmp_path):
    """On an empty cache, warmup(model=...) leaves fit, evaluate and predict nothing to
    compile, the helper's half (the backward node loop) is loaded from the cache rather
    than compiled here, and the model itself is not touched.  The program runs in a
    folder holding another ``fastbp`` (as a source checkout beside an installed one
    would): the helper must still import this one, whose cache the program reads."""
    work = tmp_path / "cwd"
    (work / "fastbp").mkdir(parents=True)
    (work / "fastbp" / "__init__.py").write_text("raise ImportError('the wrong fastbp')\n")
    script = tmp_path / "child.py"
    script.write_text(WARM_CHILD)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fb.__file__)))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=root)
    out = subprocess.run([sys.executable, str(script)], env=env, cwd=work,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["untouched"]
    assert got["after"] == [], got["after"]
    assert "forward_nodes__t0d1m0r0p0" in got["during"]
    assert "train_epochs__t0d1m0s0r0o0l2p0" in got["during"]
    if (os.cpu_count() or 1) > 1:
        assert "backward_nodes__t0d1m0r0p0" not in got["during"]
        assert "evaluate__t0d1m0r0l2p0" not in got["during"]


def test_warmup_without_a_working_helper_compiles_here(monkeypatch):
    """A helper that dies at once costs nothing but its start: this process compiles (or
    here, loads) everything itself."""
    from fastbp.engine import precompile
    real_start = precompile._start
    started = []

    def dying(path, predict, batch_size):
        started.append(path)
        proc = real_start(path, predict, batch_size)
        proc.kill()
        return proc

    import fastbp._cache as cache
    monkeypatch.setattr(precompile, "_start", dying)
    monkeypatch.setattr(cache, "is_cached", lambda disp: False)  # as on an empty cache
    m = _mlp(dropout=0.2).compile(fb.optim.Adam(), "softmax_cross_entropy")
    fb.warmup(model=m)
    assert started, "the helper was not started: the test would check nothing"
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 6)), rng.integers(0, 3, 20)
    m.fit(X, y, epochs=1, batch_size=8)
    assert np.isfinite(m.evaluate(X, y)["loss"])


def test_warmup_of_an_uncompiled_model_is_refused():
    with pytest.raises(ValueError, match="compiled model"):
        fb.warmup(model=_mlp())
