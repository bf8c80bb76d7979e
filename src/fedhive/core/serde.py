"""Canonical bytes for weights and records (safetensors), and model version ids.

The same weights always give the same bytes, and the SHA-256 of those bytes is the
model's version id. Records (strategy state, client state) put their arrays in
safetensors and their scalars in the safetensors metadata as JSON. Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Union

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as _st_load
from safetensors.numpy import save as _st_save

from fedhive.core.weights import Array, Weights
from fedhive.errors import SerializationError

Scalar = Union[bool, int, float, str]  # noqa: UP007 - a runtime alias, 3.10-safe
RecordValue = Union[Array, Scalar]  # noqa: UP007
Record = Mapping[str, RecordValue]

_NAMES_KEY = "fedhive.names"
_SCALARS_KEY = "fedhive.scalars"
_FORMAT_KEY = "fedhive.format"
_WEIGHTS_FORMAT = "weights/1"
_RECORD_FORMAT = "record/1"


def weights_to_bytes(weights: Weights) -> bytes:
    """Serialize ``weights`` to canonical safetensors bytes (order kept in metadata)."""
    arrays = {name: np.ascontiguousarray(a) for name, a in weights.items()}
    meta = {_FORMAT_KEY: _WEIGHTS_FORMAT, _NAMES_KEY: json.dumps(list(arrays))}
    return bytes(_st_save(arrays, metadata=meta))


def weights_from_bytes(data: bytes) -> Weights:
    """Decode bytes made by :func:`weights_to_bytes`.

    Raises:
        SerializationError: the bytes are not such a safetensors file.
    """
    arrays, meta = _load(data, _WEIGHTS_FORMAT)
    try:
        names = json.loads(meta[_NAMES_KEY])
    except (KeyError, ValueError) as exc:
        raise SerializationError("weights bytes carry no valid name list") from exc
    if not isinstance(names, list) or sorted(names) != sorted(arrays):
        raise SerializationError("weights bytes: name list does not match the tensors")
    return Weights({name: arrays[name] for name in names})


def model_version(weights: Weights) -> str:
    """The version id of ``weights``: hex SHA-256 of their canonical bytes."""
    return sha256_hex(weights_to_bytes(weights))


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def record_to_bytes(record: Record) -> bytes:
    """Serialize a record: arrays to safetensors, scalars to JSON metadata."""
    arrays: dict[str, Array] = {}
    scalars: dict[str, Scalar] = {}
    for key, value in record.items():
        if isinstance(value, (bool, int, float, str)):
            scalars[key] = value
        elif isinstance(value, np.ndarray) and value.dtype != np.object_:
            arrays[key] = np.ascontiguousarray(value)
        else:
            raise SerializationError(
                f"record value {key!r} must be a numpy array, bool, int, float or str, "
                f"got {type(value).__name__}"
            )
    meta = {_FORMAT_KEY: _RECORD_FORMAT, _SCALARS_KEY: json.dumps(scalars, allow_nan=False)}
    return bytes(_st_save(arrays, metadata=meta))


def record_from_bytes(data: bytes) -> dict[str, RecordValue]:
    """Decode bytes made by :func:`record_to_bytes`.

    Raises:
        SerializationError: the bytes are not such a record.
    """
    arrays, meta = _load(data, _RECORD_FORMAT)
    try:
        scalars = json.loads(meta[_SCALARS_KEY])
    except (KeyError, ValueError) as exc:
        raise SerializationError("record bytes carry no valid scalar table") from exc
    if not isinstance(scalars, dict) or not all(
        isinstance(v, (bool, int, float, str)) for v in scalars.values()
    ):
        raise SerializationError("record scalars must be bool, int, float or str")
    if set(scalars) & set(arrays):
        raise SerializationError("record key is both an array and a scalar")
    out: dict[str, RecordValue] = dict(arrays)
    out.update(scalars)
    return out


def _load(data: bytes, expected_format: str) -> tuple[dict[str, Array], dict[str, str]]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SerializationError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < 8:
        raise SerializationError("truncated safetensors bytes")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > len(data) - 8:
        raise SerializationError("safetensors header is longer than the data")
    try:
        header = json.loads(data[8 : 8 + header_len])
        arrays = _st_load(data)
    except (SafetensorError, ValueError, UnicodeDecodeError, TypeError) as exc:
        raise SerializationError(f"invalid safetensors bytes: {exc}") from exc
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get(_FORMAT_KEY) != expected_format:
        raise SerializationError(f"bytes are not a fedhive {expected_format.split('/')[0]}")
    return arrays, meta
