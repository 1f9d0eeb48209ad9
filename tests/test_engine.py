"""The fused engine against the per-layer path, custom NumPy layers, recompilation and
thread-count determinism."""
from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

import fastbp as fb
import fastbp.engine
import fastbp.kernels
import reference as ref
from helpers import make_targets, max_abs_diff

TOL = 1e-12

NETS = {
    "tanh": lambda: [fb.layers.Dense(8, 16, activation="tanh"),
                     fb.layers.Dense(16, 12, activation="tanh"), fb.layers.Dense(12, 3)],
    "relu": lambda: [fb.layers.Dense(8, 16, activation="relu"),
                     fb.layers.Dense(16, 12, activation="relu"), fb.layers.Dense(12, 3)],
    "leaky_sigmoid": lambda: [fb.layers.Dense(8, 16, activation="leaky_relu", slope=0.1),
                              fb.layers.Dense(16, 3, activation="sigmoid")],
    # products above the BLAS threshold at batch 64
    "wide": lambda: [fb.layers.Dense(64, 128, activation="relu"),
                     fb.layers.Dense(128, 64, activation="tanh"), fb.layers.Dense(64, 10)],
}

DROPOUT_NETS = {
    "dropout": lambda: [fb.layers.Dense(8, 16, activation="relu"), fb.layers.Dropout(0.3),
                        fb.layers.Dense(16, 12, activation="tanh"), fb.layers.Dropout(0.5),
                        fb.layers.Dense(12, 3)],
    "dropout_wide": lambda: [fb.layers.Dense(64, 256, activation="relu"),
                             fb.layers.Dropout(0.2), fb.layers.Dense(256, 10)],
}

OPTIMIZERS = {
    "sgd_nesterov": lambda: fb.optim.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam_amsgrad": lambda: fb.optim.Adam(lr=1e-2, amsgrad=True),
    "adamw_clip": lambda: fb.optim.AdamW(lr=1e-2, weight_decay=0.05, clip_norm=0.5),
}


def _data(n_in, n_out, loss, n=100, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, n_in)), make_targets(loss, rng, n, n_out)


def _trained(layers, loss, opt, fused, X, y, **fit_kwargs):
    model = fb.Sequential(layers, dtype="float64", seed=4)
    model.compile(opt, loss, fused=fused)
    assert model.fused is fused
    history = model.fit(X, y, **fit_kwargs)
    return model, history


def _compare_paths(make_layers, loss, make_opt, fit_kwargs, batch=16):
    n_in = make_layers()[0].n_in
    n_out = [l for l in make_layers() if hasattr(l, "n_out")][-1].n_out
    X, y = _data(n_in, n_out, loss)
    kwargs = dict(epochs=4, batch_size=batch, **fit_kwargs)
    fused, h1 = _trained(make_layers(), loss, make_opt(), True, X, y, **kwargs)
    layered, h2 = _trained(make_layers(), loss, make_opt(), False, X, y, **kwargs)
    assert max_abs_diff(fused.params, layered.params) <= TOL
    np.testing.assert_allclose(h1["loss"], h2["loss"], rtol=TOL)
    np.testing.assert_array_equal(fused.optimizer.step, layered.optimizer.step)
    assert max_abs_diff(fused.optimizer.state, layered.optimizer.state) <= TOL
    # and both trained: the weights moved away from their common start
    start = fb.Sequential(make_layers(), dtype="float64", seed=4)
    assert max_abs_diff(start.params, fused.params) > 1e-3
    return fused, layered, X, y


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
@pytest.mark.parametrize("loss", ["mse", "binary_cross_entropy", "softmax_cross_entropy"])
@pytest.mark.parametrize("net", list(NETS))
def test_fused_equals_per_layer_after_fit(net, loss, opt):
    batch = 64 if net == "wide" else 16
    fused, layered, X, y = _compare_paths(NETS[net], loss, OPTIMIZERS[opt],
                                          dict(shuffle=True, seed=3), batch=batch)
    # evaluation and inference agree too, and so do single steps afterwards
    assert max_abs_diff(fused.predict(X), layered.predict(X)) <= TOL
    e1, e2 = fused.evaluate(X, y), layered.evaluate(X, y)
    assert e1.keys() == e2.keys()
    for k in e1:
        assert e1[k] == pytest.approx(e2[k], rel=TOL)
    l1, l2 = fused.train_on_batch(X[:9], y[:9]), layered.train_on_batch(X[:9], y[:9])
    assert l1 == pytest.approx(l2, rel=TOL)
    assert max_abs_diff(fused.params, layered.params) <= TOL


def test_fused_equals_per_layer_with_per_step_schedule_and_partial_batches():
    _compare_paths(NETS["tanh"], "mse", OPTIMIZERS["sgd_nesterov"],
                   dict(shuffle=True, seed=9,
                        schedule=fb.schedules.ExponentialDecay(0.05, per="step")), batch=7)


def test_fused_equals_per_layer_compute_gradients():
    X, y = _data(8, 3, "softmax_cross_entropy")
    grads = []
    for fused in (True, False):
        model = fb.Sequential(NETS["relu"](), dtype="float64", seed=2)
        model.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy", fused=fused)
        model.compute_gradients(X, y)
        grads.append(model.grads.copy())
    assert np.any(grads[0] != 0)
    assert max_abs_diff(*grads) <= TOL


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("net", list(DROPOUT_NETS))
def test_fused_equals_per_layer_with_dropout(net, seed):
    batch = 64 if net == "dropout_wide" else 16
    _compare_paths(DROPOUT_NETS[net], "softmax_cross_entropy", OPTIMIZERS["adam_amsgrad"],
                   dict(shuffle=True, seed=seed), batch=batch)


def test_fused_dropout_step_matches_numpy_reference():
    """One fused step with dropout equals a NumPy forward/backward that uses the documented
    mask: uniform(combine_key(fit seed, step, layer index), i * n + j) >= p keeps (i, j)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 5))
    y = rng.integers(0, 3, 6)
    p, lr, seed = 0.4, 0.1, 7
    model = fb.Sequential([fb.layers.Dense(5, 7, activation="tanh"), fb.layers.Dropout(p),
                           fb.layers.Dense(7, 3)], dtype="float64", seed=1)
    model.compile(fb.optim.SGD(lr=lr), "softmax_cross_entropy")
    W1, b1 = model.layers[0].W.copy(), model.layers[0].b.copy()
    W2, b2 = model.layers[2].W.copy(), model.layers[2].b.copy()
    model.fit(x, y, epochs=1, batch_size=6, shuffle=False, seed=seed)  # exactly one step

    key = ref.combine_key(seed, 0, 1)
    mask = ref.dropout_mask((6, 7), key, p)
    assert 0 < mask.sum() < mask.size
    h = np.tanh(x @ W1 + b1)
    hd = np.where(mask, h / (1 - p), 0.0)
    _, go = ref.softmax_cross_entropy(hd @ W2 + b2, y)
    dW2, db2 = hd.T @ go, go.sum(0)
    gh = np.where(mask, (go @ W2.T) / (1 - p), 0.0) * (1 - h * h)
    dW1, db1 = x.T @ gh, gh.sum(0)
    for got, start, grad in ((model.layers[0].W, W1, dW1), (model.layers[0].b, b1, db1),
                             (model.layers[2].W, W2, dW2), (model.layers[2].b, b2, db2)):
        assert max_abs_diff(got, start - lr * grad) <= TOL


def test_dropout_is_off_in_predict_and_evaluate():
    X, y = _data(8, 3, "softmax_cross_entropy")
    with_drop = fb.Sequential(DROPOUT_NETS["dropout"](), dtype="float64", seed=5)
    without = fb.Sequential([l for l in DROPOUT_NETS["dropout"]()
                             if not isinstance(l, fb.layers.Dropout)], dtype="float64", seed=5)
    without.params[:] = with_drop.params
    np.testing.assert_array_equal(with_drop.predict(X), without.predict(X))
    for m in (with_drop, without):
        m.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy")
    assert with_drop.evaluate(X, y) == without.evaluate(X, y)


# -- custom NumPy layers: the per-layer path ----------------------------------------------------


class NumpyDense(fb.layers.Layer):
    """A dense layer written in NumPy alone, unknown to the planner."""

    def __init__(self, n_in, n_out, activation=None):
        super().__init__()
        self.n_in, self.n_out, self.activation = n_in, n_out, activation

    def output_dim(self, input_dim):
        return self.n_out

    def param_shapes(self, input_dim):
        return {"W": (self.n_in, self.n_out), "b": (self.n_out,)}

    def build(self, input_dim, rng, dtype):
        return {"W": fb.init.xavier_uniform((self.n_in, self.n_out), rng, dtype),
                "b": np.zeros(self.n_out, dtype=dtype)}

    def forward(self, x, training):
        self._x = x
        self._a = ref.activate(x @ self.params["W"] + self.params["b"],
                               self.activation).astype(x.dtype)
        return self._a

    def backward(self, g):
        delta = g * ref.derivative_from_output(self._a, self.activation)
        self.grads["W"][...] = self._x.T @ delta
        self.grads["b"][...] = delta.sum(axis=0)
        return (delta @ self.params["W"].T).astype(g.dtype)


class Cube(fb.layers.Layer):
    """A parameter-free NumPy layer, a = x^3 / 3."""

    def forward(self, x, training):
        self._x = x
        return x ** 3 / 3

    def backward(self, g):
        return g * self._x ** 2


@pytest.mark.parametrize("loss", ["mse", "softmax_cross_entropy"])
def test_custom_numpy_layer_trains_like_the_builtin_dense(loss):
    X, y = _data(8, 3, loss)
    custom = fb.Sequential([NumpyDense(8, 16, "tanh"), fb.layers.Dense(16, 3)],
                           dtype="float64", seed=0)
    builtin = fb.Sequential([fb.layers.Dense(8, 16, activation="tanh"),
                             fb.layers.Dense(16, 3)], dtype="float64", seed=0)
    builtin.params[:] = custom.params  # same layout: W, b, W, b
    opt = lambda: fb.optim.Adam(lr=1e-2)  # noqa: E731
    custom.compile(opt(), loss)
    builtin.compile(opt(), loss)
    assert not custom.fused and builtin.fused
    assert "per-layer" in custom.summary()
    h1 = custom.fit(X, y, epochs=5, batch_size=10, seed=1)
    h2 = builtin.fit(X, y, epochs=5, batch_size=10, seed=1)
    # NumPy's matmul and the compiled kernels round differently in the last bit, and
    # Adam carries those bits for 50 steps: 1e-10 is still ~1e6 times tighter than a bug
    assert max_abs_diff(custom.params, builtin.params) <= 1e-10
    np.testing.assert_allclose(h1["loss"], h2["loss"], rtol=1e-10)
    assert h1["loss"][-1] < h1["loss"][0]
    assert max_abs_diff(custom.predict(X), builtin.predict(X)) <= 1e-10


def test_parameter_free_custom_layer_trains():
    """A Dense-Cube-Dense network on the per-layer path, against the same SGD steps
    written out in NumPy."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((60, 4))
    y = rng.standard_normal((60, 2))
    model = fb.Sequential([fb.layers.Dense(4, 8, activation="tanh"), Cube(),
                           fb.layers.Dense(8, 2)], dtype="float64", seed=0)
    model.compile(fb.optim.SGD(lr=0.05), "mse")
    assert not model.fused
    assert fb.gradcheck(model, X[:5], y[:5]) < 1e-6
    W1, b1 = model.layers[0].W.copy(), model.layers[0].b.copy()
    W2, b2 = model.layers[2].W.copy(), model.layers[2].b.copy()
    history = model.fit(X, y, epochs=2, batch_size=20, shuffle=False)
    losses = []
    for _ in range(2):
        for s in range(0, 60, 20):
            xb, yb = X[s:s + 20], y[s:s + 20]
            h = np.tanh(xb @ W1 + b1)
            c = h ** 3 / 3
            loss, go = ref.mse(c @ W2 + b2, yb)
            losses.append(loss)
            gh = (go @ W2.T) * h ** 2 * (1 - h * h)
            W2, b2 = W2 - 0.05 * c.T @ go, b2 - 0.05 * go.sum(0)
            W1, b1 = W1 - 0.05 * xb.T @ gh, b1 - 0.05 * gh.sum(0)
    for got, expected in ((model.layers[0].W, W1), (model.layers[0].b, b1),
                          (model.layers[2].W, W2), (model.layers[2].b, b2)):
        assert max_abs_diff(got, expected) <= TOL
    np.testing.assert_allclose(history["loss"], np.mean(np.reshape(losses, (2, 3)), axis=1),
                               rtol=TOL)


# -- no recompilation --------------------------------------------------------------------------


def _dispatchers():
    found = {}
    for package in (fastbp.kernels, fastbp.engine):
        for info in pkgutil.iter_modules(package.__path__):
            mod = importlib.import_module(f"{package.__name__}.{info.name}")
            for name, obj in vars(mod).items():
                if (isinstance(obj, numba.core.dispatcher.Dispatcher)
                        and obj.__module__ == mod.__name__):
                    found[f"{info.name}.{name}"] = obj
    # a model's own build: the copies of the interpreter (and of the optimizer and loss
    # kernels) made for its features
    from fastbp.engine import specialize
    for copy in specialize.copies():
        found[f"{copy.py_func.__module__.split('.')[-1]}.{copy.py_func.__qualname__}"] = copy
    return found


def _signature_counts():
    return {name: len(d.signatures) for name, d in _dispatchers().items()}


def _exercise(model, loss, n_out, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((90, model.n_in))
    y = make_targets(loss, rng, 90, n_out)
    model.fit(X, y, epochs=2, batch_size=32, seed=seed)
    model.fit(X, y, epochs=1, batch_size=32, validation_data=(X[:20], y[:20]))
    model.train_on_batch(X[:7], y[:7])
    model.compute_gradients(X[:5], y[:5])
    model.predict(X)
    model.evaluate(X, y)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_second_fit_and_second_model_do_not_recompile(dtype):
    def make():
        m = fb.Sequential([fb.layers.Dense(6, 20, activation="relu"), fb.layers.Dropout(0.2),
                           fb.layers.Dense(20, 4)], dtype=dtype, seed=0)
        return m.compile(fb.optim.Adam(lr=1e-3), "softmax_cross_entropy")

    first = make()
    _exercise(first, "softmax_cross_entropy", 4, 0)
    counts = _signature_counts()
    # (a model this small runs in its serial build: fastbp.engine.specialize.threads_pay)
    for name in ("interpreter.train_epochs__t0d1m0s0r0o1l2p0",
                 "interpreter.train_step__t0d1m0s0r0o1l2p0",
                 "interpreter.forward_nodes__t0d1m0r0p0", "dense.dense_forward__p0",
                 "dense.dense_backward__p0"):
        assert name in counts, f"no dispatcher {name}: the test would watch nothing"
    # Kernels called only from compiled code may show no signature of their own (a caller
    # loaded from the on-disk cache carries them), but the entry points called from
    # Python must have been compiled or loaded.
    assert any(n.startswith("interpreter.") and c > 0 for n, c in counts.items()), counts
    _exercise(first, "softmax_cross_entropy", 4, 1)
    assert _signature_counts() == counts
    _exercise(make(), "softmax_cross_entropy", 4, 2)
    assert _signature_counts() == counts


def test_other_architectures_of_the_same_dtype_do_not_recompile():
    """One compiled step serves every model of a dtype with the same features (node kinds,
    optimizer, loss: fastbp.engine.specialize): widths, depth, activations, dropout rates
    and hyperparameters are data (the layer tables), not types."""
    base = fb.Sequential([fb.layers.Dense(6, 20, activation="relu"), fb.layers.Dropout(0.2),
                          fb.layers.Dense(20, 4)], dtype="float64", seed=0)
    base.compile(fb.optim.Adam(lr=1e-3), "softmax_cross_entropy")
    _exercise(base, "softmax_cross_entropy", 4, 0)
    others = [
        (fb.Sequential([fb.layers.Dense(3, 9, activation="tanh"),
                        fb.layers.Dense(9, 5, activation="sigmoid"), fb.layers.Dense(5, 2)],
                       dtype="float64", seed=1), fb.optim.SGD(lr=0.1, momentum=0.9), "mse", 2),
        (fb.Sequential([fb.layers.Dense(11, 7, activation="leaky_relu"), fb.layers.Dropout(0.5),
                        fb.layers.Dense(7, 3)], dtype="float64", seed=2),
         fb.optim.AdamW(lr=1e-3, clip_norm=1.0), "binary_cross_entropy", 3),
    ]
    # the other losses and optimizers once (with dropout where the model has it), so that
    # only the architecture is new below
    for model, opt, loss, n_out in others:
        dropout = [fb.layers.Dropout(0.2)] if any(
            isinstance(layer, fb.layers.Dropout) for layer in model.layers) else []
        warm = fb.Sequential([fb.layers.Dense(6, 20, activation="relu"), *dropout,
                              fb.layers.Dense(20, n_out)], dtype="float64", seed=0)
        warm.compile(type(opt).from_config(opt.get_config()), loss)
        _exercise(warm, loss, n_out, 0)
    counts = _signature_counts()
    for model, opt, loss, n_out in others:
        model.compile(opt, loss)
        _exercise(model, loss, n_out, 3)
        assert _signature_counts() == counts


# -- determinism across thread counts ------------------------------------------------------------

CHILD = textwrap.dedent("""
    import os, sys
    import numpy as np
    import fastbp as fb

    fb.set_num_threads(int(os.environ["NUMBA_NUM_THREADS"]))
    out = {"threads": np.array([fb.get_num_threads()])}

    def run(name, sizes, dtype, opt, loss, dropout, n, batch, epochs):
        rng = np.random.default_rng(0)
        X = rng.standard_normal((n, sizes[0])).astype(dtype)
        if loss == "softmax_cross_entropy":
            y = rng.integers(0, sizes[-1], n)
        else:
            y = rng.standard_normal((n, sizes[-1]))
        layers = [fb.layers.Dense(sizes[0], sizes[1], activation="relu")]
        if dropout:
            layers.append(fb.layers.Dropout(dropout))
        layers.append(fb.layers.Dense(sizes[1], sizes[2]))
        m = fb.Sequential(layers, dtype=dtype, seed=0)
        m.compile(opt, loss)
        m.fit(X, y, epochs=epochs, batch_size=batch, seed=1)
        out[name] = m.params
        out[name + "_predict"] = m.predict(X[:600])

    SGD, Adam, AdamW = fb.optim.SGD, fb.optim.Adam, fb.optim.AdamW
    ce = "softmax_cross_entropy"
    # large: 784-256-10 at batch 512: BLAS products, parallel elementwise, dropout and
    # optimizer regions (203530 parameters)
    big = (784, 256, 10)
    run("large_f64_adam", big, "float64", Adam(lr=1e-3), ce, 0.2, 2048, 512, 2)
    run("large_f64_sgd", big, "float64", SGD(lr=0.05, momentum=0.9), ce, 0.2, 2048, 512, 2)
    run("large_f64_sgd_weight_decay", big, "float64",
        SGD(lr=0.05, momentum=0.9, weight_decay=1e-3), ce, 0.0, 1024, 512, 1)
    run("large_f64_adamw", big, "float64", AdamW(lr=1e-3), ce, 0.0, 1024, 512, 1)
    run("large_f64_adam_clip", big, "float64", Adam(lr=1e-3, clip_norm=1.0), ce, 0.0, 1024,
        512, 1)
    run("large_f32_sgd", big, "float32", SGD(lr=0.05, momentum=0.9), ce, 0.2, 2048, 512, 2)
    # small: products under the BLAS threshold, in the hand-written loops
    small = (20, 24, 10)
    run("small_f64_adam_clip", small, "float64", Adam(lr=1e-2, clip_norm=0.5), "mse", 0.1,
        512, 128, 3)
    run("small_f32_sgd", small, "float32", SGD(lr=0.05, momentum=0.9, nesterov=True), "mse",
        0.1, 512, 128, 3)
    np.savez(sys.argv[1], **out)
""")

SMALL_CASES = ["small_f64_adam_clip", "small_f32_sgd"]
# float32 products above the BLAS threshold (SciPy's BLAS, pinned to one thread, in row
# blocks of fixed shape) and an Adam update without the FMA-sensitive terms
LARGE_CASES = ["large_f32_sgd", "large_f64_adam"]
# the cases the FMA/reassoc bug reaches (momentum SGD, AdamW, clip_norm's squared norm)
LARGE_FMA_CASES = ["large_f64_sgd", "large_f64_sgd_weight_decay", "large_f64_adamw",
                   "large_f64_adam_clip"]


def _run_child(folder, threads):
    script = folder / "child.py"
    script.write_text(CHILD)
    result = folder / f"threads{threads}.npz"
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    # the child must import the same fastbp as this process
    root = os.path.dirname(os.path.dirname(os.path.abspath(fb.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run([sys.executable, str(script), str(result)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(result) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def thread_runs(tmp_path_factory):
    """The same fits in two fresh processes, NUMBA_NUM_THREADS=1 and =2."""
    folder = tmp_path_factory.mktemp("threads")
    one, two = _run_child(folder, 1), _run_child(folder, 2)
    assert one["threads"][0] == 1 and two["threads"][0] == 2
    return one, two


def _compare_thread_runs(one, two, cases):
    differ = {}
    for case in cases:
        for key in (case, case + "_predict"):
            assert one[key].dtype == two[key].dtype
            assert np.all(np.isfinite(one[key])) and np.all(np.isfinite(two[key]))
            if one[key].tobytes() != two[key].tobytes():
                differ[key] = max_abs_diff(one[key], two[key])
    assert not differ, f"results differ between 1 and 2 threads (max abs difference): {differ}"


def test_small_models_identical_for_one_and_two_threads(thread_runs):
    """Products under the BLAS threshold and fewer parameters than a parallel optimizer
    region: the hand-written loops, dropout and loss must give the same bits."""
    _compare_thread_runs(*thread_runs, SMALL_CASES)


def test_large_models_identical_for_one_and_two_threads(thread_runs):
    """784-256-10 at batch 512: BLAS products, parallel elementwise, dropout and optimizer
    regions; the design promises bit-identical results at any thread count."""
    _compare_thread_runs(*thread_runs, LARGE_CASES)


def test_large_models_with_momentum_adamw_or_clipping_identical_for_one_and_two_threads(
        thread_runs):
    _compare_thread_runs(*thread_runs, LARGE_FMA_CASES)


def test_same_seed_same_bits_in_one_process():
    """Within one process two identical seeded fits agree bit for bit (dropout, shuffling)."""
    X, y = _data(8, 3, "softmax_cross_entropy", n=300)
    runs = []
    for _ in range(2):
        model = fb.Sequential(DROPOUT_NETS["dropout"](), dtype="float32", seed=3)
        model.compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy")
        model.fit(X, y, epochs=3, batch_size=32, seed=8)
        runs.append(model.params.copy())
    assert runs[0].tobytes() == runs[1].tobytes()
