"""Coordinate-wise median (Yin et al., "Byzantine-Robust Distributed Learning: Towards
Optimal Statistical Rates", ICML 2018, Definition 1 / Algorithm 1 with option I).

Each coordinate of the aggregate is the median of that coordinate over the n updates
(for even n, the mean of the two middle values). The median stays within the honest
updates' range in every coordinate as long as fewer than half the clients are malicious.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from fedhive.core.messages import FitReply
from fedhive.core.weights import Layout
from fedhive.strategy.compose import Aggregate
from fedhive.strategy.robust.stack import stack


@dataclass(frozen=True)
class CoordinateMedian:
    """The unweighted coordinate-wise median of the updates.

    Not streaming: it holds every update, O(n·d) float64 memory for n replies of d
    parameters. ``num_examples`` is not used as a weight (a client could lie about it);
    it is summed into ``total_weight`` and weights the metrics only.
    """

    def __call__(self, layout: Layout, replies: Iterable[FitReply]) -> Aggregate:
        """The median of each coordinate over all replies."""
        stacked = stack(layout, replies)
        if stacked.count == 0:
            return stacked.result(None)
        return stacked.result(np.median(stacked.matrix, axis=0))
