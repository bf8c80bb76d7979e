"""SCAFFOLD: stochastic controlled averaging (Karimireddy et al., ICML 2020, Alg. 1).

Client drift on non-IID data is corrected with control variates: the server's ``c``
travels with the model (auxiliary tensors ``@scaffold/<parameter>``), each client keeps
its own ``c_i`` (see :mod:`fedhive.client.scaffold`) and returns ``dc_i`` with its
update. The server steps the model with its base strategy (any aggregator and server
optimizer: Alg. 1 line 16 is FedAvg with a server learning rate) and the variate with
``c <- c + (|S|/N) * mean_{i in S} dc_i`` (line 17), where ``|S|/N`` is the sampled
fraction ``fraction_fit`` (exact under full participation). ``c`` is a float64 vector in
the strategy state (``scaffold.c``), so crash-resume restores it.

Control variates cover the model's floating-point tensors. Robust aggregators and norm
bounds apply to the model update only; ``dc_i`` is averaged as sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from fedhive.core.messages import FitReply
from fedhive.core.weights import Layout, Weights
from fedhive.strategy.aggregate import ExactWeightedSum
from fedhive.strategy.base import StrategyState
from fedhive.strategy.compose import FloatVector
from fedhive.strategy.wrapper import AroundFedAvg

CONTROL_PREFIX = "@scaffold/"
"""Auxiliary tensor names of the server control variate (the client side reads them)."""
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
        return weights.join({CONTROL_PREFIX + name: value for name, value in control.items()})

    def aggregate_fit(
        self,
        state: StrategyState,
        round: int,
        weights: Weights,
        replies: Iterable[FitReply],
    ) -> tuple[StrategyState, Weights, dict[str, float]]:
        """Step the model with the base strategy and ``c`` with the mean ``dc_i``."""
        layout = _controlled(weights)
        changes = ExactWeightedSum(layout.total_size)
        model_replies = _split_replies(replies, layout, changes)
        new_state, new_weights, metrics = self.base.aggregate_fit(
            state, round, weights, model_replies
        )
        for _ in model_replies:  # the base may stop early: count every dc_i
            pass
        control = _control(state, layout)
        if changes.count:
            control = control + self.base.fraction_fit * changes.total() / changes.count
        return {**new_state, STATE_KEY: control}, new_weights, metrics


def _controlled(weights: Weights) -> Layout:
    """The layout of the tensors that get control variates: the floating-point ones."""
    return Weights({k: v for k, v in weights.items() if v.dtype.kind == "f"}).layout()


def _control(state: StrategyState, layout: Layout) -> FloatVector:
    value = state.get(STATE_KEY)
    if not isinstance(value, np.ndarray) or value.shape != (layout.total_size,):
        return np.zeros(layout.total_size, dtype=np.float64)
    return value.astype(np.float64, copy=False)


def _split_replies(
    replies: Iterable[FitReply], layout: Layout, changes: ExactWeightedSum
) -> Iterator[FitReply]:
    """Each reply with its model update only; its ``dc_i`` goes into ``changes``."""
    for reply in replies:
        model, aux = reply.update.split_aux()
        dc = Weights({name: aux[CONTROL_PREFIX + name] for name in layout.names})
        changes.add(layout.flatten(dc), 1)
        yield FitReply(
            client_id=reply.client_id,
            round=reply.round,
            version=reply.version,
            update=model,
            num_examples=reply.num_examples,
            metrics=reply.metrics,
        )
