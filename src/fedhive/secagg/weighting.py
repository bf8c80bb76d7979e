"""How each client weighs its update inside the masked sum.

The server chooses per run and tells every client in its fit task's config
(``ClientConfig.extra[WEIGHTING_KEY]``), so devices and server agree on what the unmasked
sum means: FedAvg weighs by example count, DP-FedAvg weighs every client 1 (one client,
one unit of sensitivity).
"""

from __future__ import annotations

from fedhive.core._compat import StrEnum

WEIGHTING_KEY = "secagg.weighting"


class Weighting(StrEnum):
    """How each client's update is weighted inside the masked sum."""

    EXAMPLES = "examples"  # by its example count (FedAvg)
    UNIFORM = "uniform"  # equally (DP-FedAvg)


def client_weight(weighting: str, num_examples: int, max_weight: int) -> int:
    """The integer weight a client masks its update with (example counts are capped at
    ``max_weight``, the largest the ring was sized for)."""
    if weighting == Weighting.UNIFORM:
        return 1
    return max(1, min(num_examples, max_weight))
