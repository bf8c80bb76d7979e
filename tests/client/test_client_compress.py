"""The client pipeline's compression stage: payload out, residual kept in client state."""

from __future__ import annotations

import numpy as np
import pytest

from fedhive.client.base import Context, TaskOrigin
from fedhive.client.compress import RESIDUAL_KEY
from fedhive.client.pipeline import run_fit
from fedhive.compression import Pipeline, StochasticQuantization, TopK, decode
from fedhive.core.extensions import Compression
from fedhive.core.failures import FailureKind, Stage
from fedhive.core.messages import (
    ClientConfig,
    EvaluateResult,
    Failure,
    FitReply,
    FitResult,
    FitTask,
)
from fedhive.core.serde import RecordValue
from fedhive.core.weights import Weights

MODEL = Weights({"w": np.zeros(8), "n": np.zeros(2, np.int64)})
UPDATES = [
    np.array([5.0, -4.0, 0.1, 0.2, -0.3, 0.05, 3.0, 0.4]),
    np.array([0.2, 0.1, -0.2, 0.3, 0.1, -0.1, 0.2, 0.3]),
]


class Scripted:
    """Returns the next of ``updates`` as its delta (integer tensor: +1)."""

    def __init__(self, updates: list[np.ndarray]) -> None:
        self.updates = list(updates)

    def fit(self, weights: Weights, config: ClientConfig, context: Context) -> FitResult:
        delta = {"w": self.updates.pop(0), "n": np.ones(2, np.int64)}
        return FitResult(delta=Weights(delta), num_examples=4)

    def evaluate(self, weights: Weights, config: ClientConfig, context: Context) -> EvaluateResult:
        return EvaluateResult(loss=0.0, num_examples=1)


def task(rnd: int, pipeline: Pipeline) -> FitTask:
    config = ClientConfig(extensions=(Compression(pipeline=pipeline),))
    return FitTask(round=rnd, client_id="c0", version="v", seed=rnd, config=config)


def fit(client: Scripted, rnd: int, pipeline: Pipeline, state: dict[str, RecordValue]) -> FitReply:
    t = task(rnd, pipeline)
    reply = run_fit(client, t, MODEL, state, origin=TaskOrigin.simulation(t))
    assert isinstance(reply, FitReply), reply
    return reply


def test_top_k_residual_persists_in_client_state_and_conserves_the_sum() -> None:
    pipeline = Pipeline((TopK(0.25),))
    client, state = Scripted(UPDATES), {}
    sent = []
    for rnd in (1, 2):
        reply = fit(client, rnd, pipeline, state)
        assert len(reply.update) == 0
        assert reply.payload is not None
        sent.append(decode(reply.payload, MODEL.layout()))
        if rnd == 1:
            first_residual = np.array(state[RESIDUAL_KEY])
            assert np.count_nonzero(first_residual) == 6  # 2 of 8 sent, 6 kept back
    residual = state[RESIDUAL_KEY]
    assert isinstance(residual, np.ndarray)
    assert residual.dtype == np.float64
    # nothing lost: what was sent over two rounds plus what is kept is what was trained
    total_sent = sent[0]["w"] + sent[1]["w"]
    np.testing.assert_allclose(total_sent + residual, UPDATES[0] + UPDATES[1], atol=1e-12)
    # round 2 sent what round 1 held back (3.0 + 0.2 beats every new value)
    assert sent[1]["w"][6] == pytest.approx(3.2)
    # integer tensors travel exactly, every round
    assert all(np.array_equal(s["n"], np.ones(2, np.int64)) for s in sent)


def test_an_unbiased_pipeline_keeps_no_residual_and_drops_a_stale_one() -> None:
    state: dict[str, RecordValue] = {RESIDUAL_KEY: np.ones(8)}
    reply = fit(Scripted(UPDATES), 1, Pipeline((StochasticQuantization(bits=8),)), state)
    assert RESIDUAL_KEY not in state
    assert reply.payload is not None
    decoded = decode(reply.payload, MODEL.layout())["w"]
    step = (UPDATES[0].max() - UPDATES[0].min()) / 255
    assert np.all(np.abs(decoded - UPDATES[0]) <= step * (1 + 1e-6))


def test_the_codec_stream_comes_from_the_task_seed() -> None:
    pipeline = Pipeline((StochasticQuantization(bits=4),))
    payloads = [fit(Scripted(UPDATES), 1, pipeline, {}).payload for _ in range(2)]
    assert payloads[0] == payloads[1]
    other = task(1, pipeline)
    other = FitTask(round=1, client_id="c0", version="v", seed=99, config=other.config)
    reply = run_fit(Scripted(UPDATES), other, MODEL, {}, origin=TaskOrigin.simulation(other))
    assert isinstance(reply, FitReply)
    assert reply.payload != payloads[0]


def test_an_update_the_codec_cannot_carry_fails_at_the_compress_stage() -> None:
    huge = [np.full(8, 1e300)]
    state: dict[str, RecordValue] = {}
    t = task(1, Pipeline((TopK(0.5),)))
    outcome = run_fit(Scripted(huge), t, MODEL, state, origin=TaskOrigin.simulation(t))
    assert isinstance(outcome, Failure)
    assert (outcome.stage, outcome.kind) == (Stage.COMPRESS, FailureKind.CODEC)
    assert RESIDUAL_KEY not in state  # nothing released, nothing kept


def test_a_residual_of_another_model_fails_at_the_compress_stage() -> None:
    state: dict[str, RecordValue] = {RESIDUAL_KEY: np.ones(3)}
    t = task(1, Pipeline((TopK(0.5),)))
    outcome = run_fit(Scripted(UPDATES), t, MODEL, state, origin=TaskOrigin.simulation(t))
    assert isinstance(outcome, Failure)
    assert outcome.stage == Stage.COMPRESS
