"""fastbp.sklearn: scikit-learn's estimator checks, its semantics, and its accuracy."""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

import fastbp as fb  # noqa: E402
from fastbp.sklearn import InvalidParameterError, MLPClassifier, MLPRegressor  # noqa: E402
from sklearn import neural_network as sk  # noqa: E402
from sklearn.datasets import (load_digits, make_classification,  # noqa: E402
                              make_multilabel_classification, make_regression)
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The checks fit hundreds of tiny networks, whose minibatches are too small to
    share out; one thread keeps them fast on a busy machine (results are the same bits
    at any thread count)."""
    before = fb.get_num_threads()
    fb.set_num_threads(1)
    yield
    fb.set_num_threads(before)


# -- scikit-learn's estimator checks -------------------------------------------------------
#: Why early_stopping=True fails these: they fail for sklearn.neural_network's own
#: estimators with early_stopping=True too (checked with scikit-learn 1.9.1).
EARLY_STOPPING_FAILURES = {
    "check_fit_score_takes_y": "partial_fit refuses early_stopping=True (as scikit-learn's)",
    "check_n_features_in_after_fitting": "partial_fit refuses early_stopping=True",
    "check_estimators_partial_fit_n_features": "partial_fit refuses early_stopping=True",
    "check_estimators_nan_inf": "a stratified 10% of its 10 rows is 1 row, fewer than the "
                                "2 classes (train_test_split's ValueError)",
    "check_fit2d_1feature": "the same train_test_split error comes before the one the check "
                            "looks for",
    "check_classifiers_one_label": "its validation set is 1 row ('The validation set is too "
                                   "small')",
}


def expected_failures(estimator):
    return EARLY_STOPPING_FAILURES if estimator.early_stopping else {}


@parametrize_with_checks(
    [MLPClassifier(max_iter=100), MLPRegressor(max_iter=100),
     MLPClassifier(solver="sgd", dtype="float64", max_iter=100),
     MLPRegressor(solver="sgd", learning_rate="adaptive", dtype="float64", max_iter=100),
     MLPClassifier(early_stopping=True, max_iter=100)],
    expected_failed_checks=expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# -- the same training as scikit-learn's ----------------------------------------------------
def _digits(n=None):
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    return (X, y) if n is None else (X[:n], y[:n])


@pytest.mark.parametrize("kind, data, kwargs", [
    ("MLPClassifier", "digits", dict(batch_size=64, learning_rate_init=0.05)),
    ("MLPClassifier", "digits", dict(batch_size=100, learning_rate="invscaling",
                                     learning_rate_init=0.2)),
    ("MLPClassifier", "digits", dict(batch_size=100, learning_rate="adaptive",
                                     learning_rate_init=0.05, n_iter_no_change=2, tol=1e-2,
                                     nesterovs_momentum=False)),
    ("MLPClassifier", "binary", dict(batch_size=50, learning_rate_init=0.1, momentum=0.0)),
    ("MLPClassifier", "multilabel", dict(batch_size=50, learning_rate_init=0.1)),
    ("MLPRegressor", "regression", dict(batch_size=50, learning_rate_init=0.01)),
    ("MLPRegressor", "regression1d", dict(batch_size=50, learning_rate_init=0.01,
                                          activation="tanh")),
])
def test_sgd_follows_sklearn_step_by_step(kind, data, kwargs):
    """In float64, without shuffling or L2, SGD (momentum, Nesterov, the invscaling and
    adaptive rates) takes scikit-learn's very steps: same initial weights from the same
    random_state, same updates, the same loss curve."""
    X, y = _dataset(data)
    common = dict(solver="sgd", shuffle=False, random_state=0, hidden_layer_sizes=(16,),
                  alpha=0.0, max_iter=15, **kwargs)
    ours = getattr(fastbp_sklearn(), kind)(dtype="float64", **common).fit(X, y)
    theirs = getattr(sk, kind)(**common).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_adam_and_l2_follow_sklearn_closely():
    """Adam's epsilon sits differently (see docs/sklearn.md) and fastbp's L2 also decays
    the intercepts: the weights stay close to scikit-learn's, the loss curve (its L2
    term included) closer."""
    X, y = _digits(400)
    common = dict(shuffle=False, random_state=0, hidden_layer_sizes=(16,), alpha=1e-2,
                  batch_size=100, max_iter=20)
    ours = MLPClassifier(dtype="float64", **common).fit(X, y)
    theirs = sk.MLPClassifier(**common).fit(X, y)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-4)
    for a, b in zip(ours.coefs_, theirs.coefs_):
        np.testing.assert_allclose(a, b, atol=2e-3)


def test_stopping_rule_matches_sklearn():
    X, y = _digits(300)
    for kwargs in (dict(tol=10.0, n_iter_no_change=3), dict(tol=0.05, n_iter_no_change=2),
                   dict(tol=0.05, n_iter_no_change=2, early_stopping=True)):
        common = dict(random_state=0, hidden_layer_sizes=(16,), max_iter=60, **kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)  # both converge
            ours = MLPClassifier(dtype="float64", shuffle=False, **common).fit(X, y)
            theirs = sk.MLPClassifier(shuffle=False, **common).fit(X, y)
        assert ours.n_iter_ == theirs.n_iter_ < 60, kwargs
        assert ours.t_ == theirs.t_
        if "early_stopping" in kwargs:
            assert ours.best_loss_ is None and len(ours.validation_scores_) == ours.n_iter_
            assert ours.best_validation_score_ == max(ours.validation_scores_)
            np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_,
                                       atol=0.05)
        else:
            assert ours.validation_scores_ is None
            assert ours.best_loss_ == min(ours.loss_curve_)


def test_convergence_warning_at_max_iter():
    X, y = _digits(200)
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\)"):
        MLPClassifier(max_iter=3, random_state=0).fit(X, y)


# -- accuracy against scikit-learn -----------------------------------------------------------
def test_digits_accuracy_close_to_sklearn():
    """The default settings (float32 here) on load_digits: test accuracy within two
    points of scikit-learn's own MLPClassifier after the same 30 epochs."""
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0,
                                                        stratify=y)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    ours = MLPClassifier(max_iter=30, random_state=1).fit(X_train, y_train)
    theirs = sk.MLPClassifier(max_iter=30, random_state=1).fit(X_train, y_train)
    acc_ours, acc_theirs = ours.score(X_test, y_test), theirs.score(X_test, y_test)
    assert acc_theirs > 0.9  # the comparison means something
    assert abs(acc_ours - acc_theirs) <= 0.02, (acc_ours, acc_theirs)


# -- scikit-learn's tools ---------------------------------------------------------------------
def test_pipeline_and_grid_search():
    X, y = load_digits(return_X_y=True)
    X, y = X[:600], y[:600]
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=100, random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-1],
                               "mlpclassifier__hidden_layer_sizes": [(20,), (40, 20)]}, cv=3)
    grid.fit(X, y)
    assert len(grid.cv_results_["mean_test_score"]) == 4
    assert grid.best_score_ > 0.85
    best = grid.best_estimator_[-1]
    assert best.hidden_layer_sizes in [(20,), (40, 20)]
    assert best.n_layers_ == len(best.hidden_layer_sizes) + 2
    assert grid.score(X, y) > 0.9


def test_string_labels_and_binary_probabilities():
    X, y = make_classification(200, 6, n_informative=4, n_classes=3, random_state=0)
    names = np.array(["cat", "dog", "fish"], dtype=object)[y]
    clf = MLPClassifier(max_iter=60, random_state=0).fit(X, names)
    assert list(clf.classes_) == ["cat", "dog", "fish"]
    assert set(clf.predict(X)) <= {"cat", "dog", "fish"}
    assert clf.score(X, names) > 0.8
    assert clf.out_activation_ == "softmax" and clf.n_outputs_ == 3
    binary = np.where(y == 0, "yes", "no")
    clf = MLPClassifier(max_iter=60, random_state=0).fit(X, binary)
    proba = clf.predict_proba(X)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 1
    assert proba.shape == (200, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba))


def test_multilabel():
    X, Y = make_multilabel_classification(300, 10, n_classes=4, random_state=0)
    clf = MLPClassifier(max_iter=100, random_state=0).fit(X, Y)
    assert clf.n_outputs_ == 4 and clf.out_activation_ == "logistic"
    pred, proba = clf.predict(X), clf.predict_proba(X)
    assert pred.shape == proba.shape == (300, 4)
    np.testing.assert_array_equal(pred, (proba > 0.5).astype(pred.dtype))
    assert (pred == Y).mean() > 0.8


@pytest.mark.parametrize("n_targets", [1, 3])
def test_regression_shapes_and_fit(n_targets):
    X, y = make_regression(300, 8, n_targets=n_targets, noise=1.0, random_state=0)
    y = y / y.std()
    reg = MLPRegressor(max_iter=200, learning_rate_init=0.01, random_state=0).fit(X, y)
    pred = reg.predict(X)
    assert pred.shape == y.shape and reg.n_outputs_ == n_targets
    assert reg.score(X, y) > 0.95
    assert reg.out_activation_ == "identity"


def test_regression_column_vector_is_raveled_with_a_warning():
    X, y = make_regression(100, 4, random_state=0)
    with pytest.warns(sklearn.exceptions.DataConversionWarning):
        reg = MLPRegressor(max_iter=5).fit(X, y[:, None] / y.std())
    assert reg.predict(X).shape == (100,)


def test_dataframe_feature_names():
    pd = pytest.importorskip("pandas")
    X, y = _digits(200)
    frame = pd.DataFrame(X[:, :5], columns=[f"f{i}" for i in range(5)])
    clf = MLPClassifier(max_iter=5).fit(frame, y)
    assert list(clf.feature_names_in_) == list(frame.columns) and clf.n_features_in_ == 5
    with pytest.warns(UserWarning, match="feature names"):
        clf.predict(X[:, :5])


def test_sparse_input_gives_the_dense_results():
    import scipy.sparse as sparse
    X, y = _digits(200)
    X[np.abs(X) < 0.5] = 0.0
    dense = MLPClassifier(max_iter=10, random_state=0).fit(X, y)
    csr = MLPClassifier(max_iter=10, random_state=0).fit(sparse.csr_matrix(X), y)
    np.testing.assert_array_equal(dense.predict_proba(X), csr.predict_proba(sparse.csc_matrix(X)))


# -- the fitted attributes are the network -----------------------------------------------------
def _forward(est, X):
    """A NumPy forward pass from coefs_ and intercepts_, in float64."""
    hidden = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh,
              "logistic": lambda z: 1 / (1 + np.exp(-z)), "identity": lambda z: z}
    a = X
    for i, (W, b) in enumerate(zip(est.coefs_, est.intercepts_)):
        a = a @ W.astype(np.float64) + b.astype(np.float64)
        if i < len(est.coefs_) - 1:
            a = hidden[est.activation](a)
    return a


@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
def test_coefs_are_the_network_weights(activation):
    X, y = _digits(300)
    clf = MLPClassifier(hidden_layer_sizes=(20, 12), activation=activation, max_iter=10,
                        random_state=0).fit(X, y)
    model = clf._model
    assert [W.shape for W in clf.coefs_] == [(64, 20), (20, 12), (12, 10)]
    for layer, W, b in zip(model.layers, clf.coefs_, clf.intercepts_):
        np.testing.assert_array_equal(W, layer.W)
        np.testing.assert_array_equal(b, layer.b)
    z = _forward(clf, X)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(clf.predict_proba(X), z / z.sum(axis=1, keepdims=True),
                               rtol=1e-4, atol=1e-6)
    binary = MLPClassifier(max_iter=10, random_state=0, activation=activation).fit(X, y > 4)
    p = 1 / (1 + np.exp(-_forward(binary, X)[:, 0]))
    np.testing.assert_allclose(binary.predict_proba(X)[:, 1], p, rtol=1e-4, atol=1e-6)


def test_writing_coefs_changes_predictions():
    X, y = make_regression(100, 4, random_state=0)
    reg = MLPRegressor(max_iter=5, random_state=0).fit(X, y / y.std())
    reg.intercepts_[-1][...] += 1.0  # in place: the network's own buffer
    np.testing.assert_allclose(reg.predict(X), _forward(reg, X)[:, 0], rtol=1e-4, atol=1e-4)
    reg.coefs_[0] = np.zeros_like(reg.coefs_[0])  # a new array: copied in at predict
    np.testing.assert_allclose(reg.predict(X), _forward(reg, X)[:, 0], rtol=1e-4, atol=1e-4)


# -- continuing a fit --------------------------------------------------------------------------
def test_partial_fit_and_pickle_keep_the_optimizer_state():
    X, y = _digits(400)
    clf = MLPClassifier(random_state=0, hidden_layer_sizes=(16,))
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    for _ in range(3):
        clf.partial_fit(X, y, classes=np.arange(10))
    assert clf.n_iter_ == 1 and clf.t_ == 3 * 400 and len(clf.loss_curve_) == 3
    copy = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(copy.predict_proba(X), clf.predict_proba(X))
    clf.partial_fit(X, y)
    copy.partial_fit(X, y)  # Adam's moments and step count came through the pickle
    for a, b in zip(clf.coefs_, copy.coefs_):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="classes not in"):
        clf.partial_fit(X, np.full(400, 11))


def test_warm_start_continues():
    X, y = _digits(300)
    clf = MLPClassifier(max_iter=5, warm_start=True, random_state=0).fit(X, y)
    first = [W.copy() for W in clf.coefs_]
    clf.fit(X, y)
    assert len(clf.loss_curve_) == 10 and clf.n_iter_ == 5 and clf.t_ == 3000
    assert not np.array_equal(first[0], clf.coefs_[0])
    cold = MLPClassifier(max_iter=5, random_state=0).fit(X, y)
    np.testing.assert_array_equal(cold.coefs_[0], first[0])  # same seed, same first fit


# -- bad parameters ----------------------------------------------------------------------------
@pytest.mark.parametrize("params, pattern", [
    (dict(solver="lbfgs"), r"'solver'.*\['adam', 'sgd'\].*got 'lbfgs'"),
    (dict(activation="softmax"), r"'activation'.*\['identity', 'logistic', 'tanh', 'relu'\]"),
    (dict(learning_rate="optimal"), r"'learning_rate'.*\['constant', 'invscaling', 'adaptive'\]"),
    (dict(hidden_layer_sizes=(10, 0)), r"'hidden_layer_sizes'.*int >= 1"),
    (dict(hidden_layer_sizes="10"), r"'hidden_layer_sizes'.*int >= 1"),
    (dict(alpha=-1.0), r"'alpha'.*\[0.0, inf\).*-1.0"),
    (dict(batch_size=0), r"'batch_size'.*'auto' or an int >= 1"),
    (dict(batch_size="big"), r"'batch_size'.*'auto' or an int >= 1"),
    (dict(max_iter=0), r"'max_iter'.*int >= 1"),
    (dict(learning_rate_init=0.0), r"'learning_rate_init'.*\(0.0, inf\)"),
    (dict(momentum=1.5), r"'momentum'.*\[0.0, 1.0\]"),
    (dict(validation_fraction=1.0), r"'validation_fraction'.*\[0.0, 1.0\)"),
    (dict(beta_2=1.0), r"'beta_2'.*\[0.0, 1.0\)"),
    (dict(epsilon=0.0), r"'epsilon'.*\(0.0, inf\)"),
    (dict(n_iter_no_change=0), r"'n_iter_no_change'.*int >= 1 or numpy.inf"),
    (dict(shuffle="yes"), r"'shuffle'.*bool"),
    (dict(dtype="float16"), r"'dtype'.*\['float32', 'float64'\]"),
])
def test_bad_parameters_name_the_parameter_and_the_allowed_values(params, pattern):
    X, y = _digits(50)
    with pytest.raises(ValueError, match=pattern) as info:
        MLPClassifier(**params).fit(X, y)
    assert isinstance(info.value, InvalidParameterError)


def test_regressor_loss_parameter():
    X, y = make_regression(50, 3, random_state=0)
    with pytest.raises(ValueError, match=r"'loss'.*\['squared_error'\].*'poisson'"):
        MLPRegressor(loss="poisson").fit(X, y)


def test_n_iter_no_change_may_be_inf():
    X, y = _digits(100)
    clf = MLPClassifier(max_iter=4, n_iter_no_change=np.inf, tol=10.0).fit(X, y)
    assert clf.n_iter_ == 4


# -- data for the step-by-step comparisons -----------------------------------------------------
def fastbp_sklearn():
    import fastbp.sklearn
    return fastbp.sklearn


def _dataset(name):
    if name == "digits":
        return _digits(400)
    if name == "binary":
        X, y = _digits(400)
        return X, y > 4
    if name == "multilabel":
        return make_multilabel_classification(200, 10, n_classes=4, random_state=0)
    X, y = make_regression(200, 8, n_targets=3, random_state=0)
    y = y / y.std()
    return (X, y) if name == "regression" else (X, y[:, 0])
