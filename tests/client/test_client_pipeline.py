"""The client pipeline's stages: each refusal names the stage that refused."""

from __future__ import annotations

from typing import Any

import numpy as np

from fedhive.client.base import Context, TaskOrigin
from fedhive.client.pipeline import run_fit
from fedhive.core.failures import FailureKind, Stage
from fedhive.core.messages import ClientConfig, EvaluateResult, Failure, FitResult, FitTask
from fedhive.core.weights import Weights
from fedhive.strategy.private import CLIPPING_NORM

MODEL = Weights({"w": np.zeros(4)})


class DeltaClient:
    """Returns ``delta`` as its update, or raises ``error``."""

    def __init__(self, delta: np.ndarray, error: Exception | None = None) -> None:
        self.delta, self.error = delta, error

    def fit(self, weights: Weights, config: ClientConfig, context: Context) -> FitResult:
        if self.error is not None:
            raise self.error
        return FitResult(delta=Weights({"w": self.delta}), num_examples=3)

    def evaluate(self, weights: Weights, config: ClientConfig, context: Any) -> EvaluateResult:
        return EvaluateResult(loss=0.0, num_examples=1)


def fit(client: DeltaClient, extra: dict[str, Any]) -> Failure:
    task = FitTask(round=1, client_id="c0", version="v", seed=7, config=ClientConfig(extra=extra))
    outcome = run_fit(client, task, MODEL, {}, origin=TaskOrigin.simulation(task))
    assert isinstance(outcome, Failure), outcome
    return outcome


def test_a_bad_dp_instruction_fails_the_privacy_stage_not_the_users_fit() -> None:
    # Before: fit:ClientError, counted as if the user's training had failed.
    outcome = fit(DeltaClient(np.ones(4)), {CLIPPING_NORM: -1.0})
    assert (outcome.stage, outcome.kind) == (Stage.PRIVACY, FailureKind.CLIENT_ERROR)


def test_an_update_the_dp_stage_cannot_clip_fails_the_privacy_stage() -> None:
    # Before: fit:NonFiniteError (privatize ran inside the try that guards the user's fit).
    outcome = fit(DeltaClient(np.array([1.0, np.nan, 0.0, 0.0])), {CLIPPING_NORM: 1.0})
    assert (outcome.stage, outcome.kind) == (Stage.PRIVACY, FailureKind.NON_FINITE)


def test_the_users_exception_fails_fit_and_keeps_its_type() -> None:
    outcome = fit(DeltaClient(np.ones(4), ValueError("bad batch")), {CLIPPING_NORM: 1.0})
    assert (outcome.key, outcome.detail) == ("fit:client_error", "ValueError")
