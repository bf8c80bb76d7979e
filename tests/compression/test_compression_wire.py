"""The payload frame: any flip or truncation, another layout or version is a CodecError."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedhive.compression import wire
from fedhive.core.canonical import canonical_json
from fedhive.core.codecs import Pipeline, TopK, Zstd
from fedhive.core.weights import Layout, Weights
from fedhive.errors import CodecError

LAYOUT = Weights({"w": np.zeros((3, 4), np.float32), "n": np.zeros(2, np.int64)}).layout()
PIPELINE = Pipeline((TopK(0.5), Zstd()))
PAYLOAD = wire.pack(PIPELINE, LAYOUT, b"some body bytes")


def seal(header: object, body: bytes = b"", version: int = wire.FORMAT_VERSION) -> bytes:
    raw = header if isinstance(header, bytes) else canonical_json(header)
    framed = wire.MAGIC + bytes([version]) + len(raw).to_bytes(2, "little") + raw + body
    return framed + hashlib.sha256(framed).digest()


def header(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "layout": wire.layout_digest(LAYOUT),
        "pipeline": PIPELINE.to_json(),
        "tensors": 2,
        "values": 14,
    }
    return {**base, **changes}


def test_pack_unpack_round_trip() -> None:
    assert wire.unpack(PAYLOAD, LAYOUT) == (PIPELINE, b"some body bytes")
    assert seal(header(), b"xyz") == wire.pack(PIPELINE, LAYOUT, b"xyz")


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


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (seal(header(), version=2), "version 2"),
        (b"XXXX" + PAYLOAD[4:], "magic"),
        (seal(b"{not json"), "not JSON"),
        (seal(b"\xff\xfe"), "not JSON"),
        (seal([1, 2]), "exactly"),
        (seal({**header(), "extra": 1}), "exactly"),
        (seal(header(pipeline=[{"codec": "lz4"}])), "unknown codec"),
        (seal(header(values=15)), "made for"),
        (seal(b" " * (wire.MAX_HEADER_BYTES + 1)), "out of bounds"),
        (b"not bytes", "truncated"),
    ],
)
def test_malformed_frames_are_codec_errors(payload: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        wire.unpack(payload, LAYOUT)


def test_a_header_length_beyond_the_payload_is_a_codec_error() -> None:
    framed = wire.MAGIC + bytes([1]) + (100).to_bytes(2, "little") + b"{}"
    with pytest.raises(CodecError, match="out of bounds"):
        wire.unpack(framed + hashlib.sha256(framed).digest(), LAYOUT)


def test_non_bytes_are_a_codec_error() -> None:
    with pytest.raises(CodecError, match="bytes"):
        wire.unpack("text", LAYOUT)  # type: ignore[arg-type]


def test_layout_digest_ignores_byte_order_only() -> None:
    little = Layout(("a",), ((2,),), (np.dtype("<f4"),))
    big = Layout(("a",), ((2,),), (np.dtype(">f4"),))
    assert wire.layout_digest(little) == wire.layout_digest(big)
