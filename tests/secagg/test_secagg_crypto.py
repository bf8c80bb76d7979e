"""X25519 agreement with HKDF, and AES-GCM with associated data."""

from __future__ import annotations

import pytest

from fedhive.errors import SecAggError
from fedhive.secagg.hazmat import aead, keys


def test_both_ends_agree_and_info_separates_keys() -> None:
    alice, bob = keys.generate(), keys.generate()
    info = keys.pair_info(b"mask", 3, "alice", "bob")
    assert info == keys.pair_info(b"mask", 3, "bob", "alice")  # order-free
    shared = keys.agree(alice.private, bob.public, info=info)
    assert shared == keys.agree(bob.private, alice.public, info=info)
    assert len(shared) == 32
    for other in (
        keys.pair_info(b"mask", 4, "alice", "bob"),
        keys.pair_info(b"enc", 3, "alice", "bob"),
        keys.pair_info(b"mask", 3, "alice", "carol"),
    ):
        assert keys.agree(alice.private, bob.public, info=other) != shared


def test_public_key_is_rederived_from_the_private_key() -> None:
    pair = keys.generate()
    assert keys.public_of(pair.private) == pair.public
    assert keys.public_of(keys.generate().private) != pair.public
    assert "secret" in repr(pair)
    assert pair.private.hex() not in repr(pair)


def test_low_order_points_are_not_usable_keys() -> None:
    assert keys.is_usable_public(keys.generate().public)
    assert not keys.is_usable_public(bytes(32))  # the zero point has order 4
    assert not keys.is_usable_public(b"short")
    with pytest.raises(ValueError, match="shared key"):
        keys.agree(keys.generate().private, bytes(32), info=b"")


def test_aead_round_trip_and_refusals() -> None:
    key = bytes(range(32))
    sealed = aead.encrypt(key, b"shares", associated_data=b"round 1: a -> b")
    assert aead.decrypt(key, sealed, associated_data=b"round 1: a -> b") == b"shares"
    assert sealed != aead.encrypt(key, b"shares", associated_data=b"round 1: a -> b")
    with pytest.raises(SecAggError, match="authenticate"):
        aead.decrypt(key, sealed, associated_data=b"round 1: a -> c")
    with pytest.raises(SecAggError, match="authenticate"):
        aead.decrypt(bytes(32), sealed, associated_data=b"round 1: a -> b")
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SecAggError, match="authenticate"):
        aead.decrypt(key, flipped, associated_data=b"round 1: a -> b")
    with pytest.raises(SecAggError, match="too short"):
        aead.decrypt(key, b"x" * 10, associated_data=b"")


def test_keys_of_the_wrong_length_are_refused() -> None:
    pair = keys.generate()
    with pytest.raises(ValueError, match="AES-256-GCM key must be 32 bytes"):
        aead.encrypt(bytes(16), b"shares", associated_data=b"")
    with pytest.raises(ValueError, match="X25519 keys are 32 bytes"):
        keys.KeyPair(private=pair.private[:31], public=pair.public)
    with pytest.raises(ValueError, match="X25519 private key must be 32 bytes"):
        keys.public_of(pair.private + b"\0")
    with pytest.raises(ValueError, match="X25519 peer public key must be 32 bytes"):
        keys.agree(pair.private, pair.public[:16], info=b"")


def test_agree_all_needs_one_info_per_peer() -> None:
    alice, bob, carol = keys.generate(), keys.generate(), keys.generate()
    with pytest.raises(ValueError, match="one info per peer public key"):
        keys.agree_all(alice.private, [bob.public, carol.public], infos=[b"only one"])
    both = keys.agree_all(alice.private, [bob.public, carol.public], infos=[b"b", b"c"])
    assert both == [
        keys.agree(alice.private, bob.public, info=b"b"),
        keys.agree(alice.private, carol.public, info=b"c"),
    ]
