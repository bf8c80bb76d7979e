"""Server-side verification of replies: nothing unverified reaches aggregation.

Checks that a reply answers the task it claims (client, round, model version), that
its example count is sane, that its update matches the model's layout (names, shapes,
dtypes) and holds only finite values, and that its metrics are finite numbers.
"""

from __future__ import annotations

from fedhive.core.messages import EvaluateReply, EvaluateTask, FitReply, FitTask, check_metrics
from fedhive.core.weights import Layout
from fedhive.errors import ClientError, ValidationError

MAX_EXAMPLES = 1 << 29
"""Largest example count a reply may claim (keeps weighted sums exact)."""


def verify_fit_reply(reply: FitReply, task: FitTask, layout: Layout) -> None:
    """Raise a typed error if ``reply`` is not a valid answer to ``task``.

    Raises:
        ValidationError: wrong task identity, example count, or update layout/values.
        ClientError: metrics that are not finite numbers.
    """
    _check_identity(reply.client_id, reply.round, task.client_id, task.round)
    if reply.version != task.version:
        raise ValidationError(
            f"reply is for model version {reply.version[:12]}, the task named {task.version[:12]}",
            client_id=reply.client_id,
            round=reply.round,
        )
    _check_examples(reply.num_examples)
    reply.update.validate_like(layout)
    check_metrics(reply.metrics)


def verify_evaluate_reply(reply: EvaluateReply, task: EvaluateTask) -> None:
    """Raise a typed error if ``reply`` is not a valid answer to ``task``."""
    _check_identity(reply.client_id, reply.round, task.client_id, task.round)
    _check_examples(reply.num_examples)
    check_metrics({"loss": reply.loss, **reply.metrics})


def _check_identity(client_id: str, round_: int, task_client: str, task_round: int) -> None:
    if client_id != task_client or round_ != task_round:
        raise ValidationError(
            f"reply from {client_id!r} for round {round_} does not match the task given to "
            f"{task_client!r} for round {task_round}"
        )


def _check_examples(num_examples: int) -> None:
    if isinstance(num_examples, bool) or not isinstance(num_examples, int):
        raise ClientError(f"num_examples must be an int, got {num_examples!r}")
    if not 0 <= num_examples <= MAX_EXAMPLES:
        raise ValidationError(f"num_examples must be in [0, {MAX_EXAMPLES}], got {num_examples}")
