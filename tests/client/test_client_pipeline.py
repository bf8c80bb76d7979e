"""The client pipeline's stages: each refusal names the stage that refused."""

from __future__ import annotations

from typing import Any

import numpy as np

from fedhive.client.base import Context, TaskOrigin
from fedhive.client.pipeline import run_fit
from fedhive.core.extensions import ClipAndNoise
from fedhive.core.failures import FailureKind, Stage
from fedhive.core.messages import ClientConfig, EvaluateResult, Failure, FitResult, FitTask
from fedhive.core.weights import Weights

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


CLIP = ClipAndNoise(noise_multiplier=1.0, clipping_norm=1.0)


def fit(client: DeltaClient, asked: ClipAndNoise) -> Failure:
    config = ClientConfig(extensions=(asked,))
    task = FitTask(round=1, client_id="c0", version="v", seed=7, config=config)
    outcome = run_fit(client, task, MODEL, {}, origin=TaskOrigin.simulation(task))
    assert isinstance(outcome, Failure), outcome
    return outcome


def test_an_update_the_dp_stage_cannot_clip_fails_the_privacy_stage() -> None:
    # Before: fit:NonFiniteError (privatize ran inside the try that guards the user's fit).
    # (A bad DP instruction itself can no longer be built: see test_core_extensions.)
    outcome = fit(DeltaClient(np.array([1.0, np.nan, 0.0, 0.0])), CLIP)
    assert (outcome.stage, outcome.kind) == (Stage.PRIVACY, FailureKind.NON_FINITE)


def test_the_users_exception_fails_fit_and_keeps_its_type() -> None:
    outcome = fit(DeltaClient(np.ones(4), ValueError("bad batch")), CLIP)
    assert (outcome.key, outcome.detail) == ("fit:client_error", "ValueError")
