"""A hostile peer on a real server on 127.0.0.1: what it may hold, and for how long.

Insecure mode (loopback) for brevity: the limits here do not depend on TLS.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from fedhive.core.failures import FailureKind, Stage
from fedhive.core.messages import ClientConfig, EvaluateReply, Failure, FitTask
from fedhive.core.serde import model_version
from fedhive.core.version import ModelVersion
from fedhive.core.weights import Weights
from fedhive.simulation.app import AppSpec
from fedhive.transport.base import Wait
from fedhive.transport.codec import TaskEnvelope
from fedhive.transport.grpc.connection import GrpcLink
from fedhive.transport.grpc.limits import PeerLimits
from fedhive.transport.grpc.server import GrpcServerTransport, trust_claimed_id
from fedhive.transport.proto import pb

TESTS = Path(__file__).resolve().parents[1]
WEIGHTS = AppSpec("fake_app:build", TESTS).build({"clients": ["good-0"]}, 0).server.initial_weights


def start(**options: Any) -> GrpcServerTransport:
    return GrpcServerTransport(
        address="127.0.0.1:0",
        credentials=None,
        insecure=True,
        identify=trust_claimed_id,
        round_timeout=20.0,
        **options,
    )


@pytest.fixture
def server() -> Iterator[GrpcServerTransport]:
    transport = start()
    try:
        yield transport
    finally:
        transport.close()


def rpc(channel: grpc.Channel, method: str, reply: type, *, stream: str = "") -> Any:
    kind = {"": channel.unary_unary, "up": channel.stream_unary, "down": channel.unary_stream}
    return kind[stream](
        f"/fedhive.v1.Fedhive/{method}",
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=reply.FromString,
    )


def publish(server: GrpcServerTransport, client_id: str, weights: Weights = WEIGHTS) -> Any:
    task = FitTask(
        round=1, client_id=client_id, version=model_version(weights), seed=0, config=ClientConfig()
    )
    return server.fit([task], ModelVersion.of(weights))


def pulled(link: GrpcLink) -> TaskEnvelope:
    link.register()
    envelope = link.pull()
    assert not isinstance(envelope, Wait)
    return envelope


def header_of(envelope: TaskEnvelope, **fields: Any) -> pb.ResultHeader:
    task = envelope.task
    return pb.ResultHeader(
        task_id=envelope.task_id,
        client_id=task.client_id,
        run_id=envelope.run_id,
        round=task.round,
        model_version=task.version,
        **fields,
    )


def wait_for_log(caplog: pytest.LogCaptureFixture, text: str, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(text in r.getMessage() for r in caplog.records):
            return True
        time.sleep(0.05)
    return False


def test_an_upload_without_a_header_is_cancelled_after_the_header_timeout() -> None:
    server = start(limits=PeerLimits(header_timeout=0.5))
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    release = threading.Event()

    def silent() -> Iterator[Any]:
        release.wait(60)
        yield from ()

    try:
        call = rpc(channel, "UploadResult", pb.UploadReply, stream="up").future(silent())
        with pytest.raises(grpc.RpcError) as ended:
            call.result(timeout=30)
    finally:
        release.set()
        channel.close()
        server.close()
    assert ended.value.code() == grpc.StatusCode.CANCELLED  # by the server, well before 30 s


def test_an_upload_that_trickles_empty_chunks_is_refused(server: GrpcServerTransport) -> None:
    outcomes = publish(server, "c")
    link = GrpcLink(f"127.0.0.1:{server.port}", client_id="c", credentials=None)
    sent = []

    def trickle(header: pb.ResultHeader) -> Iterator[pb.ResultChunk]:
        yield pb.ResultChunk(header=header)
        for _ in range(400):  # 10 s at most
            sent.append(1)
            yield pb.ResultChunk(data=b"")
            time.sleep(0.025)

    try:
        envelope = pulled(link)
        header = header_of(
            envelope,
            kind=pb.TASK_KIND_FIT,
            num_examples=1,
            payload_size=100,
            payload_sha256="0" * 64,
        )
        upload = rpc(link._channel, "UploadResult", pb.UploadReply, stream="up")
        reply = upload(trickle(header), timeout=30)
        [failure] = list(outcomes)
    finally:
        link.close()
    assert reply.status == pb.UPLOAD_STATUS_REJECTED
    assert "empty" in reply.message
    assert isinstance(failure, Failure)
    assert failure.stage == "upload"


def test_a_download_the_client_never_reads_is_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fedhive.server")
    big = Weights({"w": np.zeros(8_000_000, np.float32)})  # 32 MB: more than any buffer
    server = start(limits=PeerLimits(stall_timeout=0.5))
    publish(server, "c", big)
    channel = grpc.insecure_channel(
        f"127.0.0.1:{server.port}", options=[("grpc.max_receive_message_length", 16 << 20)]
    )
    try:
        stream = rpc(channel, "DownloadModel", pb.ModelChunk, stream="down")(
            pb.ModelRequest(model_version=model_version(big)), timeout=60
        )
        next(stream)  # then read no more
        cancelled = wait_for_log(caplog, "not read")
        with pytest.raises(grpc.RpcError) as ended:
            for _chunk in stream:
                pass
    finally:
        channel.close()
        server.close()
    assert cancelled
    assert ended.value.code() == grpc.StatusCode.CANCELLED


def test_an_evaluate_answer_to_a_fit_task_is_refused_and_counted(
    server: GrpcServerTransport,
) -> None:
    outcomes = publish(server, "c")
    link = GrpcLink(f"127.0.0.1:{server.port}", client_id="c", credentials=None)
    try:
        envelope = pulled(link)
        wrong = EvaluateReply(client_id="c", round=1, loss=0.0, num_examples=1)
        verdict = link.upload(envelope, wrong)
        got = list(outcomes)
    finally:
        link.close()
    assert verdict == "rejected"
    [failure] = got  # not dropped: the round sees this client's failure
    assert isinstance(failure, Failure)
    assert (failure.stage, failure.kind) == ("upload", "validation")


def test_a_clients_failure_report_is_bounded(server: GrpcServerTransport) -> None:
    outcomes = publish(server, "c")
    link = GrpcLink(f"127.0.0.1:{server.port}", client_id="c", credentials=None)
    try:
        envelope = pulled(link)
        upload = rpc(link._channel, "UploadResult", pb.UploadReply, stream="up")
        report = header_of(
            envelope,
            failure_stage="fit",
            failure_error="client_error:RuntimeError",
            failure_message="m" * 10**6,
        )
        reply = upload(iter([pb.ResultChunk(header=report)]), timeout=10)
        [failure] = list(outcomes)
        outcomes = publish(server, "c")
        envelope = pulled(link)
        invented = header_of(envelope, failure_stage="x" * 1000, failure_error="E" * 1000)
        refused = upload(iter([pb.ResultChunk(header=invented)]), timeout=10)
        [refusal] = list(outcomes)
    finally:
        link.close()
    assert reply.status == pb.UPLOAD_STATUS_ACCEPTED
    assert isinstance(failure, Failure)
    assert (failure.stage, failure.kind, failure.detail) == (
        Stage.FIT,
        FailureKind.CLIENT_ERROR,
        "RuntimeError",
    )
    assert len(failure.message) == 2000
    assert refused.status == pb.UPLOAD_STATUS_REJECTED
    assert isinstance(refusal, Failure)
    assert (refusal.stage, refusal.kind) == ("upload", "validation")


def test_a_malformed_message_costs_one_log_line_not_a_traceback(
    server: GrpcServerTransport, caplog: pytest.LogCaptureFixture
) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        with pytest.raises(grpc.RpcError) as refused:
            channel.unary_unary("/fedhive.v1.Fedhive/Register")(b"\xff\xff\xff", timeout=5)
        with pytest.raises(grpc.RpcError) as chunk_refused:
            channel.stream_unary("/fedhive.v1.Fedhive/UploadResult")(
                iter([b"\xff\xff\xff"]), timeout=5
            )
    finally:
        channel.close()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert chunk_refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not [r for r in caplog.records if r.exc_info]
    lines = [r.getMessage() for r in caplog.records if r.name == "fedhive.server"]
    assert len([line for line in lines if "malformed" in line]) == 2
    assert any("Register" in line and "127.0.0.1" in line for line in lines)
