"""Bulyan (El Mhamdi, Guerraoui and Rouault, "The Hidden Vulnerability of Distributed
Learning in Byzantium", ICML 2018, Section 4).

With n updates of which at most f are malicious (n >= 4f + 3):
1. select θ = n - 2f updates by iterated Krum: pick the Krum choice among the remaining
   updates, remove it, repeat;
2. for each coordinate, average the β = θ - 2f selected values closest to their median.
Step 2 keeps a value an attacker could only have moved by a bounded amount: an attacker
far from the honest updates is never among the β closest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from fedhive.core.config import check_int
from fedhive.core.messages import FitReply
from fedhive.core.weights import Layout
from fedhive.errors import AggregationError
from fedhive.strategy.compose import Aggregate
from fedhive.strategy.robust.krum import krum_scores, squared_distances
from fedhive.strategy.robust.stack import FloatArray, stack


def iterated_krum(distances: FloatArray, byzantine: int, count: int) -> list[int]:
    """The rows that ``count`` rounds of Krum pick, removing each pick (step 1).

    Each round scores the r remaining rows over their r - f - 2 nearest others; the last
    rounds, where r - f - 2 < 1, use the single nearest one (as the remaining set shrinks
    below Krum's n > 2f + 2). Ties go to the smaller row (client id) index.
    """
    remaining = list(range(distances.shape[0]))
    chosen: list[int] = []
    while len(chosen) < count:
        r = len(remaining)
        neighbours = min(max(1, r - byzantine - 2), r - 1)
        scores = krum_scores(distances[np.ix_(remaining, remaining)], neighbours)
        chosen.append(remaining.pop(int(np.argmin(scores))))
    return sorted(chosen)


@dataclass(frozen=True)
class Bulyan:
    """Bulyan over iterated Krum, tolerating ``byzantine`` = f malicious clients.

    A round needs n >= 4f + 3 replies. Not streaming: it holds every update, O(n·d)
    float64 memory for n replies of d parameters (a few copies of it while sorting) plus
    the O(n²) distance matrix. ``num_examples`` is not used as a weight (a client could
    lie about it); it is summed into ``total_weight`` and weights the metrics only.
    """

    byzantine: int = 0

    def __post_init__(self) -> None:
        check_int("byzantine", self.byzantine, minimum=0)

    def __call__(self, layout: Layout, replies: Iterable[FitReply]) -> Aggregate:
        """Select by iterated Krum, then average the values closest to the median.

        Raises:
            AggregationError: fewer than 4f + 3 replies.
        """
        stacked = stack(layout, replies)
        n, f = stacked.count, self.byzantine
        if n == 0:
            return stacked.result(None)
        if n < 4 * f + 3:
            raise AggregationError(
                f"Bulyan with byzantine={f} needs at least 4f + 3 = {4 * f + 3} replies, got {n}"
            )
        theta = n - 2 * f
        selected = stacked.matrix[iterated_krum(squared_distances(stacked.matrix), f, theta)]
        # Sorting each column first makes ties in distance go to the smaller value.
        column = np.sort(selected, axis=0)
        gap = np.abs(column - np.median(column, axis=0))
        closest = np.argsort(gap, axis=0, kind="stable")[: theta - 2 * f]
        return stacked.result(np.take_along_axis(column, closest, axis=0).mean(axis=0))
