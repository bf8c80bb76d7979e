"""The canonical byte frame of SecAgg messages: a JSON header and length-prefixed blobs.

Layout (all integers big-endian)::

    b"FHSA" | version u8 | header length u32 | header | blob count u32 | (length u32 | blob)*

The header is JSON with sorted keys, no spaces and ASCII only; it holds the message type,
ids and integers. Blobs hold binary values (keys, ciphertexts, shares, vectors). Every
message has exactly one encoding: decoders re-encode what they parsed and refuse bytes that
differ, so a transport can sign the bytes and a verifier can re-derive them. No pickle.
Every malformed input raises :class:`SerializationError`, never anything else.
"""

from __future__ import annotations

import abc
import itertools
import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from fedhive.core.canonical import canonical_json
from fedhive.errors import ConfigError, SerializationError

MAGIC = b"FHSA"
VERSION = 1
MAX_ID_CHARS = 128
MAX_ROUND = (1 << 63) - 1
_U32 = struct.Struct(">I")


def pack(header: Mapping[str, Any], blobs: Sequence[bytes]) -> bytes:
    """The frame of ``header`` (JSON-serialisable) and ``blobs``."""
    text = canonical_json(header)
    parts = [MAGIC, bytes([VERSION]), _U32.pack(len(text)), text, _U32.pack(len(blobs))]
    for blob in blobs:
        parts += [_U32.pack(len(blob)), bytes(blob)]
    return b"".join(parts)


def unpack(data: bytes) -> tuple[dict[str, Any], list[bytes]]:
    """The header and blobs of a frame.

    Raises:
        SerializationError: wrong magic or version, truncated or trailing bytes, or a
            header that is not a JSON object.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SerializationError(f"expected bytes, got {type(data).__name__}")
    view = bytes(data)
    if view[:4] != MAGIC or len(view) < 9:
        raise SerializationError("not a fedhive secagg message (bad magic)")
    if view[4] != VERSION:
        raise SerializationError(f"unsupported secagg message version {view[4]}")
    header_bytes, pos = _take(view, 5)
    try:
        header = json.loads(header_bytes.decode("ascii"), parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise SerializationError(f"message header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise SerializationError("message header must be a JSON object")
    if pos + 4 > len(view):
        raise SerializationError("message is truncated before its blob count")
    (count,) = _U32.unpack_from(view, pos)
    pos += 4
    if count > len(view) - pos:
        raise SerializationError("message claims more blobs than it has bytes")
    blobs = []
    for _ in range(count):
        blob, pos = _take(view, pos)
        blobs.append(blob)
    if pos != len(view):
        raise SerializationError("message has trailing bytes")
    return header, blobs


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed in a message header")


def _take(view: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 4 > len(view):
        raise SerializationError("message is truncated")
    (size,) = _U32.unpack_from(view, pos)
    end = pos + 4 + size
    if end > len(view):
        raise SerializationError("message is truncated")
    return view[pos + 4 : end], end


def get(header: Mapping[str, Any], key: str, kind: type) -> Any:
    """``header[key]`` if present and of ``kind`` (no field is a bool: true is not 1 here)."""
    if key not in header:
        raise SerializationError(f"message header lacks {key!r}")
    value = header[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise SerializationError(f"message field {key!r} has the wrong type")
    return value


def check_round(value: object) -> int:
    """A round number: an int in [0, 2^63)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ROUND:
        raise SerializationError(f"round must be an integer in [0, 2^63), got {value!r}")
    return value


def check_int(value: object, low: int, high: int, what: str) -> int:
    """An int (not a bool) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SerializationError(f"{what} must be an integer in [{low}, {high}], got {value!r}")
    return value


def check_id(value: object, what: str = "client id") -> str:
    """A client id: a printable string of 1 to 128 characters."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS:
        raise SerializationError(f"{what} must be a string of 1-{MAX_ID_CHARS} characters")
    if not value.isprintable():
        raise SerializationError(f"{what} must be printable, got {value!r}")
    return value


def check_ids(values: object, what: str) -> tuple[str, ...]:
    """A strictly increasing (sorted, distinct) sequence of client ids."""
    if not isinstance(values, (list, tuple)):
        raise SerializationError(f"{what} must be a list of client ids")
    ids = tuple(check_id(v, what) for v in values)
    if any(a >= b for a, b in itertools.pairwise(ids)):
        raise SerializationError(f"{what} must be sorted and distinct")
    return ids


def check_blob(value: object, size: int, what: str) -> bytes:
    """Bytes of exactly ``size`` bytes."""
    if not isinstance(value, bytes) or len(value) != size:
        raise SerializationError(f"{what} must be {size} bytes")
    return value


def split_blob(blob: bytes, count: int, size: int, what: str) -> list[bytes]:
    """``blob`` cut into ``count`` pieces of ``size`` bytes."""
    if len(blob) != count * size:
        raise SerializationError(f"{what} must be {count} x {size} bytes, got {len(blob)}")
    return [blob[i * size : (i + 1) * size] for i in range(count)]


def expect_blobs(blobs: Sequence[bytes], count: int, what: str) -> None:
    """Refuse a frame with other than ``count`` blobs."""
    if len(blobs) != count:
        raise SerializationError(f"{what} carries {count} blobs, got {len(blobs)}")


M = TypeVar("M", bound="Message")
_REGISTRY: dict[str, type[Message]] = {}


class Message(abc.ABC):
    """Base of the protocol messages: the frame encoding and decoding they share."""

    TYPE: ClassVar[str] = ""
    round: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.TYPE:
            _REGISTRY[cls.TYPE] = cls

    @abc.abstractmethod
    def _header(self) -> dict[str, Any]:
        """The header fields besides ``type``: ints, ids and lists of ids."""

    def _blobs(self) -> list[bytes]:
        return []

    @classmethod
    @abc.abstractmethod
    def _build(cls: type[M], header: dict[str, Any], blobs: list[bytes]) -> M:
        """The message that ``header`` and ``blobs`` hold (its constructor checks them)."""

    def to_bytes(self) -> bytes:
        """The canonical bytes of this message."""
        return pack({"type": self.TYPE, **self._header()}, self._blobs())

    @classmethod
    def from_bytes(cls: type[M], data: bytes) -> M:
        """Decode a message of this type.

        Raises:
            SerializationError: malformed, non-canonical, or another message type.
        """
        return cls._from_frame(data, *unpack(data))

    @classmethod
    def _from_frame(cls: type[M], data: bytes, header: dict[str, Any], blobs: list[bytes]) -> M:
        """:meth:`from_bytes` of ``data``, whose frame is already unpacked."""
        if header.get("type") != cls.TYPE:
            raise SerializationError(f"expected a {cls.TYPE} message, got {header.get('type')!r}")
        try:
            message = cls._build(header, blobs)
        except ConfigError as exc:
            raise SerializationError(f"{cls.TYPE}: {exc.message}") from None
        # The constructor admitted only ints, ids and finite floats: JSON encodes them all.
        if message.to_bytes() != bytes(data):
            raise SerializationError(f"{cls.TYPE}: not the canonical encoding")
        return message


def decode_message(data: bytes) -> Message:
    """Decode any SecAgg message by the type its header names."""
    header, blobs = unpack(data)
    kind = header.get("type")
    cls = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if cls is not None:
        return cls._from_frame(data, header, blobs)  # unpacked once, not twice
    raise SerializationError(f"unknown secagg message type {kind!r}")
