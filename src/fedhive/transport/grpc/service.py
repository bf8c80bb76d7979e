"""The gRPC servicer: each RPC of ``fedhive.v1.Fedhive`` mapped onto the coordinator.

Registered through generic handlers with the protobuf module's (de)serializers, so no
generated gRPC stubs are needed. Every refusal is a status with a clear message; a bad
upload fails that task only, and the server keeps serving everyone else.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from fedhive.core.messages import (
    EvaluateReply,
    Failure,
    FitReply,
    SecAggAnswer,
    SecAggReply,
    SecAggTask,
)
from fedhive.core.serde import weights_from_bytes
from fedhive.errors import FedhiveError, SerializationError, ValidationError
from fedhive.transport.chunks import DEFAULT_CHUNK_BYTES, Reassembler, split
from fedhive.transport.codec import (
    TaskEnvelope,
    check_digest,
    decode,
    metrics_from_proto,
    task_to_proto,
)
from fedhive.transport.envelope import ResultClaim
from fedhive.transport.grpc.coordinator import Coordinator, Outcome, UploadRefusedError
from fedhive.transport.grpc.security import Signatures
from fedhive.transport.proto import SCHEMA_VERSION, pb

SERVICE = "fedhive.v1.Fedhive"
FINISHED = "run finished"
"""The Wait reason that tells clients the run is over."""
log = logging.getLogger("fedhive.server")

Identify = Callable[[grpc.ServicerContext, str], str]
"""Who is calling: the client id proven by the channel (or claimed, when insecure)."""

_STATUS = {
    "accepted": pb.UPLOAD_STATUS_ACCEPTED,
    "rejected": pb.UPLOAD_STATUS_REJECTED,
    "round_closed": pb.UPLOAD_STATUS_ROUND_CLOSED,
    "duplicate": pb.UPLOAD_STATUS_DUPLICATE,
}


class Servicer:
    """Implements the RPCs over a :class:`Coordinator`."""

    def __init__(
        self,
        coordinator: Coordinator,
        *,
        identify: Identify,
        max_upload_bytes: int,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        retry_after: float = 0.2,
        signatures: Signatures | None = None,
        concurrent_uploads: int = 8,
    ) -> None:
        # Uploads are received a few at a time: the others wait in gRPC's flow control,
        # so the server's memory follows this number, not the number of clients.
        self._upload_slots = threading.BoundedSemaphore(concurrent_uploads)
        self._signatures = signatures
        self._coord = coordinator
        self._identify = identify
        self._max_upload = max_upload_bytes
        self._chunk = chunk_bytes
        self._retry_after = retry_after

    def register(self, request: pb.RegisterRequest, context: grpc.ServicerContext) -> Any:
        """A client joins: check the schema version, note it as alive."""
        if request.schema_version != SCHEMA_VERSION:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"schema version {request.schema_version}, the server speaks {SCHEMA_VERSION}",
            )
        client_id = self._identify(context, request.client_id)
        self._coord.touch(client_id)
        log.info("client %s registered", client_id)
        return pb.RegisterReply(
            schema_version=SCHEMA_VERSION,
            run_id=self._coord.run_id,
            heartbeat_seconds=self._coord.heartbeat_timeout / 3,
            server_certificate=self._signatures.certificate_pem if self._signatures else b"",
        )

    def heartbeat(self, request: pb.HeartbeatRequest, context: grpc.ServicerContext) -> Any:
        """A client is still there."""
        self._coord.touch(self._identify(context, request.client_id))
        return pb.HeartbeatReply(run_id=self._coord.run_id, round=self._coord.round)

    def pull_task(self, request: pb.PullTaskRequest, context: grpc.ServicerContext) -> Any:
        """The next task for the caller, or how long to wait before asking again."""
        client_id = self._identify(context, request.client_id)
        if self._coord.finished:
            self._coord.forget(client_id)  # told: the server may stop once all are told
            return pb.PullTaskReply(wait=pb.Wait(retry_after_seconds=0, reason=FINISHED))
        self._coord.touch(client_id)
        envelope = self._coord.pull(client_id)
        if envelope is None:
            return pb.PullTaskReply(wait=pb.Wait(retry_after_seconds=self._retry_after))
        return pb.PullTaskReply(task=task_to_proto(envelope))

    def download_model(
        self, request: pb.ModelRequest, context: grpc.ServicerContext
    ) -> Iterator[Any]:
        """Stream the published model in chunks, from ``offset``."""
        payload = self._coord.model(request.model_version)
        if payload is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "that model version is not published")
        assert payload is not None
        if request.offset > len(payload):
            context.abort(grpc.StatusCode.OUT_OF_RANGE, "offset beyond the model's size")
        for offset, data in split(payload, self._chunk, start=request.offset):
            yield pb.ModelChunk(
                model_version=request.model_version,
                offset=offset,
                total_size=len(payload),
                data=data,
            )

    def upload_result(self, chunks: Iterator[pb.ResultChunk], context: grpc.ServicerContext) -> Any:
        """Receive one task's result: header first, then its payload; verify, hand over."""
        first = next(chunks, None)
        if first is None or first.WhichOneof("part") != "header":
            return _reply("rejected", "an upload starts with its header")
        header = first.header
        client_id = self._identify(context, header.client_id)
        self._coord.touch(client_id)
        try:
            envelope, cohort = self._coord.claim(header.task_id, client_id)
        except UploadRefusedError as verdict:
            log.info("upload from %s refused: %s", client_id, verdict.message)
            return _reply(verdict.status, verdict.message)
        reply = _reply("accepted", "")
        try:
            self._verify_signature(context, header, envelope)
            with self._upload_slots:
                outcome: Outcome = self._receive(header, envelope, chunks)
        except FedhiveError as exc:
            log.warning("upload from %s rejected: %s", client_id, exc)
            outcome = Failure.of(client_id, envelope.task.round, "upload", exc)
            reply = _reply("rejected", str(exc))
        if not self._coord.deliver(cohort, outcome):
            return _reply("round_closed", "the round closed before this result was taken")
        return reply

    def status(self, request: pb.StatusRequest, context: grpc.ServicerContext) -> Any:
        """The run, its round and who is connected."""
        self._identify(context, "")
        return pb.StatusReply(
            run_id=self._coord.run_id,
            round=self._coord.round,
            connected_nodes=len(self._coord.live_clients()),
            latest_version=self._coord.latest_version,
            latest_metrics=self._coord.latest_metrics,
        )

    def _verify_signature(
        self, context: grpc.ServicerContext, header: pb.ResultHeader, envelope: TaskEnvelope
    ) -> None:
        """The client signed (run, round, task, model version, payload hash) of its task."""
        if self._signatures is None:
            return
        claim = ResultClaim(
            run_id=self._coord.run_id,
            round=envelope.task.round,
            task_id=envelope.task_id,
            client_id=envelope.task.client_id,
            model_version=envelope.task.version,
            payload_sha256=check_digest(header.payload_sha256, "payload_sha256"),
        )
        self._signatures.verify_result(context, claim, header.signature)

    def _receive(
        self, header: pb.ResultHeader, envelope: TaskEnvelope, chunks: Iterator[pb.ResultChunk]
    ) -> Outcome:
        task = envelope.task
        if header.failure_stage:
            return Failure(
                client_id=task.client_id,
                round=task.round,
                stage=header.failure_stage,
                error_type=header.failure_error or "ClientError",
                message=header.failure_message,
            )
        metrics = metrics_from_proto(header.metrics)
        if header.secagg or envelope.secagg or isinstance(task, SecAggTask):
            return self._secure(header, envelope, self._payload(header, chunks), metrics)
        if header.kind == pb.TASK_KIND_EVALUATE:
            return EvaluateReply(
                client_id=task.client_id,
                round=header.round,
                loss=metrics_from_proto({"loss": header.loss})["loss"],
                num_examples=header.num_examples,
                metrics=metrics,
            )
        return FitReply(
            client_id=task.client_id,
            round=header.round,
            version=header.model_version,
            update=weights_from_bytes(self._payload(header, chunks)),
            num_examples=header.num_examples,
            metrics=metrics,
        )

    def _payload(self, header: pb.ResultHeader, chunks: Iterator[pb.ResultChunk]) -> bytes:
        payload = Reassembler(
            declared_size=header.payload_size,
            max_size=self._max_upload,
            sha256=check_digest(header.payload_sha256, "payload_sha256"),
        )
        for chunk in chunks:
            if chunk.WhichOneof("part") != "data":
                raise SerializationError("a second header in one upload", stage="upload")
            payload.add(payload.received, chunk.data)
        return payload.finish()

    @staticmethod
    def _secure(
        header: pb.ResultHeader, envelope: TaskEnvelope, payload: bytes, metrics: dict[str, float]
    ) -> Outcome:
        """A secure-aggregation answer, in the form its task asked for: a plaintext
        update where SecAgg was asked (or a SecAgg message where it was not) is refused."""
        task = envelope.task
        if not (header.secagg and envelope.secagg):
            raise ValidationError(
                "secure aggregation was "
                + ("asked for: a plaintext update is refused" if envelope.secagg else "not asked"),
                client_id=task.client_id,
                round=task.round,
                stage="upload",
            )
        if isinstance(task, SecAggTask):
            return SecAggAnswer(client_id=task.client_id, round=task.round, message=payload)
        return SecAggReply(
            client_id=task.client_id,
            round=task.round,
            version=header.model_version,
            num_examples=header.num_examples,
            message=payload,
            metrics=metrics,
        )


def _reply(status: str, message: str) -> Any:
    return pb.UploadReply(status=_STATUS[status], message=message)


def handler(servicer: Servicer) -> grpc.GenericRpcHandler:
    """The generic handler that serves ``servicer`` as ``fedhive.v1.Fedhive``."""

    def unary(method: Callable[..., Any], request: type) -> grpc.RpcMethodHandler[Any, Any]:
        return grpc.unary_unary_rpc_method_handler(
            method,
            request_deserializer=lambda data: decode(request, data),
            response_serializer=lambda message: message.SerializeToString(),
        )

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Register": unary(servicer.register, pb.RegisterRequest),
            "Heartbeat": unary(servicer.heartbeat, pb.HeartbeatRequest),
            "PullTask": unary(servicer.pull_task, pb.PullTaskRequest),
            "Status": unary(servicer.status, pb.StatusRequest),
            "DownloadModel": grpc.unary_stream_rpc_method_handler(
                servicer.download_model,
                request_deserializer=lambda data: decode(pb.ModelRequest, data),
                response_serializer=lambda message: message.SerializeToString(),
            ),
            "UploadResult": grpc.stream_unary_rpc_method_handler(
                servicer.upload_result,
                request_deserializer=lambda data: decode(pb.ResultChunk, data),
                response_serializer=lambda message: message.SerializeToString(),
            ),
        },
    )
