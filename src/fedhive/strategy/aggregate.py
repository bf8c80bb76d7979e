"""Streaming accumulators whose result does not depend on the order of arrival.

Floating-point addition is not associative, so a plain running sum of client updates
gives different bits for different arrival orders, and a networked run could never
match a simulated one. :class:`ExactWeightedSum` instead adds each weighted value as a
fixed-point number split over two int64 words (a unit of 2**-16 and a unit of 2**-63):
each value is rounded once, on arrival, independently of the others, and integer
addition is exact and associative. Memory is O(model size), whatever the number of
clients: the two words (16 bytes per parameter, 4x a float32 model), and pieces of
:data:`~fedhive.core.weights.CHUNK` values while adding (:meth:`ExactWeightedSum.add_weights`
never makes a float64 copy of a whole update).

Limits (checked, raising :class:`~fedhive.errors.AggregationError`): each weighted value
``|weight * value| < 2**30`` and at most 2**16 additions per sum. The server checks the
first limit on every reply before it reaches a sum (:func:`within_exact_range`), so an
out-of-range update is its client's failure, not the round's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction
from typing import Any

import numpy as np

from fedhive.core.weights import CHUNK, FloatVector, Layout, Weights
from fedhive.errors import AggregationError

_HI_SCALE = 2.0**16  # one unit of the high word is 2**-16
_LO_BITS = 47  # the low word holds the remaining fraction in units of 2**-63
_LO_SCALE = 2.0**_LO_BITS
_MAX_ADDS = 1 << 16  # keeps |hi| sums < 2**62 and lo sums <= 2**63, with no carries


MAX_WEIGHTED_VALUE = 2.0**30
"""Every ``|weight * value|`` added to an :class:`ExactWeightedSum` must stay below this."""


def within_exact_range(vector: FloatVector, weight: int) -> bool:
    """Whether ``weight * vector`` can be added exactly: finite and every ``|weight *
    value| < 2**30`` (the test :meth:`ExactWeightedSum.add` applies)."""
    if not vector.size:
        return True
    peak = float(max(vector.max(), -vector.min()))
    # `not <` also refuses NaN; rounding is monotone, so this is add's own test.
    return bool(peak * float(weight) < MAX_WEIGHTED_VALUE)


def weights_within_exact_range(layout: Layout, weights: Weights, weight: int) -> bool:
    """:func:`within_exact_range` of ``layout.flatten(weights)``, one chunk at a time."""
    return all(within_exact_range(chunk, weight) for chunk in layout.chunks(weights))


class ExactWeightedSum:
    """A running sum of ``weight * vector`` that is exact up to 2**-63 per term.

    The accumulator is a local value of one aggregation: create it, ``add`` results as
    they arrive, read ``total()`` and ``total_weight``.
    """

    __slots__ = ("_adds", "_hi", "_lo", "total_weight")

    def __init__(self, size: int) -> None:
        self._hi = np.zeros(size, dtype=np.int64)
        self._lo = np.zeros(size, dtype=np.int64)
        self._adds = 0
        self.total_weight = 0

    @property
    def count(self) -> int:
        """How many vectors were added."""
        return self._adds

    def add(self, vector: FloatVector, weight: int) -> None:
        """Add ``weight * vector``; ``weight`` is a non-negative integer (e.g. examples).

        Raises:
            AggregationError: a weighted value is out of the exact range, or too many
                vectors were added.
        """
        if vector.shape != self._hi.shape:
            raise AggregationError(f"vector of size {vector.size}, expected {self._hi.size}")
        pieces = range(0, vector.size, CHUNK)
        self._add_pieces(lambda: (vector[i : i + CHUNK] for i in pieces), weight)

    def add_weights(self, layout: Layout, weights: Weights, weight: int) -> None:
        """:meth:`add` of ``layout.flatten(weights)`` (the same bits), converted to
        float64 a chunk at a time."""
        if layout.total_size != self._hi.size:
            raise AggregationError(f"vector of size {layout.total_size}, expected {self._hi.size}")
        self._add_pieces(lambda: layout.chunks(weights), weight)

    def _add_pieces(self, pieces: Callable[[], Iterable[FloatVector]], weight: int) -> None:
        """Add the vector ``pieces()`` yields in order: checked whole first (two passes),
        so a refused vector leaves the sum untouched."""
        if weight < 0:
            raise AggregationError(f"weights must be >= 0, got {weight}")
        if self._adds >= _MAX_ADDS:
            raise AggregationError(f"at most {_MAX_ADDS} vectors can be summed exactly")
        if not all(within_exact_range(piece, weight) for piece in pieces()):
            raise AggregationError("a weighted update value is not finite or exceeds 2**30")
        offset = 0
        for piece in pieces():
            end = offset + piece.size
            self._add_piece(piece, weight, self._hi[offset:end], self._lo[offset:end])
            offset = end
        self._adds += 1
        self.total_weight += weight

    @staticmethod
    def _add_piece(piece: FloatVector, weight: int, hi_out: Any, lo_out: Any) -> None:
        # float32-derived values times an integer below 2**29 are exact in float64, and
        # scaling by a power of two is exact: `scaled` is the true product * 2**16.
        scaled = piece.astype(np.float64) * (float(weight) * _HI_SCALE)
        hi = np.floor(scaled)
        hi_out += hi.astype(np.int64)  # integer addition: exact, associative
        # scaled - hi is exact and in [0, 1); rounding it to 47 bits is the only rounding.
        frac = np.subtract(scaled, hi, out=scaled)
        frac = np.rint(np.multiply(frac, _LO_SCALE, out=frac), out=frac)
        lo_out += frac.astype(np.int64)

    def total(self) -> FloatVector:
        """The sum as float64 (the same bits whatever the order of ``add`` calls),
        computed a chunk at a time into the one result array."""
        out = np.empty(self._hi.size, dtype=np.float64)
        for start in range(0, out.size, CHUNK):
            end = start + CHUNK
            lo = self._lo[start:end].view(np.uint64)  # never negative
            carry = (lo >> np.uint64(_LO_BITS)).astype(np.int64)
            rest = (lo & np.uint64((1 << _LO_BITS) - 1)).astype(np.float64)
            whole = (self._hi[start:end] + carry).astype(np.float64) / _HI_SCALE
            out[start:end] = whole + rest / (_HI_SCALE * _LO_SCALE)
        return out


class WeightedMetrics:
    """Running example-weighted means of scalar metrics (keys may differ per client).

    Scalars are summed as exact fractions, so the means do not depend on arrival order.
    """

    __slots__ = ("_sums", "_weights")

    def __init__(self) -> None:
        self._sums: dict[str, Fraction] = {}
        self._weights: dict[str, int] = {}

    def add(self, metrics: Mapping[str, float], weight: int) -> None:
        """Add one client's (finite) metrics with its example count as weight."""
        for key, value in metrics.items():
            self._sums[key] = self._sums.get(key, Fraction(0)) + Fraction(value) * weight
            self._weights[key] = self._weights.get(key, 0) + weight

    def means(self) -> dict[str, float]:
        """Weighted mean of each metric (keys whose total weight is 0 are left out)."""
        return {
            key: float(total / self._weights[key])
            for key, total in sorted(self._sums.items())
            if self._weights[key] > 0
        }
