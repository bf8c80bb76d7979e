"""Large payloads in chunks: split on the sending side, reassemble and check on the other.

The receiver trusts nothing it is told: the declared size must be within its limit,
chunks must arrive in order with no gap or overlap, the total must match the declared
size and the SHA-256 the declared digest. Every violation is a typed error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from fedhive.errors import SerializationError, ValidationError

DEFAULT_CHUNK_BYTES = 1 << 20


def split(
    data: bytes, chunk_bytes: int = DEFAULT_CHUNK_BYTES, *, start: int = 0
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, chunk)`` pairs covering ``data[start:]`` (one empty chunk for no
    data), copying one chunk at a time, never the whole remainder."""
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be >= 1, got {chunk_bytes}")
    if start >= len(data):
        yield start, b""
        return
    view = memoryview(data)
    for offset in range(start, len(data), chunk_bytes):
        yield offset, bytes(view[offset : offset + chunk_bytes])


class Reassembler:
    """Collects chunks of one payload and checks size, order and digest.

    Args:
        declared_size: the size the sender announced.
        max_size: the largest payload this receiver accepts.
        sha256: the digest the payload must have (hex), or None to skip the check.
    """

    def __init__(self, *, declared_size: int, max_size: int, sha256: str | None = None) -> None:
        if not 0 <= declared_size <= max_size:
            raise ValidationError(
                f"payload of {declared_size} bytes declared, the limit is {max_size} bytes",
                stage="transport",
            )
        self._declared = declared_size
        self._sha256 = sha256
        self._hash = hashlib.sha256()
        self._parts: list[bytes] = []
        self._received = 0

    @property
    def received(self) -> int:
        """Bytes received so far (the offset the next chunk must start at)."""
        return self._received

    def add(self, offset: int, data: bytes) -> None:
        """Add the chunk starting at ``offset``.

        Raises:
            SerializationError: a gap, an overlap, or more data than declared.
        """
        if offset != self._received:
            raise SerializationError(
                f"chunk at offset {offset}, expected {self._received} (missing or reordered)",
                stage="transport",
            )
        if self._received + len(data) > self._declared:
            raise SerializationError(
                f"more than the {self._declared} declared bytes arrived", stage="transport"
            )
        self._parts.append(data)
        self._hash.update(data)
        self._received += len(data)

    def finish(self) -> bytes:
        """The whole payload, once complete and matching its digest.

        Raises:
            SerializationError: fewer bytes than declared (a truncated stream).
            ValidationError: the payload's SHA-256 differs from the declared one.
        """
        if self._received != self._declared:
            raise SerializationError(
                f"truncated payload: {self._received} of {self._declared} bytes",
                stage="transport",
            )
        digest = self._hash.hexdigest()
        if self._sha256 is not None and digest != self._sha256:
            raise ValidationError(
                f"payload SHA-256 {digest[:12]}… differs from the declared {self._sha256[:12]}…",
                stage="transport",
            )
        return b"".join(self._parts)
