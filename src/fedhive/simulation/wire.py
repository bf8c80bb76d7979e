"""Frames between the simulation driver and its worker processes (no pickle).

A frame is ``[u32 header length][header JSON][blob 0][blob 1]…`` where the header lists
the blob lengths and says what the frame is. Tasks and outcomes travel in blobs as the
gRPC wire's protobuf messages (``Task``; ``ResultHeader`` and payload), through
:mod:`fedhive.transport.codec`, so the process backend and a deployment encode them
one way; weights and client state are safetensors bytes.
"""

from __future__ import annotations

import json
import struct
from typing import IO, Any

from fedhive.core.failures import FailureKind, Stage
from fedhive.core.messages import (
    EvaluateReply,
    EvaluateTask,
    Failure,
    FitReply,
    FitTask,
    SecAggTask,
)
from fedhive.errors import SerializationError, ValidationError
from fedhive.transport.codec import (
    TaskEnvelope,
    decode,
    reply_from_header,
    result_header,
    task_from_proto,
    task_to_proto,
)
from fedhive.transport.proto import pb

MAX_HEADER_BYTES = 64 << 20
MAX_BLOB_BYTES = 4 << 30
_LEN = struct.Struct("<I")

Header = dict[str, Any]


def encode_frame(header: Header, blobs: list[bytes] | None = None) -> bytes:
    """Encode one frame."""
    blobs = blobs or []
    if "blobs" in header:
        raise SerializationError("'blobs' is reserved in frame headers")
    head = json.dumps({**header, "blobs": [len(b) for b in blobs]}, allow_nan=False).encode()
    return b"".join([_LEN.pack(len(head)), head, *blobs])


def read_frame(stream: IO[bytes]) -> tuple[Header, list[bytes]] | None:
    """Read one frame from ``stream``; None at a clean end of stream.

    Raises:
        SerializationError: a truncated or malformed frame.
    """
    prefix = stream.read(_LEN.size)
    if not prefix:
        return None
    head_len = _head_length(_exact(stream, prefix, _LEN.size))
    header, sizes = _parse_header(_exact(stream, stream.read(head_len), head_len))
    return header, [_exact(stream, stream.read(n), n) for n in sizes]


class FrameDecoder:
    """Decodes frames from bytes fed in pieces, as they arrive from a non-blocking pipe."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pending: tuple[Header, list[int]] | None = None

    def feed(self, data: bytes) -> list[tuple[Header, list[bytes]]]:
        """Add ``data``; return every frame now complete, in order.

        Raises:
            SerializationError: a malformed frame.
        """
        self._buffer += data
        frames = []
        while (frame := self._next()) is not None:
            frames.append(frame)
        return frames

    def _next(self) -> tuple[Header, list[bytes]] | None:
        buffer = self._buffer
        if self._pending is None:
            if len(buffer) < _LEN.size:
                return None
            head_len = _head_length(bytes(buffer[: _LEN.size]))
            if len(buffer) < _LEN.size + head_len:
                return None
            self._pending = _parse_header(bytes(buffer[_LEN.size : _LEN.size + head_len]))
            del buffer[: _LEN.size + head_len]
        header, sizes = self._pending
        if len(buffer) < sum(sizes):
            return None
        blobs, offset = [], 0
        for size in sizes:
            blobs.append(bytes(buffer[offset : offset + size]))
            offset += size
        del buffer[:offset]
        self._pending = None
        return header, blobs


def _head_length(prefix: bytes) -> int:
    (head_len,) = _LEN.unpack(prefix)
    if head_len > MAX_HEADER_BYTES:
        raise SerializationError(f"frame header of {head_len} bytes exceeds the limit")
    return int(head_len)


def _parse_header(data: bytes) -> tuple[Header, list[int]]:
    try:
        header = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise SerializationError(f"frame header is not JSON: {exc}") from exc
    if not isinstance(header, dict) or not isinstance(header.get("blobs"), list):
        raise SerializationError("frame header must be an object with a blob list")
    sizes = header.pop("blobs")
    if not all(
        isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_BLOB_BYTES for n in sizes
    ):
        raise SerializationError("frame blob sizes must be integers within the limit")
    return header, sizes


def _exact(stream: IO[bytes], data: bytes, size: int) -> bytes:
    while len(data) < size:
        more = stream.read(size - len(data))
        if not more:
            raise SerializationError(f"truncated frame: {len(data)} of {size} bytes")
        data += more
    return data


SIMULATION_RUN = "simulation"
"""The run id a process backend's tasks carry (one run per driver)."""
_TASK_ID = "task"


def task_bytes(task: FitTask | EvaluateTask) -> bytes:
    """A task as the gRPC wire's ``Task`` message (:mod:`fedhive.transport.codec`)."""
    envelope = TaskEnvelope(
        task=task, task_id=_TASK_ID, run_id=SIMULATION_RUN, deadline_unix=0.0, model_size=0
    )
    return task_to_proto(envelope).SerializeToString()


def task_from_bytes(data: bytes, *, client_id: str) -> FitTask | EvaluateTask:
    """Inverse of :func:`task_bytes`, for the client ``client_id``.

    Raises:
        SerializationError: not a task message.
        ValidationError: a field out of range, or a SecAgg stage (not a worker's task).
    """
    task = task_from_proto(decode(pb.Task, data), client_id=client_id).task
    if isinstance(task, SecAggTask):
        raise ValidationError("a SecAgg stage is not a worker's task", stage="decode")
    return task


def outcome_bytes(outcome: FitReply | EvaluateReply | Failure) -> tuple[bytes, bytes]:
    """An outcome as the gRPC wire's ``ResultHeader`` message and its payload (a fit
    reply's update), as a deployed client uploads it."""
    header, payload = result_header(outcome)
    header.client_id, header.round = outcome.client_id, outcome.round
    if isinstance(outcome, FitReply):
        header.model_version = outcome.version
    return header.SerializeToString(), payload


def outcome_from_bytes(header_bytes: bytes, payload: bytes) -> FitReply | EvaluateReply | Failure:
    """Inverse of :func:`outcome_bytes` (from the driver's own worker: a failure's stage
    and message are kept as the worker wrote them).

    Raises:
        SerializationError: not a header message, or an update that does not decode.
        ValidationError: metrics that are not allowed.
    """
    header = decode(pb.ResultHeader, header_bytes)
    if header.failure_stage:
        kind, _, detail = header.failure_error.partition(":")
        return Failure(
            client_id=header.client_id,
            round=header.round,
            stage=Stage(header.failure_stage),
            kind=FailureKind(kind),
            message=header.failure_message,
            detail=detail,
        )
    return reply_from_header(header, payload, client_id=header.client_id)
