"""A strategy built around a FedAvg: every step it does not change goes to its base.

SCAFFOLD (control variates) and DP-FedAvg (clipping, noise, accounting) each change two
or three steps of FedAvg and keep its sampling, evaluation, aggregator and server
optimizer; they extend :class:`AroundFedAvg` and override only their own steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from fedhive.core.messages import EvaluateReply, FitReply
from fedhive.core.weights import Weights
from fedhive.strategy.base import Instruction, StrategyState
from fedhive.strategy.fedavg import FedAvg


@dataclass(frozen=True, kw_only=True)
class AroundFedAvg:
    """Delegates each Strategy step to ``base``."""

    base: FedAvg = field(default_factory=FedAvg)

    def initial_state(self, weights: Weights) -> StrategyState:
        """The base strategy's initial state."""
        return self.base.initial_state(weights)

    def broadcast(self, state: StrategyState, weights: Weights) -> Weights:
        """What the base strategy sends."""
        return self.base.broadcast(state, weights)

    def configure_fit(
        self,
        state: StrategyState,
        round: int,
        weights: Weights,
        clients: Sequence[str],
        rng: np.random.Generator,
    ) -> list[Instruction]:
        """The base strategy's selection and configuration."""
        return self.base.configure_fit(state, round, weights, clients, rng)

    def fit_quorum(self, selected: int) -> int:
        """The base strategy's quorum."""
        return self.base.fit_quorum(selected)

    def aggregate_fit(
        self,
        state: StrategyState,
        round: int,
        weights: Weights,
        replies: Iterable[FitReply],
    ) -> tuple[StrategyState, Weights, dict[str, float]]:
        """The base strategy's aggregation."""
        return self.base.aggregate_fit(state, round, weights, replies)

    def configure_evaluate(
        self,
        state: StrategyState,
        round: int,
        weights: Weights,
        clients: Sequence[str],
        rng: np.random.Generator,
    ) -> list[Instruction]:
        """The base strategy's evaluation selection."""
        return self.base.configure_evaluate(state, round, weights, clients, rng)

    def aggregate_evaluate(
        self,
        state: StrategyState,
        round: int,
        replies: Iterable[EvaluateReply],
    ) -> tuple[StrategyState, dict[str, float]]:
        """The base strategy's evaluation metrics."""
        return self.base.aggregate_evaluate(state, round, replies)
