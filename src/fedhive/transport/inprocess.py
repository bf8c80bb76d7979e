"""The in-process transport: clients run on this machine, through a cohort runner."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from fedhive.core.messages import EvaluateReply, EvaluateTask, Failure, FitReply, FitTask
from fedhive.core.weights import Weights
from fedhive.transport.base import CohortRunner, EvaluateOutcome, FitOutcome

_Reply = TypeVar("_Reply", FitReply, EvaluateReply)


class InProcessTransport:
    """A transport whose clients are run by a local ``CohortRunner`` (a sim backend).

    It guarantees the transport contract whatever the runner does: exactly one outcome
    per task (a task the runner never answered, or answered twice, becomes a Failure of
    stage ``transport``), and a runner that raises fails only the unanswered tasks.
    """

    def __init__(self, *, client_ids: Sequence[str], runner: CohortRunner) -> None:
        self._client_ids = tuple(client_ids)
        self._runner = runner

    def client_ids(self) -> Sequence[str]:
        """All simulated clients are always available."""
        return self._client_ids

    def fit(
        self, tasks: Sequence[FitTask], weights: Weights, *, quorum: int | None = None
    ) -> Iterator[FitOutcome]:
        """Run fit tasks through the runner: every one, whatever the quorum, so that a
        simulation stays reproducible."""
        return _one_per_task(tasks, lambda: self._runner.fit(tasks, weights))

    def evaluate(
        self, tasks: Sequence[EvaluateTask], weights: Weights
    ) -> Iterator[EvaluateOutcome]:
        """Run evaluate tasks through the runner."""
        return _one_per_task(tasks, lambda: self._runner.evaluate(tasks, weights))

    def close(self) -> None:
        """Close the runner."""
        self._runner.close()


def _one_per_task(
    tasks: Sequence[FitTask] | Sequence[EvaluateTask],
    start: Callable[[], Iterator[_Reply | Failure]],
) -> Iterator[_Reply | Failure]:
    pending = {task.client_id: task.round for task in tasks}
    reason = "the runner returned no reply for this task"
    try:
        for outcome in start():
            if pending.pop(outcome.client_id, None) is not None:
                yield outcome
    except Exception as exc:  # a crashed runner fails its unanswered tasks, not the run
        reason = f"the runner failed: {type(exc).__name__}: {exc}"
    for client_id, round_ in pending.items():
        yield Failure(
            client_id=client_id,
            round=round_,
            stage="transport",
            error_type="TransportError",
            message=reason,
        )
