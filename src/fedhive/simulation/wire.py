"""Frames between the simulation driver and its worker processes (no pickle).

A frame is ``[u32 header length][header JSON][blob 0][blob 1]…`` where the header lists
the blob lengths. Blobs are safetensors bytes (weights, client state). Tasks, replies
and failures map to and from JSON-ready dicts here, in pairs.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from typing import IO, Any

from fedhive.core.extensions import from_tables, to_tables
from fedhive.core.failures import FailureKind, Stage
from fedhive.core.messages import (
    ClientConfig,
    EvaluateReply,
    EvaluateTask,
    Failure,
    FitReply,
    FitTask,
    PrivacyBudget,
)
from fedhive.core.weights import Weights
from fedhive.errors import SerializationError

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


def config_to_json(config: ClientConfig) -> dict[str, Any]:
    """A ClientConfig as a JSON-ready dict."""
    budget = config.privacy_budget
    return {
        "local_epochs": config.local_epochs,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "privacy_budget": None
        if budget is None
        else {k: v for k, v in dataclasses.asdict(budget).items() if v is not None},
        "extensions": to_tables(config.extensions),
        "extra": dict(config.extra),
    }


def config_from_json(data: dict[str, Any]) -> ClientConfig:
    """Inverse of :func:`config_to_json`."""
    budget = data.get("privacy_budget")
    return ClientConfig(
        local_epochs=data["local_epochs"],
        batch_size=data["batch_size"],
        learning_rate=data["learning_rate"],
        privacy_budget=None if budget is None else PrivacyBudget(**budget),
        extensions=from_tables(data.get("extensions", {}), "extensions"),
        extra=data.get("extra", {}),
    )


def task_to_json(task: FitTask | EvaluateTask) -> dict[str, Any]:
    """A task as a JSON-ready dict."""
    return {
        "round": task.round,
        "client_id": task.client_id,
        "version": task.version,
        "seed": task.seed,
        "config": config_to_json(task.config),
    }


def fit_task_from_json(data: dict[str, Any]) -> FitTask:
    """Inverse of :func:`task_to_json` for fit tasks."""
    return FitTask(**{**data, "config": config_from_json(data["config"])})


def evaluate_task_from_json(data: dict[str, Any]) -> EvaluateTask:
    """Inverse of :func:`task_to_json` for evaluate tasks."""
    return EvaluateTask(**{**data, "config": config_from_json(data["config"])})


def failure_to_json(failure: Failure) -> dict[str, Any]:
    """A Failure as a JSON-ready dict."""
    return {
        "client_id": failure.client_id,
        "round": failure.round,
        "stage": str(failure.stage),
        "kind": str(failure.kind),
        "message": failure.message,
        "detail": failure.detail,
    }


def failure_from_json(data: dict[str, Any]) -> Failure:
    """Inverse of :func:`failure_to_json`."""
    return Failure(
        client_id=data["client_id"],
        round=data["round"],
        stage=Stage(data["stage"]),
        kind=FailureKind(data["kind"]),
        message=data["message"],
        detail=data["detail"],
    )


def fit_reply_to_json(reply: FitReply) -> dict[str, Any]:
    """A FitReply's fields except the update (sent as a blob)."""
    return {
        "client_id": reply.client_id,
        "round": reply.round,
        "version": reply.version,
        "num_examples": reply.num_examples,
        "metrics": dict(reply.metrics),
    }


def fit_reply_from_json(data: dict[str, Any], update: Weights) -> FitReply:
    """Inverse of :func:`fit_reply_to_json`."""
    return FitReply(update=update, **data)


def evaluate_reply_to_json(reply: EvaluateReply) -> dict[str, Any]:
    """An EvaluateReply as a JSON-ready dict."""
    return {
        "client_id": reply.client_id,
        "round": reply.round,
        "loss": reply.loss,
        "num_examples": reply.num_examples,
        "metrics": dict(reply.metrics),
    }


def evaluate_reply_from_json(data: dict[str, Any]) -> EvaluateReply:
    """Inverse of :func:`evaluate_reply_to_json`."""
    return EvaluateReply(**data)
