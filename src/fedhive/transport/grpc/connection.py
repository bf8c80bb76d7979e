"""A client's gRPC connection to the server: the :class:`ClientLink` over the wire.

A failed call raises :class:`~fedhive.errors.PeerRejectedError` when the server refused
this client for good (UNAUTHENTICATED: revoked or unusable certificate;
PERMISSION_DENIED: the request names another client; FAILED_PRECONDITION: another
schema version), and a plain :class:`~fedhive.errors.TransportError` otherwise
(UNAVAILABLE, DEADLINE_EXCEEDED and the rest: worth retrying). A certificate the
server's TLS refuses at the handshake (expired, unknown CA) shows only as UNAVAILABLE,
so it is retried. The channel reconnects at most :data:`RECONNECT_BACKOFF_MAX_MS` after
its last attempt, so a restarted server is found within about a second.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from fedhive.core.messages import EvaluateReply, Failure, FitReply, SecAggAnswer, SecAggReply
from fedhive.core.serde import sha256_hex
from fedhive.errors import CodecError, PeerRejectedError, TransportError, ValidationError
from fedhive.transport.base import Wait
from fedhive.transport.chunks import DEFAULT_CHUNK_BYTES, Reassembler, split
from fedhive.transport.codec import (
    MAX_FAILURE_MESSAGE,
    TaskEnvelope,
    UploadStatus,
    decode,
    result_header,
    task_from_proto,
    upload_status,
)
from fedhive.transport.delta import apply_delta
from fedhive.transport.digests import header_sha256, task_sha256
from fedhive.transport.envelope import ModelClaim, ResultClaim
from fedhive.transport.grpc.security import ClientSignatures
from fedhive.transport.grpc.service import FINISHED, SERVICE
from fedhive.transport.proto import SCHEMA_VERSION, pb

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_M = TypeVar("_M", bound=Message)
_MiB = 1 << 20
RECONNECT_BACKOFF_MAX_MS = 1000
"""The most the channel waits between two connection attempts (gRPC's default is 120 s)."""
REJECTED_CODES = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)
"""Status codes by which the server refuses this client for good: not retried."""


class GrpcLink:
    """Register, pull tasks, download models and upload results over one channel."""

    def __init__(
        self,
        target: str,
        *,
        client_id: str,
        credentials: grpc.ChannelCredentials | None,
        server_name: str | None = None,
        max_model_mib: int = 256,
        timeout: float = 30.0,
        signatures: ClientSignatures | None = None,
    ) -> None:
        self._signatures = signatures
        self._server_certificate = b""
        options = channel_options(server_name)
        self._channel = (
            grpc.insecure_channel(target, options=options)
            if credentials is None
            else grpc.secure_channel(target, credentials, options=options)
        )
        self.client_id = client_id
        self._max_model = max_model_mib * _MiB
        self._held: tuple[str, bytes] | None = None  # the last model checked: a delta base
        self.last_download_bytes = 0
        """The data bytes the last :meth:`download` streamed (0: it held the model)."""
        self._timeout = timeout

    def register(self) -> str:
        """Join the federation; returns the run id."""
        request = pb.RegisterRequest(schema_version=SCHEMA_VERSION, client_id=self.client_id)
        reply = self._unary("Register", request, pb.RegisterReply)
        self._server_certificate = reply.server_certificate
        return reply.run_id

    def pull(self) -> TaskEnvelope | Wait:
        """The next task, or how long to wait (or that the run has finished)."""
        reply = self._unary(
            "PullTask", pb.PullTaskRequest(client_id=self.client_id), pb.PullTaskReply
        )
        if reply.WhichOneof("reply") == "task":
            return task_from_proto(reply.task, client_id=self.client_id)
        finished = reply.wait.reason == FINISHED
        return Wait(max(0.01, min(reply.wait.retry_after_seconds, 60.0)), finished=finished)

    def download(self, envelope: TaskEnvelope) -> bytes:
        """The task's model, reassembled and checked against its version (SHA-256) and,
        with signatures, against the server's signature over the model and the task.

        The link keeps the last model it checked: a task on that same version downloads
        nothing, and one on another asks for a delta against it (the server sends one
        when it still holds that base and the delta is smaller). A delta that does not
        rebuild the task's version is dropped and the whole model downloaded instead."""
        version = envelope.task.version
        if not 0 <= envelope.model_size <= self._max_model:
            raise ValidationError(
                f"a model of {envelope.model_size} bytes, the limit is {self._max_model} bytes",
                stage="download",
            )
        held = self._held
        self.last_download_bytes = 0
        if held is not None and held[0] == version:
            data = held[1]
        else:
            try:
                data = self._fetch(envelope, held)
            except (CodecError, ValidationError):
                if held is None:
                    raise
                log.warning("the model delta against %s failed; downloading it whole", held[0])
                data = self._fetch(envelope, None)
        if self._signatures is not None:
            claim = ModelClaim(
                run_id=envelope.run_id,
                round=envelope.task.round,
                model_version=version,
                size=len(data),
                task_sha256=task_sha256(envelope),
            )
            self._signatures.verify_model(
                claim, envelope.model_signature, data, self._server_certificate
            )
        self._held = (version, data)
        return data

    def _fetch(self, envelope: TaskEnvelope, held: tuple[str, bytes] | None) -> bytes:
        """Stream the task's model (or its delta against ``held``) and rebuild it."""
        version = envelope.task.version
        call = self._channel.unary_stream(
            f"/{SERVICE}/DownloadModel",
            request_serializer=_serialize,
            response_deserializer=lambda data: decode(pb.ModelChunk, data),
        )
        request = pb.ModelRequest(
            model_version=version,
            base_version=held[0] if held else "",
            client_id=self.client_id,
        )
        chunks: Iterator[Any] = self._call(lambda: call(request, timeout=self._timeout))
        stream: tuple[bool, int] | None = None
        payload = Reassembler(
            declared_size=envelope.model_size, max_size=self._max_model, sha256=version
        )
        for chunk in _guard(chunks):
            if stream is None:
                stream = (chunk.delta, chunk.total_size)
                if chunk.delta and held is None:
                    raise ValidationError(
                        "the server streamed a delta to no model", stage="download"
                    )
                if chunk.delta:  # never larger than the model: the server sends it only then
                    payload = Reassembler(
                        declared_size=chunk.total_size, max_size=envelope.model_size
                    )
            if chunk.model_version != version or (chunk.delta, chunk.total_size) != stream:
                raise ValidationError("the server streamed another model", stage="download")
            if not chunk.delta and chunk.total_size != envelope.model_size:
                raise ValidationError("the server streamed another model", stage="download")
            payload.add(chunk.offset, chunk.data)
            self.last_download_bytes += len(chunk.data)
        data = payload.finish()
        if stream is None or not stream[0] or held is None:
            return data
        model = apply_delta(held[1], data, max_size=envelope.model_size)
        if len(model) != envelope.model_size or sha256_hex(model) != version:
            raise ValidationError("the model delta rebuilt another model", stage="download")
        return model

    def upload(
        self,
        envelope: TaskEnvelope,
        outcome: FitReply | EvaluateReply | SecAggReply | SecAggAnswer | Failure,
    ) -> UploadStatus:
        """Send the outcome of ``envelope``'s task; returns the server's verdict."""
        task = envelope.task
        header, payload = result_header(outcome)
        header.task_id, header.client_id = envelope.task_id, self.client_id
        header.run_id, header.round = envelope.run_id, task.round
        header.model_version = task.version
        header.failure_message = header.failure_message[:MAX_FAILURE_MESSAGE]
        if self._signatures is not None:
            claim = ResultClaim(
                run_id=envelope.run_id,
                round=task.round,
                task_id=envelope.task_id,
                client_id=self.client_id,
                model_version=task.version,
                payload_sha256=header.payload_sha256,
                header_sha256=header_sha256(header),
            )
            header.signature = self._signatures.sign_result(claim)

        def chunks() -> Iterator[Any]:
            yield pb.ResultChunk(header=header)
            if payload:
                for _offset, data in split(payload, DEFAULT_CHUNK_BYTES):
                    yield pb.ResultChunk(data=data)

        call = self._channel.stream_unary(
            f"/{SERVICE}/UploadResult",
            request_serializer=_serialize,
            response_deserializer=lambda data: decode(pb.UploadReply, data),
        )
        reply = self._call(lambda: call(chunks(), timeout=self._timeout))
        return upload_status(reply)

    def status(self) -> dict[str, Any]:
        """The server's run, round, connected clients and latest model and metrics."""
        reply = self._unary("Status", pb.StatusRequest(), pb.StatusReply)
        return {
            "run_id": reply.run_id,
            "round": reply.round,
            "connected_nodes": reply.connected_nodes,
            "latest_version": reply.latest_version,
            "latest_metrics": dict(reply.latest_metrics),
        }

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def _unary(self, method: str, request: Any, reply: type[_M]) -> _M:
        call = self._channel.unary_unary(
            f"/{SERVICE}/{method}",
            request_serializer=_serialize,
            response_deserializer=lambda data: decode(reply, data),
        )
        result: _M = self._call(lambda: call(request, timeout=self._timeout))
        return result

    @staticmethod
    def _call(fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except grpc.RpcError as exc:
            raise _transport_error(exc) from None


def channel_options(server_name: str | None = None) -> list[tuple[str, Any]]:
    """The client channel's options: message limits, a short reconnect back-off, and the
    name to expect in the server certificate."""
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", 16 * _MiB),
        ("grpc.max_send_message_length", 16 * _MiB),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
    ]
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return options


def _guard(chunks: Iterator[Any]) -> Iterator[Any]:
    """Map gRPC errors raised while iterating a stream."""
    try:
        yield from chunks
    except grpc.RpcError as exc:
        raise _transport_error(exc) from None


def _transport_error(exc: grpc.RpcError) -> TransportError:
    code = exc.code() if isinstance(exc, grpc.Call) else None
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    name = code.name if code is not None else "UNKNOWN"
    if code in REJECTED_CODES:
        return PeerRejectedError(f"the server refused this client: {name}: {details}", stage="grpc")
    return TransportError(f"{name}: {details}", stage="grpc")


def _serialize(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data
