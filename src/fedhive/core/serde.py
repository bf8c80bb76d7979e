"""Canonical bytes for weights and records (safetensors), and model version ids.

The same weights always give the same bytes, and the SHA-256 of those bytes is the
model's version id. The bytes are a standard safetensors file that any safetensors
reader loads, written here rather than by ``safetensors.save`` because that writer
orders metadata keys differently from call to call: this one writes the header as
compact JSON in a fixed order (metadata first, then tensors in the model's order) and
the tensors' little-endian data in that same order. Records (strategy state, client
state) put their arrays in the tensors and their scalars in the metadata. Nothing is
pickled.

Decoding reads untrusted bytes (a client's update), so the header's JSON is parsed by
Python only once it is known to be small: at most :data:`MAX_HEADER_BYTES`, checked by
safetensors' own (Rust) loader first, and, for weights, not much longer than the header
its tensors need. A JSON "header bomb" is refused before Python builds any of it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Union

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as _st_load

from fedhive.core.weights import Array, Weights
from fedhive.errors import SerializationError

Scalar = Union[bool, int, float, str]  # noqa: UP007 - a runtime alias, 3.10-safe
RecordValue = Union[Array, Scalar]  # noqa: UP007
Record = Mapping[str, RecordValue]

MAX_HEADER_BYTES = 16 << 20
"""Longest safetensors header decoded (about 250k tensors' entries)."""
_META_KEY = "fedhive"
_WEIGHTS_FORMAT = "weights/1"
_RECORD_FORMAT = "record/1"
_DTYPES = {
    np.dtype(np.bool_): "BOOL",
    np.dtype(np.uint8): "U8",
    np.dtype(np.int8): "I8",
    np.dtype(np.uint16): "U16",
    np.dtype(np.int16): "I16",
    np.dtype(np.float16): "F16",
    np.dtype(np.uint32): "U32",
    np.dtype(np.int32): "I32",
    np.dtype(np.float32): "F32",
    np.dtype(np.uint64): "U64",
    np.dtype(np.int64): "I64",
    np.dtype(np.float64): "F64",
}


def _encode(arrays: Mapping[str, Array], meta: dict[str, Any]) -> bytes:
    """A safetensors file with ``arrays`` in order and ``meta`` as one JSON string."""
    try:
        meta_json = json.dumps(meta, sort_keys=True, allow_nan=False)
    except ValueError as exc:  # json refuses NaN and infinity
        raise SerializationError(f"metadata values must be finite: {exc}") from None
    chunks = [
        np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
        for array in arrays.values()
    ]
    head = _header(arrays, [len(data) for data in chunks], meta_json)
    return b"".join([len(head).to_bytes(8, "little"), head, *chunks])


def _header(arrays: Mapping[str, Array], sizes: list[int], meta_json: str) -> bytes:
    """The header of a file of ``arrays`` (``sizes`` bytes each), padded to 8 bytes."""
    header: dict[str, Any] = {"__metadata__": {_META_KEY: meta_json}}
    offset = 0
    for (name, array), size in zip(arrays.items(), sizes, strict=True):
        if name == "__metadata__":
            raise SerializationError("'__metadata__' cannot name a tensor")
        code = _DTYPES.get(array.dtype.newbyteorder("="))
        if code is None:
            raise SerializationError(
                f"tensor {name!r}: dtype {array.dtype} has no safetensors code"
            )
        header[name] = {
            "dtype": code,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    head = json.dumps(header, separators=(",", ":")).encode()
    return head + b" " * (-len(head) % 8)  # the format allows space padding; keeps alignment


def weights_to_bytes(weights: Weights) -> bytes:
    """Serialize ``weights`` to canonical safetensors bytes (order kept in metadata)."""
    return _encode(weights, {"format": _WEIGHTS_FORMAT, "names": list(weights)})


def weights_from_bytes(data: bytes) -> Weights:
    """Decode bytes made by :func:`weights_to_bytes`.

    Raises:
        SerializationError: the bytes are not such a safetensors file.
    """
    arrays, meta = _load(data, _WEIGHTS_FORMAT)
    names = meta.get("names")
    if (
        not isinstance(names, list)
        or not all(isinstance(n, str) for n in names)
        or sorted(names) != sorted(arrays)
    ):
        raise SerializationError("weights bytes: name list does not match the tensors")
    return Weights({name: arrays[name] for name in names})


def model_version(weights: Weights) -> str:
    """The version id of ``weights``: hex SHA-256 of their canonical bytes."""
    return sha256_hex(weights_to_bytes(weights))


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def record_to_bytes(record: Record) -> bytes:
    """Serialize a record: arrays to safetensors tensors, scalars to JSON metadata."""
    arrays: dict[str, Array] = {}
    scalars: dict[str, Scalar] = {}
    for key, value in record.items():
        if isinstance(value, (bool, int, float, str)):
            scalars[key] = value
        elif isinstance(value, np.ndarray) and value.dtype != np.object_:
            arrays[key] = value
        else:
            raise SerializationError(
                f"record value {key!r} must be a numpy array, bool, int, float or str, "
                f"got {type(value).__name__}"
            )
    return _encode(arrays, {"format": _RECORD_FORMAT, "scalars": scalars})


def record_from_bytes(data: bytes) -> dict[str, RecordValue]:
    """Decode bytes made by :func:`record_to_bytes`.

    Raises:
        SerializationError: the bytes are not such a record.
    """
    arrays, meta = _load(data, _RECORD_FORMAT)
    scalars = meta.get("scalars")
    if not isinstance(scalars, dict) or not all(
        isinstance(v, (bool, int, float, str)) for v in scalars.values()
    ):
        raise SerializationError("record scalars must be bool, int, float or str")
    if set(scalars) & set(arrays):
        raise SerializationError("record key is both an array and a scalar")
    out: dict[str, RecordValue] = dict(arrays)
    out.update(scalars)
    return out


def _load(data: bytes, expected_format: str) -> tuple[dict[str, Array], dict[str, Any]]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SerializationError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < 8:
        raise SerializationError("truncated safetensors bytes")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > len(data) - 8:
        raise SerializationError("safetensors header is longer than the data")
    if header_len > MAX_HEADER_BYTES:
        raise SerializationError(
            f"safetensors header of {header_len} bytes, at most {MAX_HEADER_BYTES} are read"
        )
    try:
        arrays = _st_load(data)  # checks the header's structure, in Rust, before Python does
        if expected_format == _WEIGHTS_FORMAT:
            _check_header_length(header_len, arrays)
        header = json.loads(data[8 : 8 + header_len])
        meta = json.loads(header["__metadata__"][_META_KEY])
    except (
        SafetensorError,
        ValueError,
        UnicodeDecodeError,
        TypeError,
        KeyError,
        RecursionError,
    ) as exc:
        raise SerializationError(f"invalid fedhive safetensors bytes: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != expected_format:
        kind = expected_format.split("/", maxsplit=1)[0]
        raise SerializationError(f"bytes are not a fedhive {kind}")
    return arrays, meta


def _check_header_length(header_len: int, arrays: Mapping[str, Array]) -> None:
    """Refuse a weights header much longer than its tensors' entries need (what else it
    holds would only cost memory to parse): at most twice the canonical header, + 1 KiB."""
    meta = json.dumps({"format": _WEIGHTS_FORMAT, "names": list(arrays)}, sort_keys=True)
    needed = len(_header(arrays, [a.nbytes for a in arrays.values()], meta))
    if header_len > 2 * needed + 1024:
        raise SerializationError(
            f"safetensors header of {header_len} bytes holds more than its tensors' entries "
            f"(about {needed} bytes)"
        )
