"""Krum and Multi-Krum (Blanchard et al., "Machine Learning with Adversaries: Byzantine
Tolerant Gradient Descent", NeurIPS 2017, Section 4).

With n updates of which at most f are malicious (n > 2f + 2), each update V_i gets the
score s(i) = sum of ||V_i - V_j||² over its n - f - 2 nearest other updates (i → j);
Krum returns the update with the smallest score, Multi-Krum the mean of the m updates
with the smallest scores (m = 1 is Krum).
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
from fedhive.strategy.robust.stack import FloatArray, stack


def squared_distances(matrix: FloatArray) -> FloatArray:
    """The symmetric (n, n) matrix of squared L2 distances between the rows.

    One row at a time, so the extra memory is O(n·d + n²), never O(n²·d).
    """
    n = matrix.shape[0]
    out = np.zeros((n, n))
    for i in range(n - 1):
        diff = matrix[i + 1 :] - matrix[i]
        out[i, i + 1 :] = np.einsum("ij,ij->i", diff, diff)
        out[i + 1 :, i] = out[i, i + 1 :]  # same bits both ways: symmetric by construction
    return out


def krum_scores(distances: FloatArray, neighbours: int) -> FloatArray:
    """Each row's sum of squared distances to its ``neighbours`` nearest other rows.

    The distances are summed in increasing order, so a score does not depend on the
    order of the rows.
    """
    others = distances + np.diag(np.full(distances.shape[0], np.inf))
    nearest = np.sort(others, axis=1)[:, :neighbours]
    scores: FloatArray = nearest.sum(axis=1)
    return scores


@dataclass(frozen=True, kw_only=True)
class Krum:
    """Multi-Krum: the unweighted mean of the ``multi`` updates with the best Krum scores.

    ``byzantine`` is f, the number of malicious clients tolerated: a round needs
    n > 2f + 2 replies, and ``multi`` at most n - f (more would have to include an
    attacker). Ties in score go to the smaller client id.

    Not streaming: it holds every update, O(n·d) float64 memory for n replies of d
    parameters, plus the O(n²) distance matrix. ``num_examples`` is not used as a weight
    (a client could lie about it); it is summed into ``total_weight`` and weights the
    metrics only.
    """

    byzantine: int = 0
    multi: int = 1

    def __post_init__(self) -> None:
        check_int("byzantine", self.byzantine, minimum=0)
        check_int("multi", self.multi, minimum=1)

    def __call__(self, layout: Layout, replies: Iterable[FitReply]) -> Aggregate:
        """Score every update and average the ``multi`` best.

        Raises:
            AggregationError: n <= 2f + 2, or ``multi`` > n - f.
        """
        stacked = stack(layout, replies)
        n, f = stacked.count, self.byzantine
        if n == 0:
            return stacked.result(None)
        if n <= 2 * f + 2:
            raise AggregationError(
                f"Krum with byzantine={f} needs more than 2f + 2 = {2 * f + 2} replies, got {n}"
            )
        if self.multi > n - f:
            raise AggregationError(
                f"Multi-Krum with multi={self.multi} averages more than n - byzantine = "
                f"{n - f} of {n} replies, so it could include an attacker"
            )
        scores = krum_scores(squared_distances(stacked.matrix), n - f - 2)
        best = np.sort(np.argsort(scores, kind="stable")[: self.multi])
        return stacked.result(stacked.matrix[best].mean(axis=0))
