"""The asynchronous loop: FedBuff's server (Nguyen et al., AISTATS 2022, Alg. 1).

The loop keeps the strategy's ``concurrency`` tasks in flight, each on the model that
was current when it was dispatched (lines 3-5). Every finished task is verified exactly
as in the round loop (so no buffered update can make the buffer's exact sum fail); a
failure or rejection is counted and its slot refilled. Accepted
updates are buffered with their staleness (versions committed since the task's model),
and every ``buffer_size`` of them commit a new version (lines 9-12), which is evaluated,
recorded (one :class:`~fedhive.server.history.RoundRecord` per version, ``round`` = the
version number) and checkpointed like a round. Free slots are refilled once every task
that ended at the same moment has been handled, with the newest model.

A task's ``round`` is the version it trains on, so staleness is ``version - round``.
Seeds come from the run seed and the dispatch index (the n-th task of the run), so the
same seed gives the same run whatever the runner. A version that cannot be committed
(an aggregation error, no client to train, or ``concurrency + buffer_size`` failures in
a row) is recorded as not committed and counts towards ``rounds``, as in the round loop,
so a run always ends. A resumed run continues from the state's version with new tasks
(in-flight tasks of the interrupted run are lost), numbering its records after the last
recorded one. The runner's clients are asked for at every refill: deployed clients
come and go.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from fedhive.core.failures import FailureKind, Stage
from fedhive.core.ids import SortedIds
from fedhive.core.messages import Failure, FitReply, FitTask
from fedhive.core.rng import run_stream
from fedhive.core.version import ModelVersion
from fedhive.core.weights import Weights
from fedhive.errors import AggregationError, FedhiveError, NotEnoughClientsError
from fedhive.server.history import CohortStats, RoundRecord
from fedhive.server.run import (
    Checkpoint,
    EvaluateFn,
    RunObserver,
    RunResult,
    check_parameter_names,
)
from fedhive.server.tasks import rejected
from fedhive.server.verify import (
    DEFAULT_POLICY,
    ReplyPolicy,
    accept_fit_reply,
    uplink_bytes,
)
from fedhive.strategy.algorithm import Algorithm
from fedhive.strategy.state import StrategyState
from fedhive.transport.base import AsyncRunner, Finished

__all__ = ["AsyncLoop", "AsyncRunner", "Finished"]  # the runner interface lives in transport


@dataclass(frozen=True, kw_only=True)
class AsyncLoop:
    """Runs an algorithm on a buffered schedule (FedBuff) over an asynchronous runner,
    from a seed."""

    strategy: Algorithm
    runner: AsyncRunner
    seed: int
    evaluate_fn: EvaluateFn | None = None
    observer: RunObserver | None = None
    checkpoint: Checkpoint | None = None
    policy: ReplyPolicy = DEFAULT_POLICY
    """What a reply may claim (``[server] max_examples``), as in the round loop."""

    def run(
        self,
        weights: Weights,
        rounds: int,
        state: StrategyState | None = None,
        *,
        first_round: int | None = None,
    ) -> RunResult:
        """Record ``rounds`` versions, numbered from ``first_round`` (default: the state's
        version + 1; a resumed run: after its last recorded round); return the final
        model. The tasks still in flight then are abandoned.

        Raises:
            ConfigError: a parameter name starts with ``@`` (reserved).
        """
        check_parameter_names(weights)
        state = self.strategy.initial_state(weights) if state is None else state
        self.strategy.check_state(state, weights)
        last = self.strategy.version(state) if first_round is None else first_round - 1
        return _Run(self, weights, state, last).go(last + rounds)


class _Run:
    """The mutable progress of one ``AsyncLoop.run``."""

    def __init__(
        self, loop: AsyncLoop, weights: Weights, state: StrategyState, last_round: int
    ) -> None:
        self.loop, self.strategy = loop, loop.strategy
        self.schedule = loop.strategy.buffered
        self.stream = run_stream(loop.seed).child("async")
        self.model, self.state = ModelVersion.of(weights), state
        self.round = last_round  # the last recorded round
        self.tasks: dict[int, FitTask] = {}
        self.buffer: list[tuple[FitReply, int]] = []
        self.stats = CohortStats()
        self.dispatched = self.failed_in_row = 0
        self.clock = 0.0
        self.started = time.perf_counter()
        self.history: list[RoundRecord] = []
        self._publish()

    def go(self, last_round: int) -> RunResult:
        self.last_round = last_round
        self._start_period()
        while self.round < last_round:
            note = self._refill()
            if not self.tasks:
                self._record(committed=False, note=note or "no client to train")
                continue
            for finished in self._next():
                self.clock = max(self.clock, finished.clock)
                self._receive(finished)
                give_up = self.schedule.concurrency + self.schedule.buffer_size
                if len(self.buffer) >= self.schedule.buffer_size:
                    self._commit()
                elif self.failed_in_row >= give_up:
                    note = f"version not committed: {give_up} tasks in a row failed"
                    self._record(committed=False, note=note)
                if self.round >= last_round:
                    break
        return RunResult(self.model.weights, self.model.digest, self.state, tuple(self.history))

    def _publish(self) -> None:
        broadcast = self.strategy.broadcast(self.state, self.model.weights)
        self.published = self.model.derived(broadcast)

    def _start_period(self) -> None:
        if self.loop.checkpoint is not None:
            self.loop.checkpoint.begin(self.round + 1)
        if self.loop.observer is not None:
            self.loop.observer.round_started(self.round + 1, self.schedule.buffer_size)

    def _refill(self) -> str:
        """Dispatch tasks to free slots; returns why none could be, if so."""
        rng = self.stream.child(self.dispatched).child("select").numpy()
        busy = {task.client_id for task in self.tasks.values()}
        ids = self.loop.runner.client_ids()
        # deployed clients come and go (a snapshot); a lazy id sequence never changes
        clients = ids if isinstance(ids, SortedIds) else tuple(ids)
        try:
            instructions = self.strategy.configure_refill(self.state, clients, busy, rng)
        except NotEnoughClientsError as exc:
            return f"version not committed: {exc}"
        version = self.strategy.version(self.state)
        for instruction in instructions:
            dispatch, self.dispatched = self.dispatched, self.dispatched + 1
            task = FitTask(
                round=version,
                client_id=instruction.client_id,
                version=self.published.digest,
                seed=self.stream.child(dispatch).child("fit").seed,
                config=instruction.config,
            )
            self.tasks[dispatch] = task
            self.loop.runner.submit(dispatch, task, self.published)
            self.stats.selected += 1
            self.stats.downloaded(task.client_id, len(self.published.data))
        return ""

    def _next(self) -> Sequence[Finished]:
        batch = self.loop.runner.next_finished()
        if batch:
            return batch
        message = "the runner returned no outcome for this task"
        return [
            Finished(d, _failure(t, Stage.TRANSPORT, FailureKind.TRANSPORT, message), self.clock)
            for d, t in sorted(self.tasks.items())
        ]

    def _receive(self, finished: Finished) -> None:
        """Verify one ended task and buffer its update, or count its failure."""
        task = self.tasks.pop(finished.dispatch, None)
        if task is None:
            return  # not ours, or answered twice: the runner's fault, not a client's
        outcome = finished.outcome
        staleness = self.strategy.version(self.state) - task.round
        if isinstance(outcome, FitReply):
            try:
                layout = self.published.weights.layout()
                outcome = accept_fit_reply(outcome, task, layout, self.loop.policy)
            except (FedhiveError, KeyError) as exc:
                outcome = rejected(task.client_id, task.round, exc)
        if isinstance(outcome, FitReply) and self.schedule.too_stale(staleness):
            message = f"staleness {staleness} > max_staleness {self.schedule.max_staleness}"
            outcome = _failure(task, Stage.BUFFER, FailureKind.STALE, message)
        if self.loop.observer is not None:
            self.loop.observer.client_finished(self.round + 1, isinstance(outcome, FitReply))
        if isinstance(outcome, Failure):
            self.stats.record_failure(outcome)
            self.failed_in_row += 1
            return
        self.failed_in_row = 0
        self.stats.succeeded += 1
        self.stats.uploaded(outcome.client_id, uplink_bytes(outcome, len(self.published.data)))
        self.stats.contributors.append(outcome.client_id)
        self.buffer.append((outcome, staleness))

    def _commit(self) -> None:
        try:
            self.state, weights, train = self.strategy.aggregate_buffer(
                self.state, self.model.weights, self.buffer
            )
        except AggregationError as exc:
            self.buffer = []
            self._record(committed=False, note=f"version not committed: {exc}")
            return
        self.buffer = []
        self.model = self.model.derived(weights)
        self._publish()
        self._record(committed=True, train=train)

    def _record(
        self,
        *,
        committed: bool,
        train: dict[str, float] | None = None,
        note: str = "",
    ) -> None:
        """Evaluate, record and checkpoint the period that just ended; start the next."""
        self.round += 1
        evaluate = self.loop.evaluate_fn
        record = RoundRecord(
            round=self.round,
            seconds=time.perf_counter() - self.started,
            committed=committed,
            version=self.model.digest,
            fit=self.stats,
            evaluate=CohortStats(),
            train=dict(train or {}),
            centralized=dict(evaluate(self.model.weights)) if evaluate else {},
            federated={},
            note=note,
            clock=self.clock,
        )
        if self.loop.checkpoint is not None:
            self.loop.checkpoint.end(record, self.model, self.state)
        self.history.append(record)
        if self.loop.observer is not None:
            self.loop.observer.round_finished(record)
        self.stats, self.failed_in_row, self.started = CohortStats(), 0, time.perf_counter()
        if self.round < self.last_round:
            self._start_period()


def _failure(task: FitTask, stage: Stage, kind: FailureKind, message: str) -> Failure:
    return Failure(
        client_id=task.client_id, round=task.round, stage=stage, kind=kind, message=message
    )
