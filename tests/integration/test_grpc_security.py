"""Mutual TLS and signatures on a real server on 127.0.0.1: who may call, what is kept."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedhive.client.runner import serve
from fedhive.core.messages import ClientConfig, FitTask
from fedhive.core.serde import model_version, weights_from_bytes
from fedhive.errors import SignatureError, TransportError
from fedhive.pki.provision import provision, revoke
from fedhive.pki.revocation import RevocationList
from fedhive.pki.tls import TLSConfig
from fedhive.server.orchestrator import RoundLoop
from fedhive.simulation.app import AppSpec
from fedhive.strategy.fedavg import FedAvg
from fedhive.transport.codec import TaskEnvelope
from fedhive.transport.envelope import ResultClaim
from fedhive.transport.grpc.connection import GrpcLink
from fedhive.transport.grpc.security import (
    CertificateIdentity,
    ClientSignatures,
    Signatures,
    channel_credentials,
    server_credentials,
)
from fedhive.transport.grpc.server import GrpcServerTransport

TESTS = Path(__file__).resolve().parents[1]
CLIENTS = ["client-0000", "client-0001"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pki")
    provision(root / "ours", clients=[*CLIENTS, "client-0002"])
    provision(root / "theirs", clients=CLIENTS)
    return root


@pytest.fixture
def server(pki: Path) -> Iterator[GrpcServerTransport]:
    tls = TLSConfig.from_dir(pki / "ours" / "server")
    transport = GrpcServerTransport(
        address="127.0.0.1:0",
        credentials=server_credentials(tls),
        identify=CertificateIdentity(RevocationList.from_dir(pki / "ours" / "server")),
        signatures=Signatures(tls),
        round_timeout=20,
    )
    try:
        yield transport
    finally:
        transport.close()


def link(server: GrpcServerTransport, folder: Path, client_id: str) -> GrpcLink:
    tls = TLSConfig.from_dir(folder)
    return GrpcLink(
        f"127.0.0.1:{server.port}",
        client_id=client_id,
        credentials=channel_credentials(tls),
        server_name="localhost",
        signatures=ClientSignatures(tls),
        timeout=5,
    )


def test_a_signed_round_over_mtls(server: GrpcServerTransport, pki: Path) -> None:
    app = AppSpec("fake_app:build", TESTS).build({"clients": ["good-0"]}, 0)
    stop = threading.Event()
    threads = []
    for cid in CLIENTS:
        args = (link(server, pki / "ours" / "clients" / cid, cid), app.client_fn("good-0"))
        threads.append(threading.Thread(target=serve, args=args, kwargs={"stop": stop}))
        threads[-1].start()
    try:
        assert server.wait_for_clients(2, timeout=20)
        loop = RoundLoop(strategy=FedAvg(min_available_clients=2), transport=server, seed=3)
        result = loop.run(app.initial_weights, 2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert [r.fit.succeeded for r in result.history] == [2, 2]
    assert float(result.weights["w"][0, 0]) == pytest.approx(2.0)  # good-0 adds 1 a round


def test_a_client_of_another_ca_is_refused_at_the_handshake(
    server: GrpcServerTransport, pki: Path
) -> None:
    stranger = link(server, pki / "theirs" / "clients" / CLIENTS[0], CLIENTS[0])
    with pytest.raises(TransportError, match="UNAVAILABLE"):
        stranger.register()
    stranger.close()
    assert server.client_ids() == []


def test_a_revoked_client_is_refused_without_a_restart(
    server: GrpcServerTransport, pki: Path
) -> None:
    client = link(server, pki / "ours" / "clients" / "client-0002", "client-0002")
    assert client.register()
    revoke(pki / "ours", "client-0002")
    with pytest.raises(TransportError, match="UNAUTHENTICATED: certificate revoked"):
        client.pull()
    client.close()


def test_a_client_cannot_claim_another_id(server: GrpcServerTransport, pki: Path) -> None:
    impostor = link(server, pki / "ours" / "clients" / "client-0000", "client-0001")
    with pytest.raises(TransportError, match="PERMISSION_DENIED"):
        impostor.register()
    impostor.close()


def test_a_tampered_model_signature_is_refused(server: GrpcServerTransport, pki: Path) -> None:
    app = AppSpec("fake_app:build", TESTS).build({"clients": ["good-0"]}, 0)
    client = link(server, pki / "ours" / "clients" / "client-0000", "client-0000")
    client.register()
    task = FitTask(
        round=1,
        client_id="client-0000",
        version=model_version(app.initial_weights),
        seed=1,
        config=ClientConfig(),
    )
    server.fit([task], app.initial_weights)  # publishes; outcomes are not awaited here
    envelope = client.pull()
    assert isinstance(envelope, TaskEnvelope)
    payload = client.download(envelope)
    assert model_version(weights_from_bytes(payload)) == task.version
    forged = dataclasses.replace(envelope, model_signature=b"\x00" * 64)
    with pytest.raises(SignatureError, match="signature"):
        client.download(forged)
    client.close()


class Forger(ClientSignatures):
    """Signs a payload hash other than the one it uploads (a tampered payload)."""

    def sign_result(self, claim: ResultClaim) -> bytes:
        return super().sign_result(dataclasses.replace(claim, payload_sha256="0" * 64))


def test_a_result_whose_signature_does_not_match_is_rejected(
    server: GrpcServerTransport, pki: Path
) -> None:
    app = AppSpec("fake_app:build", TESTS).build({"clients": ["good-0"]}, 0)
    honest = link(server, pki / "ours" / "clients" / CLIENTS[0], CLIENTS[0])
    forger = link(server, pki / "ours" / "clients" / CLIENTS[1], CLIENTS[1])
    forger._signatures = Forger(TLSConfig.from_dir(pki / "ours" / "clients" / CLIENTS[1]))
    stop = threading.Event()
    threads = [
        threading.Thread(target=serve, args=(c, app.client_fn("good-0")), kwargs={"stop": stop})
        for c in (honest, forger)
    ]
    for thread in threads:
        thread.start()
    try:
        assert server.wait_for_clients(2, timeout=20)
        loop = RoundLoop(strategy=FedAvg(min_available_clients=2), transport=server, seed=3)
        record = loop.run(app.initial_weights, 1).history[0]
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert record.committed
    assert (record.fit.succeeded, record.fit.failed) == (1, 1)
    assert dict(record.fit.failures) == {"upload:SignatureError": 1}
