"""Expand a 32-byte seed into ring elements with the AES-256-CTR keystream.

The masks of SecAgg (Bonawitz et al., CCS 2017, §4: ``PRG(b_u)`` and ``PRG(s_{u,v})``) are
the keystream of AES-256 in counter mode keyed by the *full* 32-byte seed, read as
little-endian words: each word is uniform over Z_{2^bits} when AES is a PRF. Every seed is
used for exactly one expansion, so the fixed all-zero initial counter never repeats.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SEED_BYTES = 32
RING_BITS = (32, 64)
_ZERO_NONCE = bytes(16)
# The keystream is AES-CTR over zeros, written straight into the output array in chunks
# from one shared zero buffer: no fresh plaintext, ciphertext or copy per expansion.
_CHUNK_BYTES = 1 << 18
_ZEROS = bytes(_CHUNK_BYTES)
_SLACK = 16  # update_into wants room for len(data) + block size - 1 bytes


def ring_dtype(bits: int) -> np.dtype[np.unsignedinteger]:
    """The unsigned numpy dtype that holds Z_{2^bits} (``uint32`` or ``uint64``)."""
    if bits == 32:
        return np.dtype(np.uint32)
    if bits == 64:
        return np.dtype(np.uint64)
    raise ValueError(f"ring bits must be one of {RING_BITS}, got {bits!r}")


def expand(seed: bytes, size: int, *, bits: int) -> npt.NDArray[np.unsignedinteger]:
    """``size`` pseudorandom elements of Z_{2^bits} from the AES-256-CTR keystream of ``seed``.

    Args:
        seed: the 32-byte AES-256 key (a self-mask seed or an agreed pairwise key).
        size: how many ring elements to produce (>= 0).
        bits: 32 or 64, the ring's word size.

    Returns:
        A new array of dtype ``uint32`` or ``uint64`` and length ``size``.
    """
    dtype = ring_dtype(bits)
    if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
        raise ValueError(f"seed must be {SEED_BYTES} bytes")
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(_ZERO_NONCE)).encryptor()
    total = size * dtype.itemsize
    words = np.empty(size + _SLACK // dtype.itemsize, dtype=dtype.newbyteorder("<"))
    view = words.data.cast("B")
    zeros = memoryview(_ZEROS)
    for start in range(0, total, _CHUNK_BYTES):
        length = min(_CHUNK_BYTES, total - start)
        encryptor.update_into(zeros[:length], view[start : start + length + _SLACK])
    encryptor.finalize()
    out: npt.NDArray[np.unsignedinteger] = words[:size].astype(dtype, copy=False)
    return out
