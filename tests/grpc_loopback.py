"""An insecure gRPC server on 127.0.0.1 with a free port, for tests whose clients claim
their ids (no TLS); closed when the block ends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fedhive.transport.grpc.server import GrpcServerTransport, trust_claimed_id


@contextmanager
def loopback_server(**settings: Any) -> Iterator[GrpcServerTransport]:
    """A server with a 20 s round timeout (``settings`` override or add to it)."""
    options: dict[str, Any] = {"round_timeout": 20.0, **settings}
    transport = GrpcServerTransport(
        address="127.0.0.1:0",
        credentials=None,
        insecure=True,
        identify=trust_claimed_id,
        **options,
    )
    try:
        yield transport
    finally:
        transport.close()
