"""``[client] compression`` (and ``[clients.ID] compression``): the update's codec pipeline.

```toml
[client]
compression = { quantize = { bits = 8, block_size = 256 }, zstd = { level = 3 } }
# or: compression = { topk = { fraction = 0.01 } }
# or: compression = { randomk = { fraction = 0.1, error_feedback = true }, zstd = {} }
```

One key per codec, each a table of that codec's settings (``{}``: its defaults). At most
one lossy codec (``quantize``, ``topk`` or ``randomk``) and optionally ``zstd``: the
order is :class:`~fedhive.core.codecs.Pipeline`'s (the lossy stage, then zstd), so the
table names what runs, not in which order. The section builds the
:class:`~fedhive.core.extensions.Compression` instruction of the client's config, and
:func:`compression_section` gives the section back for config.json.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from fedhive.core.codecs import (
    MAX_ZSTD_LEVEL,
    Pipeline,
    RandomK,
    Stage,
    StochasticQuantization,
    TopK,
    Zstd,
)
from fedhive.core.extensions import Compression
from fedhive.errors import ConfigError

_KeptShare = Annotated[float, msgspec.Meta(gt=0, le=1)]
_BlockSize = Annotated[int, msgspec.Meta(ge=1, le=2**31)]
_Level = Annotated[int, msgspec.Meta(ge=1, le=MAX_ZSTD_LEVEL)]
_LOSSY = ("quantize", "topk", "randomk")


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A config table: frozen, every key declared (an unknown key is refused)."""


class QuantizeSection(_Section, frozen=True):
    """``quantize``: unbiased stochastic quantization (:class:`StochasticQuantization`);
    ``block_size`` absent: one scale per tensor."""

    bits: Literal[4, 8] = 8
    block_size: _BlockSize | None = None


class TopKSection(_Section, frozen=True):
    """``topk``: keep the largest ``fraction`` of the values, with error feedback."""

    fraction: _KeptShare


class RandomKSection(_Section, frozen=True):
    """``randomk``: keep a random ``fraction`` of the values (:class:`RandomK`)."""

    fraction: _KeptShare
    error_feedback: bool = False


class ZstdSection(_Section, frozen=True):
    """``zstd``: lossless zstd of the encoded bytes, last."""

    level: _Level = 3


class CompressionSection(_Section, frozen=True):
    """The codecs a client encodes its update with: at most one lossy, optionally zstd."""

    quantize: QuantizeSection | None = None
    topk: TopKSection | None = None
    randomk: RandomKSection | None = None
    zstd: ZstdSection | None = None

    def __post_init__(self) -> None:
        """One lossy stage at most, and at least one codec (relations between keys)."""
        lossy = [name for name in _LOSSY if getattr(self, name) is not None]
        if len(lossy) > 1:
            raise ConfigError(
                f"at most one lossy codec (quantize, topk or randomk), got {' and '.join(lossy)}"
            )
        if not lossy and self.zstd is None:
            raise ConfigError("name at least one codec: quantize, topk, randomk or zstd")

    def pipeline(self) -> Pipeline:
        """The :class:`Pipeline` these codecs make (the lossy stage, then zstd)."""
        stages: list[Stage] = []
        if self.quantize is not None:
            stages.append(StochasticQuantization(self.quantize.bits, self.quantize.block_size))
        if self.topk is not None:
            stages.append(TopK(self.topk.fraction))
        if self.randomk is not None:
            stages.append(RandomK(self.randomk.fraction, self.randomk.error_feedback))
        if self.zstd is not None:
            stages.append(Zstd(self.zstd.level))
        return Pipeline(tuple(stages))

    def build(self) -> Compression:
        """The client instruction: encode the update with :meth:`pipeline`."""
        return Compression(pipeline=self.pipeline())


def compression_section(ask: Compression) -> CompressionSection:
    """The section that builds ``ask`` back (config.json).

    Raises:
        ConfigError: an empty pipeline, which no section describes.
    """
    pipeline = ask.pipeline
    lossy = pipeline.lossy
    quantize = topk = randomk = None
    if isinstance(lossy, StochasticQuantization):
        bits: Literal[4, 8] = 4 if lossy.bits == 4 else 8
        quantize = QuantizeSection(bits=bits, block_size=lossy.block_size)
    elif isinstance(lossy, TopK):
        topk = TopKSection(fraction=lossy.fraction)
    elif isinstance(lossy, RandomK):
        randomk = RandomKSection(fraction=lossy.fraction, error_feedback=lossy.error_feedback)
    zstd = None if pipeline.zstd is None else ZstdSection(level=pipeline.zstd.level)
    return CompressionSection(quantize=quantize, topk=topk, randomk=randomk, zstd=zstd)
