"""The payload's frame: a small versioned header, the body, and a digest of both.

Layout of a payload (integers little-endian)::

    magic  b"FHCZ"                       4 bytes
    format version (1)                   1 byte
    header length n (at most 4096)       2 bytes
    header: canonical JSON               n bytes
        {"layout": <SHA-256 hex of the layout>, "pipeline": [<stage>, ...],
         "tensors": <count>, "values": <count>}
    body                                 the rest, less 32 bytes
    SHA-256 of everything before it      32 bytes

The digest makes any corruption (a flipped bit, a truncation) a :class:`CodecError`
rather than a silently wrong update; it is a checksum, not a signature (authenticity is
the transport's signed envelope). The header is bounded and JSON only: nothing is
pickled, and nothing is parsed before its length is checked.
"""

from __future__ import annotations

import hashlib
import json

from fedhive.core.canonical import canonical_json
from fedhive.core.codecs import Pipeline
from fedhive.core.weights import Layout
from fedhive.errors import CodecError

MAGIC = b"FHCZ"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 4096
_DIGEST = 32
_PREFIX = len(MAGIC) + 1 + 2


def layout_digest(layout: Layout) -> str:
    """Hex SHA-256 of the layout's names, shapes and dtype names, in order."""
    spec = {
        "names": list(layout.names),
        "shapes": [list(shape) for shape in layout.shapes],
        "dtypes": [dtype.name for dtype in layout.dtypes],
    }
    return hashlib.sha256(canonical_json(spec)).hexdigest()


def pack(pipeline: Pipeline, layout: Layout, body: bytes) -> bytes:
    """The payload carrying ``body``, made by ``pipeline`` for ``layout``."""
    header = canonical_json(
        {
            "layout": layout_digest(layout),
            "pipeline": pipeline.to_json(),
            "tensors": len(layout.names),
            "values": layout.total_size,
        }
    )
    if len(header) > MAX_HEADER_BYTES:
        raise CodecError(f"payload header of {len(header)} bytes, at most {MAX_HEADER_BYTES}")
    framed = b"".join(
        [MAGIC, bytes([FORMAT_VERSION]), len(header).to_bytes(2, "little"), header, body]
    )
    return framed + hashlib.sha256(framed).digest()


def unpack(payload: bytes, layout: Layout) -> tuple[Pipeline, bytes]:
    """The pipeline and body of ``payload``, checked against ``layout``.

    Raises:
        CodecError: not bytes, truncated, another magic or version, a digest that does
            not match, a malformed header, or a header made for another layout.
    """
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise CodecError(f"payload must be bytes, got {type(payload).__name__}")
    data = bytes(payload)
    if len(data) < _PREFIX + _DIGEST:
        raise CodecError(f"payload of {len(data)} bytes is truncated")
    if data[: len(MAGIC)] != MAGIC:
        raise CodecError("not a fedhive compressed payload (wrong magic)")
    if data[len(MAGIC)] != FORMAT_VERSION:
        raise CodecError(
            f"payload format version {data[len(MAGIC)]}, this fedhive reads {FORMAT_VERSION}"
        )
    if hashlib.sha256(data[:-_DIGEST]).digest() != data[-_DIGEST:]:
        raise CodecError("payload digest does not match: corrupted or truncated")
    header_len = int.from_bytes(data[len(MAGIC) + 1 : _PREFIX], "little")
    if header_len > MAX_HEADER_BYTES or _PREFIX + header_len > len(data) - _DIGEST:
        raise CodecError(f"payload header length {header_len} is out of bounds")
    header = _parse(data[_PREFIX : _PREFIX + header_len])
    pipeline = Pipeline.from_json(header["pipeline"])
    _check_layout(header, layout)
    return pipeline, data[_PREFIX + header_len : -_DIGEST]


def _parse(raw: bytes) -> dict[str, object]:
    try:
        header = json.loads(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CodecError(f"payload header is not JSON: {exc}") from None
    if not isinstance(header, dict) or set(header) != {"layout", "pipeline", "tensors", "values"}:
        raise CodecError("payload header must hold exactly layout, pipeline, tensors, values")
    return header


def _check_layout(header: dict[str, object], layout: Layout) -> None:
    tensors, values = header["tensors"], header["values"]
    if (tensors, values) != (len(layout.names), layout.total_size):
        raise CodecError(
            f"payload was made for {tensors} tensors of {values} values, the model has "
            f"{len(layout.names)} of {layout.total_size}"
        )
    if header["layout"] != layout_digest(layout):
        raise CodecError(
            "payload was made for another layout (tensor names, shapes or dtypes differ)"
        )
