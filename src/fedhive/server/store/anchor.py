"""The audit log's anchor: its head, signed with the server's key at every commit.

In the transaction that appends entries, the store signs the newest one::

    signed = b"fedhive/audit-head/v1\\n" + canonical_json({"hash": hash, "seq": seq})

(ECDSA P-256 with SHA-256, DER; or Ed25519, by key type) and keeps it in the
``audit_heads`` table; once the transaction has committed it writes the same head to
``audit-head.json`` beside the database. With the server's certificate, verification
then catches what the bare hash chain cannot: a rewritten and re-chained history (the
signed heads no longer match), entries added without the key (unsigned), and a log cut
short (shorter than the head file). Someone who can write the state folder can still
put back an older head file together with an older, truncated log: keep a copy of
``audit-head.json`` elsewhere (it is small and holds nothing secret) to rule that out.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509 import Certificate

from fedhive.core.canonical import canonical_json
from fedhive.errors import StoreError
from fedhive.server.store.database import sqlite_errors

HEAD_DOMAIN = b"fedhive/audit-head/v1\n"
"""The prefix of the signed bytes: a head signature never passes as another message's."""
HEAD_FILE = "audit-head.json"
"""The newest signed head, beside ``state.sqlite``."""


@dataclass(frozen=True, kw_only=True)
class SignedHead:
    """The audit log's newest entry (``seq``, ``hash``) and the server's signature on it."""

    seq: int
    hash: str
    signature: bytes

    def to_json(self) -> dict[str, object]:
        """The head as ``audit-head.json`` holds it (the signature in hex)."""
        return {"seq": self.seq, "hash": self.hash, "signature": self.signature.hex()}


def head_bytes(seq: int, hash: str) -> bytes:
    """The bytes the server signs for the head ``(seq, hash)``."""
    return HEAD_DOMAIN + canonical_json({"hash": hash, "seq": seq})


class HeadSigner:
    """Signs audit heads with the server's private key (ECDSA P-256 or Ed25519)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def from_pem(cls, pem: bytes) -> HeadSigner:
        """A signer for the PEM private key ``pem`` (the server's ``key.pem``).

        Raises:
            StoreError: the key does not load or is of another kind.
        """
        try:
            key = load_pem_private_key(pem, password=None)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"audit: the signing key does not load: {exc}") from None
        if not isinstance(key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
            raise StoreError("audit: heads are signed with ECDSA P-256 or Ed25519 keys")
        return cls(key)

    def sign(self, seq: int, hash: str) -> SignedHead:
        """The signed head ``(seq, hash)``."""
        data = head_bytes(seq, hash)
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            signature = self._key.sign(data, ec.ECDSA(hashes.SHA256()))
        else:
            signature = self._key.sign(data)
        return SignedHead(seq=seq, hash=hash, signature=signature)


def head_verifies(certificate: Certificate, head: SignedHead) -> bool:
    """Whether ``head``'s signature is the certificate key's over its bytes."""
    key = certificate.public_key()
    data = head_bytes(head.seq, head.hash)
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(head.signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(head.signature, data)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def sign_new_head(conn: sqlite3.Connection, signer: HeadSigner) -> SignedHead | None:
    """Sign the newest entry inside the caller's transaction, unless it is signed already.

    Returns:
        The new signed head, or None (no entry, or the head was signed before).
    """
    with sqlite_errors("sign the audit head"):
        row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            return None
        seq, digest = int(row[0]), str(row[1])
        if conn.execute("SELECT 1 FROM audit_heads WHERE seq = ?", (seq,)).fetchone():
            return None
        head = signer.sign(seq, digest)
        conn.execute(
            "INSERT INTO audit_heads (seq, hash, signature) VALUES (?, ?, ?)",
            (seq, digest, head.signature),
        )
    return head


def write_head_file(path: Path, head: SignedHead) -> None:
    """Replace ``path`` with ``head`` at once (a reader sees the old head or the new).

    Raises:
        StoreError: the file cannot be written.
    """
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_text(json.dumps(head.to_json(), sort_keys=True) + "\n", encoding="ascii")
        os.replace(partial, path)
    except OSError as exc:
        raise StoreError(f"audit: cannot write {path}: {exc}") from exc


def read_head_file(path: Path) -> SignedHead | None:
    """The head ``path`` holds, or None when there is no such file.

    Raises:
        StoreError: the file is not a signed head.
    """
    try:
        data = json.loads(path.read_text(encoding="ascii"))
        return SignedHead(
            seq=int(data["seq"]), hash=str(data["hash"]), signature=bytes.fromhex(data["signature"])
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"audit: {path} is not a signed audit head: {exc}") from None


def anchor_problem(
    conn: sqlite3.Connection, *, certificate: Certificate | None, anchor: SignedHead | None
) -> str:
    """Why the log does not match its signed heads and head file, or "" when it does.

    Without a certificate the signatures are not checked, only that the head file's
    entry is still in the log, unchanged.
    """
    with sqlite_errors("read the audit heads"):
        hashes_ = dict(conn.execute("SELECT seq, hash FROM audit").fetchall())
        found = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_heads'"
        signed = (
            conn.execute("SELECT seq, hash, signature FROM audit_heads ORDER BY seq").fetchall()
            if conn.execute(found).fetchone()  # not on a schema-1 store (before signed heads)
            else []
        )
        heads = [SignedHead(seq=r[0], hash=r[1], signature=bytes(r[2])) for r in signed]
    last = max(hashes_, default=0)
    if certificate is not None:
        for head in heads:
            if not head_verifies(certificate, head):
                return f"the signed head of entry {head.seq} does not verify with the certificate"
            if hashes_.get(head.seq) != head.hash:
                return f"entry {head.seq} differs from its signed head (history rewritten)"
        covered = heads[-1].seq if heads else 0
        if last > covered:
            return f"entries {covered + 1}..{last} are not covered by a signed head"
    if anchor is not None:
        if certificate is not None and not head_verifies(certificate, anchor):
            return "the head file's signature does not verify with the certificate"
        if anchor.seq > last:
            return f"the log ends at entry {last}, the head file names {anchor.seq} (truncated)"
        if hashes_.get(anchor.seq) != anchor.hash:
            return f"entry {anchor.seq} differs from the head file (history rewritten)"
    return ""
