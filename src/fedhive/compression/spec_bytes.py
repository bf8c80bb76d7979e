"""A pipeline spec as compact bytes: a stage count, then each stage's codec id and fields.

The payload frame (:mod:`fedhive.compression.wire`) carries the pipeline in this form so
that the decoder knows what was done without being told out of band, in a few bytes
rather than a JSON header (on a model of a few thousand parameters the frame's fixed
cost is a visible share of an 8-bit payload). Layout (integers little-endian)::

    stage count s (at most 2)                                  1 byte
    s stages, each a codec id (1 byte), then that codec's fields:
        1 quantize  bits u8, block_size u32 (0: per tensor)    5 bytes
        2 topk      fraction float64                           8 bytes
        3 randomk   fraction float64, error_feedback u8 (0/1)  9 bytes
        4 zstd      level u8                                   1 byte

Every field is the spec's own value, exactly: a fraction is a Python float, so float64
keeps it bit for bit (a ``k`` would depend on the model's size). Reading builds each
stage through its spec's constructor and the whole through :class:`Pipeline`, so their
validation applies: any byte that is no valid spec is a :class:`CodecError`, and
nothing is read before its length is checked.
"""

from __future__ import annotations

import struct

from fedhive.core.codecs import Pipeline, RandomK, Stage, StochasticQuantization, TopK, Zstd
from fedhive.errors import CodecError, ConfigError

MAX_STAGES = 2
"""A pipeline holds at most one lossy stage and one zstd stage."""

_QUANTIZE, _TOPK, _RANDOMK, _ZSTD = 1, 2, 3, 4
_FIELDS = {
    _QUANTIZE: struct.Struct("<BI"),
    _TOPK: struct.Struct("<d"),
    _RANDOMK: struct.Struct("<dB"),
    _ZSTD: struct.Struct("<B"),
}
_NAMES = {_QUANTIZE: "quantize", _TOPK: "topk", _RANDOMK: "randomk", _ZSTD: "zstd"}


def pipeline_to_bytes(pipeline: Pipeline) -> bytes:
    """``pipeline`` in the compact form :func:`read_pipeline` reads back."""
    parts = [bytes([len(pipeline.stages)])]
    for stage in pipeline.stages:
        codec, fields = _fields_of(stage)
        parts.append(bytes([codec]) + _FIELDS[codec].pack(*fields))
    return b"".join(parts)


def read_pipeline(data: bytes) -> tuple[Pipeline, int]:
    """The pipeline at the start of ``data``, and how many bytes it took.

    Raises:
        CodecError: too few bytes, too many stages, an unknown codec id, or fields that
            make no valid spec or pipeline.
    """
    if not data:
        raise CodecError("payload pipeline spec is truncated (no stage count)")
    count, offset = data[0], 1
    if count > MAX_STAGES:
        raise CodecError(f"payload pipeline spec of {count} stages, at most {MAX_STAGES}")
    stages: list[Stage] = []
    for index in range(count):
        if offset >= len(data):
            raise CodecError(f"payload pipeline spec is truncated at stage {index}")
        codec = data[offset]
        layout = _FIELDS.get(codec)
        if layout is None:
            raise CodecError(f"payload pipeline spec: unknown codec id {codec} at stage {index}")
        start, offset = offset + 1, offset + 1 + layout.size
        if offset > len(data):
            raise CodecError(f"payload pipeline spec is truncated in its {_NAMES[codec]} stage")
        stages.append(_stage_of(codec, layout.unpack(data[start:offset])))
    try:
        return Pipeline(tuple(stages)), offset
    except ConfigError as exc:
        raise CodecError(f"payload pipeline spec: {exc}") from None


def _fields_of(stage: Stage) -> tuple[int, tuple[int | float, ...]]:
    if isinstance(stage, StochasticQuantization):
        return _QUANTIZE, (stage.bits, stage.block_size or 0)
    if isinstance(stage, TopK):
        return _TOPK, (stage.fraction,)
    if isinstance(stage, RandomK):
        return _RANDOMK, (stage.fraction, int(stage.error_feedback))
    return _ZSTD, (stage.level,)


def _stage_of(codec: int, fields: tuple[int | float, ...]) -> Stage:
    name = _NAMES[codec]
    try:
        if codec == _QUANTIZE:
            bits, block_size = fields
            return StochasticQuantization(int(bits), int(block_size) or None)
        if codec == _TOPK:
            return TopK(fields[0])
        if codec == _RANDOMK:
            fraction, feedback = fields
            if feedback not in (0, 1):
                raise ConfigError(f"randomk.error_feedback: must be 0 or 1, got {feedback}")
            return RandomK(fraction, error_feedback=bool(feedback))
        return Zstd(int(fields[0]))
    except ConfigError as exc:
        raise CodecError(f"payload pipeline spec: invalid {name} stage: {exc}") from None
