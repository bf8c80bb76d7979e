"""FedAvg: the example-weighted mean of client updates (McMahan et al., AISTATS 2017).

With a server learning rate eta (Reddi et al., ICLR 2021, Alg. 1 with SGD as the server
optimizer): ``w_{t+1} = w_t + eta * sum_k n_k (w_k - w_t) / sum_k n_k``, which for
eta = 1 is the weighted mean of the clients' models (eq. in Alg. 1 of McMahan et al.).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from fedhive.core.config import check_int, check_real
from fedhive.core.messages import ClientConfig, EvaluateReply, FitReply
from fedhive.core.weights import Weights
from fedhive.errors import NotEnoughClientsError
from fedhive.strategy.aggregate import WeightedMetrics
from fedhive.strategy.base import Instruction, StrategyState
from fedhive.strategy.compose import (
    Aggregator,
    ServerOptimizer,
    ServerSGD,
    WeightedMean,
)
from fedhive.strategy.sampling import sample_clients


@dataclass(frozen=True, kw_only=True)
class FedAvg:
    """Federated averaging with client sampling and a server learning rate."""

    fraction_fit: float = 1.0
    fraction_evaluate: float = 0.0
    min_fit_clients: int = 1
    min_evaluate_clients: int = 1
    min_available_clients: int = 1
    server_learning_rate: float = 1.0
    over_selection: float = 0.0
    """Select this fraction more clients than needed; a deployed round closes once the
    needed number of results arrived (stragglers are told the round has closed)."""
    aggregator: Aggregator = field(default_factory=WeightedMean)
    server_optimizer: ServerOptimizer | None = None
    """None: server SGD with ``server_learning_rate`` (FedAvg); FedAdam & co. set one."""
    client_config: ClientConfig = field(default_factory=ClientConfig)
    per_client: Mapping[str, ClientConfig] = field(default_factory=dict)
    """Clients whose training differs from ``client_config`` (a device's own batch
    size, learning rate, epochs or privacy budget)."""

    def __post_init__(self) -> None:
        check_real("fraction_fit", self.fraction_fit, low=0, high=1, low_open=True)
        check_real("fraction_evaluate", self.fraction_evaluate, low=0, high=1)
        check_int("min_fit_clients", self.min_fit_clients, minimum=1)
        check_int("min_evaluate_clients", self.min_evaluate_clients, minimum=1)
        check_int("min_available_clients", self.min_available_clients, minimum=1)
        check_real("server_learning_rate", self.server_learning_rate, low=0, low_open=True)
        check_real("over_selection", self.over_selection, low=0, high=1)

    @property
    def optimizer(self) -> ServerOptimizer:
        """The server optimizer in use."""
        return self.server_optimizer or ServerSGD(self.server_learning_rate)

    def initial_state(self, weights: Weights) -> StrategyState:
        """The server optimizer's initial state (none for plain FedAvg)."""
        return self.optimizer.init(weights.layout())

    def configure_fit(
        self,
        state: StrategyState,
        round: int,
        weights: Weights,
        clients: Sequence[str],
        rng: np.random.Generator,
    ) -> list[Instruction]:
        """Sample ``fraction_fit`` of the clients (at least ``min_fit_clients``)."""
        fraction = self.fraction_fit * (1 + self.over_selection)
        return self._instructions(clients, fraction, self.min_fit_clients, rng)

    def broadcast(self, state: StrategyState, weights: Weights) -> Weights:
        """The model alone: FedAvg sends nothing else."""
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
        """Aggregate the updates (streamed), then let the server optimizer apply them."""
        layout = weights.layout()
        result = self.aggregator(layout, replies)
        self.require_fit_clients(result.count, round)
        if result.update is None:
            return state, weights, result.metrics
        state, new = self.optimizer.step(state, layout.flatten(weights), result.update)
        return state, layout.unflatten(new), result.metrics

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

    def _instructions(
        self, clients: Sequence[str], fraction: float, minimum: int, rng: np.random.Generator
    ) -> list[Instruction]:
        """Sampled clients, each with its own configuration or the common one."""
        chosen = sample_clients(
            clients,
            fraction=fraction,
            min_clients=minimum,
            min_available=self.min_available_clients,
            rng=rng,
        )
        return [Instruction(cid, self.per_client.get(cid, self.client_config)) for cid in chosen]
