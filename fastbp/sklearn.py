"""scikit-learn drop-ins: :class:`MLPClassifier` and :class:`MLPRegressor` trained by fastbp.

>>> from fastbp.sklearn import MLPClassifier          # doctest: +SKIP
>>> clf = MLPClassifier(max_iter=50, random_state=0).fit(X, y)   # doctest: +SKIP

The two estimators take the parameters of ``sklearn.neural_network.MLPClassifier`` and
``MLPRegressor`` with their meanings, set the same fitted attributes and follow the same
training loop (Glorot-uniform initialisation from ``random_state``, minibatches of
``batch_size``, the ``tol`` / ``n_iter_no_change`` stopping rule, ``early_stopping`` on a
held-out ``validation_fraction``, the ``invscaling`` and ``adaptive`` learning rates,
``ConvergenceWarning`` at ``max_iter``); the epochs run in fastbp's compiled engine.

scikit-learn is needed for this module only (``pip install 'fastbp[sklearn]'``);
``import fastbp`` does not import it.  Where the results differ from scikit-learn's, and
why, is written in docs/sklearn.md.
"""
from __future__ import annotations

import numbers
import warnings
from itertools import pairwise

import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from .callbacks import Callback
from .layers import Dense
from .model import DivergenceError, Sequential
from .optim import SGD, Adam

__all__ = ["MLPClassifier", "MLPRegressor", "InvalidParameterError"]

#: scikit-learn's hidden activations and fastbp's names for them.
ACTIVATIONS = {"identity": None, "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
SOLVERS = ("adam", "sgd")
LEARNING_RATES = ("constant", "invscaling", "adaptive")
DTYPES = ("float32", "float64")

#: scikit-learn's adaptive schedule stops once the learning rate is this small.
ADAPTIVE_LR_FLOOR = 1e-6


class InvalidParameterError(ValueError, TypeError):
    """A constructor parameter outside its allowed values (raised by ``fit``, as
    scikit-learn's own ``InvalidParameterError``, which is also both)."""


# -- parameter checks --------------------------------------------------------------------
def _where(est, name):
    return f"The {name!r} parameter of {type(est).__name__}"


def _option(est, name, allowed, note=""):
    value = getattr(est, name)
    if not isinstance(value, str) or value not in allowed:
        raise InvalidParameterError(f"{_where(est, name)} must be one of {list(allowed)}"
                                    f"{note}; got {value!r}")
    return value


def _boolean(est, name):
    value = getattr(est, name)
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidParameterError(f"{_where(est, name)} must be a bool (True or False); "
                                    f"got {value!r}")
    return bool(value)


def _integer(est, name, low, value=None, allow_inf=False):
    value = getattr(est, name) if value is None else value
    if allow_inf and isinstance(value, numbers.Real) and value == np.inf:
        return np.inf
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or value < low:
        extra = " or numpy.inf" if allow_inf else ""
        raise InvalidParameterError(f"{_where(est, name)} must be an int >= {low}{extra}; "
                                    f"got {value!r}")
    return int(value)


def _real(est, name, low, high=None, low_open=False, high_open=False):
    value = getattr(est, name)
    ok = (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
          and np.isfinite(value))
    if ok:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        left, right = "(" if low_open else "[", ")" if high_open or high is None else "]"
        span = f"{left}{low}, {'inf' if high is None else high}{right}"
        raise InvalidParameterError(f"{_where(est, name)} must be a real number in {span}; "
                                    f"got {value!r}")
    return float(value)


def _hidden_layer_sizes(est):
    value = est.hidden_layer_sizes
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        value = [value]
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise InvalidParameterError(f"{_where(est, 'hidden_layer_sizes')} must be an int >= 1 "
                                    f"or a sequence of them; got {value!r}")
    sizes = list(value)
    for size in sizes:
        if isinstance(size, (bool, np.bool_)) or not isinstance(size, numbers.Integral) \
                or size < 1:
            raise InvalidParameterError(f"{_where(est, 'hidden_layer_sizes')} must be an int "
                                        f">= 1 or a sequence of them; got "
                                        f"{est.hidden_layer_sizes!r}")
    return [int(s) for s in sizes]


# -- the training loop's epoch end -------------------------------------------------------
class _EpochEnd(Callback):
    """scikit-learn's end-of-epoch bookkeeping, run by fastbp's ``fit`` after each epoch."""

    def __init__(self, estimator, n_samples, n_batches, validation):
        super().__init__()
        self.estimator = estimator
        self.n_samples, self.n_batches, self.validation = n_samples, n_batches, validation
        self.converged = False
        self.squares_before = 0.0

    def on_epoch_begin(self, epoch):
        self.squares_before = self.estimator._squared_weights()

    def on_epoch_end(self, epoch, logs):
        if self.estimator._end_epoch(logs["loss"], self):
            self.converged = True
            self.model.stop_training = True


class _BaseMLP(BaseEstimator):
    """What MLPClassifier and MLPRegressor share: parameters, the fastbp model, fit."""

    def _validated_params(self) -> dict:
        """Every constructor parameter checked, as a dict (scikit-learn checks in fit)."""
        p = {"hidden_layer_sizes": _hidden_layer_sizes(self),
             "activation": _option(self, "activation", tuple(ACTIVATIONS)),
             "solver": _option(self, "solver", SOLVERS,
                               " (fastbp has no 'lbfgs': use 'adam' or 'sgd')"),
             "alpha": _real(self, "alpha", 0.0),
             "learning_rate": _option(self, "learning_rate", LEARNING_RATES),
             "learning_rate_init": _real(self, "learning_rate_init", 0.0, low_open=True),
             "power_t": _real(self, "power_t", 0.0),
             "max_iter": _integer(self, "max_iter", 1),
             "shuffle": _boolean(self, "shuffle"),
             "tol": _real(self, "tol", 0.0),
             "warm_start": _boolean(self, "warm_start"),
             "momentum": _real(self, "momentum", 0.0, 1.0),
             "nesterovs_momentum": _boolean(self, "nesterovs_momentum"),
             "early_stopping": _boolean(self, "early_stopping"),
             "validation_fraction": _real(self, "validation_fraction", 0.0, 1.0,
                                          high_open=True),
             "beta_1": _real(self, "beta_1", 0.0, 1.0, high_open=True),
             "beta_2": _real(self, "beta_2", 0.0, 1.0, high_open=True),
             "epsilon": _real(self, "epsilon", 0.0, low_open=True),
             "n_iter_no_change": _integer(self, "n_iter_no_change", 1, allow_inf=True),
             "max_fun": _integer(self, "max_fun", 1),
             "dtype": _option(self, "dtype", DTYPES)}
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            if isinstance(self.batch_size, (str, bool, np.bool_)) or not isinstance(
                    self.batch_size, numbers.Integral) or self.batch_size < 1:
                raise InvalidParameterError(f"{_where(self, 'batch_size')} must be 'auto' or "
                                            f"an int >= 1; got {self.batch_size!r}")
        p["batch_size"] = self.batch_size
        if isinstance(self.verbose, (bool, np.bool_)) or isinstance(self.verbose,
                                                                      numbers.Integral):
            p["verbose"] = int(self.verbose)
        else:
            raise InvalidParameterError(f"{_where(self, 'verbose')} must be a bool or an int; "
                                        f"got {self.verbose!r}")
        check_random_state(self.random_state)  # None, an int or a RandomState
        return p

    # -- input ------------------------------------------------------------------------------
    def _input_dtype(self, p, reset):
        """The dtype X is converted to: the network's, or for a new network p's."""
        return np.dtype(p["dtype"]) if reset else self._model.dtype

    def _check_X(self, X):
        """X validated as for predict: dense, C-contiguous, of the model's dtype."""
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=self._model.dtype,
                          order="C", reset=False)
        return _dense(X)

    # -- the network ------------------------------------------------------------------------
    def _make_model(self):
        """The fastbp network of ``_layer_units``, compiled with no optimizer state yet."""
        units, act = self._layer_units, ACTIVATIONS[self._activation]
        layers = [Dense(n_in, n_out, activation=act if i < len(units) - 2 else None)
                  for i, (n_in, n_out) in enumerate(pairwise(units))]
        return Sequential(layers, dtype=self._dtype, seed=0)

    def _expose_weights(self):
        """coefs_ and intercepts_ as views of the model's weights (W (n_in, n_out), b)."""
        self.coefs_ = [layer.W for layer in self._model.layers]
        self.intercepts_ = [layer.b for layer in self._model.layers]

    def _sync_weights(self):
        """Copy into the model any coefs_/intercepts_ a user replaced by new arrays."""
        for layer, W, b in zip(self._model.layers, self.coefs_, self.intercepts_):
            if W is not layer.W:
                layer.W = W
            if b is not layer.b:
                layer.b = b

    def _initialize(self, p, n_features, n_outputs, rs):
        """A new network, initialised as scikit-learn's: W and b uniform in +-sqrt(f /
        (fan_in + fan_out)), f = 2 for 'logistic' and 6 otherwise, drawn from ``rs`` in
        scikit-learn's order (so an int random_state gives its very initial weights)."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = n_outputs
        self._layer_units = [n_features] + p["hidden_layer_sizes"] + [n_outputs]
        self.n_layers_ = len(self._layer_units)
        self._activation, self._dtype = p["activation"], p["dtype"]
        self.out_activation_ = self._out_activation()
        self._model = self._make_model()
        factor = 2.0 if p["activation"] == "logistic" else 6.0
        for layer, (fan_in, fan_out) in zip(self._model.layers, pairwise(self._layer_units)):
            bound = np.sqrt(factor / (fan_in + fan_out))
            layer.W = rs.uniform(-bound, bound, (fan_in, fan_out))
            layer.b = rs.uniform(-bound, bound, fan_out)
        self._expose_weights()
        self._optimizer = None
        self._best_params = self._model.params.copy()
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if p["early_stopping"]:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    def _new_optimizer(self, p):
        """The fastbp optimizer that makes scikit-learn's update.

        fastbp's loss gradient is ``c`` times scikit-learn's (``_grad_scale``: c = 1 for
        softmax cross-entropy; 1/k for binary cross-entropy over k outputs and 2/k for
        the squared error, which fastbp average over the outputs and scikit-learn sums).
        So SGD gets lr / c, Adam eps * c (Adam is otherwise invariant to the scale), and
        the L2 term alpha W / batch_size enters as weight decay c alpha / batch_size.
        """
        c = self._grad_scale()
        if p["solver"] == "adam":
            opt = Adam(lr=p["learning_rate_init"], betas=(p["beta_1"], p["beta_2"]),
                       eps=p["epsilon"] * c)
        else:
            opt = SGD(lr=p["learning_rate_init"] / c, momentum=p["momentum"],
                      nesterov=p["nesterovs_momentum"] and p["momentum"] > 0)
        self._model.compile(opt, self._loss_name())
        self._solver = p["solver"]
        self._learning_rate = p["learning_rate_init"]  # scikit-learn's current rate
        return opt

    def _set_learning_rate(self, lr):
        """Move SGD to scikit-learn's new rate.  scikit-learn's velocity holds lr-scaled
        gradients (v = mu v - lr g), torch's buffer raw ones (theta -= lr b): rescaling
        the buffer by old/new keeps the two the same update."""
        opt = self._model.optimizer
        if opt.momentum > 0 and opt.state is not None:
            opt.momentum_buffer[...] *= self._learning_rate / lr
        self._learning_rate = lr
        opt.lr = lr / self._grad_scale()

    # -- fit ----------------------------------------------------------------------------------
    def _fit(self, X, y, incremental, classes=None):
        p = self._validated_params()
        first = not hasattr(self, "_model") or (not p["warm_start"] and not incremental)
        X, Y, n_outputs = self._validate_input(X, y, incremental, first, p, classes)
        rs = check_random_state(self.random_state)
        if first:
            self._initialize(p, X.shape[1], n_outputs, rs)
        elif n_outputs != self.n_outputs_:
            raise ValueError(f"y has {n_outputs} output(s); the fitted network has "
                             f"{self.n_outputs_} (fit it again without warm_start)")
        early_stopping = p["early_stopping"]
        if early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if early_stopping and self.validation_scores_ is None:  # switched on for a warm start
            self.validation_scores_, self.best_validation_score_ = [], -np.inf
        validation = None
        if early_stopping:
            stratify = Y if is_classifier(self) and self.n_outputs_ == 1 else None
            train, val = train_test_split(np.arange(X.shape[0]), random_state=rs,
                                          test_size=p["validation_fraction"], stratify=stratify)
            if val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            validation = (X[val], self._validation_targets(Y[val]))
            X, Y = X[train], Y[train]
        n = X.shape[0]
        if p["batch_size"] == "auto":
            batch_size = min(200, n)
        else:
            if p["batch_size"] > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped")
            batch_size = int(np.clip(p["batch_size"], 1, n))
        if not incremental or self._optimizer is None:
            self._optimizer = self._new_optimizer(p)
        # alpha W / batch_size, in fastbp's gradient scale (read on every compiled call)
        self._optimizer.weight_decay = self._grad_scale() * p["alpha"] / batch_size
        self._p = p
        epoch_end = _EpochEnd(self, n, -(-n // batch_size), validation)
        self.n_iter_ = 0
        try:
            self._model.fit(X, Y, epochs=1 if incremental else p["max_iter"],
                            batch_size=batch_size, shuffle=p["shuffle"],
                            seed=int(rs.randint(np.iinfo(np.int32).max)),
                            callbacks=[epoch_end])
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        except DivergenceError as e:
            raise ValueError("Solver produced non-finite parameter weights. The input data "
                             "may contain large values and need to be preprocessed.") from e
        finally:
            del self._p
        if not incremental and not epoch_end.converged and self.n_iter_ == p["max_iter"]:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({p['max_iter']}) reached "
                          f"and the optimization hasn't converged yet.", ConvergenceWarning,
                          stacklevel=3)
        if early_stopping:
            self._model.params[...] = self._best_params
        return self

    def _end_epoch(self, fastbp_loss, state) -> bool:
        """scikit-learn's bookkeeping after an epoch; True when training should stop."""
        p = self._p
        # scikit-learn adds 0.5 alpha ||W_b||^2 / |b| to minibatch b's loss, W_b the
        # weights before b: the epoch's mean is 0.5 alpha sum_b ||W_b||^2 / n.  The
        # engine runs the epoch in one call, so the sum is taken with ||W||^2 moving in
        # a straight line from the epoch's start to its end (exact for one minibatch).
        before, after, k = state.squares_before, self._squared_weights(), state.n_batches
        squares = k * before + (after - before) * (k - 1) / 2
        penalty = 0.5 * p["alpha"] * squares / state.n_samples
        self.n_iter_ += 1
        self.t_ += state.n_samples
        self.loss_ = fastbp_loss * self._loss_scale() + penalty
        self.loss_curve_.append(self.loss_)
        if p["verbose"]:
            print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
        if state.validation is not None:
            score = self._validation_score(*state.validation)
            self.validation_scores_.append(score)
            if p["verbose"]:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + p["tol"]:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = self._model.params.copy()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - p["tol"]:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]
        sgd = self._solver == "sgd"
        if sgd and p["learning_rate"] == "invscaling":
            self._set_learning_rate(p["learning_rate_init"] / (self.t_ + 1) ** p["power_t"])
        if self._no_improvement_count > p["n_iter_no_change"]:
            what = ("Validation score" if state.validation is not None else "Training loss")
            msg = (f"{what} did not improve more than tol={p['tol']:f} for "
                   f"{p['n_iter_no_change']} consecutive epochs.")
            if not (sgd and p["learning_rate"] == "adaptive"):
                if p["verbose"]:
                    print(msg + " Stopping.")
                return True
            if self._learning_rate <= ADAPTIVE_LR_FLOOR:
                if p["verbose"]:
                    print(msg + " Learning rate too small. Stopping.")
                return True
            self._set_learning_rate(self._learning_rate / 5.0)
            if p["verbose"]:
                print(msg + f" Setting learning rate to {self._learning_rate:f}")
            self._no_improvement_count = 0
        return False

    def _squared_weights(self):
        """||W||^2 over every layer's weights (intercepts are not penalised)."""
        return sum(float(np.dot(W.ravel(), W.ravel())) for W in self.coefs_)

    def _outputs(self, X):
        """The network's last-layer outputs (logits for the classifier), float64."""
        self._sync_weights()
        return self._model.predict(X).astype(np.float64)

    # -- pickling (a fastbp model is saved by its weights and optimizer state) --------------
    def __getstate__(self):
        state = dict(super().__getstate__())
        model = state.pop("_model", None)
        if model is not None:
            self._sync_weights()
            del state["coefs_"], state["intercepts_"]
            state.pop("_optimizer", None)
            opt = model.optimizer
            state["_fastbp_state"] = {
                "params": model.params.copy(),
                "optimizer": None if opt is None else (type(opt).__name__, opt.get_config(),
                                                      opt.state.copy(), opt.step.copy())}
        return state

    def __setstate__(self, state):
        state = dict(state)
        saved = state.pop("_fastbp_state", None)
        super().__setstate__(state)
        if saved is None:
            return
        self._model = self._make_model()
        self._model.params[...] = saved["params"]
        self._optimizer = None
        if saved["optimizer"] is not None:
            name, config, opt_state, step = saved["optimizer"]
            opt = {"Adam": Adam, "SGD": SGD}[name].from_config(config)
            self._model.compile(opt, self._loss_name())
            opt.state[...] = opt_state
            opt.step[...] = step
            self._optimizer = opt
        self._expose_weights()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # accepted, and densified for the network
        return tags


def _keep_parameters(estimator, parameters):
    """Store the constructor's arguments as attributes of the same names, unchanged (as
    scikit-learn's estimators must: get_params reads them back, fit checks them)."""
    for name, value in parameters.items():
        if name != "self":
            setattr(estimator, name, value)


def _dense(X):
    return np.ascontiguousarray(X.toarray()) if sp.issparse(X) else X


_PARAMS_DOC = """
    Parameters
    ----------
{loss}    hidden_layer_sizes : int or sequence of int, default=(100,)
        The width of each hidden layer.
    activation : {"identity", "logistic", "tanh", "relu"}, default="relu"
        The hidden layers' activation (fastbp's None, "sigmoid", "tanh", "relu").
    solver : {"adam", "sgd"}, default="adam"
        scikit-learn's "lbfgs" is not available (a ValueError says so).
    alpha : float, default=1e-4
        L2 penalty: ``0.5 * alpha * ||W||^2 / batch_size`` is added to each minibatch's
        loss (fastbp's weight decay; it also reaches the intercepts, see docs/sklearn.md).
    batch_size : int or "auto", default="auto"
        Minibatch size; "auto" is ``min(200, n_samples)``.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        The SGD learning-rate schedule (per epoch, as scikit-learn's).
    learning_rate_init : float, default=1e-3
        The initial learning rate.
    power_t : float, default=0.5
        The exponent of "invscaling": ``lr = learning_rate_init / (t_ + 1) ** power_t``.
    max_iter : int, default=200
        The most epochs a ``fit`` runs.
    shuffle : bool, default=True
        Shuffle the rows every epoch.
    random_state : None, int or numpy RandomState, default=None
        Seeds the initial weights, the early-stopping split and the shuffling.
    tol : float, default=1e-4
        Training stops when the loss (the validation score with early_stopping) has not
        improved by ``tol`` for ``n_iter_no_change`` consecutive epochs.
    verbose : bool or int, default=False
        Print the loss (and validation score) after every epoch.
    warm_start : bool, default=False
        Continue from the previous fit's weights (with a new optimizer, as scikit-learn).
    momentum : float, default=0.9
        SGD momentum, in [0, 1].
    nesterovs_momentum : bool, default=True
        Nesterov's momentum for SGD (when momentum > 0).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows and stop on their score; the
        weights of the best epoch are kept.
    validation_fraction : float, default=0.1
        The held-out share, in [0, 1).
    beta_1, beta_2 : float, default=0.9, 0.999
        Adam's moment decay rates, in [0, 1).
    epsilon : float, default=1e-8
        Adam's epsilon.
    n_iter_no_change : int or numpy.inf, default=10
        Epochs without improvement before stopping (or, "adaptive", dividing the rate by 5).
    max_fun : int, default=15000
        Accepted and checked for compatibility; unused (it bounds "lbfgs" only).
    dtype : {"float32", "float64"}, default="float32"
        fastbp's: the dtype of the network's weights and arithmetic (float32 is the fast
        one; coefs_ and intercepts_ are of this dtype).
"""

_LOSS_DOC = """    loss : {"squared_error"}, default="squared_error"
        scikit-learn's "poisson" is not available (a ValueError says so).
"""

_ATTRIBUTES_DOC = """
    Attributes
    ----------
    loss_, loss_curve_, best_loss_, n_iter_, t_ :
        The last epoch's loss (with the L2 term), every epoch's, the lowest (None with
        early_stopping), the epochs of the last fit, the training rows seen in all.
    validation_scores_, best_validation_score_ :
        The held-out scores per epoch and the best (None without early_stopping).
    coefs_, intercepts_ : list of arrays (n_in, n_out) and (n_out,)
        The weights: views of the fastbp network's parameters (writing to them changes
        the network).
    n_layers_, n_outputs_, out_activation_, n_features_in_, feature_names_in_ :
        As in scikit-learn.
"""


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = ("""Multi-layer perceptron classifier trained by fastbp, with scikit-learn's
    parameters and attributes.

    Multiclass targets train a softmax output with cross-entropy; two classes one logistic
    output (``predict_proba`` still returns two columns); a 2-d 0/1 indicator matrix is a
    multi-label target: one logistic output per label, ``predict`` returns the matrix.
    Labels may be any hashable values (``classes_`` holds them sorted).
""" + _PARAMS_DOC.replace("{loss}", "") + _ATTRIBUTES_DOC + """    classes_ : ndarray
        The class labels.
""")

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype="float32"):
        _keep_parameters(self, locals())

    def fit(self, X, y):
        """Train on X and the labels y for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : array-like or sparse matrix (n_samples, n_features)
            The inputs (converted to the network's dtype; sparse input is densified).
        y : array-like (n_samples,) or 0/1 indicator matrix (n_samples, n_labels)
            Class labels of any hashable kind, or a multi-label indicator matrix.

        Returns
        -------
        self : MLPClassifier
        """
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y), continuing the weights and the optimizer's state.

        Parameters
        ----------
        X : array-like or sparse matrix (n_samples, n_features)
        y : array-like (n_samples,) or indicator matrix (n_samples, n_labels)
        classes : array-like, optional
            Every class of all the calls; needed on the first call (not for multi-label y).

        Returns
        -------
        self : MLPClassifier
        """
        first = not hasattr(self, "classes_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is not None and not first and not np.array_equal(
                self.classes_, np.unique(np.asarray(classes))):
            raise ValueError(f"`classes={classes!r}` is not the same as on the last call to "
                             f"partial_fit, was: {self.classes_!r}")
        return self._fit(X, y, incremental=True, classes=classes if first else None)

    def _validate_input(self, X, y, incremental, reset, p, classes=None):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=self._input_dtype(p, reset), order="C", reset=reset)
        X = _dense(X)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if classes is not None:  # partial_fit's first call
            self._label_binarizer = LabelBinarizer().fit(y if y.ndim == 2 else classes)
            self.classes_ = self._label_binarizer.classes_
        elif not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        elif self.warm_start and not incremental and y.ndim == 1:
            found = np.unique(y)
            if set(found) != set(self.classes_):
                raise ValueError(f"warm_start can only be used where `y` has the same "
                                 f"classes as in the previous call to fit. Previously got "
                                 f"{self.classes_}, `y` has {found}")
        Y, n_outputs = self._encode(y, X.dtype)
        return X, Y, n_outputs

    def _encode(self, y, dtype):
        """(fastbp's targets, the network's outputs) for the labels y: int64 class indices
        (multiclass), a 0/1 column (binary), the indicator matrix (multi-label)."""
        lb = self._label_binarizer
        if lb.y_type_ == "multilabel-indicator" or y.ndim == 2:
            Y = lb.transform(y)  # refuses a label matrix of another width or kind
            return np.ascontiguousarray(Y, dtype=dtype), Y.shape[1]
        # LabelBinarizer.transform would do, but costs more than an epoch on small data
        classes = self.classes_
        try:
            codes = np.searchsorted(classes, y)
            unknown = classes[np.minimum(codes, len(classes) - 1)] != y
        except TypeError:  # labels that do not compare with the classes
            unknown = np.ones(y.shape[0], dtype=bool)
        if unknown.any():
            raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                             f"{classes}. 'y' has {np.unique(y[unknown])}.")
        if lb.y_type_ == "multiclass":
            return np.ascontiguousarray(codes, dtype=np.int64), len(classes)
        # binary: one logistic output, 1 for the second class (always 0 with one class)
        return np.ascontiguousarray((codes == 1)[:, None], dtype=dtype), 1

    def _multiclass(self):
        return self._label_binarizer.y_type_ == "multiclass"

    def _out_activation(self):
        return "softmax" if self._multiclass() else "logistic"

    def _loss_name(self):
        return "softmax_cross_entropy" if self._multiclass() else "binary_cross_entropy"

    def _grad_scale(self):
        return 1.0 if self._multiclass() else 1.0 / self.n_outputs_

    def _loss_scale(self):
        # scikit-learn's binary log-loss sums over the labels, fastbp's averages
        return 1.0 if self._multiclass() else float(self.n_outputs_)

    def _validation_targets(self, Y):
        return Y

    def _validation_score(self, X_val, Y_val):
        out = self._outputs(X_val)
        if not np.isfinite(out).all():
            return np.nan
        if self._multiclass():
            return accuracy_score(Y_val, out.argmax(axis=1))
        predicted = (out > 0).astype(np.int64)
        if self.n_outputs_ == 1:  # binary: compare label vectors, not 1-column matrices
            return accuracy_score(Y_val.ravel().astype(np.int64), predicted.ravel())
        return accuracy_score(Y_val.astype(np.int64), predicted)

    def _probabilities(self, X):
        z = self._outputs(self._check_X(X))
        if self._multiclass():
            z -= z.max(axis=1, keepdims=True)
            np.exp(z, out=z)
            z /= z.sum(axis=1, keepdims=True)
            return z
        return expit(z)

    def predict(self, X):
        """The predicted labels.

        Parameters
        ----------
        X : array-like or sparse matrix (n_samples, n_features)

        Returns
        -------
        y : ndarray (n_samples,), or (n_samples, n_labels) indicators for multi-label
        """
        check_is_fitted(self)
        proba = self._probabilities(X)
        if self.n_outputs_ == 1:
            proba = proba.ravel()
        return self._label_binarizer.inverse_transform(proba)

    def predict_proba(self, X):
        """Class probabilities, columns in the order of ``classes_``.

        Parameters
        ----------
        X : array-like or sparse matrix (n_samples, n_features)

        Returns
        -------
        proba : float64 ndarray (n_samples, n_classes)
            Two columns for a binary problem; per-label probabilities for multi-label.
        """
        check_is_fitted(self)
        proba = self._probabilities(X)
        if self.n_outputs_ == 1:
            proba = proba.ravel()
            return np.column_stack([1.0 - proba, proba])
        return proba

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``.

        Parameters
        ----------
        X : array-like or sparse matrix (n_samples, n_features)

        Returns
        -------
        log_proba : float64 ndarray (n_samples, n_classes)
        """
        proba = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(proba, out=proba)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = ("""Multi-layer perceptron regressor trained by fastbp (squared error), with
    scikit-learn's parameters and attributes.

    y may be 1-d (``predict`` returns 1-d) or 2-d (n_samples, n_outputs).
""" + _PARAMS_DOC.replace("{loss}", _LOSS_DOC) + _ATTRIBUTES_DOC)

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype="float32"):
        _keep_parameters(self, locals())

    def _validated_params(self):
        _option(self, "loss", ("squared_error",), " (fastbp has no 'poisson')")
        return super()._validated_params()

    def fit(self, X, y):
        """Train on X and the targets y for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : array-like or sparse matrix (n_samples, n_features)
        y : array-like (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self : MLPRegressor
        """
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X, y):
        """One epoch over (X, y), continuing the weights and the optimizer's state.

        Parameters
        ----------
        X : array-like or sparse matrix (n_samples, n_features)
        y : array-like (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self : MLPRegressor
        """
        return self._fit(X, y, incremental=True)

    def _validate_input(self, X, y, incremental, reset, p, classes=None):
        dtype = self._input_dtype(p, reset)
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=dtype, order="C", reset=reset)
        X = _dense(X)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        Y = np.ascontiguousarray(y.reshape(y.shape[0], -1), dtype=dtype)
        return X, Y, Y.shape[1]

    def _out_activation(self):
        return "identity"

    def _loss_name(self):
        return "mse"

    def _grad_scale(self):
        # d/do of mean((o - y)^2) over k outputs is 2/k times scikit-learn's (o - y)
        return 2.0 / self.n_outputs_

    def _loss_scale(self):
        return 0.5  # scikit-learn reports half the mean squared error

    def _validation_targets(self, Y):
        return Y.ravel() if Y.shape[1] == 1 else Y

    def _validation_score(self, X_val, y_val):
        out = self._outputs(X_val)
        if not np.isfinite(out).all():
            return np.nan
        return r2_score(y_val, out.ravel() if out.shape[1] == 1 else out)

    def predict(self, X):
        """The predicted values.

        Parameters
        ----------
        X : array-like or sparse matrix (n_samples, n_features)

        Returns
        -------
        y : float64 ndarray (n_samples,) for one output, else (n_samples, n_outputs)
        """
        check_is_fitted(self)
        out = self._outputs(self._check_X(X))
        return out.ravel() if out.shape[1] == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
