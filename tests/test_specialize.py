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
from fastbp.engine.specialize import Features, build, features_of, reads
from fastbp.kernels import dense, losses, optim


def _mlp(dropout=0.0, dtype="float64", **kw):
    layers = [fb.layers.Dense(6, 12, activation="relu")]
    if dropout:
        layers.append(fb.layers.Dropout(dropout))
    layers.append(fb.layers.Dense(12, 3))
    return fb.Sequential(layers, dtype=dtype, seed=0, **kw)


def test_what_each_function_reads():
    assert reads(I.forward_nodes) == {"HAS_TABLES", "HAS_DROPOUT", "HAS_MERGE", "HAS_SEQUENCES"}
    assert reads(I.backward_nodes) == {"HAS_TABLES", "HAS_DROPOUT", "HAS_MERGE",
                                       "HAS_SEQUENCES"}
    assert reads(optim.apply_update) == {"OPTIMIZER"}
    assert reads(losses.loss_sum_and_grad) == {"LOSS"}
    assert reads(I.train_epochs) == {"HAS_TABLES", "HAS_DROPOUT", "HAS_MERGE", "HAS_SEGMENTS",
                                     "HAS_SEQUENCES", "OPTIMIZER", "LOSS"}
    assert reads(I.predict) == {"HAS_TABLES", "HAS_DROPOUT", "HAS_MERGE", "HAS_SEQUENCES"}
    # the math kernels read none: one compiled copy serves every build
    assert reads(dense.dense_forward) == frozenset()
    assert build(Features(tables=False)).forward_nodes is not I.forward_nodes


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
    b = m._driver.build
    print(json.dumps({"compiled": names,
                      "forward_nodes": len(b.forward_nodes.signatures),
                      "backward_nodes": len(b.backward_nodes.signatures)}))
""")


def test_an_mlp_compiles_only_what_it_uses(tmp_path):
    """On an empty cache, an Adam MLP compiles no embedding, dropout, merge or sparse
    kernel and no other optimizer's or loss's, and each node loop once, whatever entry
    point (fit, train_on_batch, evaluate, predict) reached it."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    compiled = set(got["compiled"])
    for used in ("dense_forward", "dense_backward", "_adam_chunk", "_softmax_ce_row",
                 "train_epochs__t0d0m0s0r0o1l2", "forward_nodes__t0d0m0r0"):
        assert used in compiled, (used, sorted(compiled))
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
    assert "forward_nodes__t0d1m0r0" in got["during"]
    assert "train_epochs__t0d1m0s0r0o0l2" in got["during"]
    if (os.cpu_count() or 1) > 1:
        assert "backward_nodes__t0d1m0r0" not in got["during"]
        assert "evaluate__t0d1m0r0l2" not in got["during"]


def test_warmup_without_a_working_helper_compiles_here(monkeypatch):
    """A helper that dies at once costs nothing but its start: this process compiles (or
    here, loads) everything itself."""
    from fastbp.engine import precompile
    real_start = precompile._start
    started = []

    def dying(path, predict):
        started.append(path)
        proc = real_start(path, predict)
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
