"""Mutual TLS and signatures on a real server on 127.0.0.1: who may call, what is kept."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from fedhive.client.runner import serve
from fedhive.core.extensions import ClipAndNoise
from fedhive.core.failures import FailureKind, Stage
from fedhive.core.messages import ClientConfig, Failure, FitReply, FitTask
from fedhive.core.serde import model_version, weights_from_bytes
from fedhive.core.version import ModelVersion
from fedhive.deployment import DeployedServer, Deployment, ServerSection
from fedhive.errors import ConfigError, SignatureError, TransportError
from fedhive.pki.provision import provision, revoke
from fedhive.pki.revocation import RevocationList
from fedhive.pki.tls import TLSConfig
from fedhive.server.orchestrator import RoundLoop
from fedhive.simulation.app import AppSpec
from fedhive.strategy.algorithm import Algorithm
from fedhive.transport.base import FitOutcome
from fedhive.transport.codec import TaskEnvelope
from fedhive.transport.envelope import ResultClaim
from fedhive.transport.grpc.connection import GrpcLink
from fedhive.transport.grpc.limits import PeerLimits
from fedhive.transport.grpc.security import (
    ClientSignatures,
    channel_credentials,
)
from fedhive.transport.grpc.server import GrpcServerTransport
from fedhive.transport.proto import pb
from grpc_mtls import mtls_link, mtls_server

TESTS = Path(__file__).resolve().parents[1]
CLIENTS = ["client-0000", "client-0001"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pki")
    provision(root / "ours", clients=[*CLIENTS, "client-0002"])
    provision(root / "theirs", clients=CLIENTS)
    return root


def start(folder: Path, round_timeout: float = 20, **options: Any) -> GrpcServerTransport:
    """An mTLS server with the provisioned server folder ``folder``."""
    return mtls_server(folder, round_timeout, **options)


@pytest.fixture
def server(pki: Path) -> Iterator[GrpcServerTransport]:
    transport = start(pki / "ours" / "server")
    try:
        yield transport
    finally:
        transport.close()


def link(server: GrpcServerTransport, folder: Path, client_id: str) -> GrpcLink:
    return mtls_link(server, folder, client_id)


def test_a_signed_round_over_mtls(server: GrpcServerTransport, pki: Path) -> None:
    app = AppSpec("fake_app:build", TESTS).build({"clients": ["good-0"]}, 0)
    stop = threading.Event()
    threads = []
    for cid in CLIENTS:
        args = (link(server, pki / "ours" / "clients" / cid, cid), app.client.client_fn("good-0"))
        threads.append(threading.Thread(target=serve, args=args, kwargs={"stop": stop}))
        threads[-1].start()
    try:
        assert server.wait_for_clients(2, timeout=20)
        loop = RoundLoop(strategy=Algorithm(min_available_clients=2), transport=server, seed=3)
        result = loop.run(app.server.initial_weights, 2)
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


def pulled_fit_task(
    server: GrpcServerTransport, pki: Path
) -> tuple[GrpcLink, TaskEnvelope, Iterator[FitOutcome]]:
    """client-0000, registered, the fit task the server published for it (signed), and
    the server's outcomes of that cohort (read them to wait for the task's end)."""
    app = AppSpec("fake_app:build", TESTS).build({"clients": ["good-0"]}, 0)
    client = link(server, pki / "ours" / "clients" / "client-0000", "client-0000")
    client.register()
    task = FitTask(
        round=1,
        client_id="client-0000",
        version=model_version(app.server.initial_weights),
        seed=1,
        config=ClientConfig(),
    )
    outcomes = server.fit([task], ModelVersion.of(app.server.initial_weights))
    envelope = client.pull()
    assert isinstance(envelope, TaskEnvelope)
    return client, envelope, outcomes


def test_a_tampered_model_signature_is_refused(server: GrpcServerTransport, pki: Path) -> None:
    client, envelope, _outcomes = pulled_fit_task(server, pki)
    payload = client.download(envelope)
    assert model_version(weights_from_bytes(payload)) == envelope.task.version
    forged = dataclasses.replace(envelope, model_signature=b"\x00" * 64)
    with pytest.raises(SignatureError, match="signature"):
        client.download(forged)
    client.close()


TASK_CHANGES = {
    "learning_rate": lambda e: replace_config(e, learning_rate=5.0),
    "dp_noise": lambda e: replace_config(
        e, extensions=(ClipAndNoise(noise_multiplier=1.0, clipping_norm=1e9),)
    ),
    "app_extra": lambda e: replace_config(e, extra={"tag": 0.0}),
    "seed": lambda e: dataclasses.replace(e, task=dataclasses.replace(e.task, seed=2)),
    "deadline": lambda e: dataclasses.replace(e, deadline_unix=e.deadline_unix + 3600),
    "secagg_setup": lambda e: dataclasses.replace(e, secagg=b"another setup"),
}


def replace_config(envelope: TaskEnvelope, **changes: Any) -> TaskEnvelope:
    config = dataclasses.replace(envelope.task.config, **changes)
    return dataclasses.replace(envelope, task=dataclasses.replace(envelope.task, config=config))


@pytest.mark.parametrize("change", TASK_CHANGES.values(), ids=TASK_CHANGES.keys())
def test_a_task_changed_after_the_server_signed_it_is_refused(
    server: GrpcServerTransport, pki: Path, change: Callable[[TaskEnvelope], TaskEnvelope]
) -> None:
    client, envelope, _outcomes = pulled_fit_task(server, pki)
    client.download(envelope)  # as the server signed it
    with pytest.raises(SignatureError, match="signature does not verify"):
        client.download(change(envelope))
    client.close()


class Tamper(grpc.StreamUnaryClientInterceptor):  # type: ignore[misc]
    """Changes an upload's header on its way to the server (after it was signed)."""

    def __init__(self, change: Callable[[Any], None]) -> None:
        self._change = change

    def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Iterator[Any]
    ) -> Any:
        def changed() -> Iterator[Any]:
            for chunk in request_iterator:
                if chunk.WhichOneof("part") != "header":
                    yield chunk
                    continue
                header = pb.ResultChunk(header=chunk.header)
                self._change(header.header)
                yield header

        return continuation(client_call_details, changed())


HEADER_CHANGES: dict[str, tuple[bool, Callable[[Any], None]]] = {
    "num_examples": (True, lambda h: setattr(h, "num_examples", 1000)),
    "metrics": (True, lambda h: h.metrics.update({"accuracy": 1.0})),
    "failure_error": (False, lambda h: setattr(h, "failure_error", "budget_exceeded")),
    "failure_message": (False, lambda h: setattr(h, "failure_message", "forged")),
}


@pytest.mark.parametrize(("fit", "change"), HEADER_CHANGES.values(), ids=HEADER_CHANGES.keys())
def test_a_result_header_changed_after_signing_is_refused(
    pki: Path, fit: bool, change: Callable[[Any], None]
) -> None:
    server = start(pki / "ours" / "server", round_timeout=3)
    app = AppSpec("fake_app:build", TESTS).build({"clients": ["good-0"]}, 0)
    client = link(server, pki / "ours" / "clients" / CLIENTS[0], CLIENTS[0])
    try:
        client.register()
        task = FitTask(
            round=1,
            client_id=CLIENTS[0],
            version=model_version(app.server.initial_weights),
            seed=1,
            config=ClientConfig(),
        )
        outcomes = server.fit([task], ModelVersion.of(app.server.initial_weights))
        envelope = client.pull()
        assert isinstance(envelope, TaskEnvelope)
        weights = weights_from_bytes(client.download(envelope))
        reply: FitReply | Failure = FitReply(
            client_id=CLIENTS[0], round=1, version=task.version, update=weights, num_examples=1
        )
        if not fit:
            reply = Failure(
                client_id=CLIENTS[0],
                round=1,
                stage=Stage.FIT,
                kind=FailureKind.CLIENT_ERROR,
                message="disk",
            )
        client._channel = grpc.intercept_channel(client._channel, Tamper(change))
        assert client.upload(envelope, reply) == "rejected"
        [outcome] = outcomes  # at the deadline: the refusal, not the changed header
        assert isinstance(outcome, Failure)
        assert (outcome.stage, outcome.kind) == ("upload", "signature")
    finally:
        client.close()
        server.close()


class Forger(ClientSignatures):
    """Signs a payload hash other than the one it uploads (a tampered payload)."""

    def sign_result(self, claim: ResultClaim) -> bytes:
        return super().sign_result(dataclasses.replace(claim, payload_sha256="0" * 64))


def test_a_result_whose_signature_does_not_match_is_rejected(pki: Path) -> None:
    server = start(pki / "ours" / "server", round_timeout=3)
    app = AppSpec("fake_app:build", TESTS).build({"clients": ["good-0"]}, 0)
    honest = link(server, pki / "ours" / "clients" / CLIENTS[0], CLIENTS[0])
    forger = link(server, pki / "ours" / "clients" / CLIENTS[1], CLIENTS[1])
    forger._signatures = Forger(TLSConfig.from_dir(pki / "ours" / "clients" / CLIENTS[1]))
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=serve, args=(c, app.client.client_fn("good-0")), kwargs={"stop": stop}
        )
        for c in (honest, forger)
    ]
    for thread in threads:
        thread.start()
    try:
        assert server.wait_for_clients(2, timeout=20)
        loop = RoundLoop(strategy=Algorithm(min_available_clients=2), transport=server, seed=3)
        record = loop.run(app.server.initial_weights, 1).history[0]
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        server.close()
    assert record.committed
    assert (record.fit.succeeded, record.fit.failed) == (1, 1)
    # The forged upload is refused without using up the task (the forger could still
    # send a good one); at the deadline the task fails with the refusal's reason.
    assert dict(record.fit.failures) == {"upload:signature": 1}


def test_a_task_whose_upload_was_refused_can_still_be_answered(
    server: GrpcServerTransport, pki: Path
) -> None:
    folder = pki / "ours" / "clients" / CLIENTS[0]
    client, envelope, outcomes = pulled_fit_task(server, pki)
    weights = weights_from_bytes(client.download(envelope))
    reply = FitReply(
        client_id=CLIENTS[0], round=1, version=envelope.task.version, update=weights, num_examples=1
    )
    signatures = client._signatures
    client._signatures = Forger(TLSConfig.from_dir(folder))
    assert client.upload(envelope, reply) == "rejected"
    client._signatures = signatures
    assert client.upload(envelope, reply) == "accepted"
    assert [type(o) for o in outcomes] == [FitReply]  # the refusal is not reported
    client.close()


def raw_channel(server: GrpcServerTransport, folder: Path) -> grpc.Channel:
    """A bare channel with a client's credentials, to send what GrpcLink never would."""
    return grpc.secure_channel(
        f"127.0.0.1:{server.port}",
        channel_credentials(TLSConfig.from_dir(folder)),
        options=[("grpc.ssl_target_name_override", "localhost")],
    )


def rpc(channel: grpc.Channel, method: str, reply: type, *, stream: str = "") -> Any:
    """A callable for ``method`` (``stream``: "up" client-streaming, "down" server-streaming)."""
    kind = {"": channel.unary_unary, "up": channel.stream_unary, "down": channel.unary_stream}
    return kind[stream](
        f"/fedhive.v1.Fedhive/{method}",
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=reply.FromString,
    )


def silent(release: threading.Event) -> Iterator[Any]:
    """An upload that sends nothing until ``release`` is set (or 60 s pass)."""
    release.wait(60)
    yield from ()


def test_sixteen_stalled_uploads_from_one_certificate_do_not_stop_another_clients_round(
    pki: Path,
) -> None:
    # No header timeout to speak of: the per-client limit alone must keep the threads free.
    server = start(pki / "ours" / "server", limits=PeerLimits(header_timeout=300))
    attacker = raw_channel(server, pki / "ours" / "clients" / CLIENTS[1])
    upload = rpc(attacker, "UploadResult", pb.UploadReply, stream="up")
    release = threading.Event()
    stalled = [upload.future(silent(release), timeout=60) for _ in range(16)]
    app = AppSpec("fake_app:build", TESTS).build({"clients": ["good-0"]}, 0)
    stop = threading.Event()
    honest = link(server, pki / "ours" / "clients" / CLIENTS[0], CLIENTS[0])
    thread = threading.Thread(
        target=serve, args=(honest, app.client.client_fn("good-0")), kwargs={"stop": stop}
    )
    try:
        deadline = time.monotonic() + 10  # let the stalled streams reach the server
        while sum(f.done() for f in stalled) < 14 and time.monotonic() < deadline:
            time.sleep(0.05)
        thread.start()
        assert server.wait_for_clients(1, timeout=20)
        loop = RoundLoop(strategy=Algorithm(min_available_clients=1), transport=server, seed=3)
        record = loop.run(app.server.initial_weights, 1).history[0]
        still_open = [f for f in stalled if not f.done()]
    finally:
        stop.set()
        release.set()
        for future in stalled:
            future.cancel()
        thread.join(timeout=10)
        honest.close()
        attacker.close()
        server.close()
    assert record.committed
    assert record.fit.succeeded == 1
    assert len(still_open) == 2  # this certificate's two streams stayed open meanwhile
    refused = [f.exception() for f in stalled if f not in still_open]
    assert all(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for e in refused)


def test_a_revoked_client_is_refused_on_every_rpc_before_anything_else(pki: Path) -> None:
    provision(pki / "revoking", clients=["client-0000"])
    server = start(pki / "revoking" / "server")
    app = AppSpec("fake_app:build", TESTS).build({"clients": ["good-0"]}, 0)
    version = model_version(app.server.initial_weights)
    task = FitTask(round=1, client_id="client-0000", version=version, seed=1, config=ClientConfig())
    channel = raw_channel(server, pki / "revoking" / "clients" / "client-0000")
    release = threading.Event()
    codes = {}
    try:
        server.fit(
            [task], ModelVersion.of(app.server.initial_weights)
        )  # publishes the model a revoked client wants
        revoke(pki / "revoking", "client-0000")
        calls = {
            "Register": lambda: rpc(channel, "Register", pb.RegisterReply)(
                pb.RegisterRequest(schema_version=999), timeout=5
            ),
            "Heartbeat": lambda: rpc(channel, "Heartbeat", pb.HeartbeatReply)(
                pb.HeartbeatRequest(), timeout=5
            ),
            "PullTask": lambda: rpc(channel, "PullTask", pb.PullTaskReply)(
                pb.PullTaskRequest(), timeout=5
            ),
            "Status": lambda: rpc(channel, "Status", pb.StatusReply)(pb.StatusRequest(), timeout=5),
            "DownloadModel": lambda: list(
                rpc(channel, "DownloadModel", pb.ModelChunk, stream="down")(
                    pb.ModelRequest(model_version=version), timeout=5
                )
            ),
            "UploadResult": lambda: rpc(channel, "UploadResult", pb.UploadReply, stream="up")(
                silent(release), timeout=5
            ),
        }
        for method, call in calls.items():
            with pytest.raises(grpc.RpcError) as refused:
                call()
            codes[method] = (refused.value.code(), refused.value.details())
    finally:
        release.set()
        channel.close()
        server.close()
    assert codes == dict.fromkeys(codes, (grpc.StatusCode.UNAUTHENTICATED, "certificate revoked"))
    assert len(codes) == 6


def test_a_bad_signature_does_not_use_up_the_task(server: GrpcServerTransport, pki: Path) -> None:
    from fedhive.client.base import TaskOrigin
    from fedhive.client.pipeline import run_fit

    app = AppSpec("fake_app:build", TESTS).build({"clients": ["good-0"]}, 0)
    folder = pki / "ours" / "clients" / CLIENTS[0]
    client = link(server, folder, CLIENTS[0])
    task = FitTask(
        round=1,
        client_id=CLIENTS[0],
        version=model_version(app.server.initial_weights),
        seed=1,
        config=ClientConfig(),
    )
    try:
        client.register()
        outcomes = server.fit([task], ModelVersion.of(app.server.initial_weights))
        envelope = client.pull()
        assert isinstance(envelope, TaskEnvelope)
        origin = TaskOrigin(run_id=envelope.run_id, task_id=envelope.task_id)
        reply = run_fit(
            app.client.client_fn("good-0"),
            envelope.task,
            app.server.initial_weights,
            {},
            origin=origin,
        )
        honest_signatures = client._signatures
        client._signatures = Forger(TLSConfig.from_dir(folder))
        assert client.upload(envelope, reply) == "rejected"
        client._signatures = honest_signatures
        assert client.upload(envelope, reply) == "accepted"  # the owner may try again
        assert [type(o).__name__ for o in outcomes] == ["FitReply"]
    finally:
        client.close()


def test_a_server_restarted_on_a_rolled_back_crl_does_not_start(pki: Path, tmp_path: Path) -> None:
    folder = pki / "rollback"
    provision(folder, clients=["client-0000"])
    crl_path = folder / "server" / "crl.pem"
    yesterday = crl_path.read_bytes()  # number 1: nobody revoked
    revoke(folder, "client-0000")
    app = AppSpec("fake_app:build", TESTS).build({"clients": ["good-0"]}, 0)
    run = Deployment(
        strategy=Algorithm(),
        strategy_name="fedavg",
        rounds=1,
        settings=ServerSection(min_clients=1),
    )

    def start_server() -> DeployedServer:
        return DeployedServer(
            app.server,
            run,
            state_dir=tmp_path / "state",
            tls=TLSConfig.from_dir(folder / "server"),
            revocations=RevocationList.from_dir(folder / "server"),
            address="127.0.0.1:0",
        )

    start_server().close()  # a server ran on CRL 2
    crl_path.write_bytes(yesterday)  # an operator restores a backup, then restarts
    with pytest.raises(ConfigError, match=r"CRL number 1 is older than CRL number 2"):
        start_server().close()
