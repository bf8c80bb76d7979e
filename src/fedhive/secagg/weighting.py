"""How each client weighs its update inside the masked sum.

The server chooses per run and tells every client in its fit task's config (a
:class:`~fedhive.core.extensions.SecAggWeighting`), so devices and server agree on what the unmasked
sum means: FedAvg weighs by example count, DP-FedAvg weighs every client 1 (one client,
one unit of sensitivity).
"""

from __future__ import annotations

from fedhive.core.extensions import Weighting

__all__ = ["client_weight"]


def client_weight(weighting: Weighting, num_examples: int, max_weight: int) -> int:
    """The integer weight a client masks its update with (example counts are capped at
    ``max_weight``, the largest the ring was sized for)."""
    if weighting == Weighting.UNIFORM:
        return 1
    return max(1, min(num_examples, max_weight))
