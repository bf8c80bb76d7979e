"""The client channel: what it retries and how fast it finds a restarted server."""

from __future__ import annotations

import grpc
import pytest

from fedhive.errors import PeerRejectedError, TransportError
from fedhive.transport.grpc.connection import GrpcLink, channel_options


def test_the_channel_reconnects_at_least_once_a_second() -> None:
    options = dict(channel_options("localhost"))
    assert options["grpc.max_reconnect_backoff_ms"] <= 1000
    assert options["grpc.initial_reconnect_backoff_ms"] <= 1000
    assert options["grpc.ssl_target_name_override"] == "localhost"


class _Failed(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def _raise(code: grpc.StatusCode) -> None:
    raise _Failed(code, "why")


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
    ],
)
def test_a_refusal_for_good_is_a_peer_rejected_error(code: grpc.StatusCode) -> None:
    with pytest.raises(PeerRejectedError, match=f"refused this client: {code.name}: why"):
        GrpcLink._call(lambda: _raise(code))


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
def test_a_passing_failure_is_a_plain_transport_error(code: grpc.StatusCode) -> None:
    with pytest.raises(TransportError, match=code.name) as caught:
        GrpcLink._call(lambda: _raise(code))
    assert not isinstance(caught.value, PeerRejectedError)
