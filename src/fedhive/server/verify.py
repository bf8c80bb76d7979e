"""Server-side verification of replies: nothing unverified reaches aggregation.

Checks that a reply answers the task it claims (client, round, model version), that
its example count is within the server's :class:`ReplyPolicy`, that its update matches
the model's layout (names, shapes, dtypes), holds only finite values and stays inside
the exact accumulator's range at its weight, and that its metrics are finite numbers
outside the reserved ``dp.*`` prefix. A compressed reply's payload is decoded with the
published model's layout first (:func:`accept_fit_reply`), and its update verified like
any other; a payload that does not decode is a ``verify:codec`` failure. A reply that
fails is its client's failure (stage ``verify``); the round goes on with the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from fedhive.compression import decode
from fedhive.core.config import check_int
from fedhive.core.messages import (
    EvaluateReply,
    EvaluateTask,
    FitReply,
    FitTask,
    SecAggReply,
    check_metrics,
)
from fedhive.core.weights import Layout
from fedhive.errors import ClientError, ConfigError, ValidationError
from fedhive.strategy.aggregate import MAX_WEIGHTED_VALUE, weights_within_exact_range

MAX_EXAMPLES = 1 << 29
"""The largest cap a policy may set (weights below 2**29 keep weighted sums exact)."""
DEFAULT_MAX_EXAMPLES = 1 << 16
"""The default per-client cap: SecAgg's default ``max_weight``, so a client weighs at most
as much in a plaintext round as in a masked one."""
RESERVED_METRIC_PREFIX = "dp."
"""Metric names a client may not report. The run's privacy report no longer comes from
metrics (:class:`~fedhive.strategy.accounting.PrivacyReport`), so this is not what keeps
a client from writing the run's epsilon (F17); it keeps a client's metric from reading
like one in ``metrics.jsonl`` beside the report."""


@dataclass(frozen=True, kw_only=True)
class ReplyPolicy:
    """What the server accepts from one client (``[server] max_examples``).

    ``max_examples`` caps the example count a reply may claim, and so how much one
    client weighs in the weighted mean, the train metrics and federated evaluation; a
    larger claim is that client's verification failure.
    """

    max_examples: int = DEFAULT_MAX_EXAMPLES

    def __post_init__(self) -> None:
        check_int("max_examples", self.max_examples, minimum=1)
        if self.max_examples > MAX_EXAMPLES:
            raise ConfigError(f"max_examples: must be <= {MAX_EXAMPLES}, got {self.max_examples}")


DEFAULT_POLICY = ReplyPolicy()


def accept_fit_reply(
    reply: FitReply, task: FitTask, layout: Layout, policy: ReplyPolicy = DEFAULT_POLICY
) -> FitReply:
    """``reply`` with its compressed payload decoded with ``layout``, verified.

    A decoded reply keeps what it took on the uplink as ``upload_bytes`` (the
    transport's count, else the payload's size); see :func:`uplink_bytes`.

    Raises:
        CodecError: the payload does not decode (corrupted, another layout, ...).
        ValidationError, ClientError: as :func:`verify_fit_reply`.
    """
    if reply.payload is not None:
        sent = reply.upload_bytes if reply.upload_bytes is not None else len(reply.payload)
        update = decode(reply.payload, layout)
        reply = replace(reply, update=update, payload=None, upload_bytes=sent)
    verify_fit_reply(reply, task, layout, policy)
    return reply


def uplink_bytes(reply: FitReply, plain_size: int) -> int:
    """The bytes ``reply`` took on the uplink: what its transport or payload measured,
    else ``plain_size`` (the safetensors size of an update of the model's layout)."""
    return plain_size if reply.upload_bytes is None else reply.upload_bytes


def verify_fit_reply(
    reply: FitReply, task: FitTask, layout: Layout, policy: ReplyPolicy = DEFAULT_POLICY
) -> None:
    """Raise a typed error if ``reply`` is not a valid answer to ``task``.

    The update is checked at the largest weight a strategy gives it (its example count,
    or 1 for a rule that weighs clients equally), so the exact sum cannot refuse it.

    Raises:
        ValidationError: wrong task identity, example count, update layout or values,
            or a reserved metric name.
        ClientError: metrics that are not finite numbers.
    """
    _check_task(reply.client_id, reply.round, reply.version, task)
    _check_examples(reply.num_examples, policy)
    reply.update.validate_like(layout)
    weight = max(1, reply.num_examples)
    if not weights_within_exact_range(layout, reply.update, weight):
        raise ValidationError(
            f"an update value times its weight {weight} is not below {MAX_WEIGHTED_VALUE:g}, "
            "the exact aggregation range",
            client_id=reply.client_id,
            round=reply.round,
        )
    _check_metrics(reply.metrics)


def verify_secagg_reply(
    reply: SecAggReply, task: FitTask, policy: ReplyPolicy = DEFAULT_POLICY
) -> None:
    """Raise a typed error if a secure-aggregation answer does not match ``task`` (its
    update is masked: the sum is checked after unmasking)."""
    _check_task(reply.client_id, reply.round, reply.version, task)
    _check_examples(reply.num_examples, policy)
    _check_metrics(reply.metrics)


def verify_evaluate_reply(
    reply: EvaluateReply, task: EvaluateTask, policy: ReplyPolicy = DEFAULT_POLICY
) -> None:
    """Raise a typed error if ``reply`` is not a valid answer to ``task``."""
    _check_identity(reply.client_id, reply.round, task.client_id, task.round)
    _check_examples(reply.num_examples, policy)
    _check_metrics({"loss": reply.loss, **reply.metrics})


def _check_task(client_id: str, round_: int, version: str, task: FitTask) -> None:
    _check_identity(client_id, round_, task.client_id, task.round)
    if version != task.version:
        raise ValidationError(
            f"reply is for model version {version[:12]}, the task named {task.version[:12]}",
            client_id=client_id,
            round=round_,
        )


def _check_identity(client_id: str, round_: int, task_client: str, task_round: int) -> None:
    if client_id != task_client or round_ != task_round:
        raise ValidationError(
            f"reply from {client_id!r} for round {round_} does not match the task given to "
            f"{task_client!r} for round {task_round}"
        )


def _check_examples(num_examples: int, policy: ReplyPolicy) -> None:
    if isinstance(num_examples, bool) or not isinstance(num_examples, int):
        raise ClientError(f"num_examples must be an int, got {num_examples!r}")
    if not 0 <= num_examples <= policy.max_examples:
        raise ValidationError(
            f"num_examples must be in [0, {policy.max_examples}] (the server's max_examples), "
            f"got {num_examples}"
        )


def _check_metrics(metrics: Mapping[str, object]) -> None:
    check_metrics(metrics)
    reserved = sorted(k for k in metrics if k.startswith(RESERVED_METRIC_PREFIX))
    if reserved:
        raise ValidationError(
            f"metric names starting with {RESERVED_METRIC_PREFIX!r} are reserved for "
            f"differential privacy: {reserved[:3]}"
        )
