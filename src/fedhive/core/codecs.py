"""Codec specs: what a pipeline does to an update, as small validated frozen values.

A spec is data, not behaviour: it is written into every payload's frame (in the compact
form of :mod:`fedhive.compression.spec_bytes`) so that the decoder knows what was done
without being told out of band. Construction checks every value
(:class:`~fedhive.errors.ConfigError`); reading a frame's spec back builds it through
these constructors, so the same checks apply to untrusted bytes.

The specs live in :mod:`fedhive.core` (the codecs themselves in
:mod:`fedhive.compression`) because a client config carries one: the
:class:`~fedhive.core.extensions.Compression` instruction names the pipeline a client
encodes its update with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

from fedhive.errors import ConfigError

MAX_ZSTD_LEVEL = 22
"""zstd's highest compression level (``zstandard.MAX_COMPRESSION_LEVEL``)."""


def _check_fraction(name: str, fraction: object) -> None:
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, (int, float))
        or not math.isfinite(fraction)
        or not 0 < fraction <= 1
    ):
        raise ConfigError(f"{name}.fraction: must be a number in (0, 1], got {fraction!r}")


@dataclass(frozen=True)
class StochasticQuantization:
    """Unbiased stochastic rounding of each float value to one of ``2**bits`` levels.

    The levels are evenly spaced between the minimum and maximum of the value's block:
    the whole tensor (``block_size=None``) or runs of ``block_size`` consecutive values
    of one tensor (blocks never span two tensors; a tensor's last block may be shorter).
    This is the min-max stochastic quantizer of QSGD (Alistarh et al., 2017, "QSGD:
    Communication-efficient SGD via gradient quantization and encoding"), with the
    block's [min, max] in place of QSGD's [0, ||v||] per sign; see
    :mod:`fedhive.compression.quantize`.
    """

    bits: int = 8
    block_size: int | None = None

    def __post_init__(self) -> None:
        if type(self.bits) is not int or self.bits not in (4, 8):
            raise ConfigError(f"quantize.bits: must be 8 or 4, got {self.bits!r}")
        if self.block_size is not None and (
            isinstance(self.block_size, bool)
            or not isinstance(self.block_size, int)
            or not 1 <= self.block_size <= 2**31
        ):
            raise ConfigError(
                f"quantize.block_size: must be None or an integer in [1, 2**31], "
                f"got {self.block_size!r}"
            )

    @property
    def error_feedback(self) -> bool:
        """Unbiased: what rounding drops averages out, so no residual is kept."""
        return False


@dataclass(frozen=True)
class TopK:
    """Keep the ``ceil(fraction * d)`` float values of largest magnitude (at least one).

    Biased (it always drops the small values), so it keeps an error-feedback residual.
    """

    fraction: float

    def __post_init__(self) -> None:
        _check_fraction("topk", self.fraction)

    @property
    def error_feedback(self) -> bool:
        """Top-k keeps what it dropped and adds it to the next round's update."""
        return True


@dataclass(frozen=True)
class RandomK:
    """Keep ``ceil(fraction * d)`` float values chosen uniformly without replacement.

    ``error_feedback=False`` (the default) scales the kept values by ``d / k``, which
    makes the decoded update unbiased (each value is kept with probability ``k / d``),
    and keeps no residual. ``error_feedback=True`` sends the kept values unscaled and
    keeps a residual instead (Stich et al., 2018): scaled random-k cannot be combined with
    error feedback, because it is no contraction (``E||x - C(x)||^2 = (d/k - 1)||x||^2``,
    more than ``||x||^2`` once ``k < d / 2``), so the residual would grow each round.
    """

    fraction: float
    error_feedback: bool = False

    def __post_init__(self) -> None:
        _check_fraction("randomk", self.fraction)
        if not isinstance(self.error_feedback, bool):
            raise ConfigError(
                f"randomk.error_feedback: must be true or false, got {self.error_feedback!r}"
            )


@dataclass(frozen=True)
class Zstd:
    """Lossless zstd compression of the encoded bytes, at ``level`` (1 to 22)."""

    level: int = 3

    def __post_init__(self) -> None:
        if (
            isinstance(self.level, bool)
            or not isinstance(self.level, int)
            or not 1 <= self.level <= MAX_ZSTD_LEVEL
        ):
            raise ConfigError(
                f"zstd.level: must be an integer in [1, {MAX_ZSTD_LEVEL}], got {self.level!r}"
            )


Lossy = Union[StochasticQuantization, TopK, RandomK]  # noqa: UP007 - a runtime alias
Stage = Union[StochasticQuantization, TopK, RandomK, Zstd]  # noqa: UP007
_LOSSY = (StochasticQuantization, TopK, RandomK)
_STAGES = (StochasticQuantization, TopK, RandomK, Zstd)


@dataclass(frozen=True)
class Pipeline:
    """At most one lossy stage (a quantizer or a sparsifier), optionally then :class:`Zstd`.

    The order is fixed because each stage needs what the one before gives: the lossy
    stage works on numbers, and only it can (its output, small integer codes or sorted
    indices, is what has redundancy left); zstd works on bytes and is lossless, so it
    comes last, and nothing numeric can follow it. An empty pipeline sends the update's
    bytes as they are.
    """

    stages: tuple[Stage, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.stages, tuple):
            raise ConfigError(f"pipeline.stages: must be a tuple, got {type(self.stages).__name__}")
        for i, stage in enumerate(self.stages):
            if type(stage) not in _STAGES:
                raise ConfigError(f"pipeline.stages[{i}]: not a codec spec: {stage!r}")
        lossy = [i for i, s in enumerate(self.stages) if isinstance(s, _LOSSY)]
        zstd = [i for i, s in enumerate(self.stages) if isinstance(s, Zstd)]
        if len(lossy) > 1:
            raise ConfigError("pipeline.stages: at most one quantizer or sparsifier")
        if len(zstd) > 1 or (zstd and zstd[0] != len(self.stages) - 1):
            raise ConfigError("pipeline.stages: zstd at most once, and only as the last stage")

    @property
    def lossy(self) -> Lossy | None:
        """The quantizer or sparsifier, if any."""
        for stage in self.stages:
            if isinstance(stage, _LOSSY):
                return stage
        return None

    @property
    def zstd(self) -> Zstd | None:
        """The zstd stage, if any."""
        last = self.stages[-1] if self.stages else None
        return last if isinstance(last, Zstd) else None

    @property
    def error_feedback(self) -> bool:
        """Whether :func:`~fedhive.compression.encode` keeps a residual for this pipeline."""
        lossy = self.lossy
        return lossy is not None and lossy.error_feedback
