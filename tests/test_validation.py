"""Bad input is refused at the boundary, before any kernel runs, with a ValueError or a
TypeError whose message says what was received."""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import fastbp as fb

N_IN, N_OUT = 4, 3


def make_model(loss="softmax_cross_entropy", dtype="float64", n_out=N_OUT, compiled=True):
    model = fb.Sequential([fb.layers.Dense(N_IN, 6, activation="relu"),
                           fb.layers.Dense(6, n_out)], dtype=dtype, seed=0)
    if compiled:
        model.compile(fb.optim.Adam(lr=1e-3), loss)
    return model


@pytest.fixture(scope="module")
def clf():
    return make_model()


@pytest.fixture(scope="module")
def reg():
    return make_model("mse")


@pytest.fixture(scope="module")
def bce():
    return make_model("binary_cross_entropy")


def good_X(n=10):
    return np.random.default_rng(0).standard_normal((n, N_IN))


def good_labels(n=10):
    return np.arange(n) % N_OUT


def raises(exc, *fragments):
    """pytest.raises(exc) whose message must contain every fragment (literally)."""
    pattern = "".join(f"(?=.*{re.escape(str(f))})" for f in fragments)
    return pytest.raises(exc, match=re.compile(pattern, re.S))


def entry_points(model, y):
    """Every public call that takes (X, y) or X, as name -> f(X, y)."""
    return {
        "fit": lambda X, y_: model.fit(X, y_, epochs=1, batch_size=4),
        "train_on_batch": lambda X, y_: model.train_on_batch(X, y_),
        "evaluate": lambda X, y_: model.evaluate(X, y_),
        "compute_gradients": lambda X, y_: model.compute_gradients(X, y_),
        "gradcheck": lambda X, y_: fb.gradcheck(model, X, y_),
        "predict": lambda X, y_: model.predict(X),
    }


ENTRY_POINTS = ["fit", "train_on_batch", "evaluate", "compute_gradients", "gradcheck", "predict"]


# -- features -------------------------------------------------------------------------------------


def _with(value, where=(3, 2)):
    X = good_X()
    X[where] = value
    return X


BAD_X = {
    "nan": (_with(np.nan), ValueError, ["nan", "(3, 2)"]),
    "inf": (_with(np.inf), ValueError, ["inf"]),
    "-inf": (_with(-np.inf, (0, 0)), ValueError, ["-inf", "(0, 0)"]),
    "features": (np.zeros((10, 5)), ValueError, ["5", str(N_IN)]),
    "rank3": (np.zeros((10, N_IN, 1)), ValueError, ["(10, 4, 1)"]),
    "rank1": (np.zeros(N_IN), ValueError, ["1-d"]),
    "rank1_other": (np.zeros(7), ValueError, ["(7,)"]),
    "scalar": (np.float64(1.0), ValueError, ["()"]),
    "empty": (np.zeros((0, N_IN)), ValueError, ["empty", "(0, 4)"]),
    "strings": (np.full((10, N_IN), "1.5"), TypeError, ["<U3"]),
    "object": (np.array([[object()] * N_IN] * 10), TypeError, ["object"]),
    "complex": (np.ones((10, N_IN), dtype=complex), TypeError, ["complex"]),
    "none": (None, TypeError, ["NoneType"]),
    "str": ("abc", TypeError, ["str"]),
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("case", list(BAD_X))
def test_bad_features_rejected(clf, case, entry):
    X, exc, fragments = BAD_X[case]
    before = clf.params.copy()
    with raises(exc, *fragments):
        entry_points(clf, None)[entry](X, good_labels())
    np.testing.assert_array_equal(clf.params, before)  # nothing ran


def test_float32_model_rejects_values_that_overflow_in_conversion():
    model = make_model(dtype="float32")
    # the message shows the value as received, not the inf the cast made of it
    with raises(ValueError, "1e+300 at index (3, 2)", "overflows float32"):
        model.predict(_with(1e300))
    with raises(ValueError, "-1e+39", "overflows float32"):
        model.fit(_with(-1e39), good_labels())


def test_validation_data_is_checked(clf):
    X, y = good_X(), good_labels()
    with raises(ValueError, "validation", "pair"):
        clf.fit(X, y, validation_data=X)
    with raises(ValueError, "validation", "nan"):
        clf.fit(X, y, validation_data=(_with(np.nan), y))
    with raises(ValueError, "validation", "7"):
        clf.fit(X, y, validation_data=(X, np.full(10, 7)))


# -- targets ----------------------------------------------------------------------------------------

BAD_LABELS = {
    "too_large": (np.array([0, 1, 2, 3, 0, 1, 2, 0, 1, 2]), ValueError, ["3", "[0, 3)"]),
    "negative": (np.array([0, 1, -1, 0, 0, 1, 2, 0, 1, 2]), ValueError, ["-1"]),
    "fractional": (np.array([0, 1, 0.5, 0, 0, 1, 2, 0, 1, 2]), ValueError, ["0.5"]),
    "nan": (np.array([0, 1, np.nan, 0, 0, 1, 2, 0, 1, 2]), ValueError, ["nan"]),
    "length": (np.zeros(9, dtype=int), ValueError, ["9", "10"]),
    "shape": (np.zeros((10, 2), dtype=int), ValueError, ["(10, 2)"]),
    "strings": (np.array(["a"] * 10), TypeError, ["<U1"]),
    "none": (None, TypeError, ["NoneType"]),
}


@pytest.mark.parametrize("entry", ["fit", "train_on_batch", "evaluate", "compute_gradients",
                                   "gradcheck"])
@pytest.mark.parametrize("case", list(BAD_LABELS))
def test_bad_labels_rejected(clf, case, entry):
    y, exc, fragments = BAD_LABELS[case]
    before = clf.params.copy()
    with raises(exc, *fragments):
        entry_points(clf, y)[entry](good_X(), y)
    np.testing.assert_array_equal(clf.params, before)


def test_label_forms_that_are_accepted(clf):
    X = good_X()
    for y in (good_labels(), good_labels().astype(float), good_labels()[:, None],
              good_labels().astype(np.uint8), (good_labels() > 0)):
        assert np.isfinite(clf.evaluate(X, y)["loss"])


@pytest.mark.parametrize("model_name", ["reg", "bce"])
def test_bad_float_targets_rejected(model_name, request):
    model = request.getfixturevalue(model_name)
    X = good_X()
    y = np.random.default_rng(1).random((10, N_OUT))
    cases = [(y[:, :2], ValueError, ["(10, 2)"]), (y[:9], ValueError, ["9", "10"]),
             (np.where(np.eye(10, N_OUT) > 0, np.nan, y), ValueError, ["nan"]),
             (y[:, 0], ValueError, ["(10,)"]), (np.full((10, N_OUT), "x"), TypeError, ["<U1"])]
    if model_name == "bce":
        cases.append((y + 1.0, ValueError, ["[0, 1]"]))
    for bad, exc, fragments in cases:
        for call in (lambda: model.fit(X, bad), lambda: model.train_on_batch(X, bad),
                     lambda: model.evaluate(X, bad)):
            with raises(exc, *fragments):
                call()


def test_softmax_needs_two_outputs():
    model = fb.Sequential([fb.layers.Dense(N_IN, 1)], dtype="float64")
    with raises(ValueError, "softmax_cross_entropy", "1"):
        model.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy")


# -- fit arguments ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,exc,fragments", [
    (dict(batch_size=0), ValueError, ["batch_size", "0"]),
    (dict(batch_size=-3), ValueError, ["batch_size", "-3"]),
    (dict(batch_size=2.5), TypeError, ["batch_size", "2.5"]),
    (dict(batch_size=True), TypeError, ["batch_size", "True"]),
    (dict(batch_size="8"), TypeError, ["batch_size", "'8'"]),
    (dict(epochs=-1), ValueError, ["epochs", "-1"]),
    (dict(epochs=1.0), TypeError, ["epochs", "1.0"]),
    (dict(seed=-5), ValueError, ["seed", "-5"]),
    (dict(seed="a"), TypeError, ["seed", "'a'"]),
    (dict(shuffle="yes"), TypeError, ["shuffle", "'yes'"]),
    (dict(schedule=0.5), TypeError, ["schedule", "0.5"]),
    (dict(verbose=3), ValueError, ["verbose", "3"]),
])
def test_bad_fit_arguments_rejected(clf, kwargs, exc, fragments):
    before = clf.params.copy()
    with raises(exc, *fragments):
        clf.fit(good_X(), good_labels(), **kwargs)
    np.testing.assert_array_equal(clf.params, before)


def test_bad_batch_size_in_predict_and_evaluate(clf):
    with raises(ValueError, "batch_size", "0"):
        clf.predict(good_X(), batch_size=0)
    with raises(ValueError, "batch_size", "-1"):
        clf.evaluate(good_X(), good_labels(), batch_size=-1)
    with raises(TypeError, "batch_size", "None"):
        clf.predict(good_X(), batch_size=None)


# -- construction: names and hyperparameters ------------------------------------------------------------


@pytest.mark.parametrize("make,exc,fragments", [
    (lambda: fb.optim.SGD(lr=0), ValueError, ["lr", "0"]),
    (lambda: fb.optim.SGD(lr=-0.1), ValueError, ["lr", "-0.1"]),
    (lambda: fb.optim.Adam(lr=0.0), ValueError, ["lr", "0.0"]),
    (lambda: fb.optim.AdamW(lr=-1), ValueError, ["lr", "-1"]),
    (lambda: fb.optim.Adam(lr=float("nan")), ValueError, ["lr", "nan"]),
    (lambda: fb.optim.SGD(lr=float("inf")), ValueError, ["lr", "inf"]),
    (lambda: fb.optim.SGD(lr="0.1"), TypeError, ["lr", "'0.1'"]),
    (lambda: fb.optim.SGD(lr=None), TypeError, ["lr", "None"]),
    (lambda: fb.optim.SGD(lr=0.1, momentum=-0.5), ValueError, ["momentum", "-0.5"]),
    (lambda: fb.optim.SGD(lr=0.1, nesterov=True), ValueError, ["Nesterov", "momentum"]),
    (lambda: fb.optim.SGD(lr=0.1, weight_decay=-1e-3), ValueError, ["weight_decay", "-0.001"]),
    (lambda: fb.optim.SGD(lr=0.1, clip_norm=0.0), ValueError, ["clip_norm", "0.0"]),
    (lambda: fb.optim.Adam(betas=(1.0, 0.999)), ValueError, ["beta1", "1.0"]),
    (lambda: fb.optim.Adam(betas=(0.9, -0.1)), ValueError, ["beta2", "-0.1"]),
    (lambda: fb.optim.Adam(betas=0.9), TypeError, ["betas", "0.9"]),
    (lambda: fb.optim.Adam(eps=-1e-8), ValueError, ["eps", "-1e-08"]),
    (lambda: fb.optim.Adam(amsgrad="yes"), TypeError, ["amsgrad", "'yes'"]),
    (lambda: fb.optim.get("adamax"), ValueError, ["adamax"]),
    (lambda: fb.layers.Dense(0, 3), ValueError, ["n_in", "0"]),
    (lambda: fb.layers.Dense(3, -2), ValueError, ["n_out", "-2"]),
    (lambda: fb.layers.Dense(3.5, 2), TypeError, ["n_in", "3.5"]),
    (lambda: fb.layers.Dense(3, 2, activation="swish"), ValueError, ["swish", "relu"]),
    (lambda: fb.layers.Dense(3, 2, activation="ReLU"), ValueError, ["ReLU"]),
    (lambda: fb.layers.Dense(3, 2, activation=True), ValueError, ["True"]),
    (lambda: fb.layers.Dense(3, 2, init="kaiming"), ValueError, ["kaiming", "he"]),
    (lambda: fb.layers.Dense(3, 2, activation="leaky_relu", slope=-0.1), ValueError,
     ["slope", "-0.1"]),
    (lambda: fb.layers.Dropout(1.0), ValueError, ["p", "1.0"]),
    (lambda: fb.layers.Dropout(-0.1), ValueError, ["p", "-0.1"]),
    (lambda: fb.layers.Dropout("0.5"), TypeError, ["p", "'0.5'"]),
    (lambda: fb.Sequential([]), ValueError, ["[]"]),
    (lambda: fb.Sequential([object()]), TypeError, ["object"]),
    (lambda: fb.Sequential([fb.layers.Dense(3, 2)], dtype="float16"), ValueError, ["float16"]),
    (lambda: fb.Sequential([fb.layers.Dense(3, 2)], dtype="int32"), ValueError, ["int32"]),
    (lambda: fb.Sequential([fb.layers.Dense(3, 2)], seed=-1), ValueError, ["seed", "-1"]),
    (lambda: fb.Sequential([fb.layers.Dense(3, 2)], seed=1.5), TypeError, ["seed", "1.5"]),
    (lambda: fb.Sequential([fb.layers.Dense(4, 6), fb.layers.Dense(5, 3)]), ValueError,
     ["5", "6"]),
    (lambda: fb.init.get("unknown_init"), ValueError, ["unknown_init"]),
    (lambda: fb.init.normal(-1.0), ValueError, ["-1.0"]),
    (lambda: fb.set_num_threads(0), ValueError, ["0"]),
    (lambda: fb.set_num_threads(10_000), ValueError, ["10000"]),
    (lambda: fb.set_num_threads(1.5), TypeError, ["1.5"]),
], ids=lambda v: "" if callable(v) or isinstance(v, list) or isinstance(v, type) else str(v))
def test_bad_construction_rejected(make, exc, fragments):
    with raises(exc, *fragments):
        make()


def test_unknown_loss_and_optimizer_names_in_compile():
    model = make_model(compiled=False)
    with raises(ValueError, "hinge", "mse"):
        model.compile(fb.optim.SGD(lr=0.1), "hinge")
    with raises(ValueError, "nadam"):
        model.compile("nadam", "mse")
    with raises(TypeError, "fused", "'yes'"):
        model.compile(fb.optim.SGD(lr=0.1), "mse", fused="yes")
    model.compile("adam", "mse")  # names of known optimizers work
    assert isinstance(model.optimizer, fb.optim.Adam)


def test_same_layer_twice_rejected():
    layer = fb.layers.Dense(3, 3)
    with raises(ValueError, "twice"):
        fb.Sequential([layer, layer])


def test_gradcheck_arguments(clf):
    with raises(ValueError, "eps", "0.0"):
        fb.gradcheck(clf, good_X(), good_labels(), eps=0.0)
    with raises(ValueError, "max_per_array", "0"):
        fb.gradcheck(clf, good_X(), good_labels(), max_per_array=0)


# -- fuzzing -----------------------------------------------------------------------------------------

FLOAT_VALUES = st.one_of(
    st.floats(-10, 10, allow_nan=False),
    st.sampled_from([0.0, 1.0, 2.0, 0.5, -1.0, 3.0]),
    st.sampled_from([np.nan, np.inf, -np.inf]),
)
DTYPES = ["float16", "float32", "float64", "int8", "int64", "uint8", "bool", "complex128",
          "object", "str"]


@st.composite
def arrays(draw, n_hint, width_hint):
    """Arrays of any rank 0-3 and many dtypes, shaped near (n_hint, width_hint) most of the time."""
    ndim = draw(st.sampled_from([0, 1, 2, 2, 2, 2, 3]))
    near = st.sampled_from([n_hint, width_hint])
    shape = tuple(draw(st.one_of(near, near, st.integers(0, 6))) for _ in range(ndim))
    if ndim == 2 and draw(st.booleans()):
        shape = (shape[0], width_hint)
    dtype = draw(st.sampled_from(DTYPES))
    size = int(np.prod(shape)) if ndim else 1
    if dtype in ("int8", "int64", "uint8"):
        values = draw(st.lists(st.integers(0 if dtype == "uint8" else -3, 5), min_size=size,
                               max_size=size))
    elif dtype == "bool":
        values = draw(st.lists(st.booleans(), min_size=size, max_size=size))
    else:
        values = draw(st.lists(FLOAT_VALUES, min_size=size, max_size=size))
    if dtype == "object":
        arr = np.empty(size, dtype=object)
        arr[:] = values
    elif dtype == "str":
        arr = np.array([str(v) for v in values])
    else:
        arr = np.array(values, dtype=dtype)
    return arr.reshape(shape)


NUMERIC = ["float16", "float32", "float64", "int8", "int64", "uint8", "bool"]


@st.composite
def valid_features(draw, n):
    dtype = draw(st.sampled_from(NUMERIC))
    if dtype == "bool":
        values = draw(st.lists(st.booleans(), min_size=n * N_IN, max_size=n * N_IN))
    elif dtype.startswith(("int", "uint")):
        values = draw(st.lists(st.integers(0, 5), min_size=n * N_IN, max_size=n * N_IN))
    else:
        values = draw(st.lists(st.floats(-10, 10), min_size=n * N_IN, max_size=n * N_IN))
    return np.array(values, dtype=dtype).reshape(n, N_IN)


@st.composite
def valid_targets(draw, n, loss, n_out):
    if loss == "softmax_cross_entropy":
        dtype = draw(st.sampled_from(["int64", "int8", "uint8", "float32", "float64"]))
        y = np.array(draw(st.lists(st.integers(0, n_out - 1), min_size=n, max_size=n)),
                     dtype=dtype)
        return y[:, None] if draw(st.booleans()) else y
    dtype = draw(st.sampled_from(["float32", "float64", "float16", "bool"]))
    low = 0.0 if loss == "binary_cross_entropy" else -10.0
    if dtype == "bool":
        values = draw(st.lists(st.booleans(), min_size=n * n_out, max_size=n * n_out))
    else:
        values = draw(st.lists(st.floats(low, 1.0 if low == 0.0 else 10.0), min_size=n * n_out,
                               max_size=n * n_out))
    y = np.array(values, dtype=dtype).reshape(n, n_out)
    return y[:, 0] if n_out == 1 and draw(st.booleans()) else y


@st.composite
def mutated(draw, arr):
    """One change that may (or may not) make a valid array invalid."""
    kind = draw(st.sampled_from(["value", "value", "shape", "dtype"]))
    arr = np.array(arr)
    if kind == "value" and arr.size:
        arr = arr.astype(np.float64)
        flat = arr.reshape(-1)
        flat[draw(st.integers(0, flat.size - 1))] = draw(st.sampled_from(
            [np.nan, np.inf, -np.inf, -1.0, 0.5, 1.5, 3.0, 7.0, 1e39]))
        return arr
    if kind == "shape":
        choice = draw(st.sampled_from(["drop_row", "add_axis", "transpose", "drop_col", "ravel",
                                       "empty"]))
        if choice == "drop_row":
            return arr[1:]
        if choice == "add_axis":
            return arr[..., None]
        if choice == "transpose":
            return arr.T
        if choice == "drop_col":
            return arr[..., 1:] if arr.ndim else arr
        if choice == "empty":
            return arr[:0]
        return arr.ravel()
    return arr.astype(draw(st.sampled_from(["complex128", "object", "str"])))


def _real_numeric(a):
    return (isinstance(a, np.ndarray) and a.dtype != object
            and (np.issubdtype(a.dtype, np.number) or a.dtype == bool)
            and not np.issubdtype(a.dtype, np.complexfloating))


def features_valid(X, dtype):
    if not _real_numeric(X) or X.ndim != 2 or X.shape[0] == 0 or X.shape[1] != N_IN:
        return False
    with np.errstate(over="ignore"):
        return bool(np.all(np.isfinite(X.astype(dtype))))


def targets_valid(y, n, loss, n_out):
    if not _real_numeric(y):
        return False
    if loss == "softmax_cross_entropy":
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or y.shape[0] != n:
            return False
        yf = y.astype(np.float64)
        return bool(np.all(np.isfinite(yf)) and np.all(yf == np.round(yf))
                    and np.all((yf >= 0) & (yf < n_out)))
    if y.ndim == 1 and n_out == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape != (n, n_out):
        return False
    yf = y.astype(np.float64)
    if not np.all(np.isfinite(yf)):
        return False
    return loss != "binary_cross_entropy" or bool(np.all((yf >= 0) & (yf <= 1)))


@settings(max_examples=500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_fuzz_entry_points(data):
    """Random shapes, dtypes and values: valid input trains or predicts, anything else is
    refused with a ValueError or TypeError (never a crash inside a kernel, never silence)."""
    loss = data.draw(st.sampled_from(["mse", "binary_cross_entropy", "softmax_cross_entropy"]))
    n_out = data.draw(st.sampled_from([2, 3] if loss == "softmax_cross_entropy" else [1, 3]))
    dtype = data.draw(st.sampled_from(["float32", "float64"]))
    entry = data.draw(st.sampled_from(["fit", "train_on_batch", "evaluate", "predict"]))
    n = data.draw(st.integers(1, 6))
    mode = data.draw(st.sampled_from(["valid", "mutate_X", "mutate_y", "random"]))
    if mode == "random":
        X = data.draw(arrays(n, N_IN))
        y = data.draw(arrays(X.shape[0] if X.ndim else n, n_out))
    else:
        X = data.draw(valid_features(n))
        y = data.draw(valid_targets(n, loss, n_out))
        if mode == "mutate_X":
            X = data.draw(mutated(X))
        elif mode == "mutate_y":
            y = data.draw(mutated(y))
    model = fb.Sequential([fb.layers.Dense(N_IN, 5, activation="tanh"),
                           fb.layers.Dense(5, n_out)], dtype=dtype, seed=0)
    model.compile(fb.optim.Adam(lr=1e-3), loss)
    ok_X = features_valid(X, dtype)
    valid = ok_X and (entry == "predict" or targets_valid(y, X.shape[0], loss, n_out))
    event(f"{entry}: {'valid' if valid else 'invalid'} input")
    before = model.params.copy()
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            if entry == "fit":
                result = model.fit(X, y, epochs=1, batch_size=data.draw(st.integers(1, 8)))
                assert all(np.isfinite(result["loss"]))
            elif entry == "train_on_batch":
                assert np.isfinite(model.train_on_batch(X, y))
            elif entry == "evaluate":
                assert np.isfinite(model.evaluate(X, y)["loss"])
            else:
                out = model.predict(X, batch_size=data.draw(st.integers(1, 8)))
                assert out.shape == (X.shape[0], n_out) and np.all(np.isfinite(out))
    except (ValueError, TypeError) as e:
        assert not valid, f"valid input refused: {e!r}"
        assert str(e), "an error without a message"
        np.testing.assert_array_equal(model.params, before)
    else:
        assert valid, (f"{entry} accepted invalid input: X {getattr(X, 'dtype', None)} "
                       f"{getattr(X, 'shape', None)}, y {getattr(y, 'dtype', None)} "
                       f"{getattr(y, 'shape', None)}")
