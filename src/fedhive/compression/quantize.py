"""Unbiased min-max stochastic quantization of a flat float vector, block by block.

The scheme (QSGD, Alistarh et al., 2017, in its common min-max form): for a block with
minimum ``lo`` and maximum ``hi`` and ``L = 2**bits - 1`` steps of ``s = (hi - lo) / L``,
a value ``x`` has position ``t = (x - lo) / s`` in ``[0, L]`` and is sent as the code
``q = floor(t) + B``, where ``B`` is 1 with probability ``t - floor(t)`` (else 0). So
``E[q] = t`` and the decoded ``lo + q * s`` is an unbiased estimate of ``x``, less than
one step ``s`` away from it. A constant block (``hi == lo``) decodes exactly.

``lo`` and ``hi`` travel as float32, rounded outward (down and up) so that the block
still lies within them (for a float64 tensor the step is then that of the rounded bounds:
wider by at most one float32 ulp of each, or its smallest subnormal); the codes are one
byte each (8 bits) or two to a byte (4 bits, low nibble first, a zero nibble padding an
odd count). Body: all ``lo``, all ``hi``,
then the codes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from fedhive.core.weights import FloatVector
from fedhive.errors import CodecError

Lengths = npt.NDArray[np.int64]
_F32 = np.dtype("<f4")


def block_lengths(sizes: Sequence[int], block_size: int | None) -> Lengths:
    """The lengths of the blocks of tensors of ``sizes`` (in order; none spans two)."""
    parts: list[Lengths] = []
    for size in sizes:
        if size == 0:
            continue
        block = size if block_size is None else min(block_size, size)
        full, rest = divmod(size, block)
        parts.append(np.full(full, block, dtype=np.int64))
        if rest:
            parts.append(np.array([rest], dtype=np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def body_size(num_values: int, num_blocks: int, bits: int) -> int:
    """Bytes of the body for ``num_values`` values in ``num_blocks`` blocks."""
    return 8 * num_blocks + (num_values * bits + 7) // 8


def quantize(values: FloatVector, lengths: Lengths, bits: int, rng: np.random.Generator) -> bytes:
    """The body for ``values`` (float64, finite) split into blocks of ``lengths``.

    Raises:
        CodecError: a value beyond float32's range (its block bounds cannot be sent).
    """
    if values.size == 0:
        return b""
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    with np.errstate(over="ignore"):
        lo = _outward(np.minimum.reduceat(values, starts), -np.inf)
        hi = _outward(np.maximum.reduceat(values, starts), np.inf)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise CodecError("cannot quantize values beyond float32's range")
    levels = (1 << bits) - 1
    low, step = _per_value(lo, hi, lengths, levels)
    position = np.divide(values - low, step, out=np.zeros_like(values), where=step > 0)
    position = np.clip(position, 0.0, levels)
    floor = np.floor(position)
    codes = (floor + (rng.random(values.size) < position - floor)).astype(np.uint8)
    np.minimum(codes, levels, out=codes)
    return lo.astype(_F32).tobytes() + hi.astype(_F32).tobytes() + _pack(codes, bits)


def dequantize(body: bytes, lengths: Lengths, bits: int) -> FloatVector:
    """The float64 values a :func:`quantize` body stands for.

    Raises:
        CodecError: the body has the wrong size, non-finite or inverted block bounds, or
            a non-zero padding nibble.
    """
    num_blocks = int(lengths.size)
    num_values = int(lengths.sum())
    if len(body) != body_size(num_values, num_blocks, bits):
        raise CodecError(
            f"quantized body of {len(body)} bytes, expected "
            f"{body_size(num_values, num_blocks, bits)}"
        )
    if num_values == 0:
        return np.zeros(0, dtype=np.float64)
    bounds = np.frombuffer(body, dtype=_F32, count=2 * num_blocks).astype(np.float64)
    lo, hi = bounds[:num_blocks], bounds[num_blocks:]
    if not (np.isfinite(bounds).all() and (lo <= hi).all()):
        raise CodecError("quantized body: block bounds are not finite, or min exceeds max")
    codes = _unpack(body[8 * num_blocks :], num_values, bits)
    low, step = _per_value(lo, hi, lengths, (1 << bits) - 1)
    decoded: FloatVector = low + codes * step
    return decoded


def _outward(bound: FloatVector, direction: float) -> npt.NDArray[np.float32]:
    """``bound`` as float32, rounded towards ``direction`` where the cast moved it."""
    cast = bound.astype(np.float32)
    moved = (cast > bound) if direction < 0 else (cast < bound)
    return np.where(moved, np.nextafter(cast, np.float32(direction)), cast)


def _per_value(
    lo: npt.NDArray[np.floating], hi: npt.NDArray[np.floating], lengths: Lengths, levels: int
) -> tuple[FloatVector, FloatVector]:
    """Each value's block minimum and step, as float64 (the same on both sides)."""
    low = lo.astype(np.float64)
    step = (hi.astype(np.float64) - low) / levels
    return np.repeat(low, lengths), np.repeat(step, lengths)


def _pack(codes: npt.NDArray[np.uint8], bits: int) -> bytes:
    if bits == 8:
        return codes.tobytes()
    if codes.size % 2:
        codes = np.append(codes, np.uint8(0))
    return (codes[0::2] | (codes[1::2] << 4)).astype(np.uint8).tobytes()


def _unpack(data: bytes, num_values: int, bits: int) -> FloatVector:
    raw = np.frombuffer(data, dtype=np.uint8)
    if bits == 8:
        return raw.astype(np.float64)
    codes = np.empty(2 * raw.size, dtype=np.uint8)
    codes[0::2] = raw & 0x0F
    codes[1::2] = raw >> 4
    if codes.size > num_values and codes[-1] != 0:
        raise CodecError("quantized body: the padding nibble is not zero")
    return codes[:num_values].astype(np.float64)
