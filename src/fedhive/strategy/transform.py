"""Update transforms: the composable steps between the clients and the aggregator.

An algorithm is a chain (optax-style): ``transforms = (ControlVariates(),
DifferentialPrivacy(...))`` runs each round's replies through SCAFFOLD, then DP, then
the aggregator, and each transform may also instruct the clients and add auxiliary
tensors to what they receive. A transform is immutable settings; everything that
changes between rounds is its typed state (:class:`~fedhive.strategy.state.ComponentState`),
passed in and returned::

    init(weights) -> S                          # before round 1
    check(state, weights)                       # a resumed state fits the model
    instruct(state, config, quorum=m) -> config # typed client extensions (e.g. ClipAndNoise)
    broadcast(state, weights) -> weights        # the model plus auxiliary tensors
    open(state, context, layout, inner, index)  # a fold for one aggregation; it pushes
        -> TransformFold                        #   what it derives into folds from `inner`
    settle(state, folds) -> S                   # the state after the round's folds closed

``inner(layout)`` opens a fold of the rest of the chain (the next transform, down to the
aggregator) for updates in ``layout``; a transform may open several (SCAFFOLD opens one
for the model update and one for the control-variate change, so a DP transform after it
noises both, and accounts two releases: ``fanout``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from fedhive.core.messages import ClientConfig
from fedhive.core.weights import Layout, Weights
from fedhive.strategy.compose import Aggregate, Aggregator, Fold

Opener = Callable[[Layout], Fold]
"""Opens a fold of the rest of the chain for updates in a layout."""


@dataclass(frozen=True)
class RoundContext:
    """What a transform's fold knows of its round."""

    round: int
    weights: Weights
    """The global model the round's clients trained from."""
    fraction_fit: float
    """The fraction of clients the algorithm samples for training."""
    aggregator: Aggregator
    """The rule at the end of the chain."""


class TransformFold(Protocol):
    """One transform's aggregation in progress (a :class:`~fedhive.strategy.compose.Fold`)."""

    def add(self, reply: Any) -> None:
        """Take one reply, and push what it derives into its inner folds."""
        ...

    def close(self) -> Aggregate:
        """Close the inner folds and return the aggregate it hands outward."""
        ...


class UpdateTransform(Protocol):
    """A composable step between the clients' replies and the aggregator."""

    STATE: ClassVar[type[Any]]
    """The type of its :class:`~fedhive.strategy.state.ComponentState`."""
    fanout: ClassVar[int]
    """How many inner folds it opens per aggregation (each a release under DP)."""

    def init(self, weights: Weights) -> Any:
        """The state before round 1, for the initial global ``weights``."""
        ...

    def check(self, state: Any, weights: Weights) -> None:
        """Refuse a state made for another model (:class:`~fedhive.errors.StateError`)."""
        ...

    def instruct(self, state: Any, config: ClientConfig, *, quorum: int) -> ClientConfig:
        """A selected client's configuration with this transform's extension, if any
        (``quorum``: how many results close the round)."""
        ...

    def broadcast(self, state: Any, weights: Weights) -> Weights:
        """What fit tasks carry: ``weights`` plus any auxiliary tensors (``@`` names)."""
        ...

    def open(
        self, state: Any, context: RoundContext, layout: Layout, inner: Opener, index: int
    ) -> TransformFold:
        """A fold for replies in ``layout`` (the model's, plus what the transforms from
        this one on broadcast), in the round ``context`` describes; ``index`` counts the
        folds this transform opened before in the same aggregation (0 for the first)."""
        ...

    def settle(self, state: Any, folds: Sequence[Any]) -> Any:
        """The state after the round's ``folds`` (the ones :meth:`open` gave) closed."""
        ...


class Passthrough:
    """Defaults for a transform that changes only some steps: no extension, nothing
    broadcast, a state that the round does not change."""

    def instruct(self, state: Any, config: ClientConfig, *, quorum: int) -> ClientConfig:
        """``config`` unchanged."""
        return config

    def broadcast(self, state: Any, weights: Weights) -> Weights:
        """``weights`` unchanged."""
        return weights

    def settle(self, state: Any, folds: Sequence[Any]) -> Any:
        """``state`` unchanged."""
        return state
