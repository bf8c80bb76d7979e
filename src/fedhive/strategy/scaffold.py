"""SCAFFOLD: stochastic controlled averaging (Karimireddy et al., ICML 2020, Alg. 1).

Client drift on non-IID data is corrected with control variates: the server's ``c``
travels with the model (auxiliary tensors ``@scaffold/<parameter>``), each client keeps
its own ``c_i`` (see :mod:`fedhive.client.scaffold`) and returns ``dc_i`` with its
update. :class:`ControlVariates` is an update transform: it splits each reply into the
model update, which goes on down the chain (any aggregator and server optimizer: Alg. 1
line 16 is FedAvg with a server learning rate), and ``dc_i``, which goes into a second
fold of the same chain, each client weighing 1; then ``c <- c + (|S|/N) * mean dc_i``
(line 17), where ``|S|/N`` is the sampled fraction ``fraction_fit`` (exact under full
participation). ``c`` is its typed state (:class:`Control`, a float64 vector), so
crash-resume restores it, and a ``c`` of another model's size is refused.

Control variates cover the model's floating-point tensors. ``dc_i`` goes through what
follows in the chain like the model update: the norm bound and the rule (a coordinate
median of the ``dc_i`` under ``aggregator = "median"``), and a later DP transform, which
clips and noises the ``dc_i`` sum as a second release of the round. Under the mean (with
or without ``max_update_norm``) the ``dc_i`` are summed as they arrive (O(model)
memory); a robust rule holds them all, as it holds the updates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from fedhive.core.messages import FitReply
from fedhive.core.serde import RecordValue
from fedhive.core.weights import SCAFFOLD_PREFIX, FloatVector, Layout, Weights
from fedhive.strategy.compose import Aggregate, Fold
from fedhive.strategy.state import ComponentState, check_size, vector_field
from fedhive.strategy.transform import Opener, Passthrough, RoundContext


@dataclass(frozen=True)
class Control(ComponentState):
    """SCAFFOLD's server control variate ``c`` over the model's float parameters."""

    KIND: ClassVar[str] = "control_variate"

    c: FloatVector

    def fields(self) -> dict[str, RecordValue]:
        """``c``."""
        return {"c": self.c}

    @classmethod
    def from_fields(cls, fields: Mapping[str, RecordValue]) -> Control:
        """``c``, a float vector."""
        return cls(vector_field(fields, "c", cls.KIND))


@dataclass(frozen=True)
class ControlVariates(Passthrough):
    """SCAFFOLD's control variates, as an update transform (see the module docs)."""

    STATE: ClassVar[type[Control]] = Control
    fanout: ClassVar[int] = 2

    def init(self, weights: Weights) -> Control:
        """A zero server control variate."""
        return Control(np.zeros(controlled(weights).total_size, dtype=np.float64))

    def check(self, state: Control, weights: Weights) -> None:
        """Refuse a ``c`` of another model's size.

        Raises:
            StateError: ``c`` does not hold one value per floating-point parameter.
        """
        check_size(state.c, controlled(weights).total_size, "SCAFFOLD's control variate c")

    def broadcast(self, state: Control, weights: Weights) -> Weights:
        """The model followed by ``c`` (in each parameter's dtype), ``@scaffold/<name>``."""
        self.check(state, weights)
        control = controlled(weights).unflatten(state.c)
        return weights.join({SCAFFOLD_PREFIX + name: value for name, value in control.items()})

    def open(
        self, state: Control, context: RoundContext, layout: Layout, inner: Opener, index: int
    ) -> _ControlFold:
        """Split each reply: the model update into one inner fold, ``dc_i`` another."""
        self.check(state, context.weights)
        return _ControlFold(state, context, inner)

    def settle(self, state: Control, folds: Sequence[_ControlFold]) -> Control:
        """``c`` moved by the round's mean ``dc`` (unchanged when no client sent one)."""
        for fold in folds:
            state = fold.moved(state)
        return state


class _ControlFold:
    def __init__(self, state: Control, context: RoundContext, inner: Opener) -> None:
        self.layout = controlled(context.weights)
        self.fraction = context.fraction_fit
        self.model: Fold = inner(context.weights.layout())
        self.changes: Fold = inner(self.layout)
        self.step: FloatVector | None = None

    def add(self, reply: FitReply) -> None:
        model, aux = reply.update.split_aux()
        dc = Weights({name: aux[SCAFFOLD_PREFIX + name] for name in self.layout.names})
        self.changes.add(
            FitReply(
                client_id=reply.client_id,
                round=reply.round,
                version=reply.version,
                update=dc,
                num_examples=1,
            )
        )
        self.model.add(replace(reply, update=model))

    def close(self) -> Aggregate:
        result = self.model.close()
        self.step = self.changes.close().update
        return result

    def moved(self, state: Control) -> Control:
        if self.step is None:
            return state
        return Control(state.c + self.fraction * self.step)


def controlled(weights: Weights) -> Layout:
    """The layout of the tensors that get control variates: the floating-point ones."""
    return Weights({k: v for k, v in weights.items() if v.dtype.kind == "f"}).layout()
