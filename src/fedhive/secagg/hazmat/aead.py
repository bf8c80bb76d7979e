"""AES-256-GCM with associated data, the channel that carries shares between clients.

In SecAgg (Bonawitz et al., CCS 2017, §4, round ShareKeys) each client encrypts the shares
meant for a neighbour under their agreed key; the associated data binds the ciphertext to
the round and to the (sender, recipient) pair, so the server cannot re-route it. A wrong
key, tag or associated data is refused as :class:`SecAggError`: this module is the one
place that maps ``cryptography``'s ``InvalidTag``.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fedhive.errors import SecAggError

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16


def encrypt(key: bytes, plaintext: bytes, *, associated_data: bytes) -> bytes:
    """Encrypt ``plaintext``; returns ``nonce || ciphertext || tag`` (random 96-bit nonce)."""
    _check_key(key)
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated_data)


def decrypt(key: bytes, sealed: bytes, *, associated_data: bytes) -> bytes:
    """Decrypt what :func:`encrypt` returned.

    Raises:
        SecAggError: the tag, the associated data, the key that sealed it, or the length
            is wrong.
        ValueError: ``key`` is not a 32-byte key (a caller's bug, as in ``cryptography``'s
            hazmat).
    """
    _check_key(key)
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise SecAggError("ciphertext is too short to hold a nonce and a tag")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated_data)
    except InvalidTag:
        raise SecAggError(
            "ciphertext does not authenticate (wrong key, tag or associated data)"
        ) from None


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise ValueError(f"AES-256-GCM key must be {KEY_BYTES} bytes")
