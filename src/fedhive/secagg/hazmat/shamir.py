"""Vectorised t-of-n Shamir secret sharing of 32-byte secrets over GF(2^31 - 1).

Shamir, "How to share a secret" (CACM 1979); used by SecAgg (Bonawitz et al., CCS 2017,
§3.1) to share each client's self-mask seed and mask key. A 32-byte secret is cut into
nine 30-bit chunks (little-endian), each below the prime p = 2^31 - 1, and every chunk is
shared with its own random polynomial of degree t - 1 whose coefficients come from
``os.urandom``. A share is the polynomial values at one x-coordinate (1..p-1, never 0),
nine field elements, serialised as 36 bytes.

Reconstruction is Lagrange interpolation at 0, done for *many* secrets at once with numpy
int64 arithmetic (every product of two field elements is below 2^62): batch reconstruction
is where SecAgg+ spends its time. Fewer shares than the threshold, or repeated
x-coordinates, are refused rather than interpolated into garbage; shares that are simply
wrong reconstruct a wrong secret, which callers must verify (against a commitment).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from fedhive.errors import SecAggError

PRIME = (1 << 31) - 1
SECRET_BYTES = 32
CHUNK_BITS = 30
CHUNKS = -(-SECRET_BYTES * 8 // CHUNK_BITS)  # 9 chunks of 30 bits hold 256 bits
SHARE_BYTES = CHUNKS * 4

Int64Array = npt.NDArray[np.int64]


def secrets_to_chunks(secrets: Sequence[bytes]) -> Int64Array:
    """The (len(secrets), 9) field elements holding each 32-byte secret, 30 bits each."""
    out = np.zeros((len(secrets), CHUNKS), dtype=np.int64)
    for row, secret in enumerate(secrets):
        if not isinstance(secret, bytes) or len(secret) != SECRET_BYTES:
            raise ValueError(f"secrets must be {SECRET_BYTES} bytes")
        value = int.from_bytes(secret, "little")
        for chunk in range(CHUNKS):
            out[row, chunk] = (value >> (CHUNK_BITS * chunk)) & ((1 << CHUNK_BITS) - 1)
    return out


def chunks_to_secret(chunks: npt.NDArray[np.int64]) -> bytes | None:
    """The 32-byte secret the nine field elements hold, or None if they hold no secret.

    A wrong reconstruction (inconsistent shares) usually yields a chunk of 30 bits or more
    or a value above 256 bits; that is reported as None instead of a truncated secret.
    """
    value = 0
    for chunk in range(CHUNKS):
        part = int(chunks[chunk])
        if not 0 <= part < (1 << CHUNK_BITS):
            return None
        value |= part << (CHUNK_BITS * chunk)
    if value >> (SECRET_BYTES * 8):
        return None
    return value.to_bytes(SECRET_BYTES, "little")


def share_to_bytes(share: npt.NDArray[np.int64]) -> bytes:
    """The canonical 36 bytes (nine little-endian uint32) of one share's field elements."""
    return np.asarray(share, dtype="<u4").tobytes()


def share_from_bytes(data: bytes) -> Int64Array:
    """The nine field elements of a 36-byte share.

    Raises:
        SecAggError: wrong length, or an element that is not below p.
    """
    if len(data) != SHARE_BYTES:
        raise SecAggError(f"a share is {SHARE_BYTES} bytes, got {len(data)}")
    values = np.frombuffer(data, dtype="<u4").astype(np.int64)
    if np.any(values >= PRIME):
        raise SecAggError("a share element is not a field element (>= 2^31 - 1)")
    return values


def shares_from_bytes(
    data: Sequence[bytes],
) -> tuple[Int64Array, npt.NDArray[np.bool_]]:
    """:func:`share_from_bytes` of many shares in one pass, without raising.

    Returns:
        ((len(data), 9) field elements, zero in rows that are not shares; which rows are
        shares: 36 bytes whose every element is below p).
    """
    sized = np.fromiter((len(d) == SHARE_BYTES for d in data), dtype=bool, count=len(data))
    blob = b"".join(d if ok else bytes(SHARE_BYTES) for d, ok in zip(data, sized, strict=True))
    values = np.frombuffer(blob, dtype="<u4").reshape(len(data), CHUNKS).astype(np.int64)
    valid = sized & ~np.any(values >= PRIME, axis=1)
    values[~valid] = 0
    return values, valid


def split(secrets: Sequence[bytes], xs: Sequence[int], *, threshold: int) -> Int64Array:
    """Share each secret at the x-coordinates ``xs`` so that any ``threshold`` recover it.

    Args:
        secrets: B secrets of 32 bytes each.
        xs: the n distinct share x-coordinates, each in [1, p - 1].
        threshold: t, with 1 <= t <= n.

    Returns:
        int64 array of shape (B, n, 9): ``out[b, j]`` is the share of secret b at ``xs[j]``.
    """
    points = _check_xs(np.asarray(xs, dtype=np.int64).reshape(1, -1))[0]
    if not 1 <= threshold <= len(points):
        raise ValueError(f"threshold must be in [1, {len(points)}], got {threshold}")
    chunks = secrets_to_chunks(secrets)
    coefficients = _random_field_elements((len(secrets), CHUNKS, threshold - 1))
    # Horner's rule, highest coefficient first, for every (secret, chunk, x) at once.
    acc = np.zeros((len(secrets), CHUNKS, len(points)), dtype=np.int64)
    for degree in range(threshold - 2, -1, -1):
        acc = (acc * points + coefficients[:, :, degree, None]) % PRIME
    acc = (acc * points + chunks[:, :, None]) % PRIME
    return np.ascontiguousarray(acc.transpose(0, 2, 1))


def reconstruct(xs: Int64Array, ys: Int64Array, *, threshold: int) -> Int64Array:
    """Interpolate many sharings at 0 in one vectorised pass.

    Args:
        xs: (B, m) x-coordinates of the shares of each of B secrets, distinct per row.
        ys: (B, m, 9) the shares' field elements.
        threshold: t; rows need m >= t shares, and the first t of each row are used.

    Returns:
        (B, 9) field elements (pass each row to :func:`chunks_to_secret`).

    Raises:
        SecAggError: fewer than ``threshold`` shares, repeated or invalid x-coordinates,
            or share elements outside the field.
    """
    xs = np.asarray(xs, dtype=np.int64)
    ys = np.asarray(ys, dtype=np.int64)
    if xs.ndim != 2 or ys.shape != (*xs.shape, CHUNKS):
        raise SecAggError(f"shares must have shapes (B, m) and (B, m, {CHUNKS})")
    if xs.shape[1] < threshold or threshold < 1:
        raise SecAggError(f"reconstruction needs {threshold} shares per secret, got {xs.shape[1]}")
    if np.any((ys < 0) | (ys >= PRIME)):
        raise SecAggError("share elements must be field elements in [0, 2^31 - 1)")
    xs = _check_xs(xs[:, :threshold])
    weights = lagrange_at_zero(xs)
    terms = (weights[:, :, None] * ys[:, :threshold, :]) % PRIME
    total: Int64Array = terms.sum(axis=1) % PRIME  # t terms below 2^31: no int64 overflow
    return total


def lagrange_at_zero(xs: Int64Array) -> Int64Array:
    """Lagrange basis values at 0: ``w[b, j] = prod_{m != j} x_m / (x_m - x_j) mod p``."""
    size = xs.shape[1]
    numerator = np.ones_like(xs)
    denominator = np.ones_like(xs)
    for other in range(size):
        x_other = xs[:, other : other + 1]
        same = np.arange(size) == other
        numerator = np.where(same, numerator, (numerator * x_other) % PRIME)
        difference = (x_other - xs) % PRIME
        denominator = np.where(same, denominator, (denominator * difference) % PRIME)
    return (numerator * _inverse(denominator)) % PRIME


def _inverse(values: Int64Array) -> Int64Array:
    """Modular inverses by Fermat's little theorem, v^(p-2), by square-and-multiply."""
    result = np.ones_like(values)
    base = values % PRIME
    exponent = PRIME - 2
    while exponent:
        if exponent & 1:
            result = (result * base) % PRIME
        base = (base * base) % PRIME
        exponent >>= 1
    return result


def _check_xs(xs: Int64Array) -> Int64Array:
    if np.any((xs <= 0) | (xs >= PRIME)):
        raise SecAggError("share x-coordinates must be in [1, 2^31 - 2]")
    ordered = np.sort(xs, axis=1)
    if np.any(ordered[:, 1:] == ordered[:, :-1]):
        raise SecAggError("share x-coordinates must be distinct")
    return xs


def _random_field_elements(shape: tuple[int, ...]) -> Int64Array:
    """Uniform elements of [0, p) from os.urandom: 31-bit words, rejecting the value p."""
    count = int(np.prod(shape))
    out = np.empty(count, dtype=np.int64)
    filled = 0
    while filled < count:
        words = np.frombuffer(os.urandom(4 * (count - filled)), dtype="<u4").astype(np.int64)
        words = words[(words & PRIME) != PRIME] & PRIME
        out[filled : filled + len(words)] = words
        filled += len(words)
    return out.reshape(shape)
