"""FedBuff: buffered asynchronous aggregation (Nguyen et al., AISTATS 2022, Alg. 1).

An algorithm whose ``schedule`` is :class:`Buffered` runs asynchronously: the server
keeps ``concurrency`` clients training at once (Alg. 1 line 3: C), each on the model
current when it started. Finished updates go into a buffer with their staleness ``tau``
(versions committed since the client's model); once ``buffer_size`` (K) are buffered,
the server commits a new version (lines 9-12) from the staleness- and example-weighted
mean of the buffered updates::

    update = sum_i s(tau_i) n_i delta_i / sum_i s(tau_i) n_i,   s(tau) = (1 + tau)^-a

(``a = staleness_exponent``; Alg. 1 uses a = 1/2), applied by the algorithm's server
optimizer (server SGD with a learning rate, as in line 11, or FedAdam & co.), the same
component the synchronous rounds use, with the same typed state.

The mean is exact and order-independent: updates of one staleness are summed exactly
(:class:`~fedhive.strategy.aggregate.ExactWeightedSum`, integer example weights), then
the groups are combined in increasing staleness, in float64. A buffer whose updates all
have staleness 0 gives exactly FedAvg's weighted mean, so FedBuff with K = C = all
clients and equal device speeds is FedAvg bit for bit. Only the mean is supported, and
no update transforms: robust rules, SCAFFOLD and DP need a staleness-aware variant.

The version counter is the schedule's state (:class:`BufferState`), beside the server
optimizer's, so a checkpoint restores both. The asynchronous loop that drives these
steps is :class:`fedhive.server.asynchronous.AsyncLoop`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from fedhive.core.config import check_int, check_real
from fedhive.core.serde import RecordValue
from fedhive.core.weights import FloatVector
from fedhive.strategy.aggregate import ExactWeightedSum
from fedhive.strategy.state import ComponentState, Stateless, int_field


@dataclass(frozen=True)
class BufferState(ComponentState):
    """The number of versions a buffered run has committed."""

    KIND: ClassVar[str] = "buffer"

    version: int = 0

    def fields(self) -> dict[str, RecordValue]:
        """``version``."""
        return {"version": self.version}

    @classmethod
    def from_fields(cls, fields: Mapping[str, RecordValue]) -> BufferState:
        """``version``, an int >= 0."""
        return cls(int_field(fields, "version", cls.KIND))


@dataclass(frozen=True)
class Rounds:
    """Synchronous rounds: select a cohort, wait for its quorum, aggregate."""

    STATE: ClassVar[type[Stateless]] = Stateless

    def init(self) -> Stateless:
        """No state: the round loop numbers the rounds."""
        return Stateless()


@dataclass(frozen=True, kw_only=True)
class Buffered:
    """Asynchronous buffered aggregation: ``concurrency`` clients at once, a version
    per ``buffer_size`` updates (see the module docs)."""

    STATE: ClassVar[type[BufferState]] = BufferState

    buffer_size: int = 10
    """K: buffered updates per new version."""
    concurrency: int = 20
    """C: clients training at once (fewer when fewer clients exist)."""
    staleness_exponent: float = 0.5
    """a in s(tau) = (1 + tau)^-a; 0 weighs stale updates like fresh ones."""
    max_staleness: int = 0
    """0: no limit; else updates staler than this are discarded (counted as failures)."""

    def __post_init__(self) -> None:
        check_int("buffer_size", self.buffer_size, minimum=1)
        check_int("concurrency", self.concurrency, minimum=1)
        check_real("staleness_exponent", self.staleness_exponent, low=0)
        check_int("max_staleness", self.max_staleness, minimum=0)

    def init(self) -> BufferState:
        """Version 0."""
        return BufferState(0)

    def too_stale(self, staleness: int) -> bool:
        """Whether an update of this staleness is discarded (``max_staleness``)."""
        return 0 < self.max_staleness < staleness

    def staleness_weight(self, staleness: int) -> float:
        """s(tau) = (1 + tau)^-a: 1 for a fresh update."""
        return float((1 + staleness) ** -self.staleness_exponent)

    def combine(self, groups: dict[int, ExactWeightedSum]) -> FloatVector | None:
        """sum_tau s(tau) S_tau / sum_tau s(tau) W_tau, in increasing tau (deterministic).

        A single group at tau = 0 gives ``S_0 / W_0`` exactly (s(0) = 1.0), as FedAvg.
        """
        numerator: FloatVector | None = None
        denominator = 0.0
        for staleness in sorted(groups):
            group = groups[staleness]
            if group.total_weight == 0:
                continue
            weight = self.staleness_weight(staleness)
            term = weight * group.total()
            numerator = term if numerator is None else numerator + term
            denominator += weight * group.total_weight
        if numerator is None or denominator == 0:
            return None
        return numerator / denominator


Schedule = Rounds | Buffered
"""How an algorithm's rounds run: synchronously, or buffered and asynchronous."""
