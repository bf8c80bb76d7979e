"""Client sampling: how many clients a fraction means, and which ones."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

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

    Raises:
        NotEnoughClientsError: fewer than ``min_available`` (or ``min_clients``) clients.
    """
    available = sorted(clients)
    needed = max(min_available, min_clients)
    if len(available) < needed:
        raise NotEnoughClientsError(
            f"{len(available)} clients available, the strategy needs at least {needed}"
        )
    # round first: 0.07 * 100 is 7.000000000000001 in floating point, and means 7.
    wanted = math.ceil(round(fraction * len(available), 9))
    count = min(len(available), max(min_clients, wanted))
    if count == len(available):
        return available
    chosen = rng.choice(len(available), size=count, replace=False)
    return [available[i] for i in sorted(chosen.tolist())]
