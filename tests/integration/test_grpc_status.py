"""The Status RPC answers what the coordinator published, as a client reads it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fedhive.transport.grpc.connection import GrpcLink
from fedhive.transport.grpc.server import GrpcServerTransport
from grpc_loopback import loopback_server

VERSION = "ab" * 32


@pytest.fixture
def server() -> Iterator[GrpcServerTransport]:
    with loopback_server(run_id="fresh") as transport:
        yield transport


def test_a_client_reads_the_run_and_status_the_server_published(
    server: GrpcServerTransport,
) -> None:
    server.coordinator.name_run("resumed-run")
    server.coordinator.publish_status(
        version=VERSION, metrics={"central_loss": 0.25, "federated_accuracy": 0.75}
    )
    link = GrpcLink(f"127.0.0.1:{server.port}", client_id="watcher", credentials=None)
    try:
        assert link.register() == "resumed-run"
        status = link.status()
    finally:
        link.close()
    assert status["run_id"] == "resumed-run"
    assert status["latest_version"] == VERSION
    assert status["latest_metrics"] == {"central_loss": 0.25, "federated_accuracy": 0.75}
    assert status["connected_nodes"] == 1


def test_a_status_published_later_replaces_the_last(server: GrpcServerTransport) -> None:
    server.coordinator.publish_status(version=VERSION, metrics={"central_loss": 0.5})
    server.coordinator.publish_status(version="cd" * 32, metrics={})
    link = GrpcLink(f"127.0.0.1:{server.port}", client_id="watcher", credentials=None)
    try:
        link.register()
        status = link.status()
    finally:
        link.close()
    assert (status["latest_version"], status["latest_metrics"]) == ("cd" * 32, {})
