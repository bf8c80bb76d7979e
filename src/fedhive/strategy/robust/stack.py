"""Collecting every reply's update into one matrix, in an order that does not depend on
arrival: what the robust rules (which need all updates at once) start from."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fedhive.core.messages import FitReply
from fedhive.core.weights import Layout
from fedhive.errors import AggregationError
from fedhive.strategy.aggregate import WeightedMetrics
from fedhive.strategy.compose import Aggregate

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Stacked:
    """One round's updates as rows of a matrix (ordered by client id) and their totals."""

    matrix: FloatArray  # shape (count, layout.total_size)
    total_weight: int
    metrics: dict[str, float]

    @property
    def count(self) -> int:
        """How many replies were received."""
        return int(self.matrix.shape[0])

    def result(self, update: FloatArray | None) -> Aggregate:
        """The aggregate carrying ``update`` and this round's totals."""
        return Aggregate(update, self.count, self.total_weight, self.metrics)


def stack(layout: Layout, replies: Iterable[FitReply]) -> Stacked:
    """Flatten and hold every update: O(n·d) float64 memory (twice that while stacking).

    Rows are sorted by client id; replies sharing an id (which a server should not
    accept) are ordered by a hash of their values, so equal keys mean equal rows.

    Raises:
        AggregationError: an update does not match ``layout`` or is not finite.
    """
    ids: list[str] = []
    vectors: list[FloatArray] = []
    metrics = WeightedMetrics()
    total_weight = 0
    for reply in replies:
        vector = layout.flatten(reply.update)
        if vector.shape != (layout.total_size,):
            raise AggregationError(
                f"update of client {reply.client_id!r} has {vector.size} values, "
                f"expected {layout.total_size}"
            )
        if not np.isfinite(vector).all():
            raise AggregationError(f"update of client {reply.client_id!r} is not finite")
        ids.append(reply.client_id)
        vectors.append(vector)
        metrics.add(reply.metrics, reply.num_examples)
        total_weight += reply.num_examples
    if not vectors:
        return Stacked(np.zeros((0, layout.total_size)), 0, {})
    ties = [b""] * len(ids)
    if len(set(ids)) < len(ids):
        ties = [hashlib.sha256(v.tobytes()).digest() for v in vectors]
    order = sorted(range(len(ids)), key=lambda i: (ids[i], ties[i]))
    matrix = np.stack([vectors[i] for i in order])
    return Stacked(matrix, total_weight, metrics.means())
