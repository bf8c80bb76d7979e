"""SklearnClient trains linear models reproducibly in the federation's shape."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn.linear_model import (
    LogisticRegression,
    Ridge,
    SGDClassifier,
    SGDRegressor,
)

from fedhive.client.base import Client, Context
from fedhive.client.sklearn import SklearnClient, initial_weights
from fedhive.core import ClientConfig, Weights, run_stream
from fedhive.errors import ConfigError, ShapeMismatchError

CONFIG = ClientConfig(local_epochs=2, batch_size=16, learning_rate=0.05)
CLASSES = np.array([0, 1, 2])


def ctx(seed: int = 0) -> Context:
    return Context(client_id="c0", round=1, seed=run_stream(seed).child("c0"))


def blobs(n: int = 150, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated Gaussian blobs in 4-D."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    return 4 * np.eye(3, 4)[y] + rng.normal(size=(n, 4)), y


def client(estimator: Any, **kwargs: Any) -> SklearnClient:
    x, y = kwargs.pop("train", blobs())
    x_test, y_test = blobs(seed=1)
    kwargs.setdefault("classes", CLASSES)
    return SklearnClient(
        estimator=estimator, x_train=x, y_train=y, x_test=x_test, y_test=y_test, **kwargs
    )


def trained(c: SklearnClient, weights: Weights, seed: int = 0) -> Weights:
    result = c.fit(weights, CONFIG, ctx(seed))
    assert result.weights is not None
    return result.weights


def equal(a: Weights, b: Weights) -> bool:
    return all(np.array_equal(a[k], b[k]) for k in ("coef", "intercept"))


@pytest.mark.parametrize(
    "estimator",
    [SGDClassifier(loss="log_loss"), SGDClassifier(loss="hinge"), LogisticRegression()],
    ids=["sgd-log", "sgd-hinge", "logreg"],
)
def test_classifiers_learn_an_easy_problem(estimator: Any) -> None:
    c = client(estimator)
    assert isinstance(c, Client)
    weights = initial_weights(n_features=4, classes=CLASSES)
    before = c.evaluate(weights, CONFIG, ctx())
    for rnd in range(3):
        weights = trained(c, weights, rnd)
    after = c.evaluate(weights, CONFIG, ctx())
    assert weights["coef"].dtype == np.float64
    assert after.num_examples == 150
    assert after.loss < before.loss / 2
    assert after.metrics["accuracy"] >= 0.95
    assert c.score(weights) == {"loss": after.loss, **after.metrics}
    assert not hasattr(estimator, "coef_")  # the user's estimator was cloned, not fitted


def test_same_seed_is_identical_and_different_seeds_differ() -> None:
    c = client(SGDClassifier(loss="log_loss"))
    w0 = initial_weights(n_features=4, classes=CLASSES)
    assert equal(trained(c, w0, 1), trained(c, w0, 1))
    assert not equal(trained(c, w0, 1), trained(c, w0, 2))


@pytest.mark.parametrize(
    "estimator", [SGDClassifier(loss="log_loss"), LogisticRegression()], ids=["sgd", "logreg"]
)
def test_client_lacking_a_class_keeps_the_federation_shape(estimator: Any) -> None:
    x, y = blobs()
    keep = y != 2
    c = client(estimator, train=(x[keep], y[keep]))
    weights = trained(c, initial_weights(n_features=4, classes=CLASSES))
    assert weights["coef"].shape == (3, 4)
    assert weights["intercept"].shape == (3,)
    assert c.evaluate(weights, CONFIG, ctx()).metrics["accuracy"] > 0.5


def test_binary_single_class_client_trains_in_binary_shape() -> None:
    x, y = blobs()
    keep = y == 1
    c = SklearnClient(
        estimator=LogisticRegression(), x_train=x[keep], y_train=y[keep], classes=[0, 1]
    )
    result = c.fit(initial_weights(n_features=4, classes=[0, 1]), CONFIG, ctx())
    assert result.weights is not None
    assert result.weights["coef"].shape == (1, 4)
    assert result.num_examples == int(keep.sum())
    assert np.any(result.weights["coef"] != 0)


@pytest.mark.parametrize("estimator", [SGDRegressor(), Ridge()], ids=["sgd", "ridge"])
def test_regressors_fit_a_linear_target(estimator: Any) -> None:
    x, _ = blobs()
    coef = np.array([1.0, -2.0, 3.0, 0.5])
    x_test = blobs(seed=1)[0]
    c = SklearnClient(
        estimator=estimator,
        x_train=x,
        y_train=x @ coef + 1,
        x_test=x_test,
        y_test=x_test @ coef + 1,
    )
    w0 = initial_weights(n_features=4)
    assert (w0["coef"].shape, w0["intercept"].shape) == ((4,), (1,))
    weights = trained(c, w0)
    result = c.evaluate(weights, CONFIG, ctx())
    assert result.loss < 1e-2
    assert result.metrics == {"mse": result.loss}
    np.testing.assert_allclose(weights["coef"], coef, atol=0.05)


def test_initial_weights_shapes() -> None:
    binary = initial_weights(n_features=5, classes=["no", "yes"])
    assert (binary["coef"].shape, binary["intercept"].shape) == ((1, 5), (1,))
    multi = initial_weights(n_features=5, classes=range(4))
    assert (multi["coef"].shape, multi["intercept"].shape) == ((4, 5), (4,))
    outputs = initial_weights(n_features=5, n_outputs=2)
    assert (outputs["coef"].shape, outputs["intercept"].shape) == ((2, 5), (2,))
    with pytest.raises(ConfigError):
        initial_weights(n_features=5, classes=[1])


def test_wrong_shape_is_refused() -> None:
    c = client(SGDClassifier())
    with pytest.raises(ShapeMismatchError, match="coef"):
        c.fit(initial_weights(n_features=3, classes=CLASSES), CONFIG, ctx())


def test_empty_splits_and_bad_inputs() -> None:
    x, y = blobs()
    w0 = initial_weights(n_features=4, classes=CLASSES)
    empty = SklearnClient(estimator=SGDClassifier(), x_train=x[:0], y_train=y[:0], classes=CLASSES)
    result = empty.fit(w0, CONFIG, ctx())
    assert result.num_examples == 0
    assert result.weights is w0
    evaluated = empty.evaluate(w0, CONFIG, ctx())
    assert (evaluated.loss, evaluated.num_examples) == (0.0, 0)
    with pytest.raises(ConfigError, match="no test data"):
        empty.score(w0)
    with pytest.raises(ConfigError, match="not among the classes"):
        SklearnClient(estimator=SGDClassifier(), x_train=x, y_train=y, classes=[0, 1])
    with pytest.raises(ConfigError):
        SklearnClient(estimator=SGDClassifier(), x_train=x, y_train=y[:3])
    with pytest.raises(ConfigError, match="not a classifier"):
        SklearnClient(estimator=SGDRegressor(), x_train=x, y_train=y * 1.0, classes=CLASSES)
