"""FedBuff: buffered asynchronous aggregation (Nguyen et al., AISTATS 2022, Alg. 1).

The server keeps ``concurrency`` clients training at once (Alg. 1 line 3: C), each on
the model current when it started. Finished updates go into a buffer with their
staleness ``tau`` (versions committed since the client's model); once ``buffer_size``
(K) are buffered, the server commits a new version (lines 9-12) from the staleness-
and example-weighted mean of the buffered updates::

    update = sum_i s(tau_i) n_i delta_i / sum_i s(tau_i) n_i,   s(tau) = (1 + tau)^-a

(``a = staleness_exponent``; Alg. 1 uses a = 1/2), applied by the base strategy's
server optimizer (server SGD with a learning rate, as in line 11, or FedAdam & co.).

The mean is exact and order-independent: updates of one staleness are summed exactly
(:class:`~fedhive.strategy.aggregate.ExactWeightedSum`, integer example weights), then
the groups are combined in increasing staleness, in float64. A buffer whose updates all
have staleness 0 gives exactly FedAvg's weighted mean, so FedBuff with K = C = all
clients and equal device speeds is FedAvg bit for bit. Only the mean is supported:
robust rules need the whole buffer and a staleness-aware variant of their own.

The version counter (``fedbuff.version``) lives in the strategy state, with the server
optimizer's, so a checkpoint restores both. The asynchronous loop that drives these
methods is :class:`fedhive.server.asynchronous.AsyncLoop`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

from fedhive.core.config import check_int, check_real
from fedhive.core.messages import FitReply
from fedhive.core.weights import FloatVector, Weights
from fedhive.errors import ConfigError, NotEnoughClientsError, ValidationError
from fedhive.strategy.aggregate import ExactWeightedSum, WeightedMetrics
from fedhive.strategy.base import Instruction, StrategyState
from fedhive.strategy.compose import WeightedMean
from fedhive.strategy.fedavg import FedAvg

VERSION_KEY = "fedbuff.version"
"""Strategy-state key of the number of versions committed so far."""


@dataclass(frozen=True, kw_only=True)
class FedBuff:
    """Asynchronous buffered aggregation around a base FedAvg.

    The base gives the clients' configuration (``client_config``, ``per_client``),
    ``min_available_clients`` and the server optimizer; its sampling fraction and
    ``min_fit_clients`` are not used (the buffer size decides when to commit), nor is
    federated evaluation yet (central evaluation runs after every version).
    """

    base: FedAvg = field(default_factory=FedAvg)
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
        if not isinstance(self.base.aggregator, WeightedMean):
            raise ConfigError(
                "aggregator: robust rules (and max_update_norm) are not supported with "
                'FedBuff\'s buffer yet; use aggregator = "mean"'
            )

    def initial_state(self, weights: Weights) -> StrategyState:
        """The server optimizer's initial state and version 0."""
        return {**self.base.initial_state(weights), VERSION_KEY: 0}

    def broadcast(self, state: StrategyState, weights: Weights) -> Weights:
        """The model alone."""
        return weights

    def configure_refill(
        self,
        state: StrategyState,
        clients: Sequence[str],
        busy: Collection[str],
        rng: np.random.Generator,
    ) -> list[Instruction]:
        """Clients for the free slots: up to ``concurrency - len(busy)`` idle clients,
        drawn uniformly without replacement (Alg. 1 line 4), sorted by id.

        Raises:
            NotEnoughClientsError: fewer clients exist than ``min_available_clients``.
        """
        if len(clients) < self.base.min_available_clients:
            raise NotEnoughClientsError(
                f"{len(clients)} clients available, the strategy needs at least "
                f"{self.base.min_available_clients}"
            )
        idle = sorted(set(clients) - set(busy))
        count = min(self.concurrency - len(busy), len(idle))
        if count <= 0:
            return []
        chosen = sorted(idle[i] for i in rng.choice(len(idle), size=count, replace=False))
        base = self.base
        return [Instruction(cid, base.per_client.get(cid, base.client_config)) for cid in chosen]

    def too_stale(self, staleness: int) -> bool:
        """Whether an update of this staleness is discarded (``max_staleness``)."""
        return 0 < self.max_staleness < staleness

    def staleness_weight(self, staleness: int) -> float:
        """s(tau) = (1 + tau)^-a: 1 for a fresh update."""
        return float((1 + staleness) ** -self.staleness_exponent)

    def aggregate_buffer(
        self,
        state: StrategyState,
        weights: Weights,
        buffered: Sequence[tuple[FitReply, int]],
    ) -> tuple[StrategyState, Weights, dict[str, float]]:
        """Commit a new version from verified ``(reply, staleness)`` pairs (any order).

        Updates that are too stale are skipped. With no usable weight (no updates, or 0
        examples) the model is unchanged, but the version still counts.

        Raises:
            AggregationError: an update is outside the exact summation's range (the
                asynchronous loop's verification refuses such an update first, as its
                client's failure, so an honest buffer is never lost to it).
        """
        layout = weights.layout()
        groups: dict[int, ExactWeightedSum] = {}
        metrics = WeightedMetrics()
        used: list[int] = []
        for reply, staleness in buffered:
            if staleness < 0:
                raise ValidationError(f"staleness must be >= 0, got {staleness}")
            if self.too_stale(staleness):
                continue
            group = groups.setdefault(staleness, ExactWeightedSum(layout.total_size))
            group.add(layout.flatten(reply.update), reply.num_examples)
            metrics.add(reply.metrics, reply.num_examples)
            used.append(staleness)
        version = version_of(state) + 1
        out = {**metrics.means()}
        if used:
            out["staleness_mean"] = sum(used) / len(used)
            out["staleness_max"] = float(max(used))
        update = self._combine(groups)
        if update is None:
            return {**state, VERSION_KEY: version}, weights, out
        new_state, new = self.base.optimizer.step(state, layout.flatten(weights), update)
        return {**state, **new_state, VERSION_KEY: version}, layout.unflatten(new), out

    def _combine(self, groups: dict[int, ExactWeightedSum]) -> FloatVector | None:
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


def version_of(state: StrategyState) -> int:
    """The number of versions committed, as recorded in a FedBuff state.

    Raises:
        ValidationError: the recorded value is not an int >= 0.
    """
    value = state.get(VERSION_KEY, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(f"strategy state {VERSION_KEY!r} must be an int >= 0, got {value!r}")
    return value
