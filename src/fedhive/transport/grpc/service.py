"""The gRPC servicer: each RPC of ``fedhive.v1.Fedhive`` mapped onto the coordinator.

Registered through generic handlers with the protobuf module's (de)serializers, so no
generated gRPC stubs are needed. Every refusal is a status with a clear message; a bad
upload fails that task only, and the server keeps serving everyone else.

Every call first establishes who calls (and refuses a revoked certificate), before it
reads or checks anything the caller sent. A request that does not parse costs one log
line (RPC, caller, reason) and ``INVALID_ARGUMENT``. A caller holds at most
``PeerLimits.streams_per_client`` streams, each only as long as it keeps sending (or
reading): see :mod:`fedhive.transport.grpc.limits`. A result means what its task asked
for: its kind comes from the task, not from the upload's header.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from fedhive.core.failures import Stage
from fedhive.core.messages import (
    EvaluateTask,
    Failure,
    SecAggAnswer,
    SecAggReply,
    SecAggTask,
)
from fedhive.errors import FedhiveError, SerializationError, TransportError, ValidationError
from fedhive.transport.chunks import DEFAULT_CHUNK_BYTES, Reassembler, split
from fedhive.transport.codec import (
    TaskEnvelope,
    UploadStatus,
    check_digest,
    decode,
    failure_from_header,
    kind_of,
    metrics_from_proto,
    reply_from_header,
    task_to_proto,
    upload_reply,
)
from fedhive.transport.grpc.coordinator import Coordinator, Outcome, UploadRefusedError
from fedhive.transport.grpc.limits import PeerLimits, StreamLimits, Watchdog
from fedhive.transport.grpc.security import Signatures
from fedhive.transport.proto import SCHEMA_VERSION, pb

SERVICE = "fedhive.v1.Fedhive"
FINISHED = "run finished"
"""The Wait reason that tells clients the run is over."""
log = logging.getLogger("fedhive.server")

Identify = Callable[[grpc.ServicerContext, str], str]
"""Who is calling: the client id proven by the channel (or claimed, when insecure)."""


@dataclass(frozen=True)
class Malformed:
    """A request that did not parse (what a deserializer returns instead of raising,
    so that gRPC logs no traceback); the handler refuses it."""

    reason: str


class Servicer:
    """Implements the RPCs over a :class:`Coordinator`; :meth:`close` when done.

    ``identified``: callers are identified by certificate (mutual TLS), so their
    streams are counted per client; an insecure server has no identity to count by.
    """

    def __init__(
        self,
        coordinator: Coordinator,
        *,
        identify: Identify,
        max_upload_bytes: int,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        retry_after: float = 0.2,
        signatures: Signatures | None = None,
        limits: PeerLimits | None = None,
        identified: bool = True,
    ) -> None:
        # Uploads are received a few at a time: the others wait in gRPC's flow control,
        # so the server's memory follows this number, not the number of clients.
        limits = limits or PeerLimits()
        self._upload_slots = threading.BoundedSemaphore(limits.concurrent_uploads)
        self._limits = limits
        self._streams = StreamLimits(per_client=limits.streams_per_client if identified else None)
        self._watchdog = Watchdog()
        self._signatures = signatures
        self._coord = coordinator
        self._identify = identify
        self._max_upload = max_upload_bytes
        self._chunk = chunk_bytes
        self._retry_after = retry_after

    def close(self) -> None:
        """Stop the watchdog thread."""
        self._watchdog.close()

    def register(self, request: Any, context: grpc.ServicerContext) -> Any:
        """A client joins: check the schema version, note it as alive."""
        client_id = self._caller(context, request, "Register")
        if request.schema_version != SCHEMA_VERSION:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"schema version {request.schema_version}, the server speaks {SCHEMA_VERSION}",
            )
        self._coord.touch(client_id)
        log.info("client %s registered", client_id)
        return pb.RegisterReply(
            schema_version=SCHEMA_VERSION,
            run_id=self._coord.run_id,
            heartbeat_seconds=self._coord.heartbeat_timeout / 3,
            server_certificate=self._signatures.certificate_pem if self._signatures else b"",
        )

    def heartbeat(self, request: Any, context: grpc.ServicerContext) -> Any:
        """A client is still there."""
        self._coord.touch(self._caller(context, request, "Heartbeat"))
        return pb.HeartbeatReply(run_id=self._coord.run_id, round=self._coord.round)

    def pull_task(self, request: Any, context: grpc.ServicerContext) -> Any:
        """The next task for the caller, or how long to wait before asking again."""
        client_id = self._caller(context, request, "PullTask")
        if self._coord.finished:
            self._coord.forget(client_id)  # told: the server may stop once all are told
            return pb.PullTaskReply(wait=pb.Wait(retry_after_seconds=0, reason=FINISHED))
        self._coord.touch(client_id)
        envelope = self._coord.pull(client_id)
        if envelope is None:
            return pb.PullTaskReply(wait=pb.Wait(retry_after_seconds=self._retry_after))
        return pb.PullTaskReply(task=task_to_proto(envelope))

    def download_model(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        """Stream the published model, or its delta against the caller's ``base_version``
        when the server keeps that base and the delta is smaller, in chunks, from
        ``offset``; a reader that takes no chunk for ``stall_timeout`` seconds is cut off.
        Each chunk's data is counted as sent to the caller once gRPC has written it (the
        round's ``bytes_down``)."""
        client_id = self._caller(context, request, "DownloadModel")
        self._streams.admit(context, client_id, "DownloadModel")
        download = self._coord.download(request.model_version, request.base_version)
        if download is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "that model version is not published")
        assert download is not None
        payload = download.data
        if request.offset > len(payload):
            context.abort(grpc.StatusCode.OUT_OF_RANGE, "offset beyond the model's size")
        stall = self._limits.stall_timeout
        for offset, data in split(payload, self._chunk, start=request.offset):
            chunk = pb.ModelChunk(
                model_version=request.model_version,
                offset=offset,
                total_size=len(payload),
                data=data,
                delta=download.delta,
            )
            with self._watchdog.within(
                context, stall, f"DownloadModel to {client_id}: a chunk not read in {stall:g}s"
            ):
                yield chunk
            # gRPC asks for the next chunk once it has written this one: count it as sent
            self._coord.count_download(client_id, request.model_version, len(data))

    def upload_result(self, chunks: Iterator[Any], context: grpc.ServicerContext) -> Any:
        """Receive one task's result: header first, then its payload; verify, hand over.

        The caller is identified before anything is read; the task is claimed only once
        the result's signature verifies (a bad one leaves the task open to a retry)."""
        client_id = self._identify(context, "")
        self._streams.admit(context, client_id, "UploadResult")
        wait = self._limits.header_timeout
        try:
            first = self._next(chunks, context, wait, f"UploadResult from {client_id}: no header")
        except TransportError:
            return upload_reply(UploadStatus.REJECTED, "no header in time")
        if isinstance(first, Malformed):
            self._refuse_malformed(context, "UploadResult", client_id, first.reason)
        if first is None or first.WhichOneof("part") != "header":
            return upload_reply(UploadStatus.REJECTED, "an upload starts with its header")
        header = first.header
        client_id = self._identify(context, header.client_id)
        self._coord.touch(client_id)
        try:
            envelope = self._coord.issued(header.task_id, client_id)
            if self._signatures is not None:
                self._signatures.verify_upload(
                    context, envelope, run_id=self._coord.run_id, header=header
                )
            envelope, cohort = self._coord.claim(header.task_id, client_id)
        except UploadRefusedError as verdict:
            log.info("upload from %s refused: %s", client_id, verdict.message)
            return upload_reply(verdict.status, verdict.message)
        except FedhiveError as exc:  # not claimed: the owner may send a good one
            log.warning("upload from %s rejected, task left open: %s", client_id, exc)
            refused = Failure.of(client_id, envelope.task.round, Stage.UPLOAD, exc)
            self._coord.refuse(header.task_id, refused)  # its failure, unless it retries
            return upload_reply(UploadStatus.REJECTED, str(exc))
        reply = upload_reply(UploadStatus.ACCEPTED)
        try:
            outcome: Outcome = self._receive(header, envelope, chunks, context)
        except FedhiveError as exc:
            log.warning("upload from %s rejected: %s", client_id, exc)
            outcome = Failure.of(client_id, envelope.task.round, Stage.UPLOAD, exc)
            reply = upload_reply(UploadStatus.REJECTED, str(exc))
        if not self._coord.deliver(cohort, outcome):
            closed = "the round closed before this result was taken"
            return upload_reply(UploadStatus.ROUND_CLOSED, closed)
        return reply

    def status(self, request: Any, context: grpc.ServicerContext) -> Any:
        """The run, its round and who is connected."""
        self._caller(context, request, "Status")
        status = self._coord.status()
        return pb.StatusReply(
            run_id=status.run_id,
            round=status.round,
            connected_nodes=len(self._coord.live_clients()),
            latest_version=status.latest_version,
            latest_metrics=status.latest_metrics,
        )

    def _caller(self, context: grpc.ServicerContext, request: Any, method: str) -> str:
        """Who calls (revocation checked first); then a request that did not parse is
        refused."""
        if isinstance(request, Malformed):
            self._refuse_malformed(context, method, self._identify(context, ""), request.reason)
        return self._identify(context, getattr(request, "client_id", ""))

    @staticmethod
    def _refuse_malformed(
        context: grpc.ServicerContext, method: str, client_id: str, reason: str
    ) -> None:
        log.warning("malformed %s from %s (%s): %s", method, client_id, context.peer(), reason)
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, reason)

    def _next(
        self, chunks: Iterator[Any], context: grpc.ServicerContext, seconds: float, what: str
    ) -> Any:
        """The next chunk (None at the end), if it comes within ``seconds``.

        Raises:
            TransportError: the call was cancelled (by the watchdog, or by the peer).
        """
        with self._watchdog.within(context, seconds, f"{what} in {seconds:g}s"):
            try:
                return next(chunks, None)
            except grpc.RpcError:
                raise TransportError("the upload was cancelled", stage="upload") from None

    def _receive(
        self,
        header: pb.ResultHeader,
        envelope: TaskEnvelope,
        chunks: Iterator[Any],
        context: grpc.ServicerContext,
    ) -> Outcome:
        """The outcome the upload holds, of the kind its task asked for."""
        task = envelope.task
        if header.failure_stage:
            return failure_from_header(header, client_id=task.client_id, round=task.round)
        if header.kind != kind_of(task):
            raise ValidationError(
                f"a result of kind {header.kind} for a {type(task).__name__}",
                client_id=task.client_id,
                round=task.round,
                stage="upload",
            )
        metrics = metrics_from_proto(header.metrics)
        if header.secagg or envelope.secagg or isinstance(task, SecAggTask):
            payload = self._payload(header, envelope, chunks, context)
            return self._secure(header, envelope, payload, metrics)
        evaluated = isinstance(task, EvaluateTask)
        payload = b"" if evaluated else self._payload(header, envelope, chunks, context)
        return reply_from_header(header, payload, client_id=task.client_id)

    def _payload(
        self,
        header: pb.ResultHeader,
        envelope: TaskEnvelope,
        chunks: Iterator[Any],
        context: grpc.ServicerContext,
    ) -> bytes:
        """The payload's bytes, in non-empty chunks, each within ``stall_timeout`` and
        all before the task's deadline."""
        payload = Reassembler(
            declared_size=header.payload_size,
            max_size=self._max_upload,
            sha256=check_digest(header.payload_sha256, "payload_sha256"),
        )
        what = f"UploadResult from {envelope.task.client_id}: no data chunk"
        if not self._upload_slots.acquire(timeout=max(0.0, envelope.deadline_unix - time.time())):
            raise TransportError("no upload slot before the task's deadline", stage="upload")
        try:
            while True:
                left = min(self._limits.stall_timeout, envelope.deadline_unix - time.time())
                chunk = self._next(chunks, context, left, what)
                if chunk is None:
                    return payload.finish()
                if isinstance(chunk, Malformed):
                    raise SerializationError(f"malformed chunk: {chunk.reason}", stage="upload")
                if chunk.WhichOneof("part") != "data":
                    raise SerializationError("a second header in one upload", stage="upload")
                if not chunk.data:
                    raise SerializationError("an empty data chunk", stage="upload")
                payload.add(payload.received, chunk.data)
        finally:
            self._upload_slots.release()

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


def _parser(cls: type) -> Callable[[bytes], Any]:
    """A request deserializer that never raises: bytes that do not parse become
    :class:`Malformed` (a raising deserializer makes gRPC log a traceback)."""

    def parse(data: bytes) -> Any:
        try:
            return decode(cls, data)
        except SerializationError as exc:
            return Malformed(exc.message)

    return parse


def handler(servicer: Servicer) -> grpc.GenericRpcHandler:
    """The generic handler that serves ``servicer`` as ``fedhive.v1.Fedhive``."""

    def unary(method: Callable[..., Any], request: type) -> grpc.RpcMethodHandler[Any, Any]:
        return grpc.unary_unary_rpc_method_handler(
            method,
            request_deserializer=_parser(request),
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
                request_deserializer=_parser(pb.ModelRequest),
                response_serializer=lambda message: message.SerializeToString(),
            ),
            "UploadResult": grpc.stream_unary_rpc_method_handler(
                servicer.upload_result,
                request_deserializer=_parser(pb.ResultChunk),
                response_serializer=lambda message: message.SerializeToString(),
            ),
        },
    )
