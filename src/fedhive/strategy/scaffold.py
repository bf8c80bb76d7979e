"""SCAFFOLD: stochastic controlled averaging (Karimireddy et al., ICML 2020, Alg. 1).

Client drift on non-IID data is corrected with control variates: the server's ``c``
travels with the model (auxiliary tensors ``@scaffold/<parameter>``), each client keeps
its own ``c_i`` (see :mod:`fedhive.client.scaffold`) and returns ``dc_i`` with its
update. The server steps the model with its base strategy (any aggregator and server
optimizer: Alg. 1 line 16 is FedAvg with a server learning rate) and the variate with
``c <- c + (|S|/N) * mean_{i in S} dc_i`` (line 17), where ``|S|/N`` is the sampled
fraction ``fraction_fit`` (exact under full participation). ``c`` is a float64 vector in
the strategy state (``scaffold.c``), so crash-resume restores it.

Control variates cover the model's floating-point tensors. ``dc_i`` goes through the
base aggregator's norm bound and rule like the model update, each client weighing 1 (the
mean of line 17): a coordinate median of the ``dc_i`` under ``aggregator = "median"``,
and so on. Under the mean (with or without ``max_update_norm``) the ``dc_i`` are summed
as they arrive (O(model) memory); a robust rule holds them all, as it holds the updates.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from fedhive.core.messages import FitReply
from fedhive.core.weights import SCAFFOLD_PREFIX, FloatVector, Layout, Weights
from fedhive.errors import ConfigError
from fedhive.strategy.aggregate import ExactWeightedSum
from fedhive.strategy.base import StrategyState
from fedhive.strategy.compose import Aggregator, WeightedMean
from fedhive.strategy.robust import NormBound
from fedhive.strategy.robust.norm_bound import clip_update
from fedhive.strategy.wrapper import AroundFedAvg

STATE_KEY = "scaffold.c"


@dataclass(frozen=True, kw_only=True)
class Scaffold(AroundFedAvg):
    """SCAFFOLD around a base FedAvg (its sampling, aggregator and server optimizer)."""

    def initial_state(self, weights: Weights) -> StrategyState:
        """The base strategy's state and a zero server control variate."""
        state = dict(self.base.initial_state(weights))
        state[STATE_KEY] = np.zeros(_controlled(weights).total_size, dtype=np.float64)
        return state

    def broadcast(self, state: StrategyState, weights: Weights) -> Weights:
        """The model followed by ``c`` (in each parameter's dtype), ``@scaffold/<name>``."""
        layout = _controlled(weights)
        control = layout.unflatten(_control(state, layout))
        return weights.join({SCAFFOLD_PREFIX + name: value for name, value in control.items()})

    def aggregate_fit(
        self,
        state: StrategyState,
        round: int,
        weights: Weights,
        replies: Iterable[FitReply],
    ) -> tuple[StrategyState, Weights, dict[str, float]]:
        """Step the model with the base strategy and ``c`` with the mean ``dc_i``."""
        layout = _controlled(weights)
        changes = _Changes(self.base.aggregator, layout)
        model_replies = _split_replies(replies, layout, changes)
        new_state, new_weights, metrics = self.base.aggregate_fit(
            state, round, weights, model_replies
        )
        for _ in model_replies:  # the base may stop early: count every dc_i
            pass
        control = _control(state, layout)
        step = changes.aggregate()
        if step is not None:
            control = control + self.base.fraction_fit * step
        return {**new_state, STATE_KEY: control}, new_weights, metrics


class _Changes:
    """The clients' ``dc_i``, each weighing 1, through the base aggregator's norm bounds
    and rule: summed on arrival under the mean, held for a robust rule."""

    def __init__(self, aggregator: Aggregator, layout: Layout) -> None:
        self.aggregator, self.layout = aggregator, layout
        self.bounds = _streaming_bounds(aggregator)
        self.sum = ExactWeightedSum(layout.total_size)
        self.held: list[FitReply] = []

    def add(self, reply: FitReply) -> None:
        """Take one client's ``dc_i`` (``reply.update`` in the controlled layout)."""
        if self.bounds is None:
            self.held.append(reply)
            return
        dc = reply.update
        for max_norm in self.bounds:
            clipped = clip_update(self.layout, dc, max_norm)
            dc = dc if clipped is None else clipped
        self.sum.add(self.layout.flatten(dc), 1)

    def aggregate(self) -> FloatVector | None:
        """The aggregated ``dc`` (None: no client sent one)."""
        if self.bounds is not None:
            return self.sum.total() / self.sum.count if self.sum.count else None
        return self.aggregator(self.layout, self.held).update


def _streaming_bounds(aggregator: Aggregator) -> Sequence[float] | None:
    """The norm bounds, outermost first, around a mean; None for a rule that holds all."""
    if isinstance(aggregator, WeightedMean):
        return ()
    if isinstance(aggregator, NormBound):
        inner = _streaming_bounds(aggregator.inner)
        return None if inner is None else (aggregator.max_norm, *inner)
    return None


def _controlled(weights: Weights) -> Layout:
    """The layout of the tensors that get control variates: the floating-point ones."""
    return Weights({k: v for k, v in weights.items() if v.dtype.kind == "f"}).layout()


def _control(state: StrategyState, layout: Layout) -> FloatVector:
    """The server variate ``c`` from ``state``.

    Raises:
        ConfigError: the state holds no variate of the model's size (e.g. a resumed run
            whose model changed): never silently restarted from zero.
    """
    value = state.get(STATE_KEY)
    if not isinstance(value, np.ndarray) or value.shape != (layout.total_size,):
        shape = value.shape if isinstance(value, np.ndarray) else type(value).__name__
        raise ConfigError(
            f"strategy state: {STATE_KEY} must be a vector of {layout.total_size} values "
            f"(the model's floating-point parameters), got {shape}"
        )
    return value.astype(np.float64, copy=False)


def _split_replies(
    replies: Iterable[FitReply], layout: Layout, changes: _Changes
) -> Iterator[FitReply]:
    """Each reply with its model update only; its ``dc_i`` goes into ``changes``."""
    for reply in replies:
        model, aux = reply.update.split_aux()
        dc = Weights({name: aux[SCAFFOLD_PREFIX + name] for name in layout.names})
        changes.add(
            FitReply(
                client_id=reply.client_id,
                round=reply.round,
                version=reply.version,
                update=dc,
                num_examples=1,
            )
        )
        yield FitReply(
            client_id=reply.client_id,
            round=reply.round,
            version=reply.version,
            update=model,
            num_examples=reply.num_examples,
            metrics=reply.metrics,
        )
