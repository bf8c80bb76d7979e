"""Cryptographic primitives of SecAgg+; imported only by :mod:`fedhive.secagg` itself.

Nothing here knows the protocol: ``prg`` expands a seed into ring elements, ``keys`` does
X25519 key agreement with HKDF, ``aead`` wraps AES-256-GCM and ``shamir`` shares 32-byte
secrets over the field of integers modulo 2^31 - 1. All secret material comes from
``os.urandom``, X25519 key generation or an AES-CTR keystream, never a seedable PRNG.
"""
