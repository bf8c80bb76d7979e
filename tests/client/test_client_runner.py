"""The deployed client loop: it charges each release under the envelope's run and task,
retries what passes and stops on a refusal."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedhive.client.base import Context
from fedhive.client.runner import Upload, serve
from fedhive.core.extensions import ClipAndNoise
from fedhive.core.messages import (
    ClientConfig,
    EvaluateResult,
    FitReply,
    FitResult,
    FitTask,
    PrivacyBudget,
)
from fedhive.core.serde import model_version, weights_to_bytes
from fedhive.core.weights import Weights
from fedhive.errors import PeerRejectedError, TransportError
from fedhive.privacy import FileLedger
from fedhive.simulation.app import AppSpec
from fedhive.transport.base import Wait
from fedhive.transport.codec import TaskEnvelope

dp_accounting = pytest.importorskip("dp_accounting")

MODEL = Weights({"w": np.zeros(1000)})
DELTA = 1e-5
# An honest distributed-DP ask at z = 2 (the server's claim matches the noise it asks for).
HONEST = ClipAndNoise(noise_multiplier=2.0, clipping_norm=1.0, noise_std=2.0)


class OnesClient:
    """Returns an update of ones."""

    def fit(self, weights: Weights, config: ClientConfig, context: Context) -> FitResult:
        return FitResult(delta=Weights({"w": np.full(1000, 0.01)}), num_examples=5)

    def evaluate(self, weights: Weights, config: ClientConfig, context: Any) -> EvaluateResult:
        return EvaluateResult(loss=0.0, num_examples=1)


class ScriptedLink:
    """A server that hands out ``envelopes`` in order, then says the run has finished."""

    def __init__(self, envelopes: Sequence[TaskEnvelope]) -> None:
        self._waiting = list(envelopes)
        self.uploads: list[Upload] = []

    def register(self) -> str:
        return "run"

    def pull(self) -> TaskEnvelope | Wait:
        return self._waiting.pop(0) if self._waiting else Wait(0.01, finished=True)

    def download(self, envelope: TaskEnvelope) -> bytes:
        return weights_to_bytes(MODEL)

    def upload(self, envelope: TaskEnvelope, outcome: Upload) -> str:
        self.uploads.append(outcome)
        return "accepted"

    def close(self) -> None:
        pass


def envelope(run_id: str, task_id: str, rnd: int, ask: ClipAndNoise) -> TaskEnvelope:
    fit = FitTask(
        round=rnd,
        client_id="c0",
        version=model_version(MODEL),
        seed=7,
        config=ClientConfig(extensions=(ask,)),
    )
    return TaskEnvelope(task=fit, task_id=task_id, run_id=run_id, deadline_unix=0.0, model_size=0)


def run(
    envelopes: Sequence[TaskEnvelope], ledger: FileLedger | None, **kwargs: Any
) -> ScriptedLink:
    link = ScriptedLink(envelopes)
    serve(link, OnesClient(), stop=threading.Event(), ledger=ledger, **kwargs)
    return link


def test_a_replayed_round_number_is_charged_on_a_deployed_device(tmp_path: Path) -> None:
    # Round 1 again and again: a second run, a resumed round, a server reusing the
    # round and even the task id. Every release is charged.
    replays = [
        envelope("run-a", "a1", 1, HONEST),
        envelope("run-b", "b1", 1, HONEST),
        envelope("run-b", "b2", 1, HONEST),
        envelope("run-b", "b2", 1, HONEST),
    ]
    ledger = FileLedger(tmp_path / "ledger.json")
    link = run(replays, ledger, budget=PrivacyBudget(epsilon_max=20.0, delta=DELTA))
    assert all(isinstance(u, FitReply) for u in link.uploads)
    spent = ledger.load()
    assert [e.task_id for e in spent.entries] == ["run-a/a1", "run-b/b1", "run-b/b2", "run-b/b2"]
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(2.0), 4))
    assert spent.spent(target_delta=DELTA) == pytest.approx(accountant.get_epsilon(DELTA), rel=1e-9)


def test_a_replayed_round_number_is_refused_past_the_budget(tmp_path: Path) -> None:
    # z = 2, no amplification: epsilon 2.17 after one release, 3.19 after two.
    budget = PrivacyBudget(epsilon_max=2.6773, delta=DELTA)
    ledger = FileLedger(tmp_path / "ledger.json")
    link = run(
        [envelope("run-a", "a1", 1, HONEST), envelope("run-b", "b1", 1, HONEST)],
        ledger,
        budget=budget,
    )
    assert [type(u).__name__ for u in link.uploads] == ["FitReply", "Failure"]
    assert len(ledger.load().entries) == 1


def test_a_deployed_device_ignores_dp_noise_seeded() -> None:
    seeded = ClipAndNoise(noise_multiplier=1.0, clipping_norm=1.0, noise_std=1.0, seeded=True)
    link = run([envelope("r", "t1", 1, seeded), envelope("r", "t1", 1, seeded)], None)
    first, second = link.uploads
    assert isinstance(first, FitReply)
    assert isinstance(second, FitReply)
    assert not np.array_equal(first.update["w"], second.update["w"])


TESTS = Path(__file__).resolve().parents[1]


class FakeStop:
    """A stop event whose waits return at once and are recorded (a virtual clock)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def is_set(self) -> bool:
        return False

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        return False


class FailingLink:
    """Fails ``failures`` pulls with ``error``, then says the run has finished."""

    client_id = "good-0"

    def __init__(self, error: Exception, failures: int) -> None:
        self.error, self.failures = error, failures
        self.registrations = 0

    def register(self) -> str:
        self.registrations += 1
        return "run"

    def pull(self) -> Wait:
        if self.failures:
            self.failures -= 1
            raise self.error
        return Wait(0.0, finished=True)


def client() -> object:
    return (
        AppSpec("fake_app:build", TESTS)
        .build({"clients": ["good-0"]}, 0)
        .client.client_fn("good-0")
    )


def test_a_server_that_comes_back_is_retried_within_two_seconds_per_attempt() -> None:
    # A server down for a long time (30 failed attempts) must not push the next attempt
    # far out: every client is back within the cap plus the channel's reconnect bound.
    link, stop = FailingLink(TransportError("UNAVAILABLE: connection refused"), 30), FakeStop()
    assert serve(link, client(), stop=stop) == 0  # type: ignore[arg-type]
    assert len(stop.waits) == 30
    assert max(stop.waits) <= 2.0
    assert link.registrations == 31  # each retry registers again (the server may be new)


def test_a_refusal_for_good_stops_the_loop_with_its_error() -> None:
    refusal = PeerRejectedError("the server refused this client: UNAUTHENTICATED: revoked")
    link, stop = FailingLink(refusal, 1), FakeStop()
    with pytest.raises(PeerRejectedError, match="revoked"):
        serve(link, client(), stop=stop)  # type: ignore[arg-type]
    assert stop.waits == []  # not retried
