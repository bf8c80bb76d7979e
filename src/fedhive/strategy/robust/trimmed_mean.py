"""Coordinate-wise trimmed mean (Yin et al., "Byzantine-Robust Distributed Learning:
Towards Optimal Statistical Rates", ICML 2018, Definition 2 / Algorithm 1 with option II).

For each coordinate, drop the ⌊β·n⌋ largest and the ⌊β·n⌋ smallest of the n values and
average the rest. With at most ⌊β·n⌋ malicious clients, each coordinate of the result
lies within the honest updates' range.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from fedhive.core.config import check_real
from fedhive.core.messages import FitReply
from fedhive.core.weights import Layout
from fedhive.strategy.compose import Aggregate
from fedhive.strategy.robust.stack import stack


@dataclass(frozen=True)
class TrimmedMean:
    """The unweighted coordinate-wise β-trimmed mean, β = ``trim_fraction`` in [0, 0.5).

    Not streaming: it holds every update, O(n·d) float64 memory for n replies of d
    parameters (and sorts a copy). ``num_examples`` is not used as a weight (a client
    could lie about it); it is summed into ``total_weight`` and weights the metrics only.
    """

    trim_fraction: float = 0.1

    def __post_init__(self) -> None:
        check_real("trim_fraction", self.trim_fraction, low=0, high=0.5, high_open=True)

    def trimmed(self, count: int) -> int:
        """⌊β·count⌋: how many values are dropped at each end (β read as written, so
        0.29 of 100 is 29, not the 28 its binary value would give)."""
        return math.floor(Fraction(repr(float(self.trim_fraction))) * count)

    def __call__(self, layout: Layout, replies: Iterable[FitReply]) -> Aggregate:
        """Per coordinate, the mean of the values left after trimming both ends."""
        stacked = stack(layout, replies)
        if stacked.count == 0:
            return stacked.result(None)
        k = self.trimmed(stacked.count)  # β < 0.5 leaves at least one value
        kept = np.sort(stacked.matrix, axis=0)[k : stacked.count - k]
        return stacked.result(kept.mean(axis=0))
