"""Domain-separated hashes and labels that bind SecAgg values to a round and to clients.

Bonawitz et al. (CCS 2017, §4) authenticate share ciphertexts with associated data naming
sender and recipient. We add hash commitments so a semi-honest server can *detect*
inconsistent dealing (not prevent it): a client commits to its self-mask seed b_u in
AdvertiseKeys, and to every share it deals in ShareKeys. A commitment is
SHA-256 over length-prefixed fields (domain, round, ids, value), so no two different field
lists hash the same input. The committed values are 256-bit secrets or shares (uniformly
random to anyone holding fewer than t shares), so the hashes hide them.
"""

from __future__ import annotations

import hashlib

from fedhive.core._compat import StrEnum
from fedhive.secagg.hazmat.keys import pair_info

DIGEST_BYTES = 32
_DOMAIN = b"fedhive-secagg/v1/"


class SecretKind(StrEnum):
    """Which of a client's two shared secrets a share belongs to."""

    SELF_MASK = "self_mask"  # b_u, revealed for clients that sent a masked input
    MASK_KEY = "mask_key"  # s_u^SK, revealed for clients that dropped before it


def _digest(label: bytes, round: int, *fields: bytes) -> bytes:
    parts = (_DOMAIN + label, round.to_bytes(8, "big"), *fields)
    return hashlib.sha256(b"".join(len(p).to_bytes(4, "big") + p for p in parts)).digest()


def self_mask_commitment(round: int, client_id: str, seed: bytes) -> bytes:
    """SHA-256(domain || round || id || b_u): the commitment sent with AdvertiseKeys."""
    return _digest(b"self-mask-commitment", round, client_id.encode(), seed)


def share_commitment(kind: SecretKind, round: int, dealer: str, holder: str, share: bytes) -> bytes:
    """SHA-256(domain || kind || round || dealer || holder || share bytes)."""
    label = b"share-commitment/" + kind.value.encode()
    return _digest(label, round, dealer.encode(), holder.encode(), share)


def share_associated_data(round: int, dealer: str, holder: str) -> bytes:
    """AES-GCM associated data of the shares ``dealer`` sends ``holder`` in ``round``."""
    return _digest(b"share-ciphertext", round, dealer.encode(), holder.encode())


def encryption_info(round: int, id_a: str, id_b: str) -> bytes:
    """HKDF info of the key that encrypts shares between two clients (order-free)."""
    return pair_info(b"share-encryption", round, id_a, id_b)


def mask_info(round: int, id_a: str, id_b: str) -> bytes:
    """HKDF info of the seed of the pairwise mask between two clients (order-free)."""
    return pair_info(b"pairwise-mask", round, id_a, id_b)
