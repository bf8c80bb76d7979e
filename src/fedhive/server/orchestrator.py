"""The round loop: select → dispatch → collect → verify → aggregate → next version.

The same loop drives a simulation (in-process transport) and a deployment (network
transport): it sees only :class:`~fedhive.transport.base.Transport`. It never raises for
a client's fault: failures are counted in the round's record and the round completes
with the clients that succeeded.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from fedhive.core.ids import excluding
from fedhive.core.messages import EvaluateReply, EvaluateTask, Failure, FitReply, FitTask
from fedhive.core.rng import SeedStream, run_stream
from fedhive.core.version import ModelVersion
from fedhive.core.weights import Layout, Weights
from fedhive.errors import (
    AggregationError,
    ConfigError,
    FedhiveError,
    NotEnoughClientsError,
    PrivacyBudgetError,
)
from fedhive.server.history import CohortStats, RoundRecord
from fedhive.server.run import Checkpoint, EvaluateFn, RunObserver, RunResult, check_parameter_names
from fedhive.server.secure import SecureAggregation, secure_fit
from fedhive.server.tasks import counted, make_tasks, marking_refusals, rejected
from fedhive.server.verify import (
    DEFAULT_POLICY,
    ReplyPolicy,
    accept_fit_reply,
    uplink_bytes,
    verify_evaluate_reply,
)
from fedhive.strategy.accounting import Participation, PrivacyAccounting, PrivacyReport
from fedhive.strategy.base import Strategy
from fedhive.strategy.state import StrategyState
from fedhive.transport.base import MeasuresDownlink, Quorum, SecureTransport, Transport


@dataclass(frozen=True, kw_only=True)
class RoundLoop:
    """Runs rounds of a strategy over a transport, from a seed."""

    strategy: Strategy
    transport: Transport
    seed: int
    evaluate_fn: EvaluateFn | None = None
    federated_every: int = 0
    observer: RunObserver | None = None
    checkpoint: Checkpoint | None = None
    secure: SecureAggregation | None = None
    """Secure aggregation (SecAgg+) each round: the strategy then sees only the sum."""
    policy: ReplyPolicy = DEFAULT_POLICY
    """What a reply may claim (``[server] max_examples``); plaintext and SecAgg alike."""

    def run(
        self,
        weights: Weights,
        rounds: int,
        first_round: int = 1,
        state: StrategyState | None = None,
    ) -> RunResult:
        """Run rounds ``first_round`` to ``rounds`` (inclusive) from ``weights`` and
        ``state`` (default: the strategy's initial state); return the final model.

        Raises:
            ConfigError: a parameter name starts with ``@`` (reserved for auxiliary
                tensors such as SCAFFOLD's control variates).
            StateError: ``state`` (a resumed one) is not the strategy's for this model.
        """
        check_parameter_names(weights)
        state = self.strategy.initial_state(weights) if state is None else state
        self.strategy.check_state(state, weights)
        model = ModelVersion.of(weights)
        history: list[RoundRecord] = []
        exhausted: set[str] = set()  # devices that refused for their privacy budget
        stop = ""
        for rnd in range(first_round, rounds + 1):
            if self.checkpoint is not None:
                self.checkpoint.begin(rnd)
            try:
                state, model, record = self.run_round(state, rnd, model, exhausted)
            except PrivacyBudgetError as exc:  # the run's own budget: stop before the round
                stop = str(exc)
                break
            if self.checkpoint is not None:
                self.checkpoint.end(record, model, state)
            history.append(record)
            if self.observer is not None:
                self.observer.round_finished(record)
        return RunResult(model.weights, model.digest, state, tuple(history), stop)

    def run_round(
        self,
        state: StrategyState,
        rnd: int,
        model: ModelVersion,
        exhausted: set[str] | None = None,
    ) -> tuple[StrategyState, ModelVersion, RoundRecord]:
        """One round from ``model``; returns the new state, the new (or unchanged) model
        version (serialised and hashed once, here), and the round's record.

        Clients in ``exhausted`` are not selected; a client that refuses a task for its
        privacy budget is added to it (it is unavailable from then on).

        Raises:
            PrivacyBudgetError: the strategy refuses the round (``target_epsilon``).
        """
        started = time.perf_counter()
        stream = run_stream(self.seed).child("round").child(rnd)
        fit = CohortStats()
        note = ""
        committed = False
        train: dict[str, float] = {}
        exhausted = set() if exhausted is None else exhausted
        clients = excluding(self.transport.client_ids(), exhausted)
        try:
            state, new_weights, train = self._fit(
                state, rnd, model, clients, stream=stream, stats=fit, exhausted=exhausted
            )
            model, committed = model.derived(new_weights), True
        except (NotEnoughClientsError, AggregationError) as exc:
            note = f"round not committed: {exc}"
        reached = Participation(fit.selected, len(clients))
        state, privacy = self._account(state, rnd, reached, committed=committed)
        if self.checkpoint is not None and privacy is not None and privacy.events:
            self.checkpoint.accounted(rnd, state)  # durable before evaluation runs
        centralized = dict(self.evaluate_fn(model.weights)) if self.evaluate_fn else {}
        evaluate = CohortStats()
        federated: dict[str, float] = {}
        if self.federated_every and rnd % self.federated_every == 0:
            state, federated = self._evaluate(state, rnd, model, stream=stream, stats=evaluate)
        record = RoundRecord(
            round=rnd,
            seconds=time.perf_counter() - started,
            committed=committed,
            version=model.digest,
            fit=fit,
            evaluate=evaluate,
            train=train,
            centralized=centralized,
            federated=federated,
            privacy=privacy,
            note=note,
        )
        return state, model, record

    def _fit(
        self,
        state: StrategyState,
        rnd: int,
        model: ModelVersion,
        clients: Sequence[str],
        *,
        stream: SeedStream,
        stats: CohortStats,
        exhausted: set[str],
    ) -> tuple[StrategyState, Weights, dict[str, float]]:
        weights = model.weights
        instructions = self.strategy.configure_fit(
            state, rnd, weights, clients, stream.child("select-fit").numpy()
        )
        self._check_budget(state, rnd, Participation(len(instructions), len(clients)))
        published = model.derived(self.strategy.broadcast(state, weights))
        tasks = make_tasks(FitTask, instructions, rnd, published.digest, stream)
        stats.selected = len(tasks)
        if self.observer is not None:
            self.observer.round_started(rnd, len(tasks))
        if self.secure is not None:
            try:
                reply = self._secure_reply(tasks, published, stream, stats)
            finally:
                self._count_downlink(tasks.values(), published, stats)
            return self.strategy.aggregate_fit(state, rnd, weights, iter([reply]))
        quorum = Quorum(self.strategy.fit_quorum(len(tasks)))
        outcomes = self._replacing_refusals(
            self.transport.fit(list(tasks.values()), published, quorum=quorum),
            tasks,
            pool=excluding(clients, tasks.keys()),
            published=published,
            state=state,
            stream=stream,
            stats=stats,
            exhausted=exhausted,
            quorum=quorum,
        )
        verified = counted(
            self._verified_fits(
                outcomes,
                tasks,
                published.weights.layout(),
                reply_bytes=len(published.data),
                stats=stats,
            ),
            quorum,
        )
        try:
            return self.strategy.aggregate_fit(state, rnd, weights, verified)
        finally:
            for _ in verified:  # drain what the strategy did not read
                pass
            self._count_downlink(tasks.values(), published, stats)

    def _count_downlink(
        self, tasks: Iterable[FitTask], published: ModelVersion, stats: CohortStats
    ) -> None:
        """Count each ended task's download: what the transport measured it sent, else
        the published model, whole (in-process: the payload each task was given)."""
        measured = self.transport if isinstance(self.transport, MeasuresDownlink) else None
        for task in tasks:
            size = (
                None if measured is None else measured.downloaded(task.client_id, published.digest)
            )
            stats.downloaded(task.client_id, len(published.data) if size is None else size)

    def _replacing_refusals(
        self,
        outcomes: Iterable[FitReply | Failure],
        tasks: dict[str, FitTask],
        *,
        pool: Sequence[str],
        published: ModelVersion,
        state: StrategyState,
        stream: SeedStream,
        stats: CohortStats,
        exhausted: set[str],
        quorum: Quorum,
    ) -> Iterator[FitReply | Failure]:
        """``outcomes``, then a second wave for devices that refused for their privacy
        budget (each joins ``exhausted``: unavailable for the rest of the run): as many
        others from ``pool``, chosen and configured by the strategy (their tasks join
        ``tasks``, so they are verified like the first wave's, and count toward the same
        ``quorum``). No wave once the quorum is met, nor one that would take the run past
        its privacy budget at the participation it brings the round to."""
        available = len(tasks) + len(pool)
        refused = yield from marking_refusals(outcomes, exhausted)
        first = next(iter(tasks.values()), None)
        if not refused or not pool or first is None or quorum.met:
            return
        rng = stream.child("select-replacements").numpy()
        chosen = self.strategy.configure_fit(state, first.round, published.weights, pool, rng)
        extra = make_tasks(FitTask, chosen[:refused], first.round, first.version, stream)
        try:
            self._check_budget(
                state, first.round, Participation(len(tasks), available).plus(len(extra))
            )
        except PrivacyBudgetError:
            return
        tasks.update(extra)
        stats.selected += len(extra)
        wave = self.transport.fit(list(extra.values()), published, quorum=quorum)
        yield from marking_refusals(wave, exhausted)

    def _check_budget(self, state: StrategyState, rnd: int, participation: Participation) -> None:
        """Let a privacy-accounting strategy refuse a cohort before it is dispatched.

        Raises:
            PrivacyBudgetError: the round, at ``participation``, exceeds the run's budget.
        """
        if isinstance(self.strategy, PrivacyAccounting):
            self.strategy.check_budget(state, rnd, participation)

    def _account(
        self,
        state: StrategyState,
        rnd: int,
        participation: Participation,
        *,
        committed: bool,
    ) -> tuple[StrategyState, PrivacyReport | None]:
        """The state and the round's privacy report once a privacy-accounting strategy
        accounted the ended round (committed or not) at the participation it reached."""
        if not isinstance(self.strategy, PrivacyAccounting):
            return state, None
        return self.strategy.account(state, rnd, participation, committed=committed)

    def _secure_reply(
        self,
        tasks: Mapping[str, FitTask],
        published: ModelVersion,
        stream: SeedStream,
        stats: CohortStats,
    ) -> FitReply:
        """The round's aggregate under secure aggregation, checked like any update."""
        if not isinstance(self.transport, SecureTransport) or self.secure is None:
            raise ConfigError("secagg: this transport cannot run secure aggregation")
        reply = secure_fit(
            self.secure,
            self.transport,
            tasks,
            published,
            graph_seed=stream.child("secagg-graph").seed,
            stats=stats,
            policy=self.policy,
        )
        try:
            reply.update.validate_like(published.weights.layout())
        except FedhiveError as exc:
            raise AggregationError(f"the unmasked aggregate is unusable: {exc}") from None
        if self.observer is not None:
            for _ in reply.contributors:
                self.observer.client_finished(reply.round, True)
        return reply

    def _verified_fits(
        self,
        outcomes: Iterable[FitReply | Failure],
        tasks: Mapping[str, FitTask],
        layout: Layout,
        *,
        reply_bytes: int,
        stats: CohortStats,
    ) -> Iterator[FitReply]:
        for received in outcomes:
            outcome = received
            if isinstance(received, FitReply):
                try:
                    task = tasks[received.client_id]
                    outcome = accept_fit_reply(received, task, layout, self.policy)
                except (FedhiveError, KeyError) as exc:
                    outcome = rejected(received.client_id, received.round, exc)
            if self.observer is not None:
                self.observer.client_finished(outcome.round, isinstance(outcome, FitReply))
            if isinstance(outcome, Failure):
                stats.record_failure(outcome)
                continue
            stats.succeeded += 1
            stats.uploaded(outcome.client_id, uplink_bytes(outcome, reply_bytes))
            stats.contributors.append(outcome.client_id)
            yield outcome

    def _evaluate(
        self,
        state: StrategyState,
        rnd: int,
        model: ModelVersion,
        *,
        stream: SeedStream,
        stats: CohortStats,
    ) -> tuple[StrategyState, dict[str, float]]:
        instructions = self.strategy.configure_evaluate(
            state,
            rnd,
            model.weights,
            self.transport.client_ids(),
            stream.child("select-evaluate").numpy(),
        )
        tasks = make_tasks(EvaluateTask, instructions, rnd, model.digest, stream)
        stats.selected = len(tasks)
        if not tasks:
            return state, {}
        accepted: list[EvaluateReply] = []
        for received in self.transport.evaluate(list(tasks.values()), model):
            outcome = received
            if isinstance(received, EvaluateReply):
                try:
                    verify_evaluate_reply(received, tasks[received.client_id], self.policy)
                except (FedhiveError, KeyError) as exc:
                    outcome = rejected(received.client_id, received.round, exc)
            if isinstance(outcome, Failure):
                stats.record_failure(outcome)
            else:
                stats.succeeded += 1
                accepted.append(outcome)
        return self.strategy.aggregate_evaluate(state, rnd, accepted)
