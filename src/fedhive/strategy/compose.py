"""The two stages a strategy composes after collecting updates: an aggregator that turns
the verified replies into one update, and a server optimizer that applies it.

Aggregators are either streaming (O(model) memory, order-independent: the weighted mean)
or say that they hold every update (robust rules: O(clients x model) memory). A round
pushes its replies one by one into a :class:`Fold` (:func:`fold_of` opens one for any
aggregator: streaming rules fold on arrival, the others hold the replies), so an update
transform can feed one reply's parts into several folds (SCAFFOLD: the model update and
the control-variate change). Server optimizers are pure functions over explicit, typed
state (Reddi et al., ICLR 2021, Alg. 2: the aggregated update is the negative
pseudo-gradient).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from fedhive.core.messages import FitReply
from fedhive.core.weights import FloatVector, Layout
from fedhive.strategy.aggregate import ExactWeightedSum, WeightedMetrics
from fedhive.strategy.state import Stateless


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


class Fold(Protocol):
    """One aggregation in progress: replies pushed in one at a time, then closed."""

    def add(self, reply: FitReply) -> None:
        """Take one verified reply (its update matches the fold's layout)."""
        ...

    def close(self) -> Aggregate:
        """The aggregate of every reply added."""
        ...


class ServerOptimizer(Protocol):
    """Applies the aggregated update to the global model, with explicit typed state."""

    STATE: ClassVar[type[Any]]
    """The type of its :class:`~fedhive.strategy.state.ComponentState`."""

    def init(self, layout: Layout) -> Any:
        """The optimizer's state before round 1 (e.g. zero moments)."""
        ...

    def check(self, state: Any, layout: Layout) -> None:
        """Refuse a state made for another model (:class:`~fedhive.errors.StateError`)."""
        ...

    def step(
        self, state: Any, weights: FloatVector, update: FloatVector
    ) -> tuple[Any, FloatVector]:
        """New state and new flat weights from the current ones and the update."""
        ...


class _MeanFold:
    """The exact, example-weighted running sum of the updates (O(model) memory)."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.total = ExactWeightedSum(layout.total_size)
        self.metrics = WeightedMetrics()
        self.count = 0

    def add(self, reply: FitReply) -> None:
        self.total.add_weights(self.layout, reply.update, reply.num_examples)
        self.metrics.add(reply.metrics, reply.num_examples)
        self.count += reply.clients

    def close(self) -> Aggregate:
        total = self.total
        update = None
        if total.total_weight:
            update = total.total()
            update /= total.total_weight  # in place: no second copy of the model
        return Aggregate(update, self.count, total.total_weight, self.metrics.means())


class _HeldFold:
    """Holds every reply, then runs a rule that needs them all (the robust ones)."""

    def __init__(self, aggregator: Aggregator, layout: Layout) -> None:
        self.aggregator, self.layout = aggregator, layout
        self.held: list[FitReply] = []

    def add(self, reply: FitReply) -> None:
        self.held.append(reply)

    def close(self) -> Aggregate:
        return self.aggregator(self.layout, self.held)


def fold_of(aggregator: Aggregator, layout: Layout) -> Fold:
    """A fold running ``aggregator`` over replies in ``layout``: the aggregator's own
    (``aggregator.fold(layout)``, streaming) when it has one, else one that holds them."""
    opener = getattr(aggregator, "fold", None)
    if callable(opener):
        fold: Fold = opener(layout)
        return fold
    return _HeldFold(aggregator, layout)


def is_mean(aggregator: Aggregator) -> bool:
    """Whether ``aggregator`` is the plain weighted mean (no bound, no robust rule)."""
    return isinstance(aggregator, WeightedMean)


@dataclass(frozen=True)
class WeightedMean:
    """The example-weighted mean of the updates (FedAvg), streaming and exact."""

    def __call__(self, layout: Layout, replies: Iterable[FitReply]) -> Aggregate:
        """Fold each reply into an exact running sum as it arrives."""
        fold = self.fold(layout)
        for reply in replies:
            fold.add(reply)
        return fold.close()

    def fold(self, layout: Layout) -> Fold:
        """A streaming fold: O(model) memory whatever the number of replies."""
        return _MeanFold(layout)


@dataclass(frozen=True)
class ServerSGD:
    """``w + learning_rate * update``: plain FedAvg when the rate is 1."""

    STATE: ClassVar[type[Stateless]] = Stateless

    learning_rate: float = 1.0

    def init(self, layout: Layout) -> Stateless:
        """SGD keeps no state."""
        return Stateless()

    def check(self, state: Stateless, layout: Layout) -> None:
        """Nothing to check."""

    def step(
        self, state: Stateless, weights: FloatVector, update: FloatVector
    ) -> tuple[Stateless, FloatVector]:
        """One step along the aggregated update (``weights + learning_rate * update``,
        with one new array: addition commutes, so the bits are the same)."""
        new = np.multiply(update, self.learning_rate)
        return state, np.add(new, weights, out=new)


__all__ = [
    "Aggregate",
    "Aggregator",
    "Fold",
    "ServerOptimizer",
    "ServerSGD",
    "WeightedMean",
    "fold_of",
    "is_mean",
]
