"""The two stages a strategy composes after collecting updates: an aggregator that turns
the verified replies into one update, and a server optimizer that applies it.

Aggregators are either streaming (O(model) memory, order-independent: the weighted mean)
or say that they hold every update (robust rules: O(clients x model) memory). Server
optimizers are pure functions over explicit state (Reddi et al., ICLR 2021, Alg. 2:
the aggregated update is the negative pseudo-gradient).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from fedhive.core.messages import FitReply
from fedhive.core.weights import FloatVector, Layout
from fedhive.strategy.aggregate import ExactWeightedSum, WeightedMetrics
from fedhive.strategy.base import StrategyState


@dataclass(frozen=True)
class Aggregate:
    """What an aggregator produced from one round's replies."""

    update: FloatVector | None  # None: no usable update (no replies, or zero weight)
    count: int
    total_weight: int
    metrics: dict[str, float] = field(default_factory=dict)


class Aggregator(Protocol):
    """Combines verified replies (streamed, any order) into one flat update."""

    def __call__(self, layout: Layout, replies: Iterable[FitReply]) -> Aggregate:
        """The aggregate of ``replies``, whose updates match ``layout``."""
        ...


class ServerOptimizer(Protocol):
    """Applies the aggregated update to the global model, with explicit state."""

    def init(self, layout: Layout) -> StrategyState:
        """The optimizer's state before round 1 (e.g. zero moments)."""
        ...

    def step(
        self, state: StrategyState, weights: FloatVector, update: FloatVector
    ) -> tuple[StrategyState, FloatVector]:
        """New state and new flat weights from the current ones and the update."""
        ...


@dataclass(frozen=True)
class WeightedMean:
    """The example-weighted mean of the updates (FedAvg), streaming and exact."""

    def __call__(self, layout: Layout, replies: Iterable[FitReply]) -> Aggregate:
        """Fold each reply into an exact running sum as it arrives."""
        total = ExactWeightedSum(layout.total_size)
        metrics = WeightedMetrics()
        count = 0
        for reply in replies:
            total.add(layout.flatten(reply.update), reply.num_examples)
            metrics.add(reply.metrics, reply.num_examples)
            count += reply.clients
        update = None if total.total_weight == 0 else total.total() / total.total_weight
        return Aggregate(update, count, total.total_weight, metrics.means())


@dataclass(frozen=True)
class ServerSGD:
    """``w + learning_rate * update``: plain FedAvg when the rate is 1."""

    learning_rate: float = 1.0

    def init(self, layout: Layout) -> StrategyState:
        """SGD keeps no state."""
        return {}

    def step(
        self, state: StrategyState, weights: FloatVector, update: FloatVector
    ) -> tuple[StrategyState, FloatVector]:
        """One step along the aggregated update."""
        return state, weights + self.learning_rate * update
