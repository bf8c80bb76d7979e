"""Top-k and random-k sparsification of a flat float vector: sorted indices and values.

Top-k keeps the ``k`` values of largest magnitude; random-k keeps ``k`` chosen uniformly
without replacement and, when unbiased, scales them by ``d / k`` (each value is kept with
probability ``k / d``, so the expectation of the decoded vector is the input). The body is
the ``k`` indices as little-endian uint32, strictly increasing, then the ``k`` values as
float32. ``k`` follows from the spec and the number of float values alone, so the decoder
knows the body's size before reading it.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from fedhive.core.weights import FloatVector
from fedhive.errors import CodecError

_U32 = np.dtype("<u4")
_F32 = np.dtype("<f4")
MAX_VALUES = 2**32
"""Sparsified vectors hold fewer values than this (indices are uint32)."""


def kept(fraction: float, num_values: int) -> int:
    """``k``: how many of ``num_values`` values a sparsifier keeps (at least one)."""
    if num_values == 0:
        return 0
    return min(num_values, max(1, math.ceil(fraction * num_values)))


def body_size(k: int) -> int:
    """Bytes of the body holding ``k`` values."""
    return 8 * k


def top_k(values: FloatVector, k: int) -> npt.NDArray[np.int64]:
    """The sorted indices of the ``k`` values of largest magnitude."""
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    chosen = np.argpartition(-np.abs(values), k - 1)[:k]
    return np.sort(chosen).astype(np.int64)


def random_k(num_values: int, k: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """``k`` sorted indices drawn uniformly without replacement from ``num_values``."""
    return np.sort(rng.choice(num_values, size=k, replace=False)).astype(np.int64)


def sparsify(values: FloatVector, indices: npt.NDArray[np.int64], scale: float) -> bytes:
    """The body for ``values[indices] * scale``.

    Raises:
        CodecError: too many values for uint32 indices, or a kept value beyond float32.
    """
    if values.size >= MAX_VALUES:
        raise CodecError(f"cannot sparsify {values.size} values: at most {MAX_VALUES - 1}")
    with np.errstate(over="ignore"):
        kept_values = (values[indices] * scale).astype(_F32)
    if not np.isfinite(kept_values).all():
        raise CodecError("cannot sparsify values beyond float32's range")
    return indices.astype(_U32).tobytes() + kept_values.tobytes()


def densify(body: bytes, num_values: int, k: int) -> FloatVector:
    """The dense float64 vector a :func:`sparsify` body stands for (zeros elsewhere).

    Raises:
        CodecError: a wrong body size, indices out of range, repeated or out of order,
            or non-finite values.
    """
    if len(body) != body_size(k):
        raise CodecError(f"sparse body of {len(body)} bytes, expected {body_size(k)}")
    indices = np.frombuffer(body, dtype=_U32, count=k).astype(np.int64)
    kept_values = np.frombuffer(body, dtype=_F32, count=k, offset=4 * k).astype(np.float64)
    if k and (indices[-1] >= num_values or (np.diff(indices) <= 0).any()):
        raise CodecError(f"sparse body: indices must be strictly increasing and below {num_values}")
    if not np.isfinite(kept_values).all():
        raise CodecError("sparse body: a value is NaN or infinity")
    dense = np.zeros(num_values, dtype=np.float64)
    dense[indices] = kept_values
    return dense
