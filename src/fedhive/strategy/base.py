"""The Strategy protocol: how clients are chosen and configured, and updates combined.

A strategy object is immutable configuration plus pure methods. Everything that changes
from round to round (optimizer moments, control variates, counters) is the explicit
``StrategyState`` value passed in and returned, so the server can persist it with each
committed round and restore it after a crash.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fedhive.core.messages import ClientConfig, EvaluateReply, FitReply
from fedhive.core.weights import Weights
from fedhive.strategy.state import StrategyState


@dataclass(frozen=True)
class Instruction:
    """One selected client and how it should train (or evaluate) this round."""

    client_id: str
    config: ClientConfig


class Strategy(Protocol):
    """Selects and configures clients, and aggregates their replies into a new model."""

    def initial_state(self, weights: Weights) -> StrategyState:
        """The state before round 1, for the initial global ``weights``."""
        ...

    def check_state(self, state: StrategyState, weights: Weights) -> None:
        """Refuse a (resumed) state that is not this strategy's for ``weights``.

        Raises:
            StateError: a component's state is missing, another's, or of another size.
        """
        ...

    def configure_fit(
        self,
        state: StrategyState,
        round: int,
        weights: Weights,
        clients: Sequence[str],
        rng: np.random.Generator,
    ) -> list[Instruction]:
        """Choose the clients that train in ``round`` and their configuration.

        Raises:
            NotEnoughClientsError: fewer clients are available than required.
        """
        ...

    def broadcast(self, state: StrategyState, weights: Weights) -> Weights:
        """What fit tasks carry: the model, plus any auxiliary tensors (names starting
        with ``@``) every client gets with it, e.g. SCAFFOLD's server control variate.
        A reply's update then matches this layout, auxiliary part included."""
        ...

    def fit_quorum(self, selected: int) -> int:
        """How many results close a round that selected ``selected`` clients (fewer than
        ``selected`` when the strategy over-selects to tolerate stragglers)."""
        ...

    def aggregate_fit(
        self,
        state: StrategyState,
        round: int,
        weights: Weights,
        replies: Iterable[FitReply],
    ) -> tuple[StrategyState, Weights, dict[str, float]]:
        """Fold verified replies (streamed, any order) into the next global model.

        Raises:
            NotEnoughClientsError: fewer replies than the strategy requires.
            AggregationError: the replies cannot produce a model.
        """
        ...

    def configure_evaluate(
        self,
        state: StrategyState,
        round: int,
        weights: Weights,
        clients: Sequence[str],
        rng: np.random.Generator,
    ) -> list[Instruction]:
        """Choose the clients that evaluate ``weights`` (none: no federated evaluation)."""
        ...

    def aggregate_evaluate(
        self,
        state: StrategyState,
        round: int,
        replies: Iterable[EvaluateReply],
    ) -> tuple[StrategyState, dict[str, float]]:
        """Combine evaluation replies into federated metrics (``loss`` and the rest)."""
        ...
