"""Core messages to and from the wire contract's protobuf messages, checked on decode.

Decoding is where network input enters: every decoder turns malformed bytes and
out-of-range fields into typed errors (``SerializationError`` for bytes that do not
parse, ``ValidationError`` for fields that parse but are not allowed), never anything
else, and never a partially valid object.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from fedhive.core._compat import StrEnum
from fedhive.core.canonical import is_sha256_hex
from fedhive.core.failures import CLIENT_STAGES, FailureKind, Stage
from fedhive.core.messages import (
    MAX_METRIC_KEY,
    MAX_METRICS,
    ClientConfig,
    EvaluateReply,
    EvaluateTask,
    Failure,
    FitReply,
    FitTask,
    PrivacyBudget,
    SecAggAnswer,
    SecAggReply,
    SecAggTask,
)
from fedhive.core.serde import Scalar, weights_from_bytes, weights_to_bytes
from fedhive.core.weights import Weights
from fedhive.errors import ConfigError, SerializationError, ValidationError
from fedhive.transport.extensions import extensions_from_proto, extensions_to_proto
from fedhive.transport.proto import pb

_M = TypeVar("_M", bound=Message)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_ERROR_TYPE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_FAILURE_KINDS = frozenset(FailureKind)
MAX_FAILURE_MESSAGE = 2000
"""A client's failure message is cut to this many characters."""


def decode(cls: type[_M], data: bytes) -> _M:
    """Parse ``data`` as a ``cls`` protobuf message.

    Raises:
        SerializationError: the bytes are not such a message.
    """
    message = cls()
    try:
        message.ParseFromString(data)
    except (DecodeError, ValueError) as exc:
        raise SerializationError(f"not a valid {cls.__name__}: {exc}", stage="decode") from None
    return message


def check_digest(value: str, what: str) -> str:
    """Return ``value`` if it is 64 lowercase hex characters (a SHA-256)."""
    if not is_sha256_hex(value):
        raise ValidationError(f"{what} must be a hex SHA-256, got {value[:80]!r}", stage="decode")
    return value


def check_id(value: str, what: str) -> str:
    """Return ``value`` if it is a well-formed identifier (run, task or client id)."""
    if not _ID.fullmatch(value):
        raise ValidationError(f"{what} is not a valid identifier: {value[:80]!r}", stage="decode")
    return value


def config_to_proto(config: ClientConfig) -> pb.ClientConfig:
    """A ClientConfig as its protobuf message."""
    message = pb.ClientConfig(
        local_epochs=config.local_epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
    )
    budget = config.privacy_budget
    if budget is not None:
        message.privacy_budget.epsilon_max = budget.epsilon_max
        message.privacy_budget.delta = budget.delta
        if budget.min_noise_multiplier is not None:
            message.privacy_budget.min_noise_multiplier = budget.min_noise_multiplier
        if budget.clipping_norm is not None:
            message.privacy_budget.clipping_norm = budget.clipping_norm
    for key, value in config.extra.items():
        message.extra[key].CopyFrom(_scalar_to_proto(value))
    message.extensions.CopyFrom(extensions_to_proto(config.extensions))
    return message


def config_from_proto(message: pb.ClientConfig) -> ClientConfig:
    """A checked ClientConfig from its protobuf message."""
    try:
        budget = (
            _budget_from_proto(message.privacy_budget)
            if message.HasField("privacy_budget")
            else None
        )
        return ClientConfig(
            local_epochs=message.local_epochs,
            batch_size=message.batch_size,
            learning_rate=message.learning_rate,
            privacy_budget=budget,
            extensions=extensions_from_proto(message.extensions),
            extra={k: _scalar_from_proto(v) for k, v in message.extra.items()},
        )
    except ConfigError as exc:
        raise ValidationError(f"invalid client config: {exc}", stage="decode") from None


def _budget_from_proto(message: pb.PrivacyBudget) -> PrivacyBudget:
    floor, clipping = message.min_noise_multiplier, message.clipping_norm
    return PrivacyBudget(
        epsilon_max=message.epsilon_max,
        delta=message.delta,
        min_noise_multiplier=floor if message.HasField("min_noise_multiplier") else None,
        clipping_norm=clipping if message.HasField("clipping_norm") else None,
    )


def _scalar_to_proto(value: Scalar) -> pb.Scalar:
    if isinstance(value, bool):
        return pb.Scalar(b=value)
    if isinstance(value, int):
        return pb.Scalar(i=value)
    if isinstance(value, float):
        return pb.Scalar(f=value)
    return pb.Scalar(s=value)


def _scalar_from_proto(message: pb.Scalar) -> Scalar:
    kind = message.WhichOneof("value")
    if kind is None:
        raise ValidationError("a config scalar has no value", stage="decode")
    value: Scalar = getattr(message, kind)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError("a config scalar is not finite", stage="decode")
    return value


@dataclass(frozen=True, kw_only=True)
class TaskEnvelope:
    """A task as it travels to a client: the core task plus deployment metadata."""

    task: FitTask | EvaluateTask | SecAggTask
    task_id: str
    run_id: str
    deadline_unix: float
    model_size: int
    model_signature: bytes = field(default=b"", repr=False)
    secagg: bytes = field(default=b"", repr=False)
    """Secure aggregation: the round's setup (fit) or the stage's request (secagg)."""


def task_to_proto(envelope: TaskEnvelope) -> pb.Task:
    """A task envelope as its protobuf message."""
    task = envelope.task
    kind = _KINDS[type(task)]
    return pb.Task(
        task_id=envelope.task_id,
        run_id=envelope.run_id,
        round=task.round,
        kind=kind,
        model_version=task.version,
        model_size=envelope.model_size,
        seed=task.seed,
        config=config_to_proto(task.config),
        deadline_unix=envelope.deadline_unix,
        model_signature=envelope.model_signature,
        secagg_message=envelope.secagg,
    )


_KINDS: dict[type, pb.TaskKind] = {
    FitTask: pb.TASK_KIND_FIT,
    EvaluateTask: pb.TASK_KIND_EVALUATE,
    SecAggTask: pb.TASK_KIND_SECAGG,
}
_TASKS = {kind: cls for cls, kind in _KINDS.items()}


def task_from_proto(message: pb.Task, *, client_id: str) -> TaskEnvelope:
    """A checked task envelope from its protobuf message, for the client ``client_id``."""
    cls = _TASKS.get(message.kind)
    if cls is None:
        raise ValidationError(f"unknown task kind {message.kind}", stage="decode")
    if not math.isfinite(message.deadline_unix):
        raise ValidationError("task deadline is not finite", stage="decode")
    if cls is SecAggTask and hashlib.sha256(message.secagg_message).hexdigest() != (
        message.model_version
    ):
        raise ValidationError("the secagg request does not match its digest", stage="decode")
    task = cls(
        round=message.round,
        client_id=client_id,
        version=check_digest(message.model_version, "model_version"),
        seed=message.seed,
        config=config_from_proto(message.config),
    )
    return TaskEnvelope(
        task=task,
        task_id=check_id(message.task_id, "task_id"),
        run_id=check_id(message.run_id, "run_id"),
        deadline_unix=message.deadline_unix,
        model_size=message.model_size,
        model_signature=message.model_signature,
        secagg=message.secagg_message,
    )


Outcome = FitReply | EvaluateReply | SecAggReply | SecAggAnswer | Failure
"""What a client sends back for a task."""


def result_header(outcome: Outcome) -> tuple[pb.ResultHeader, bytes]:
    """The result header's outcome fields (kind, counts, metrics, loss, SecAgg flag or
    failure fields, payload size and hash) for ``outcome``, and its payload: an update's
    safetensors bytes, a compressed update's payload (flagged ``compressed``), or a
    SecAgg message. The caller adds whose result it is."""
    header, payload = pb.ResultHeader(), b""
    if isinstance(outcome, Failure):
        header.failure_stage = outcome.stage
        header.failure_error = failure_error(outcome)
        header.failure_message = outcome.message
    elif isinstance(outcome, SecAggAnswer):
        payload, header.secagg = outcome.message, True
        header.kind = pb.TASK_KIND_SECAGG
    else:
        header.kind = (
            pb.TASK_KIND_EVALUATE if isinstance(outcome, EvaluateReply) else pb.TASK_KIND_FIT
        )
        header.num_examples = outcome.num_examples
        header.metrics.update(outcome.metrics)
        if isinstance(outcome, EvaluateReply):
            header.loss = outcome.loss
        elif isinstance(outcome, SecAggReply):  # a fit answered under secure aggregation
            payload, header.secagg = outcome.message, True
        elif outcome.payload is not None:  # a compressed update: sent as it is
            payload, header.compressed = outcome.payload, True
        else:
            payload = weights_to_bytes(outcome.update)
    header.payload_size = len(payload)
    header.payload_sha256 = hashlib.sha256(payload).hexdigest()
    return header, payload


def reply_from_header(
    header: pb.ResultHeader, payload: bytes, *, client_id: str
) -> FitReply | EvaluateReply:
    """The plaintext reply a result header (of kind fit or evaluate) and its payload hold,
    from ``client_id``: checked metrics and loss, the update decoded from ``payload``
    (a compressed one is kept as its payload, for the server to decode with the model's
    layout). ``upload_bytes`` is the payload's size: the bytes of the data chunks it was
    reassembled from.

    Raises:
        ValidationError: metrics or a loss that are not allowed.
        SerializationError: the payload is not an update.
    """
    metrics = metrics_from_proto(header.metrics)
    if header.kind == pb.TASK_KIND_EVALUATE:
        return EvaluateReply(
            client_id=client_id,
            round=header.round,
            loss=metrics_from_proto({"loss": header.loss})["loss"],
            num_examples=header.num_examples,
            metrics=metrics,
        )
    return FitReply(
        client_id=client_id,
        round=header.round,
        version=header.model_version,
        update=Weights() if header.compressed else weights_from_bytes(payload),
        num_examples=header.num_examples,
        metrics=metrics,
        payload=payload if header.compressed else None,
        upload_bytes=len(payload),
    )


def kind_of(task: FitTask | EvaluateTask | SecAggTask) -> pb.TaskKind:
    """The wire kind of a task (and of the result that answers it)."""
    return _KINDS[type(task)]


def metrics_from_proto(metrics: Mapping[str, float]) -> dict[str, float]:
    """Checked metrics from a protobuf map: at most ``MAX_METRICS`` finite values
    under non-empty keys of at most ``MAX_METRIC_KEY`` characters."""
    if len(metrics) > MAX_METRICS:
        raise ValidationError(
            f"{len(metrics)} metrics, at most {MAX_METRICS} are allowed", stage="decode"
        )
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if len(key) > MAX_METRIC_KEY:
            raise ValidationError(
                f"metric name {key[:40]!r}... is longer than {MAX_METRIC_KEY}", stage="decode"
            )
        if not key or not math.isfinite(value):
            raise ValidationError(f"metric {key!r} is empty or not finite", stage="decode")
        out[key] = value
    return out


class UploadStatus(StrEnum):
    """The server's verdict on one uploaded result (the client's ``upload`` returns it)."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    """Failed verification (or no such task for this client); see the reply's message."""
    ROUND_CLOSED = "round_closed"
    """Late: the task's round has closed."""
    DUPLICATE = "duplicate"
    """This task's result was already received."""


_UPLOAD_STATUS = {
    UploadStatus.ACCEPTED: pb.UPLOAD_STATUS_ACCEPTED,
    UploadStatus.REJECTED: pb.UPLOAD_STATUS_REJECTED,
    UploadStatus.ROUND_CLOSED: pb.UPLOAD_STATUS_ROUND_CLOSED,
    UploadStatus.DUPLICATE: pb.UPLOAD_STATUS_DUPLICATE,
}
_UPLOAD_STATUS_OF = {wire: status for status, wire in _UPLOAD_STATUS.items()}


def upload_reply(status: UploadStatus, message: str = "") -> pb.UploadReply:
    """The wire reply telling a client ``status`` (and why)."""
    return pb.UploadReply(status=_UPLOAD_STATUS[status], message=message)


def upload_status(reply: pb.UploadReply) -> UploadStatus:
    """The verdict a wire reply holds; an unknown status reads as rejected."""
    return _UPLOAD_STATUS_OF.get(reply.status, UploadStatus.REJECTED)


def failure_error(failure: Failure) -> str:
    """The header's ``failure_error`` for ``failure``: its kind, then ``:`` and its
    detail when it has one (``client_error:ValueError``)."""
    return f"{failure.kind}:{failure.detail}" if failure.detail else str(failure.kind)


def failure_from_header(header: pb.ResultHeader, *, client_id: str, round: int) -> Failure:
    """The failure a client reports for its task, bounded: a stage from
    :data:`~fedhive.core.failures.CLIENT_STAGES`, a :class:`FailureKind` with an
    optional detail that is a short identifier (:func:`failure_error`), and a message
    cut to ``MAX_FAILURE_MESSAGE`` characters.

    Raises:
        ValidationError: another stage, an unknown kind, or a detail that is not an
            identifier.
    """
    stage = header.failure_stage
    if stage not in CLIENT_STAGES:
        raise ValidationError(
            f"a client reports failures at {sorted(CLIENT_STAGES)}, not at {stage[:40]!r}",
            stage="decode",
        )
    kind, _, detail = (header.failure_error or FailureKind.CLIENT_ERROR).partition(":")
    if kind not in _FAILURE_KINDS:
        raise ValidationError(f"unknown failure kind {kind[:40]!r}", stage="decode")
    if detail and not _ERROR_TYPE.fullmatch(detail):
        raise ValidationError(
            f"failure detail {detail[:40]!r} is not an identifier of at most 64 characters",
            stage="decode",
        )
    return Failure(
        client_id=client_id,
        round=round,
        stage=Stage(stage),
        kind=FailureKind(kind),
        message=header.failure_message[:MAX_FAILURE_MESSAGE],
        detail=detail,
    )
