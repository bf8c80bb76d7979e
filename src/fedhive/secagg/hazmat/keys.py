"""X25519 key pairs and HKDF-SHA256 key agreement between two clients.

SecAgg (Bonawitz et al., CCS 2017, §4) gives each client two Diffie-Hellman key pairs: one
(``c``) to encrypt shares for its neighbours and one (``s``) to derive pairwise masks. The
agreed key is ``HKDF-SHA256(X25519(sk_u, pk_v), 32 bytes, info)``, where ``info`` binds the
purpose, the round and the two client ids in sorted order, so both ends derive the same
key and no key is reused across rounds or purposes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
_INFO_DOMAIN = b"fedhive-secagg/v1/agree"
_PROBE = X25519PrivateKey.from_private_bytes(bytes([9] * KEY_BYTES))  # public, any key works


@dataclass(frozen=True, repr=False)
class KeyPair:
    """A raw X25519 key pair: 32-byte private and public encodings (repr hides both)."""

    private: bytes
    public: bytes

    def __post_init__(self) -> None:
        if len(self.private) != KEY_BYTES or len(self.public) != KEY_BYTES:
            raise ValueError(f"X25519 keys are {KEY_BYTES} bytes")

    def __repr__(self) -> str:
        return "KeyPair(<secret>)"


def generate() -> KeyPair:
    """A fresh X25519 key pair from the operating system's CSPRNG."""
    private = X25519PrivateKey.generate()
    raw = private.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return KeyPair(private=raw, public=public_of(raw))


def public_of(private: bytes) -> bytes:
    """The raw public key of the raw private key ``private`` (re-derivation check)."""
    _check(private, "private")
    public = X25519PrivateKey.from_private_bytes(private).public_key()
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def is_usable_public(public: bytes) -> bool:
    """Whether ``public`` is a 32-byte X25519 key that gives a non-zero shared secret.

    Low-order points make every agreement all-zero (``cryptography`` refuses them), so a
    server checks advertised keys once, before any client has to use them.
    """
    if not isinstance(public, bytes) or len(public) != KEY_BYTES:
        return False
    try:
        _PROBE.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        return False
    return True


def pair_info(purpose: bytes, round: int, id_a: str, id_b: str) -> bytes:
    """HKDF ``info`` for ``purpose`` in ``round`` between two ids, order-independent."""
    low, high = sorted((id_a, id_b))
    parts = [_INFO_DOMAIN, purpose, round.to_bytes(8, "big"), low.encode(), high.encode()]
    return b"".join(len(part).to_bytes(4, "big") + part for part in parts)


def agree(private: bytes, peer_public: bytes, *, info: bytes) -> bytes:
    """The 32-byte key HKDF-SHA256(X25519(private, peer_public), info=info).

    Raises:
        ValueError: a key has the wrong length, or the peer key is a low-order point
            (the shared secret would be all zeros).
    """
    return agree_all(private, [peer_public], infos=[info])[0]


def agree_all(
    private: bytes, peer_publics: Sequence[bytes], *, infos: Sequence[bytes]
) -> list[bytes]:
    """:func:`agree` with many peers, loading the private key once (a third of the cost).

    Raises:
        ValueError: a key has the wrong length, or a peer key is a low-order point.
    """
    _check(private, "private")
    if len(peer_publics) != len(infos):
        raise ValueError("one info per peer public key")
    key = X25519PrivateKey.from_private_bytes(private)
    out = []
    for peer_public, info in zip(peer_publics, infos, strict=True):
        _check(peer_public, "peer public")
        shared = key.exchange(X25519PublicKey.from_public_bytes(peer_public))
        hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info)
        out.append(hkdf.derive(shared))
    return out


def _check(key: bytes, what: str) -> None:
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise ValueError(f"X25519 {what} key must be {KEY_BYTES} bytes")
