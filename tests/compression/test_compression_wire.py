"""The payload frame: any flip or truncation, another layout or version is a CodecError;
and its fixed cost is small enough for 8-bit digits-mlp to meet issue 14's 3.9x."""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extension_strategies import pipelines
from fedhive.compression import StochasticQuantization, encode, wire
from fedhive.compression.spec_bytes import pipeline_to_bytes
from fedhive.core.canonical import canonical_json
from fedhive.core.codecs import Pipeline, TopK, Zstd
from fedhive.core.serde import weights_to_bytes
from fedhive.core.weights import Layout, Weights
from fedhive.errors import CodecError

LAYOUT = Weights({"w": np.zeros((3, 4), np.float32), "n": np.zeros(2, np.int64)}).layout()
PIPELINE = Pipeline((TopK(0.5), Zstd()))
PAYLOAD = wire.pack(PIPELINE, LAYOUT, b"some body bytes")


def seal(
    spec: bytes = pipeline_to_bytes(PIPELINE),
    counts: tuple[int, int] = (2, 14),
    digest: bytes = wire.layout_digest(LAYOUT),
    body: bytes = b"",
    version: int = wire.FORMAT_VERSION,
) -> bytes:
    """A frame of these parts, with a matching checksum."""
    framed = wire.MAGIC + bytes([version]) + spec + struct.pack("<IQ", *counts) + digest + body
    return framed + hashlib.sha256(framed).digest()[:16]


def test_pack_unpack_round_trip() -> None:
    assert wire.unpack(PAYLOAD, LAYOUT) == (PIPELINE, b"some body bytes")
    assert seal(body=b"xyz") == wire.pack(PIPELINE, LAYOUT, b"xyz")


@settings(max_examples=200, deadline=None)
@given(pipeline=pipelines(), body=st.binary(max_size=64))
def test_every_pipeline_round_trips(pipeline: Pipeline, body: bytes) -> None:
    payload = wire.pack(pipeline, LAYOUT, body)
    assert wire.unpack(payload, LAYOUT) == (pipeline, body)
    # magic, version, spec, counts, layout digest, body, checksum: nothing else
    assert len(payload) == 5 + len(pipeline_to_bytes(pipeline)) + 12 + 16 + len(body) + 16


@settings(max_examples=300, deadline=None)
@given(
    flips=st.lists(
        st.tuples(st.integers(0, len(PAYLOAD) - 1), st.integers(1, 255)), min_size=1, max_size=4
    )
)
def test_any_byte_flip_is_a_codec_error(flips: list[tuple[int, int]]) -> None:
    data = bytearray(PAYLOAD)
    for position, xor in flips:
        data[position] ^= xor
    if bytes(data) == PAYLOAD:  # two flips of one byte that cancel
        return
    with pytest.raises(CodecError):
        wire.unpack(bytes(data), LAYOUT)


@given(length=st.integers(0, len(PAYLOAD) - 1))
def test_any_truncation_is_a_codec_error(length: int) -> None:
    with pytest.raises(CodecError):
        wire.unpack(PAYLOAD[:length], LAYOUT)


@pytest.mark.parametrize(
    "other",
    [
        Weights({"v": np.zeros((3, 4), np.float32), "n": np.zeros(2, np.int64)}),  # name
        Weights({"w": np.zeros((4, 3), np.float32), "n": np.zeros(2, np.int64)}),  # shape
        Weights({"w": np.zeros((3, 4), np.float64), "n": np.zeros(2, np.int64)}),  # dtype
        Weights({"w": np.zeros((3, 5), np.float32), "n": np.zeros(2, np.int64)}),  # size
        Weights({"n": np.zeros(2, np.int64), "w": np.zeros((3, 4), np.float32)}),  # order
        Weights({"w": np.zeros((3, 4), np.float32)}),  # count
    ],
)
def test_a_payload_for_another_layout_is_a_codec_error(other: Weights) -> None:
    with pytest.raises(CodecError, match="made for"):
        wire.unpack(PAYLOAD, other.layout())


def version_1_payload() -> bytes:
    """A payload as fedhive wrote it before format version 2 (its JSON header)."""
    header = canonical_json({"layout": "0" * 64, "pipeline": [], "tensors": 2, "values": 14})
    framed = wire.MAGIC + b"\x01" + len(header).to_bytes(2, "little") + header
    return framed + hashlib.sha256(framed).digest()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (version_1_payload(), "format version 1, this fedhive reads 2"),
        (seal(version=3), "format version 3, this fedhive reads 2"),
        (b"XXXX" + PAYLOAD[4:], "magic"),
        (seal(spec=b"\x01\x09"), "unknown codec id 9"),
        (seal(spec=b"\x05"), "at most 2"),
        (seal(spec=b"\x01\x04\x00"), "zstd.level"),
        (seal(counts=(2, 15)), "made for 2 tensors of 15 values"),
        (seal(counts=(1, 14)), "made for 1 tensors"),
        (seal(digest=bytes(16)), "another layout"),
        (seal()[:5] + pipeline_to_bytes(PIPELINE) + bytes(27) + bytes(16), "checksum"),
        (b"not bytes", "truncated"),
    ],
)
def test_malformed_frames_are_codec_errors(payload: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        wire.unpack(payload, LAYOUT)


@pytest.mark.parametrize("cut", range(28))
def test_a_frame_cut_short_of_its_layout_check_is_a_codec_error(cut: int) -> None:
    """The checksum matches, but the frame ends inside its counts or layout digest."""
    framed = (wire.MAGIC + b"\x02" + pipeline_to_bytes(PIPELINE) + bytes(28))[: -28 + cut]
    with pytest.raises(CodecError, match="truncated before its layout check"):
        wire.unpack(framed + hashlib.sha256(framed).digest()[:16], LAYOUT)


def test_non_bytes_are_a_codec_error() -> None:
    with pytest.raises(CodecError, match="bytes"):
        wire.unpack("text", LAYOUT)  # type: ignore[arg-type]


def test_layout_digest_is_16_bytes_and_ignores_byte_order_only() -> None:
    little = Layout(("a",), ((2,),), (np.dtype("<f4"),))
    big = Layout(("a",), ((2,),), (np.dtype(">f4"),))
    other = Layout(("b",), ((2,),), (np.dtype("<f4"),))
    assert len(wire.layout_digest(little)) == 16
    assert wire.layout_digest(little) == wire.layout_digest(big) != wire.layout_digest(other)


def test_8_bit_digits_mlp_payload_is_3_9_times_smaller_than_its_plain_update() -> None:
    """Issue 14's target, as sizes: the plain safetensors update of digits-mlp's layout
    (2,410 float32 values, 4 tensors) is 10,040 bytes, so an 8-bit per-tensor payload
    must be at most 10,040 / 3.9 = 2,574 bytes: 2,410 codes, 32 bytes of per-tensor
    float32 min and max, and the frame."""
    rng = np.random.default_rng(0)
    # examples/digits-mlp: nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    shapes = {"0.weight": (32, 64), "0.bias": (32,), "2.weight": (10, 32), "2.bias": (10,)}
    update = Weights({k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()})
    plain = len(weights_to_bytes(update))
    payload = encode(update, Pipeline((StochasticQuantization(8),)), rng=rng, residual=None)
    assert (update.num_parameters, plain) == (2410, 10_040)
    assert len(payload.payload) == 2410 + 4 * 2 * 4 + 56  # codes, min/max, frame
    assert len(payload.payload) * 3.9 <= plain
