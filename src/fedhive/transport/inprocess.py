"""The in-process transport: clients run on this machine, through a cohort runner."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TypeVar

from fedhive.core.failures import FailureKind, Stage
from fedhive.core.ids import SortedIds
from fedhive.core.messages import EvaluateReply, EvaluateTask, Failure, FitReply, FitTask
from fedhive.core.version import ModelVersion
from fedhive.transport.base import (
    CohortRunner,
    EvaluateOutcome,
    FitOutcome,
    Quorum,
    round_closed,
)
from fedhive.transport.downlink import Downlink

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

    With a ``downlink`` that sends deltas, it counts each fit task's download as a
    deployed client's would be: nothing if the client holds the task's version already,
    the delta against the version it last received when the server still keeps that
    base and the delta is smaller, else the whole model (``downloaded``). The clients
    are still handed the model itself: the delta is exact.
    """

    def __init__(
        self,
        *,
        client_ids: Sequence[str],
        runner: CohortRunner,
        arrival: Callable[[FitTask], float] | None = None,
        downlink: Downlink | None = None,
    ) -> None:
        # a lazy id sequence stays lazy (a million virtual clients); others are frozen
        self._client_ids = client_ids if isinstance(client_ids, SortedIds) else tuple(client_ids)
        self._downlink = downlink if downlink is not None and downlink.delta else None
        self._held: dict[str, str] = {}  # client -> the version it last received
        self._sent: dict[tuple[str, str], int] = {}  # (client, version) -> bytes
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
        self._deliver(tasks, model, count=True)
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
        self._deliver(tasks, model, count=False)
        return _one_per_task(tasks, lambda: self._runner.evaluate(tasks, model))

    def downloaded(self, client_id: str, version: str) -> int | None:
        """The bytes ``client_id``'s fit task on ``version`` would have downloaded (see
        :class:`~fedhive.transport.base.MeasuresDownlink`); None without deltas (the
        round loop then counts the whole model)."""
        if self._downlink is None:
            return None
        return self._sent.pop((client_id, version), None)

    def _deliver(
        self, tasks: Sequence[FitTask] | Sequence[EvaluateTask], model: ModelVersion, *, count: bool
    ) -> None:
        """Note what each task's client receives (and, for ``count``, its size)."""
        if self._downlink is None:
            return
        self._downlink.published(model.digest, model.data)
        for task in tasks:
            held = self._held.get(task.client_id, "")
            if count:
                sent = self._downlink.download(model.digest, model.data, held)
                self._sent[(task.client_id, model.digest)] = (
                    0 if held == model.digest else len(sent.data)
                )
            self._held[task.client_id] = model.digest

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
