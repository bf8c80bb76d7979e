"""The client loop's reactions to the link: retry what passes, stop on a refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedhive.client.runner import serve
from fedhive.errors import PeerRejectedError, TransportError
from fedhive.simulation.app import AppSpec
from fedhive.transport.base import Wait

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
    return AppSpec("fake_app:build", TESTS).build({"clients": ["good-0"]}, 0).client_fn("good-0")


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
