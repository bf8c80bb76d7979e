"""NumpyClient turns the user's tuples into results and refuses anything else clearly."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fedhive.client.base import Client, Context
from fedhive.client.numpy import NumpyClient
from fedhive.core import ClientConfig, EvaluateResult, FitResult, Weights, run_stream
from fedhive.errors import ClientError

CONFIG = ClientConfig(local_epochs=3, batch_size=4, learning_rate=0.5)
CTX = Context(client_id="c0", round=1, seed=run_stream(0).child("c0"))
Data = tuple[np.ndarray, np.ndarray]


def data(n: int = 40) -> Data:
    """A 1-D regression y = 3x + 1 with noise."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    return x, 3 * x + 1 + 0.01 * rng.normal(size=n)


def mse(weights: Weights, d: Data) -> float:
    x, y = d
    return float(np.mean((weights["a"] * x + weights["b"] - y) ** 2))


def train(weights: Weights, d: Data, config: ClientConfig, context: Context) -> Any:
    """Mini-batch SGD on the squared error, shuffled by the client's stream."""
    x, y = d
    a, b = float(weights["a"]), float(weights["b"])
    rng = context.numpy_rng()
    for _ in range(config.local_epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), config.batch_size):
            i = order[start : start + config.batch_size]
            err = a * x[i] + b - y[i]
            a -= config.learning_rate * float(np.mean(err * x[i]))
            b -= config.learning_rate * float(np.mean(err))
    new = Weights({"a": np.array(a), "b": np.array(b)})
    return new, len(x), {"train_mse": mse(new, d)}


def evaluate(weights: Weights, d: Data, config: ClientConfig, context: Context) -> Any:
    return mse(weights, d), np.int64(len(d[0]))


ZERO = Weights({"a": np.array(0.0), "b": np.array(0.0)})


def test_tuples_are_normalised_and_training_works() -> None:
    client = NumpyClient(train=train, evaluate=evaluate, data=data(), test_data=data(10))
    assert isinstance(client, Client)
    fit = client.fit(ZERO, CONFIG, CTX)
    assert isinstance(fit, FitResult)
    assert fit.num_examples == 40
    assert fit.weights is not None
    assert fit.metrics["train_mse"] < 0.01
    before, after = client.evaluate(ZERO, CONFIG, CTX), client.evaluate(fit.weights, CONFIG, CTX)
    assert isinstance(after, EvaluateResult)
    assert after.num_examples == 10
    assert type(after.num_examples) is int
    assert after.loss < before.loss / 100
    assert after.metrics == {}


def test_two_tuples_and_result_objects_pass_through() -> None:
    result = FitResult(delta=ZERO, num_examples=3)
    client = NumpyClient(
        train=lambda w, d, c, x: result,
        evaluate=lambda w, d, c, x: (np.float32(0.5), 7),
        data=None,
    )
    assert client.fit(ZERO, CONFIG, CTX) is result
    evaluated = client.evaluate(ZERO, CONFIG, CTX)
    assert (evaluated.loss, evaluated.num_examples, dict(evaluated.metrics)) == (0.5, 7, {})
    two = NumpyClient(train=lambda w, d, c, x: (w, 2), data=None).fit(ZERO, CONFIG, CTX)
    assert two.weights is ZERO
    assert two.num_examples == 2


def test_without_evaluate_reports_nothing() -> None:
    result = NumpyClient(train=train, data=data()).evaluate(ZERO, CONFIG, CTX)
    assert (result.loss, result.num_examples) == (0.0, 0)


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        (None, "must return"),
        ((ZERO,), "must return"),
        ((ZERO, 1, {}, 4), "must return"),
        ({"a": np.zeros(1)}, "must return"),
        (({"a": np.zeros(1)}, 1), "not Weights"),
        ((ZERO, -1), "num_examples"),
        ((ZERO, 1.0), "num_examples"),
        ((ZERO, True), "num_examples"),
        ((ZERO, 1, [("acc", 1.0)]), "metrics"),
        ((ZERO, 1, {"acc": "high"}), "not a number"),
        ((ZERO, 1, {"acc": float("nan")}), "not finite"),
    ],
)
def test_bad_train_returns_raise_client_error(returned: object, message: str) -> None:
    client = NumpyClient(train=lambda w, d, c, x: returned, data=None)
    with pytest.raises(ClientError, match=message):
        client.fit(ZERO, CONFIG, CTX)


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        (0.5, "must return"),
        (("low", 3), "not a number"),
        ((float("inf"), 3), "not finite"),
        ((0.5, "3"), "num_examples"),
        ((0.5, 3, {"acc": None}), "not a number"),
    ],
)
def test_bad_evaluate_returns_raise_client_error(returned: object, message: str) -> None:
    client = NumpyClient(train=train, evaluate=lambda w, d, c, x: returned, data=None)
    with pytest.raises(ClientError, match=message):
        client.evaluate(ZERO, CONFIG, CTX)
