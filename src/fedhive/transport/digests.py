"""The hashes signatures bind a task and a result header by (domain-separated SHA-256
of canonical JSON over the fields as they go on the wire).

A model signature covers its task through :func:`task_sha256`, a result signature the
rest of its header through :func:`header_sha256` (see :mod:`fedhive.transport.envelope`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from google.protobuf.message import Message

from fedhive.core.canonical import canonical_json
from fedhive.transport.codec import TaskEnvelope, task_to_proto
from fedhive.transport.proto import pb

TASK_DOMAIN = b"fedhive/task/v1\n"
HEADER_DOMAIN = b"fedhive/result-header/v1\n"


def _digest(domain: bytes, fields: Mapping[str, object]) -> str:
    """SHA-256 (hex) of ``domain`` + sorted compact ASCII JSON of ``fields``."""
    return hashlib.sha256(domain + canonical_json(fields)).hexdigest()


def task_sha256(envelope: TaskEnvelope) -> str:
    """The hash a model signature binds its task by: every field of the task as it goes
    on the wire (but the signature), and the client it is for.

    The server hashes the envelope it sends, the client the one it decoded; both read
    the task's protobuf message, so a field the wire does not carry is not bound. Reals
    are written as ``float.hex``, the SecAgg message as its SHA-256.
    """
    message = task_to_proto(envelope)
    config = message.config
    budget = config.privacy_budget
    optional: list[str | None] = [
        float.hex(getattr(budget, name)) if budget.HasField(name) else None
        for name in ("min_noise_multiplier", "clipping_norm")
    ]
    extra = {}
    for key, scalar in config.extra.items():
        kind = scalar.WhichOneof("value") or ""
        value = getattr(scalar, kind) if kind else None
        extra[key] = [kind, float.hex(value) if isinstance(value, float) else value]
    fields = {
        "client_id": envelope.task.client_id,
        "task_id": message.task_id,
        "run_id": message.run_id,
        "round": message.round,
        "kind": int(message.kind),
        "model_version": message.model_version,
        "model_size": message.model_size,
        "seed": message.seed,
        "deadline_unix": float.hex(message.deadline_unix),
        "config": {
            "local_epochs": config.local_epochs,
            "batch_size": config.batch_size,
            "learning_rate": float.hex(config.learning_rate),
            "privacy_budget": (
                [float.hex(budget.epsilon_max), float.hex(budget.delta), *optional]
                if config.HasField("privacy_budget")
                else None
            ),
            "extra": extra,
            "extensions": _fields(config.extensions),
        },
        "secagg_sha256": hashlib.sha256(message.secagg_message).hexdigest(),
    }
    return _digest(TASK_DOMAIN, fields)


def _fields(message: Message) -> dict[str, object]:
    """The fields set in ``message``, by name, nested messages as dicts, repeated
    fields (a compression pipeline's stages) as lists, and reals as ``float.hex`` (an
    unset optional field is absent, a set one present even if 0)."""
    return {descriptor.name: _value(value) for descriptor, value in message.ListFields()}


def _value(value: object) -> object:
    if isinstance(value, Message):
        return _fields(value)
    if isinstance(value, float):
        return float.hex(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (bool, int, str)):
        return value
    return [_value(item) for item in value]  # type: ignore[attr-defined]


def header_sha256(header: pb.ResultHeader) -> str:
    """The hash a result signature binds the rest of its header by: kind, example
    count, metrics, loss, payload size, SecAgg and compression flags and failure
    fields (run, round, task, client, model and payload hash are in the claim itself).
    Reals are written as ``float.hex``."""
    fields = {
        "kind": int(header.kind),
        "num_examples": header.num_examples,
        "metrics": {key: float.hex(value) for key, value in header.metrics.items()},
        "loss": float.hex(header.loss),
        "payload_size": header.payload_size,
        "secagg": header.secagg,
        "failure_stage": header.failure_stage,
        "failure_error": header.failure_error,
        "failure_message": header.failure_message,
    }
    if header.compressed:  # only when set: the digests of plain results are unchanged
        fields["compressed"] = True
    return _digest(HEADER_DOMAIN, fields)
