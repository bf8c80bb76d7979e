"""scikit-learn adapter: a Client for linear models, federated through coef_ and intercept_.

Weights are ``{"coef": coef_, "intercept": intercept_}`` in float64. Estimators with
``partial_fit`` (``SGDClassifier``, ``SGDRegressor``, ``Perceptron``, ...) make one
shuffled pass per local epoch with a constant step ``eta0 = config.learning_rate``; the
others (``LogisticRegression``, ...) call ``fit`` warm-started from the weights, for
``config.local_epochs`` iterations where they have ``max_iter``.

Classifiers know every class of the federation up front (``classes``), so a client
whose data lacks a class still produces coefficients of the federation's shape.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import numpy.typing as npt

from fedhive.client.base import Context
from fedhive.core.messages import ClientConfig, EvaluateResult, FitResult
from fedhive.core.weights import Weights
from fedhive.errors import ClientError, ConfigError, MissingDependencyError

try:
    from sklearn.base import clone, is_classifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import log_loss
    from sklearn.utils.validation import has_fit_parameter
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError(
        "fedhive.client.sklearn needs scikit-learn: pip install 'fedhive[sklearn]'"
    ) from exc

__all__ = ["SklearnClient", "initial_weights"]

Float64 = npt.NDArray[np.float64]


def initial_weights(
    *, n_features: int, classes: npt.ArrayLike | None = None, n_outputs: int | None = None
) -> Weights:
    """Zero coefficients of the shape a linear model has after fitting.

    Args:
        n_features: number of input features.
        classes: all labels of a classification task (two classes give one row of
            coefficients, as scikit-learn's binary models have).
        n_outputs: for regression, the number of targets; None for a 1-D target.

    Raises:
        ConfigError: fewer than two classes, or both ``classes`` and ``n_outputs``.
    """
    if classes is not None and n_outputs is not None:
        raise ConfigError("initial_weights: give classes (classification) or n_outputs")
    if classes is not None:
        n_classes = len(np.unique(np.asarray(classes)))
        if n_classes < 2:
            raise ConfigError(f"classes: need at least 2, got {n_classes}")
        rows = 1 if n_classes == 2 else n_classes
        coef_shape: tuple[int, ...] = (rows, n_features)
    else:
        rows = 1 if n_outputs is None else n_outputs
        coef_shape = (n_features,) if n_outputs is None else (rows, n_features)
    return Weights({"coef": np.zeros(coef_shape), "intercept": np.zeros(rows)})


class SklearnClient:
    """A Client training a scikit-learn linear model on local arrays.

    Args:
        estimator: an unfitted linear estimator (cloned for every fit, never changed).
        x_train: training features, shape ``(n, n_features)``.
        y_train: training labels or targets.
        x_test: test features, or None (evaluate then reports 0 examples).
        y_test: test labels or targets.
        classes: every label of the federation (classifiers); defaults to the labels
            present here, which only suits a single client.
    """

    def __init__(
        self,
        *,
        estimator: Any,
        x_train: npt.ArrayLike,
        y_train: npt.ArrayLike,
        x_test: npt.ArrayLike | None = None,
        y_test: npt.ArrayLike | None = None,
        classes: npt.ArrayLike | None = None,
    ) -> None:
        self._estimator = estimator
        self._x, self._y = _check_xy(x_train, y_train, "train")
        if (x_test is None) != (y_test is None):
            raise ConfigError("x_test and y_test: give both or neither")
        self._x_test, self._y_test = (
            (self._x[:0], self._y[:0]) if x_test is None else _check_xy(x_test, y_test, "test")
        )
        self._classes: npt.NDArray[Any] | None = None
        n_outputs = None if self._y.ndim == 1 else self._y.shape[1]
        if is_classifier(estimator):
            seen = np.concatenate([self._y, self._y_test])
            self._classes = np.unique(seen if classes is None else np.asarray(classes))
            if not np.isin(seen, self._classes).all():
                raise ConfigError("classes: some local labels are not among the classes")
            n_outputs = None
        elif classes is not None:
            raise ConfigError("classes: given, but the estimator is not a classifier")
        self._layout = initial_weights(
            n_features=self._x.shape[1], classes=self._classes, n_outputs=n_outputs
        ).layout()

    def fit(self, weights: Weights, config: ClientConfig, context: Context) -> FitResult:
        """Train a clone of the estimator from ``weights``; return its new weights.

        A client without training data, or whose data lacks a class that an estimator
        without ``partial_fit`` or ``sample_weight`` cannot do without, returns
        ``weights`` unchanged with ``num_examples=0``.
        """
        weights.validate_like(self._layout)
        if len(self._y) == 0:
            return FitResult(weights=weights, num_examples=0)
        model = self._prepared(weights, config, context)
        if hasattr(model, "partial_fit"):
            self._partial_fit(model, config, context)
        elif not self._fit(model):
            return FitResult(weights=weights, num_examples=0)
        new = Weights({name: self._read(model, name) for name in ("coef", "intercept")})
        train_loss, _ = self._score(model, self._x, self._y)
        return FitResult(weights=new, num_examples=len(self._y), metrics={"train_loss": train_loss})

    def evaluate(self, weights: Weights, config: ClientConfig, context: Context) -> EvaluateResult:
        """Log loss and accuracy (classifiers) or mean squared error (regressors)."""
        if len(self._y_test) == 0:
            return EvaluateResult(loss=0.0, num_examples=0)
        loss, metrics = self._score(self._loaded(weights), self._x_test, self._y_test)
        return EvaluateResult(loss=loss, num_examples=len(self._y_test), metrics=metrics)

    def score(self, weights: Weights) -> dict[str, float]:
        """``{"loss": ..., **metrics}`` of ``weights`` on the test data (for the server).

        Raises:
            ConfigError: this client holds no test data.
        """
        if len(self._y_test) == 0:
            raise ConfigError("score: this client holds no test data")
        loss, metrics = self._score(self._loaded(weights), self._x_test, self._y_test)
        return {"loss": loss, **metrics}

    def _loaded(self, weights: Weights) -> Any:
        """A clone of the estimator holding ``weights`` as its fitted coefficients."""
        weights.validate_like(self._layout)
        model = clone(self._estimator)
        model.coef_ = np.array(weights["coef"], dtype=np.float64, order="C")
        model.intercept_ = np.array(weights["intercept"], dtype=np.float64, order="C")
        model.n_features_in_ = self._x.shape[1]
        if self._classes is not None:
            model.classes_ = self._classes
        return model

    def _prepared(self, weights: Weights, config: ClientConfig, context: Context) -> Any:
        """The loaded clone, with learning rate, epochs and seed taken from this round."""
        model = self._loaded(weights)
        params = model.get_params()
        updates: dict[str, Any] = {"random_state": context.seed.seed % 2**32}
        if "eta0" in params:
            updates["eta0"] = config.learning_rate
            if isinstance(params.get("learning_rate"), str):
                updates["learning_rate"] = "constant"
        if hasattr(model, "partial_fit"):
            updates["shuffle"] = False  # the order is drawn from the client's stream
        else:
            updates["warm_start"] = True
            updates["max_iter"] = config.local_epochs
        if params.get("average"):
            raise ConfigError("estimator: average=True keeps state outside coef_/intercept_")
        model.set_params(**{k: v for k, v in updates.items() if k in params})
        return model

    def _partial_fit(self, model: Any, config: ClientConfig, context: Context) -> None:
        """One pass per local epoch over the data in an order drawn from the client's stream.

        scikit-learn's SGD updates once per *sample*, so mini-batches of ``partial_fit``
        calls would compute the same thing as one call over the same order, only with
        ~2 ms of validation per call; the batch size has no effect here.
        """
        rng = context.numpy_rng()
        extra = {} if self._classes is None else {"classes": self._classes}
        for _ in range(config.local_epochs):
            order = rng.permutation(len(self._y))
            model.partial_fit(self._x[order], self._y[order], **extra)

    def _fit(self, model: Any) -> bool:
        """Warm-started ``fit``; False where the local data cannot train this model."""
        x, y, extra = self._x, self._y, {}
        missing = np.setdiff1d(self._classes, y) if self._classes is not None else ()
        if len(missing):
            if not has_fit_parameter(model, "sample_weight"):
                return False  # a missing class would change the coefficients' shape
            # Zero-weight rows make every class known to fit without changing its loss.
            x = np.concatenate([x, np.zeros((len(missing), x.shape[1]))])
            y = np.concatenate([y, np.asarray(missing, dtype=y.dtype)])
            extra = {"sample_weight": np.repeat([1.0, 0.0], [len(self._y), len(missing)])}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is the budget
            model.fit(x, y, **extra)
        return True

    def _read(self, model: Any, name: str) -> Float64:
        """``coef_`` or ``intercept_`` as float64 in the layout's shape."""
        value = np.array(getattr(model, f"{name}_"), dtype=np.float64)
        shape = self._layout.shapes[self._layout.names.index(name)]
        if value.size != int(np.prod(shape)):
            raise ClientError(f"estimator produced {name} of shape {value.shape}, not {shape}")
        return value.reshape(shape)

    def _score(self, model: Any, x: Float64, y: npt.NDArray[Any]) -> tuple[float, dict[str, float]]:
        """(loss, metrics): log loss and accuracy, or mean squared error."""
        if self._classes is None:
            mse = float(np.mean((model.predict(x).reshape(y.shape) - y) ** 2))
            return mse, {"mse": mse}
        proba = _probabilities(model, x)
        loss = float(log_loss(y, proba, labels=self._classes))
        accuracy = float(np.mean(self._classes[proba.argmax(axis=1)] == y))
        return loss, {"accuracy": accuracy}


def _probabilities(model: Any, x: Float64) -> Float64:
    """Class probabilities: ``predict_proba``, else a sigmoid/softmax of the decision."""
    if hasattr(model, "predict_proba"):  # False for e.g. a hinge-loss SGDClassifier
        return np.asarray(model.predict_proba(x), dtype=np.float64)
    scores: Float64 = np.asarray(model.decision_function(x), dtype=np.float64)
    if scores.ndim == 1:
        positive = 1.0 / (1.0 + np.exp(-scores))
        return np.stack([1.0 - positive, positive], axis=1)
    scores = np.exp(scores - scores.max(axis=1, keepdims=True))
    scores /= scores.sum(axis=1, keepdims=True)
    return scores


def _check_xy(x: Any, y: Any, split: str) -> tuple[Float64, npt.NDArray[Any]]:
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y)
    if xs.ndim != 2 or ys.ndim not in (1, 2) or len(xs) != len(ys):
        raise ConfigError(f"x_{split}, y_{split}: expected (n, features) and (n,) arrays")
    return xs, ys
