"""The pipeline spec's compact bytes: round trips exactly; anything else is a CodecError."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extension_strategies import pipelines
from fedhive.compression.spec_bytes import pipeline_to_bytes, read_pipeline
from fedhive.core.codecs import Pipeline, RandomK, StochasticQuantization, TopK, Zstd
from fedhive.errors import CodecError


@settings(max_examples=300, deadline=None)
@given(pipeline=pipelines(), trailing=st.binary(max_size=8))
def test_every_pipeline_round_trips_and_says_how_long_it_is(
    pipeline: Pipeline, trailing: bytes
) -> None:
    raw = pipeline_to_bytes(pipeline)
    assert read_pipeline(raw + trailing) == (pipeline, len(raw))
    assert read_pipeline(raw)[0].stages == pipeline.stages


@pytest.mark.parametrize(
    ("pipeline", "raw"),
    [
        (Pipeline(), b"\x00"),
        (Pipeline((StochasticQuantization(8),)), b"\x01\x01\x08" + bytes(4)),
        (
            Pipeline((StochasticQuantization(4, 2**31),)),
            b"\x01\x01\x04" + (2**31).to_bytes(4, "little"),
        ),
        (Pipeline((TopK(0.01), Zstd(3))), b"\x02\x02" + struct.pack("<d", 0.01) + b"\x04\x03"),
        (
            Pipeline((RandomK(0.5, error_feedback=True),)),
            b"\x01\x03" + struct.pack("<d", 0.5) + b"\x01",
        ),
    ],
    ids=["empty", "8-bit", "4-bit-blocks", "topk-zstd", "randomk-ef"],
)
def test_the_documented_bytes(pipeline: Pipeline, raw: bytes) -> None:
    assert pipeline_to_bytes(pipeline) == raw
    assert read_pipeline(raw) == (pipeline, len(raw))


def topk(fraction: float) -> bytes:
    return b"\x02" + struct.pack("<d", fraction)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "no stage count"),
        (b"\x03", "of 3 stages, at most 2"),
        (b"\x01", "truncated at stage 0"),
        (b"\x01\x07", "unknown codec id 7"),
        (b"\x01\x00", "unknown codec id 0"),
        (b"\x01\x01\x08\x00", "truncated in its quantize stage"),
        (b"\x01" + topk(0.1)[:-1], "truncated in its topk stage"),
        (b"\x01\x01\x03" + bytes(4), "quantize.bits"),
        (b"\x01" + topk(float("nan")), "topk.fraction"),
        (b"\x01" + topk(0.0), "topk.fraction"),
        (b"\x01" + topk(1.5), "topk.fraction"),
        (b"\x01\x03" + struct.pack("<d", 0.5) + b"\x02", "error_feedback"),
        (b"\x01\x04\x00", "zstd.level"),
        (b"\x01\x04\x17", "zstd.level"),
        (b"\x02\x04\x03" + topk(0.1), "only as the last stage"),
        (b"\x02\x04\x03\x04\x03", "zstd at most once"),
        (b"\x02" + topk(0.1) + topk(0.2), "at most one quantizer or sparsifier"),
    ],
)
def test_malformed_specs_are_codec_errors(raw: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        read_pipeline(raw)


@settings(max_examples=500, deadline=None)
@given(raw=st.binary(max_size=24))
def test_any_bytes_read_as_a_codec_error_or_the_one_encoding_of_a_pipeline(raw: bytes) -> None:
    """Never another exception; and what reads is canonical (no two spellings of a spec)."""
    try:
        pipeline, length = read_pipeline(raw)
    except CodecError:
        return
    assert pipeline_to_bytes(pipeline) == raw[:length]
