"""Canonical encodings that hashes and signatures are computed over.

One JSON form (sorted keys, no spaces, ASCII with ``\\uXXXX`` escapes, no NaN or
infinity) and one form of a SHA-256 digest in text (64 lowercase hex characters).
"""

from __future__ import annotations

import json
import re

from fedhive.errors import SerializationError

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def canonical_json(value: object) -> bytes:
    """``value`` as canonical JSON bytes: the same value always gives the same bytes.

    Raises:
        SerializationError: ``value`` is not JSON (NaN, infinity, or another type).
    """
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        )
    except (TypeError, ValueError, RecursionError) as exc:
        raise SerializationError(f"not canonical JSON: {exc}") from None
    return text.encode("ascii")


def is_sha256_hex(value: object) -> bool:
    """Whether ``value`` is a SHA-256 digest as 64 lowercase hex characters."""
    return isinstance(value, str) and _SHA256_HEX.fullmatch(value) is not None
