"""NumPy adapter: a Client made of two plain functions, ``train`` and ``evaluate``.

For models written directly in numpy (or any library without an adapter): the functions
receive the weights, the client's data, its config and its context, and return either
the result dataclass or a short tuple, which this adapter normalises and checks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from fedhive.client.base import Context
from fedhive.core.messages import ClientConfig, EvaluateResult, FitResult, check_metrics
from fedhive.core.weights import Weights
from fedhive.errors import ClientError

__all__ = ["EvaluateFn", "NumpyClient", "TrainFn"]

TrainFn = Callable[[Weights, Any, ClientConfig, Context], Any]
"""``train(weights, data, config, context)`` returning ``FitResult``,
``(weights, num_examples)`` or ``(weights, num_examples, metrics)``."""

EvaluateFn = Callable[[Weights, Any, ClientConfig, Context], Any]
"""``evaluate(weights, test_data, config, context)`` returning ``EvaluateResult``,
``(loss, num_examples)`` or ``(loss, num_examples, metrics)``."""


class NumpyClient:
    """A Client that calls user functions to train and evaluate.

    Args:
        train: ``train(weights, data, config, context)``; returns a :class:`FitResult`,
            ``(weights, num_examples)`` or ``(weights, num_examples, metrics)``.
        evaluate: ``evaluate(weights, test_data, config, context)``; returns an
            :class:`EvaluateResult`, ``(loss, num_examples)`` or
            ``(loss, num_examples, metrics)``. None: evaluation reports 0 examples.
        data: the training data, passed to ``train`` as it is.
        test_data: the test data, passed to ``evaluate`` as it is.
    """

    def __init__(
        self,
        *,
        train: TrainFn,
        evaluate: EvaluateFn | None = None,
        data: Any,
        test_data: Any = None,
    ) -> None:
        self._train = train
        self._evaluate = evaluate
        self._data = data
        self._test_data = test_data

    def fit(self, weights: Weights, config: ClientConfig, context: Context) -> FitResult:
        """Run the user's ``train`` and return its result as a :class:`FitResult`.

        Raises:
            ClientError: ``train`` returned something else than the documented forms.
        """
        return _fit_result(self._train(weights, self._data, config, context))

    def evaluate(self, weights: Weights, config: ClientConfig, context: Context) -> EvaluateResult:
        """Run the user's ``evaluate`` and return its result as an :class:`EvaluateResult`.

        Raises:
            ClientError: ``evaluate`` returned something else than the documented forms.
        """
        if self._evaluate is None:
            return EvaluateResult(loss=0.0, num_examples=0)
        return _evaluate_result(self._evaluate(weights, self._test_data, config, context))


def _fit_result(value: object) -> FitResult:
    if isinstance(value, FitResult):
        return value
    weights, num_examples, metrics = _unpack(value, "train", "(weights, num_examples[, metrics])")
    if not isinstance(weights, Weights):
        raise ClientError(f"train returned {type(weights).__name__} as weights, not Weights")
    return FitResult(weights=weights, num_examples=num_examples, metrics=metrics)


def _evaluate_result(value: object) -> EvaluateResult:
    if isinstance(value, EvaluateResult):
        return value
    loss, num_examples, metrics = _unpack(value, "evaluate", "(loss, num_examples[, metrics])")
    checked = check_metrics({"loss": loss}, what="evaluate's result")["loss"]
    return EvaluateResult(loss=checked, num_examples=num_examples, metrics=metrics)


def _unpack(value: object, who: str, form: str) -> tuple[object, int, dict[str, float]]:
    """Split a 2- or 3-tuple result into (first, num_examples, checked metrics)."""
    if not isinstance(value, tuple) or len(value) not in (2, 3):
        raise ClientError(
            f"{who} must return {form} or a result object, got {type(value).__name__}"
        )
    first, num_examples = value[0], value[1]
    metrics = value[2] if len(value) == 3 else {}
    integer = isinstance(num_examples, (int, np.integer)) and not isinstance(num_examples, bool)
    if not integer or num_examples < 0:
        raise ClientError(f"{who} returned num_examples={num_examples!r}, not an int >= 0")
    if not isinstance(metrics, Mapping):
        raise ClientError(f"{who} returned metrics of type {type(metrics).__name__}, not a dict")
    return first, int(num_examples), check_metrics(metrics, what=f"{who}'s metrics")
