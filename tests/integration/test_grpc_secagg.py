"""Secure aggregation over real gRPC on 127.0.0.1: the same state machines as the
simulation, stage by stage through pulled tasks and signed uploads."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedhive.client.runner import serve
from fedhive.core.extensions import Weighting
from fedhive.core.messages import ClientConfig, FitReply, FitTask
from fedhive.core.serde import sha256_hex, weights_to_bytes
from fedhive.core.weights import Weights
from fedhive.pki.provision import provision
from fedhive.pki.revocation import RevocationList
from fedhive.pki.tls import TLSConfig
from fedhive.server.orchestrator import RoundLoop
from fedhive.server.run import RunResult
from fedhive.server.secure import SecureAggregation
from fedhive.simulation.app import AppSpec
from fedhive.simulation.engine import run_simulation
from fedhive.strategy.algorithm import Algorithm
from fedhive.strategy.private import DifferentialPrivacy, DpMode
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
from fedhive.transport.grpc.server import GrpcServerTransport, trust_claimed_id

TESTS = Path(__file__).resolve().parents[1]
CLIENTS = [f"good-{i}" for i in range(10)]
# Test-sized settings: 10 clients, 10% may drop, weak security targets (2^-5).
SECURE = SecureAggregation(
    dropout_fraction=0.1, security_bits=5, correctness_bits=5, clip_range=16.0
)
STRATEGY = Algorithm(min_available_clients=len(CLIENTS))


def run_over_grpc(
    transport: GrpcServerTransport,
    links: dict[str, GrpcLink],
    rounds: int,
    strategy: Algorithm = STRATEGY,
    **serve_kw: Any,
) -> RunResult:
    app = AppSpec("fake_app:build", TESTS).build({"clients": CLIENTS}, 0)
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=serve,
            args=(link, app.client.client_fn(cid)),
            kwargs={"stop": stop, **serve_kw.get(cid, {})},
        )
        for cid, link in links.items()
    ]
    for thread in threads:
        thread.start()
    try:
        assert transport.wait_for_clients(len(links), timeout=20)
        loop = RoundLoop(strategy=strategy, transport=transport, seed=5, secure=SECURE)
        return loop.run(app.server.initial_weights, rounds)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        transport.close()


def insecure_server(round_timeout: float = 20.0) -> GrpcServerTransport:
    return GrpcServerTransport(
        address="127.0.0.1:0",
        credentials=None,
        insecure=True,
        identify=trust_claimed_id,
        round_timeout=round_timeout,
    )


def plain_links(transport: GrpcServerTransport) -> dict[str, GrpcLink]:
    address = f"127.0.0.1:{transport.port}"
    return {cid: GrpcLink(address, client_id=cid, credentials=None) for cid in CLIENTS}


def test_secure_rounds_over_grpc_match_the_simulation_bit_for_bit() -> None:
    transport = insecure_server()
    networked = run_over_grpc(transport, plain_links(transport), rounds=2)
    app = AppSpec("fake_app:build", TESTS).build({"clients": CLIENTS}, 0)
    simulated = run_simulation(app, strategy=STRATEGY, rounds=2, seed=5, secure=SECURE)
    assert all(r.committed for r in networked.history), [r.note for r in networked.history]
    assert networked.version == simulated.version
    assert sorted(networked.history[0].fit.contributors) == sorted(CLIENTS)


def test_a_client_that_vanishes_after_training_is_recovered_from() -> None:
    transport = insecure_server(round_timeout=3.0)
    result = run_over_grpc(
        transport, plain_links(transport), rounds=1, **{"good-3": {"max_tasks": 1}}
    )
    record = result.history[0]
    assert record.committed, record.note
    assert sorted(record.fit.contributors) == sorted(set(CLIENTS) - {"good-3"})
    assert sum(record.fit.failures.values()) == 1  # its share-keys task timed out


class Forger(ClientSignatures):
    """Signs a payload hash other than the one it uploads."""

    def sign_result(self, claim: ResultClaim) -> bytes:
        return super().sign_result(ResultClaim(**{**claim.__dict__, "payload_sha256": "0" * 64}))


def test_a_client_whose_messages_are_not_signed_is_excluded(tmp_path: Path) -> None:
    provision(tmp_path, clients=CLIENTS)
    tls = TLSConfig.from_dir(tmp_path / "server")
    transport = GrpcServerTransport(
        address="127.0.0.1:0",
        credentials=server_credentials(tls),
        identify=CertificateIdentity(RevocationList.from_dir(tmp_path / "server")),
        signatures=Signatures(tls),
        round_timeout=6,  # the forger's fit task stays open until its deadline
    )
    links = {}
    for cid in CLIENTS:
        client_tls = TLSConfig.from_dir(tmp_path / "clients" / cid)
        signer = Forger if cid == "good-7" else ClientSignatures
        links[cid] = GrpcLink(
            f"127.0.0.1:{transport.port}",
            client_id=cid,
            credentials=channel_credentials(client_tls),
            server_name="localhost",
            signatures=signer(client_tls),
        )
    record = run_over_grpc(transport, links, rounds=1).history[0]
    assert record.committed, record.note
    assert "good-7" not in record.fit.contributors
    assert len(record.fit.contributors) == len(CLIENTS) - 1
    # Refused without using up the task (its owner may retry): at the deadline it fails
    # with the refusal's reason.
    assert dict(record.fit.failures) == {"upload:signature": 1}


def test_too_few_clients_is_refused_before_anything_is_sent() -> None:
    transport = insecure_server()
    links = dict(list(plain_links(transport).items())[:2])
    record = run_over_grpc(
        transport, links, rounds=1, strategy=Algorithm(min_available_clients=2)
    ).history[0]
    assert not record.committed
    assert "at least 3 clients" in record.note


def test_a_plaintext_update_is_refused_where_secure_aggregation_was_asked() -> None:
    transport = insecure_server()
    try:
        model = Weights({"w": np.zeros(3, np.float32)})
        payload = weights_to_bytes(model)
        task = FitTask(
            round=1, client_id="good-0", version=sha256_hex(payload), seed=1, config=ClientConfig()
        )
        transport.publish([task], payload, secagg={"good-0": b"setup bytes"})
        link = GrpcLink(f"127.0.0.1:{transport.port}", client_id="good-0", credentials=None)
        link.register()
        item = link.pull()
        assert isinstance(item, TaskEnvelope)
        assert item.secagg == b"setup bytes"
        update = Weights({"w": np.ones(3, np.float32)})
        reply = FitReply(
            client_id="good-0", round=1, version=task.version, update=update, num_examples=1
        )
        assert link.upload(item, reply) == "rejected"
        link.close()
    finally:
        transport.close()


def test_distributed_dp_under_secagg_over_grpc_uses_noise_the_server_cannot_replay() -> None:
    # noise_seed makes the simulation reproducible; deployed clients ignore it (their
    # noise comes from the OS), so the networked run is not the simulated one.
    pytest.importorskip("dp_accounting")
    dp = DifferentialPrivacy(
        mode=DpMode.DISTRIBUTED, noise_multiplier=0.5, clipping_norm=20.0, noise_seed=9
    )
    strategy = dataclasses.replace(STRATEGY, transforms=(*STRATEGY.transforms, dp))
    secure = dataclasses.replace(SECURE, weighting=Weighting.UNIFORM)
    transport = insecure_server()
    app = AppSpec("fake_app:build", TESTS).build({"clients": CLIENTS}, 0)
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=serve, args=(link, app.client.client_fn(cid)), kwargs={"stop": stop}
        )
        for cid, link in plain_links(transport).items()
    ]
    for thread in threads:
        thread.start()
    try:
        assert transport.wait_for_clients(len(CLIENTS), timeout=20)
        loop = RoundLoop(strategy=strategy, transport=transport, seed=5, secure=secure)
        networked = loop.run(app.server.initial_weights, 2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        transport.close()
    simulated = run_simulation(app, strategy=strategy, rounds=2, seed=5, secure=secure)
    assert all(r.committed for r in networked.history), [r.note for r in networked.history]
    assert networked.version != simulated.version
    again = run_simulation(app, strategy=strategy, rounds=2, seed=5, secure=secure)
    assert again.version == simulated.version
    assert networked.history[-1].privacy.epsilon > 0
