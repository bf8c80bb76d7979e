"""The payload's frame: a small fixed-size binary header, the body, and a checksum.

Layout of a payload, format version 2 (integers little-endian)::

    magic  b"FHCZ"                                         4 bytes
    format version (2)                                     1 byte
    pipeline spec (fedhive.compression.spec_bytes)         1 + 2 to 10 a stage
    tensor count u32, value count u64                      12 bytes
    layout digest: SHA-256 of the layout, first 16 bytes   16 bytes
    body                                                   the rest, less 16 bytes
    checksum: SHA-256 of everything before it, first 16    16 bytes

An 8-bit per-tensor payload spends 56 bytes on its frame (version 1's JSON header and
two full SHA-256 digests took 203), which on the 2,410-parameter digits-mlp model is the
difference between missing and meeting issue 14's 3.9x (see the README).

Both digests are truncated to 16 bytes because neither is a security boundary. The
layout digest only tells layouts apart, so that a payload decoded against the wrong
model is an error (the counts catch most of it); the checksum only makes corruption (a
flipped bit, a truncation) a :class:`CodecError` rather than a silently wrong update,
and 128 bits leave an accidental match at 2**-128. Authenticity is the transport's
signed envelope, which covers the whole payload's full SHA-256. Nothing is pickled,
and nothing is read before its length is checked. Version 1 (the JSON header) is no
longer read.
"""

from __future__ import annotations

import hashlib
import struct

from fedhive.compression.spec_bytes import pipeline_to_bytes, read_pipeline
from fedhive.core.canonical import canonical_json
from fedhive.core.codecs import Pipeline
from fedhive.core.weights import Layout
from fedhive.errors import CodecError

MAGIC = b"FHCZ"
FORMAT_VERSION = 2
DIGEST_BYTES = 16
"""Both the layout digest and the checksum are SHA-256 truncated to this many bytes."""

_PREFIX = len(MAGIC) + 1
_COUNTS = struct.Struct("<IQ")
_MAX_TENSORS = 2**32 - 1


def layout_digest(layout: Layout) -> bytes:
    """The first 16 bytes of the SHA-256 of the layout's names, shapes and dtype names."""
    spec = {
        "names": list(layout.names),
        "shapes": [list(shape) for shape in layout.shapes],
        "dtypes": [dtype.name for dtype in layout.dtypes],
    }
    return hashlib.sha256(canonical_json(spec)).digest()[:DIGEST_BYTES]


def checksum(framed: bytes) -> bytes:
    """The trailer of a payload whose bytes before it are ``framed``."""
    return hashlib.sha256(framed).digest()[:DIGEST_BYTES]


def pack(pipeline: Pipeline, layout: Layout, body: bytes) -> bytes:
    """The payload carrying ``body``, made by ``pipeline`` for ``layout``."""
    if len(layout.names) > _MAX_TENSORS:
        raise CodecError(f"a layout of {len(layout.names)} tensors has no payload frame")
    framed = b"".join(
        [
            MAGIC,
            bytes([FORMAT_VERSION]),
            pipeline_to_bytes(pipeline),
            _COUNTS.pack(len(layout.names), layout.total_size),
            layout_digest(layout),
            body,
        ]
    )
    return framed + checksum(framed)


def unpack(payload: bytes, layout: Layout) -> tuple[Pipeline, bytes]:
    """The pipeline and body of ``payload``, checked against ``layout``.

    Raises:
        CodecError: not bytes, truncated, another magic or format version, a checksum
            that does not match, a malformed pipeline spec, or a frame made for another
            layout.
    """
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise CodecError(f"payload must be bytes, got {type(payload).__name__}")
    data = bytes(payload)
    if len(data) < _PREFIX + DIGEST_BYTES:
        raise CodecError(f"payload of {len(data)} bytes is truncated")
    if data[: len(MAGIC)] != MAGIC:
        raise CodecError("not a fedhive compressed payload (wrong magic)")
    if data[len(MAGIC)] != FORMAT_VERSION:
        raise CodecError(
            f"payload format version {data[len(MAGIC)]}, this fedhive reads {FORMAT_VERSION}"
        )
    end = len(data) - DIGEST_BYTES
    if checksum(data[:end]) != data[end:]:
        raise CodecError("payload checksum does not match: corrupted or truncated")
    pipeline, spec_len = read_pipeline(data[_PREFIX:end])
    start = _PREFIX + spec_len
    body_start = start + _COUNTS.size + DIGEST_BYTES
    if body_start > end:
        raise CodecError("payload frame is truncated before its layout check")
    tensors, values = _COUNTS.unpack(data[start : start + _COUNTS.size])
    _check_layout(tensors, values, data[start + _COUNTS.size : body_start], layout)
    return pipeline, data[body_start:end]


def _check_layout(tensors: int, values: int, digest: bytes, layout: Layout) -> None:
    if (tensors, values) != (len(layout.names), layout.total_size):
        raise CodecError(
            f"payload was made for {tensors} tensors of {values} values, the model has "
            f"{len(layout.names)} of {layout.total_size}"
        )
    if digest != layout_digest(layout):
        raise CodecError(
            "payload was made for another layout (tensor names, shapes or dtypes differ)"
        )
