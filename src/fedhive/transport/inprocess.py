"""The in-process transport: clients run on this machine, through a cohort runner."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TypeVar

from fedhive.core.failures import FailureKind, Stage
from fedhive.core.messages import EvaluateReply, EvaluateTask, Failure, FitReply, FitTask
from fedhive.core.version import ModelVersion
from fedhive.transport.base import (
    CohortRunner,
    EvaluateOutcome,
    FitOutcome,
    Quorum,
    round_closed,
)

_Reply = TypeVar("_Reply", FitReply, EvaluateReply)


class InProcessTransport:
    """A transport whose clients are run by a local ``CohortRunner`` (a sim backend).

    It guarantees the transport contract whatever the runner does: exactly one outcome
    per task (a task the runner never answered, or answered twice, becomes a Failure of
    stage ``transport``), and a runner that raises fails only the unanswered tasks.

    A fit cohort that may close early (it has more tasks than its quorum still misses:
    over-selection) runs every task, then hands the outcomes over in simulated-time
    order, by ``arrival`` (the simulated seconds a task takes; ties, e.g. equally fast
    devices, in the order of the tasks' seeds), and closes like a deployed round once the
    round loop has counted its quorum of verified results: the rest fail as
    ``transport:RoundClosed``. So a simulation aggregates the set a deployment with those
    device speeds would.
    """

    def __init__(
        self,
        *,
        client_ids: Sequence[str],
        runner: CohortRunner,
        arrival: Callable[[FitTask], float] | None = None,
    ) -> None:
        self._client_ids = tuple(client_ids)
        self._runner = runner
        self._arrival = arrival or (lambda task: 0.0)
        self.closed_at: dict[int, float] = {}
        """Round -> the simulated seconds at which its cohort closed at its quorum."""

    def client_ids(self) -> Sequence[str]:
        """All simulated clients are always available."""
        return self._client_ids

    def fit(
        self, tasks: Sequence[FitTask], model: ModelVersion, *, quorum: Quorum | None = None
    ) -> Iterator[FitOutcome]:
        """Run fit tasks through the runner; when the quorum misses fewer results than
        there are tasks, close the cohort in simulated-time order once it is met."""
        outcomes = _one_per_task(tasks, lambda: self._runner.fit(tasks, model))
        if quorum is None or quorum.missing >= len(tasks):
            return outcomes
        when = {task.client_id: (self._arrival(task), task.seed, i) for i, task in enumerate(tasks)}
        return self._closing(outcomes, when, quorum)

    def _closing(
        self,
        outcomes: Iterable[FitOutcome],
        when: Mapping[str, tuple[float, int, int]],
        quorum: Quorum,
    ) -> Iterator[FitOutcome]:
        """``outcomes`` in ``when`` order until ``quorum`` is met (read before each is
        handed over: the round loop has verified and counted the previous one); the rest
        are closed, and the round's closing time noted in ``closed_at``."""
        ordered = sorted(outcomes, key=lambda outcome: when[outcome.client_id])
        last = 0.0
        for index, outcome in enumerate(ordered):
            if quorum.met:
                self.closed_at[outcome.round] = last
                yield from (round_closed(o.client_id, o.round) for o in ordered[index:])
                return
            last = when[outcome.client_id][0]
            yield outcome

    def evaluate(
        self, tasks: Sequence[EvaluateTask], model: ModelVersion
    ) -> Iterator[EvaluateOutcome]:
        """Run evaluate tasks through the runner."""
        return _one_per_task(tasks, lambda: self._runner.evaluate(tasks, model))

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
            stage=Stage.TRANSPORT,
            kind=FailureKind.TRANSPORT,
            message=reason,
        )
