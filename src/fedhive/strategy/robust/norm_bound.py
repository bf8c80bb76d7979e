"""Norm bounding (Sun, Kairouz, Suresh and McMahan, "Can You Really Backdoor Federated
Learning?", 2019, Section 4): the server clips every update to an L2 norm of at most M,
``Δw ← Δw · min(1, M / ||Δw||₂)``, before aggregating, so one client's influence on the
aggregate is bounded whatever it sends.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from fedhive.core.config import check_real
from fedhive.core.messages import FitReply
from fedhive.core.weights import Array, Layout, Weights
from fedhive.errors import ConfigError
from fedhive.strategy.compose import Aggregate, Aggregator, Fold, fold_of
from fedhive.strategy.robust.stack import FloatArray


def _toward_zero(layout: Layout, flat: FloatArray) -> Weights:
    """``flat`` in the layout's dtypes, each value rounded toward zero (so no value, and
    hence no norm, grows in the cast)."""
    arrays: dict[str, Array] = {}
    offset = 0
    for name, shape, dtype, size in zip(
        layout.names, layout.shapes, layout.dtypes, layout.sizes, strict=True
    ):
        chunk = flat[offset : offset + size].reshape(shape)
        offset += size
        if dtype.kind != "f":
            arrays[name] = np.trunc(chunk).astype(dtype)
            continue
        cast = chunk.astype(dtype)
        grew = np.abs(cast.astype(np.float64)) > np.abs(chunk)
        cast[grew] = np.nextafter(cast[grew], np.zeros((), dtype))
        arrays[name] = cast
    return Weights(arrays)


def clip_update(layout: Layout, update: Weights, max_norm: float) -> Weights | None:
    """``update`` scaled to an L2 norm <= ``max_norm``; None when it already is.

    The norm is checked on the result as stored (in the layout's dtypes); where rounding
    would overshoot the bound, the scale is shrunk by 2⁻⁵², 2⁻⁵¹, ... until it holds.
    """
    flat = layout.flatten(update)
    norm = float(np.linalg.norm(flat))
    if norm <= max_norm:
        return None
    scale = max_norm / norm
    for shrink in [0.0] + [2.0**exponent for exponent in range(-52, 0)]:
        clipped = _toward_zero(layout, flat * (scale * (1.0 - shrink)))
        if float(np.linalg.norm(layout.flatten(clipped))) <= max_norm:
            return clipped
    return _toward_zero(layout, np.zeros_like(flat))  # unreachable: halving suffices


@dataclass(frozen=True)
class NormBound:
    """Clip each update to L2 norm <= ``max_norm``, then aggregate with ``inner``.

    Streaming: each reply is clipped as it arrives and handed on, so it adds O(d) memory
    to what ``inner`` uses (``NormBound(WeightedMean(), 5.0)`` stays O(d)). Clipping
    does not look at ``num_examples``; ``inner`` decides whether to weight by it.
    """

    inner: Aggregator
    max_norm: float

    def __post_init__(self) -> None:
        if not callable(self.inner):
            raise ConfigError(f"inner: must be an aggregator, got {self.inner!r}")
        check_real("max_norm", self.max_norm, low=0, low_open=True)

    def __call__(self, layout: Layout, replies: Iterable[FitReply]) -> Aggregate:
        """Aggregate the clipped replies with ``inner``."""
        return self.inner(layout, self._clipped(layout, replies))

    def fold(self, layout: Layout) -> Fold:
        """A fold that clips each reply on arrival into ``inner``'s fold."""
        return _ClippingFold(self.max_norm, layout, fold_of(self.inner, layout))

    def _clipped(self, layout: Layout, replies: Iterable[FitReply]) -> Iterator[FitReply]:
        for reply in replies:
            clipped = clip_update(layout, reply.update, self.max_norm)
            yield reply if clipped is None else replace(reply, update=clipped)


class _ClippingFold:
    def __init__(self, max_norm: float, layout: Layout, inner: Fold) -> None:
        self.max_norm, self.layout, self.inner = max_norm, layout, inner

    def add(self, reply: FitReply) -> None:
        clipped = clip_update(self.layout, reply.update, self.max_norm)
        self.inner.add(reply if clipped is None else replace(reply, update=clipped))

    def close(self) -> Aggregate:
        return self.inner.close()
