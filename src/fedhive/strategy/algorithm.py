"""An algorithm, composed: client sampling, client configuration, update transforms,
an aggregator, a server optimizer and a schedule.

FedAvg (McMahan et al., AISTATS 2017) with a server learning rate eta (Reddi et al.,
ICLR 2021, Alg. 1): ``w_{t+1} = w_t + eta * sum_k n_k (w_k - w_t) / sum_k n_k`` is the
default :class:`Algorithm`; every other algorithm is the same object with other parts::

    Algorithm(transforms=(ControlVariates(),))                       # SCAFFOLD
    Algorithm(server_optimizer=ServerAdam(learning_rate=0.1))        # FedAdam
    Algorithm(transforms=(ControlVariates(), DifferentialPrivacy()), # SCAFFOLD + DP
              aggregator=TrimmedMean(trim_fraction=0.2))             #   + a robust rule
    Algorithm(schedule=Buffered(buffer_size=10))                     # FedBuff

A round: ``configure_fit`` samples the clients (``sampler``: uniformly by default), and
each transform adds its client extension (``instruct``); ``broadcast`` adds the
transforms' auxiliary tensors to the model; ``aggregate_fit`` pushes each verified reply
through the transforms' folds down to the aggregator, then the server optimizer steps
the model, and each transform settles its state. The state is a typed
:class:`~fedhive.strategy.state.StrategyState`: the optimizer's, each transform's, then
the schedule's.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedhive.core.config import check_int, check_real
from fedhive.core.ids import SortedIds, excluding
from fedhive.core.messages import ClientConfig, EvaluateReply, FitReply
from fedhive.core.weights import Layout, Weights
from fedhive.errors import ConfigError, NotEnoughClientsError, StateError, ValidationError
from fedhive.strategy.accounting import Participation, PrivacyReport
from fedhive.strategy.aggregate import ExactWeightedSum, WeightedMetrics
from fedhive.strategy.base import Instruction
from fedhive.strategy.chain import check_chain
from fedhive.strategy.compose import (
    Aggregator,
    Fold,
    ServerOptimizer,
    ServerSGD,
    WeightedMean,
    fold_of,
)
from fedhive.strategy.fedbuff import Buffered, BufferState, Rounds, Schedule
from fedhive.strategy.private import DifferentialPrivacy, PrivacyState
from fedhive.strategy.sampling import ClientSampler, UniformSampler
from fedhive.strategy.state import StrategyState
from fedhive.strategy.transform import RoundContext, UpdateTransform


@dataclass(frozen=True, kw_only=True)
class Algorithm:
    """A federated algorithm built from parts (see the module docs)."""

    fraction_fit: float = 1.0
    fraction_evaluate: float = 0.0
    min_fit_clients: int = 1
    min_evaluate_clients: int = 1
    min_available_clients: int = 1
    server_learning_rate: float = 1.0
    over_selection: float = 0.0
    """Select this fraction more clients than needed; a deployed round closes once the
    needed number of results arrived (stragglers are told the round has closed)."""
    sampler: ClientSampler = field(default_factory=UniformSampler)
    """Which clients a round selects (the fractions above say how many)."""
    client_config: ClientConfig = field(default_factory=ClientConfig)
    per_client: Mapping[str, ClientConfig] = field(default_factory=dict)
    """Clients whose training differs from ``client_config`` (a device's own batch
    size, learning rate, epochs or privacy budget)."""
    transforms: tuple[UpdateTransform, ...] = ()
    """Steps between the replies and the aggregator, outermost first."""
    aggregator: Aggregator = field(default_factory=WeightedMean)
    server_optimizer: ServerOptimizer | None = None
    """None: server SGD with ``server_learning_rate`` (FedAvg); FedAdam & co. set one."""
    schedule: Schedule = field(default_factory=Rounds)

    def __post_init__(self) -> None:
        check_real("fraction_fit", self.fraction_fit, low=0, high=1, low_open=True)
        check_real("fraction_evaluate", self.fraction_evaluate, low=0, high=1)
        check_int("min_fit_clients", self.min_fit_clients, minimum=1)
        check_int("min_evaluate_clients", self.min_evaluate_clients, minimum=1)
        check_int("min_available_clients", self.min_available_clients, minimum=1)
        check_real("server_learning_rate", self.server_learning_rate, low=0, low_open=True)
        check_real("over_selection", self.over_selection, low=0, high=1)
        object.__setattr__(self, "transforms", tuple(self.transforms))
        check_chain(self.transforms, self.aggregator, self.schedule)

    @property
    def optimizer(self) -> ServerOptimizer:
        """The server optimizer in use."""
        return self.server_optimizer or ServerSGD(self.server_learning_rate)

    @property
    def privacy(self) -> DifferentialPrivacy | None:
        """The DP transform, if the algorithm has one (always the last transform)."""
        last = self.transforms[-1] if self.transforms else None
        return last if isinstance(last, DifferentialPrivacy) else None

    @property
    def releases(self) -> int:
        """How many DP releases one round makes: the fan-out of the transforms before DP."""
        return math.prod(t.fanout for t in self.transforms[:-1])

    def initial_state(self, weights: Weights) -> StrategyState:
        """Each component's state before round 1, for the initial global ``weights``."""
        parts = (
            self.optimizer.init(weights.layout()),
            *(t.init(weights) for t in self.transforms),
            self.schedule.init(),
        )
        return StrategyState(parts)

    def check_state(self, state: StrategyState, weights: Weights) -> None:
        """Refuse a (resumed) state that is not this algorithm's for this model.

        Raises:
            StateError: a component's state is missing, another component's, or made
                for another model's size.
        """
        if len(state.parts) != len(self.transforms) + 2:
            raise StateError(
                f"strategy state: {len(state.parts)} component states, the algorithm "
                f"has {len(self.transforms) + 2} (a resumed run whose algorithm changed?)"
            )
        self.optimizer.check(state.part(0, self.optimizer.STATE), weights.layout())
        for index, transform in enumerate(self.transforms, start=1):
            transform.check(state.part(index, transform.STATE), weights)
        state.part(len(state.parts) - 1, self.schedule.STATE)

    def configure_fit(
        self,
        state: StrategyState,
        round: int,
        weights: Weights,
        clients: Sequence[str],
        rng: np.random.Generator,
    ) -> list[Instruction]:
        """Sample ``fraction_fit`` of the clients (at least ``min_fit_clients``); each
        transform then adds its client extension."""
        fraction = self.fraction_fit * (1 + self.over_selection)
        chosen = self._instructions(clients, fraction, self.min_fit_clients, rng)
        return self._instructed(state, chosen)

    def broadcast(self, state: StrategyState, weights: Weights) -> Weights:
        """The model, and each transform's auxiliary tensors (SCAFFOLD's ``c``)."""
        for index, transform in enumerate(self.transforms, start=1):
            weights = transform.broadcast(state.part(index, transform.STATE), weights)
        return weights

    def fit_quorum(self, selected: int) -> int:
        """The clients wanted before over-selection (at least ``min_fit_clients``)."""
        wanted = math.ceil(round(selected / (1 + self.over_selection), 9))
        return min(selected, max(self.min_fit_clients, wanted))

    def aggregate_fit(
        self,
        state: StrategyState,
        round: int,
        weights: Weights,
        replies: Iterable[FitReply],
    ) -> tuple[StrategyState, Weights, dict[str, float]]:
        """Push the replies (streamed) through the transforms into the aggregator, let
        the server optimizer apply the result, and settle each transform's state."""
        context = RoundContext(round, weights, self.fraction_fit, self.aggregator)
        opened: list[list[Any]] = [[] for _ in self.transforms]

        def opener(depth: int) -> Any:
            def open_fold(layout: Layout) -> Fold:
                if depth == len(self.transforms):
                    return fold_of(self.aggregator, layout)
                transform = self.transforms[depth]
                own = state.part(depth + 1, transform.STATE)
                fold = transform.open(own, context, layout, opener(depth + 1), len(opened[depth]))
                opened[depth].append(fold)
                return fold

            return open_fold

        top = opener(0)(self.broadcast(state, weights).layout())
        for reply in replies:
            top.add(reply)
            del reply  # not held while the next one is received and decoded
        result = top.close()
        del top  # the plain mean's exact sum (4x the model) is freed before the step
        self.require_fit_clients(result.count, round)
        parts = list(state.parts)
        for depth, transform in enumerate(self.transforms):
            parts[depth + 1] = transform.settle(parts[depth + 1], opened[depth])
        if result.update is None:
            return StrategyState(tuple(parts)), weights, result.metrics
        layout = weights.layout()
        optimizer = self.optimizer
        own = state.part(0, optimizer.STATE)
        parts[0], new = optimizer.step(own, layout.flatten(weights), result.update)
        return StrategyState(tuple(parts)), layout.unflatten(new), result.metrics

    def require_fit_clients(self, count: int, round: int) -> None:
        """Refuse to aggregate fewer than ``min_fit_clients`` successful clients.

        Raises:
            NotEnoughClientsError: ``count`` is below ``min_fit_clients``.
        """
        if count < self.min_fit_clients:
            raise NotEnoughClientsError(
                f"{count} clients succeeded, min_fit_clients is {self.min_fit_clients}",
                round=round,
                stage="aggregate",
            )

    def check_budget(self, state: StrategyState, round: int, participation: Participation) -> None:
        """Refuse a round that, at ``participation``, would exceed the DP budget (no-op
        without DP).

        Raises:
            PrivacyBudgetError: accounting the round would exceed the target epsilon.
        """
        dp = self.privacy
        if dp is not None:
            own = state.part(len(self.transforms), PrivacyState)
            dp.check_budget(own, round, participation, releases=self.releases)

    def account(
        self,
        state: StrategyState,
        round: int,
        participation: Participation,
        *,
        committed: bool,
    ) -> tuple[StrategyState, PrivacyReport | None]:
        """``state`` with the ended round's privacy events, and its report (None without
        DP)."""
        dp = self.privacy
        if dp is None:
            return state, None
        index = len(self.transforms)
        own, report = dp.account(
            state.part(index, PrivacyState),
            participation,
            committed=committed,
            releases=self.releases,
        )
        return state.replace_part(index, own), report

    def configure_evaluate(
        self,
        state: StrategyState,
        round: int,
        weights: Weights,
        clients: Sequence[str],
        rng: np.random.Generator,
    ) -> list[Instruction]:
        """Sample ``fraction_evaluate`` of the clients; none when it is 0."""
        if self.fraction_evaluate == 0:
            return []
        return self._instructions(clients, self.fraction_evaluate, self.min_evaluate_clients, rng)

    def aggregate_evaluate(
        self,
        state: StrategyState,
        round: int,
        replies: Iterable[EvaluateReply],
    ) -> tuple[StrategyState, dict[str, float]]:
        """Example-weighted mean of loss and metrics."""
        metrics = WeightedMetrics()
        for reply in replies:
            metrics.add({"loss": reply.loss, **reply.metrics}, reply.num_examples)
        return state, metrics.means()

    @property
    def buffered(self) -> Buffered:
        """The buffered schedule (the asynchronous loop's settings).

        Raises:
            ConfigError: the algorithm runs synchronous rounds.
        """
        if not isinstance(self.schedule, Buffered):
            raise ConfigError("schedule: this algorithm runs synchronous rounds, not buffered")
        return self.schedule

    def version(self, state: StrategyState) -> int:
        """The number of versions a buffered run has committed."""
        return state.part(len(state.parts) - 1, BufferState).version

    def configure_refill(
        self,
        state: StrategyState,
        clients: Sequence[str],
        busy: Collection[str],
        rng: np.random.Generator,
    ) -> list[Instruction]:
        """Clients for the free slots of a buffered run: up to ``concurrency - len(busy)``
        idle clients, drawn uniformly without replacement (FedBuff Alg. 1 line 4),
        sorted by id.

        Raises:
            NotEnoughClientsError: fewer clients exist than ``min_available_clients``.
        """
        if len(clients) < self.min_available_clients:
            raise NotEnoughClientsError(
                f"{len(clients)} clients available, the strategy needs at least "
                f"{self.min_available_clients}"
            )
        idle = (  # the same ids in the same order; O(busy) for lazy ids, not O(clients)
            excluding(clients, set(busy))
            if isinstance(clients, SortedIds)
            else sorted(set(clients) - set(busy))
        )
        count = min(self.buffered.concurrency - len(busy), len(idle))
        if count <= 0:
            return []
        chosen = sorted(idle[i] for i in rng.choice(len(idle), size=count, replace=False))
        return [Instruction(cid, self.per_client.get(cid, self.client_config)) for cid in chosen]

    def aggregate_buffer(
        self,
        state: StrategyState,
        weights: Weights,
        buffered: Sequence[tuple[FitReply, int]],
    ) -> tuple[StrategyState, Weights, dict[str, float]]:
        """Commit a new version from verified ``(reply, staleness)`` pairs (any order).

        Updates that are too stale are skipped. With no usable weight (no updates, or 0
        examples) the model is unchanged, but the version still counts.

        Raises:
            AggregationError: an update is outside the exact summation's range (the
                asynchronous loop's verification refuses such an update first).
            ValidationError: a staleness is negative.
        """
        schedule = self.buffered
        layout = weights.layout()
        groups: dict[int, ExactWeightedSum] = {}
        metrics = WeightedMetrics()
        used: list[int] = []
        for reply, staleness in buffered:
            if staleness < 0:
                raise ValidationError(f"staleness must be >= 0, got {staleness}")
            if schedule.too_stale(staleness):
                continue
            group = groups.setdefault(staleness, ExactWeightedSum(layout.total_size))
            group.add(layout.flatten(reply.update), reply.num_examples)
            metrics.add(reply.metrics, reply.num_examples)
            used.append(staleness)
        last = len(state.parts) - 1
        counted = state.replace_part(last, BufferState(self.version(state) + 1))
        out = {**metrics.means()}
        if used:
            out["staleness_mean"] = sum(used) / len(used)
            out["staleness_max"] = float(max(used))
        update = schedule.combine(groups)
        if update is None:
            return counted, weights, out
        optimizer = self.optimizer
        own, new = optimizer.step(state.part(0, optimizer.STATE), layout.flatten(weights), update)
        return counted.replace_part(0, own), layout.unflatten(new), out

    def _instructed(self, state: StrategyState, chosen: list[Instruction]) -> list[Instruction]:
        if not chosen:
            return chosen
        quorum = self.fit_quorum(len(chosen))
        for index, transform in enumerate(self.transforms, start=1):
            own = state.part(index, transform.STATE)
            chosen = [
                Instruction(i.client_id, transform.instruct(own, i.config, quorum=quorum))
                for i in chosen
            ]
        return chosen

    def _instructions(
        self, clients: Sequence[str], fraction: float, minimum: int, rng: np.random.Generator
    ) -> list[Instruction]:
        """Sampled clients, each with its own configuration or the common one."""
        chosen = self.sampler.sample(
            clients,
            fraction=fraction,
            min_clients=minimum,
            min_available=self.min_available_clients,
            rng=rng,
        )
        return [Instruction(cid, self.per_client.get(cid, self.client_config)) for cid in chosen]
