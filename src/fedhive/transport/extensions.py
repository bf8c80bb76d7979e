"""fedhive's typed client instructions to and from their protobuf messages.

One field of ``Extensions`` per instruction type (so a config carries at most one of
each); decoding builds each value, so an out-of-range one is refused as it arrives.
"""

from __future__ import annotations

from collections.abc import Iterable

from fedhive.core.codecs import Pipeline, RandomK, Stage, StochasticQuantization, TopK, Zstd
from fedhive.core.extensions import (
    ClipAndNoise,
    Compression,
    DpSgd,
    Extension,
    PartialWork,
    Proximal,
    SecAggWeighting,
    Weighting,
)
from fedhive.errors import SerializationError, ValidationError
from fedhive.transport.proto import pb

_WEIGHTINGS = {
    Weighting.EXAMPLES: pb.WEIGHTING_EXAMPLES,
    Weighting.UNIFORM: pb.WEIGHTING_UNIFORM,
}
_FROM_WEIGHTING = {code: weighting for weighting, code in _WEIGHTINGS.items()}


def extensions_to_proto(extensions: Iterable[Extension]) -> pb.Extensions:
    """A config's typed instructions as their protobuf message (one field per type)."""
    message = pb.Extensions()
    for value in extensions:
        match value:
            case Proximal():
                message.proximal.mu = value.mu
            case PartialWork():
                message.partial_work.max_local_steps = value.max_local_steps
            case ClipAndNoise():
                ask = message.clip_and_noise
                ask.noise_multiplier = value.noise_multiplier
                if value.clipping_norm is not None:
                    ask.clipping_norm = value.clipping_norm
                ask.noise_std = value.noise_std
                ask.seeded = value.seeded
            case SecAggWeighting():
                message.secagg_weighting.weighting = _WEIGHTINGS[value.weighting]
            case DpSgd():
                message.dpsgd.noise_multiplier = value.noise_multiplier
                message.dpsgd.max_grad_norm = value.max_grad_norm
                message.dpsgd.delta = value.delta
            case Compression():
                message.compression.stages.extend(
                    _stage_to_proto(stage) for stage in value.pipeline.stages
                )
            case _:
                raise SerializationError(f"no wire form for {type(value).__name__}")
    return message


def extensions_from_proto(message: pb.Extensions) -> tuple[Extension, ...]:
    """The typed instructions of their protobuf message, each checked as it is built.

    Raises:
        ValidationError: an unknown weighting, an empty codec stage.
        ConfigError: an instruction's value is out of range.
    """
    out: list[Extension] = []
    if message.HasField("proximal"):
        out.append(Proximal(mu=message.proximal.mu))
    if message.HasField("partial_work"):
        out.append(PartialWork(max_local_steps=message.partial_work.max_local_steps))
    if message.HasField("clip_and_noise"):
        ask = message.clip_and_noise
        out.append(
            ClipAndNoise(
                noise_multiplier=ask.noise_multiplier,
                clipping_norm=ask.clipping_norm if ask.HasField("clipping_norm") else None,
                noise_std=ask.noise_std,
                seeded=ask.seeded,
            )
        )
    if message.HasField("secagg_weighting"):
        weighting = _FROM_WEIGHTING.get(message.secagg_weighting.weighting)
        if weighting is None:
            raise ValidationError("a secagg weighting is unknown", stage="decode")
        out.append(SecAggWeighting(weighting=weighting))
    if message.HasField("dpsgd"):
        dp = message.dpsgd
        z, norm, delta = dp.noise_multiplier, dp.max_grad_norm, dp.delta
        out.append(DpSgd(noise_multiplier=z, max_grad_norm=norm, delta=delta))
    if message.HasField("compression"):
        stages = tuple(_stage_from_proto(stage) for stage in message.compression.stages)
        out.append(Compression(pipeline=Pipeline(stages)))
    return tuple(out)


def _stage_to_proto(stage: Stage) -> pb.CodecStage:
    message = pb.CodecStage()
    match stage:
        case StochasticQuantization():
            message.quantize.bits = stage.bits
            if stage.block_size is not None:
                message.quantize.block_size = stage.block_size
        case TopK():
            message.topk.fraction = stage.fraction
        case RandomK():
            message.randomk.fraction = stage.fraction
            message.randomk.error_feedback = stage.error_feedback
        case Zstd():
            message.zstd.level = stage.level
    return message


def _stage_from_proto(message: pb.CodecStage) -> Stage:
    codec = message.WhichOneof("codec")
    if codec == "quantize":
        q = message.quantize
        block = q.block_size if q.HasField("block_size") else None
        return StochasticQuantization(bits=q.bits, block_size=block)
    if codec == "topk":
        return TopK(fraction=message.topk.fraction)
    if codec == "randomk":
        r = message.randomk
        return RandomK(fraction=r.fraction, error_feedback=r.error_feedback)
    if codec == "zstd":
        return Zstd(level=message.zstd.level)
    raise ValidationError("a compression stage names no codec", stage="decode")
