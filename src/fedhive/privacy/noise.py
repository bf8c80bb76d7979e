"""Gaussian noise for the Gaussian mechanism, from a seeded or a cryptographic source.

``gaussian_noise(size, std, source)`` is ``std`` times ``size`` standard normals drawn from
a :class:`NoiseSource`. Two sources exist, one per place the code runs (DESIGN.md,
Conventions, Randomness):

- :class:`SeededNoise` for simulation: numpy's PCG64 seeded from a
  :class:`~fedhive.core.rng.SeedStream`, so the same run seed gives the same noise.
- :class:`SecureNoise` for deployment: a ChaCha20 keystream under a fresh ``os.urandom``
  key, never a seedable PRNG, so nobody who knows a seed can subtract the noise.
"""

from __future__ import annotations

import math
from os import urandom
from typing import Protocol

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from fedhive.core.config import check_int, check_real
from fedhive.core.rng import SeedStream
from fedhive.core.weights import FloatVector
from fedhive.errors import ShapeMismatchError

__all__ = ["NoiseSource", "SecureNoise", "SeededNoise", "gaussian_noise"]

_KEY_BYTES = 32
_NONCE_BYTES = 12  # ChaCha20's 16-byte "nonce" argument is a 4-byte counter + 12 bytes
_MANTISSA_BITS = 53


class NoiseSource(Protocol):
    """Where standard normal samples come from."""

    def normal(self, size: int) -> FloatVector:
        """Return ``size`` independent N(0, 1) samples as a float64 vector."""
        ...


def gaussian_noise(size: int, std: float, source: NoiseSource) -> FloatVector:
    """Draw ``size`` independent N(0, std²) samples from ``source``.

    Raises:
        ConfigError: ``size`` is negative or ``std`` is negative or not finite.
        ShapeMismatchError: ``source`` returned something other than ``size`` samples.
    """
    check_int("size", size, minimum=0)
    check_real("std", std, low=0)
    normals = np.asarray(source.normal(size), dtype=np.float64)
    if normals.shape != (size,):
        raise ShapeMismatchError(
            f"noise source returned shape {normals.shape}, expected ({size},)", stage="noise"
        )
    noise: FloatVector = normals * float(std)
    return noise


class SeededNoise:
    """Reproducible simulation noise: PCG64 seeded from ``stream``.

    One ``SeededNoise`` is one sequence of draws: successive calls continue it, and two
    objects built from the same stream yield the same sequence. Derive a child stream per
    client and round (``stream.child(...)``) rather than sharing an object between them.
    Never use it in deployment: anyone who learns the seed can remove the noise.
    """

    def __init__(self, stream: SeedStream) -> None:
        """Start the draw sequence of ``stream``."""
        self.stream = stream
        self._generator = stream.numpy()

    def normal(self, size: int) -> FloatVector:
        """Return the next ``size`` standard normals of this sequence."""
        check_int("size", size, minimum=0)
        return self._generator.standard_normal(size)


class SecureNoise:
    """Deployment noise from a CSPRNG: ChaCha20 under a fresh random key per call.

    Each :meth:`normal` call draws a new 32-byte key and 12-byte nonce from
    ``os.urandom``, encrypts zeros with ChaCha20 (``cryptography``) to get the keystream,
    turns each 8 keystream bytes into a 53-bit uniform and maps pairs of uniforms to
    normals with the Box-Muller transform. Nothing is seedable and no state is kept, so
    calls and objects are independent and safe to share between threads.

    Note:
        This does not mitigate the floating-point attack of Mironov ("On Significance of
        the Least Significant Bits for Differential Privacy", CCS 2012): the released
        float64 values of ``x + noise`` can leak ``x`` through their low-order bits.
        Defences (snapping, discrete Gaussian) are not implemented.
    """

    def normal(self, size: int) -> FloatVector:
        """Return ``size`` fresh standard normals from the operating system's CSPRNG."""
        check_int("size", size, minimum=0)
        pairs = (size + 1) // 2
        # Counter starts at 0: one call may use up to 2**32 blocks (256 GiB) of keystream.
        nonce = bytes(4) + urandom(_NONCE_BYTES)
        encryptor = Cipher(algorithms.ChaCha20(urandom(_KEY_BYTES), nonce), mode=None).encryptor()
        keystream = encryptor.update(bytes(16 * pairs)) + encryptor.finalize()
        words = np.frombuffer(keystream, dtype="<u8") >> np.uint64(64 - _MANTISSA_BITS)
        integers = words.astype(np.float64)  # exact: below 2**53
        scale = 2.0**-_MANTISSA_BITS
        # (k + 1) / 2**53 lies in (0, 1], so the logarithm is finite; k / 2**53 in [0, 1).
        radius = np.sqrt(-2.0 * np.log((integers[:pairs] + 1.0) * scale))
        angle = (2.0 * math.pi * scale) * integers[pairs:]
        normals: FloatVector = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])
        return normals[:size]
