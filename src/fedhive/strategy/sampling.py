"""Client sampling: how many clients a fraction means, and which ones."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fedhive.core.ids import sorted_ids
from fedhive.errors import NotEnoughClientsError


def sample_clients(
    clients: Sequence[str],
    *,
    fraction: float,
    min_clients: int,
    min_available: int,
    rng: np.random.Generator,
) -> list[str]:
    """Sample ``max(min_clients, ceil(fraction * n))`` distinct clients, sorted by id.

    O(selected) for a lazy :class:`~fedhive.core.ids.SortedIds` (not sorted, not
    copied; numpy's choice without replacement is Floyd's algorithm for small
    fractions), O(n log n) for a plain sequence.

    Raises:
        NotEnoughClientsError: fewer than ``min_available`` (or ``min_clients``) clients.
    """
    available = sorted_ids(clients)
    needed = max(min_available, min_clients)
    if len(available) < needed:
        raise NotEnoughClientsError(
            f"{len(available)} clients available, the strategy needs at least {needed}"
        )
    # round first: 0.07 * 100 is 7.000000000000001 in floating point, and means 7.
    wanted = math.ceil(round(fraction * len(available), 9))
    count = min(len(available), max(min_clients, wanted))
    if count == len(available):
        return list(available)
    chosen = rng.choice(len(available), size=count, replace=False)
    return [available[i] for i in sorted(chosen.tolist())]


class ClientSampler(Protocol):
    """Which clients a round selects, once the algorithm decided how many: the sampling
    part of an :class:`~fedhive.strategy.algorithm.Algorithm` (training and federated
    evaluation alike)."""

    def sample(
        self,
        clients: Sequence[str],
        *,
        fraction: float,
        min_clients: int,
        min_available: int,
        rng: np.random.Generator,
    ) -> list[str]:
        """``max(min_clients, ceil(fraction * n))`` distinct clients of ``clients``.

        Raises:
            NotEnoughClientsError: fewer than ``min_available`` (or ``min_clients``).
        """
        ...


@dataclass(frozen=True)
class UniformSampler:
    """Uniformly without replacement, sorted by id (:func:`sample_clients`): every
    available client equally likely, the rate the DP accountant assumes."""

    def sample(
        self,
        clients: Sequence[str],
        *,
        fraction: float,
        min_clients: int,
        min_available: int,
        rng: np.random.Generator,
    ) -> list[str]:
        """:func:`sample_clients` of ``clients``."""
        return sample_clients(
            clients,
            fraction=fraction,
            min_clients=min_clients,
            min_available=min_available,
            rng=rng,
        )
