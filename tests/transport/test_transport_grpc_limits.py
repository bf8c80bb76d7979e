"""Peer limits: what a configuration may ask for (behaviour on a real server is in
tests/integration/test_grpc_service.py and test_grpc_security.py)."""

from __future__ import annotations

import pytest

from fedhive.errors import ConfigError
from fedhive.transport.grpc.limits import PeerLimits


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("header_timeout", 0),
        ("stall_timeout", -1.0),
        ("stall_timeout", float("nan")),
        ("streams_per_client", 0),
        ("concurrent_uploads", 0),
    ],
)
def test_limits_that_would_refuse_everyone_are_a_config_error(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        PeerLimits(**{field: value})


def test_the_defaults_let_an_honest_client_download_and_upload_at_once() -> None:
    limits = PeerLimits()
    assert limits.streams_per_client >= 2
    assert limits.header_timeout < limits.stall_timeout
