"""Signed results and signed models.

A client signs a :class:`ResultClaim` about its update, the server a :class:`ModelClaim`
about each global model. A signature (ECDSA P-256 with SHA-256, DER; or Ed25519, by key
type) covers ``DOMAIN + canonical_json(fields)`` (sorted keys, no spaces, ASCII:
:func:`fedhive.core.canonical.canonical_json`): ``DOMAIN`` is ``b"fedhive/result/v2\\n"`` or
``b"fedhive/model/v2\\n"`` (one kind never passes as the other), ``fields`` maps each field
name to its value (strings and ints). JSON quotes and escapes every string, so distinct
claims give distinct bytes. A result claim binds the rest of its upload's header (kind,
example count, metrics, loss, SecAgg flag, failure fields) through ``header_sha256``, a
model claim the task it was sent with (config, seed, deadline, SecAgg setup) through
``task_sha256``: see :func:`fedhive.transport.digests.header_sha256` and
:func:`~fedhive.transport.digests.task_sha256`. The certificate's client id is read as the
TLS identity check reads it (:func:`fedhive.pki.client_id_of`). Each result is admitted
once by the gRPC coordinator (task ids are random and claimed once), and only after its
signature verifies, so an unsigned result never uses up a task.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from functools import partial
from typing import Any, Union

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509 import Certificate, ObjectIdentifier
from cryptography.x509.oid import ExtendedKeyUsageOID

from fedhive.core.canonical import canonical_json, is_sha256_hex
from fedhive.errors import SerializationError, SignatureError, ValidationError
from fedhive.pki.identity import client_id_of, san_client_ids

SigningKey = Union[ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey]  # noqa: UP007
_Refuse = Callable[[str], SignatureError]

RESULT_DOMAIN = b"fedhive/result/v2\n"
MODEL_DOMAIN = b"fedhive/model/v2\n"
_CLIENT, _SERVER = ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH


def _check_fields(value: ResultClaim | ModelClaim) -> None:
    """Refuse a claim or guard whose fields are malformed (``ValidationError``, "claim")."""
    for f in fields(value):
        v = getattr(value, f.name)
        if f.name in ("round", "size"):
            ok, want = isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an int >= 0"
        elif f.name in ("model_version", "payload_sha256", "header_sha256", "task_sha256"):
            ok = is_sha256_hex(v)
            want = "64 lowercase hex digits (a SHA-256)"
        else:
            ok, want = isinstance(v, str) and v != "", "a non-empty string"
        if not ok:
            raise ValidationError(f"{f.name} must be {want}, got {v!r}", stage="claim")


def _canonical(domain: bytes, claim: ResultClaim | ModelClaim) -> bytes:
    return domain + canonical_json({f.name: getattr(claim, f.name) for f in fields(claim)})


@dataclass(frozen=True, kw_only=True)
class ResultClaim:
    """What a client signs about one result: run, round, task, model, payload hash and
    the hash of the rest of its header."""

    run_id: str
    round: int
    task_id: str
    client_id: str
    model_version: str
    payload_sha256: str
    header_sha256: str

    def __post_init__(self) -> None:
        _check_fields(self)

    def canonical_bytes(self) -> bytes:
        """The signed bytes: ``b"fedhive/result/v2\\n"`` + sorted compact ASCII JSON."""
        return _canonical(RESULT_DOMAIN, self)


@dataclass(frozen=True, kw_only=True)
class ModelClaim:
    """What the server signs about a global model and the task it is sent with: run,
    round, version, byte size and the task's hash."""

    run_id: str
    round: int
    model_version: str
    size: int
    task_sha256: str

    def __post_init__(self) -> None:
        _check_fields(self)

    def canonical_bytes(self) -> bytes:
        """The signed bytes: ``b"fedhive/model/v2\\n"`` + sorted compact ASCII JSON."""
        return _canonical(MODEL_DOMAIN, self)


@contextmanager
def _crypto(refuse: _Refuse, message: str) -> Iterator[None]:
    """The one place where ``cryptography``'s failures become :class:`SignatureError`."""
    try:
        yield
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError) as exc:
        raise refuse(f"{message} ({type(exc).__name__}: {exc})") from exc


def _sign(data: bytes, key: SigningKey) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    kind = getattr(getattr(key, "curve", None), "name", type(key).__name__)
    raise ValidationError(f"cannot sign with {kind}; use ECDSA P-256 or Ed25519", stage="sign")


def sign_result(claim: ResultClaim, private_key: SigningKey) -> bytes:
    """Sign ``claim.canonical_bytes()`` with a client's ECDSA P-256 or Ed25519 key."""
    return _sign(claim.canonical_bytes(), private_key)


def sign_model(claim: ModelClaim, private_key: SigningKey) -> bytes:
    """Sign ``claim.canonical_bytes()`` with the server's ECDSA P-256 or Ed25519 key."""
    return _sign(claim.canonical_bytes(), private_key)


def _extension(cert: Certificate, kind: type[x509.ExtensionType], r: _Refuse) -> Any:
    with _crypto(r, "certificate extensions do not parse"):
        found = [ext.value for ext in cert.extensions if isinstance(ext.value, kind)]
    return found[0] if found else None


def _client_id(cert: Certificate, refuse: _Refuse) -> str:
    """The client id a certificate names, as the TLS identity check reads it."""
    try:
        return client_id_of(cert)
    except SerializationError as exc:
        raise refuse(f"certificate names no client id ({exc.message})") from None


def _check_certificate(
    cert: Certificate, ca: Certificate, *, now: datetime | None, usage: ObjectIdentifier, r: _Refuse
) -> None:
    """Check ``cert`` is a valid end-entity certificate issued directly by the valid ``ca``."""
    at = datetime.now(timezone.utc) if now is None else now
    if at.utcoffset() is None:
        raise ValidationError("now must be a timezone-aware datetime", stage="verify")
    if not getattr(_extension(ca, x509.BasicConstraints, r), "ca", False):
        raise r("ca_certificate is not a CA certificate (no basicConstraints CA=true)")
    if getattr(_extension(cert, x509.BasicConstraints, r), "ca", False):
        raise r("certificate is a CA certificate, not a client or server one")
    if cert.issuer != ca.subject:
        raise r(f"certificate was not issued by this CA (issuer {cert.issuer.rfc4514_string()})")
    with _crypto(r, "certificate was not issued by this CA: its signature does not verify"):
        cert.verify_directly_issued_by(ca)
    for what, c in (("CA certificate", ca), ("certificate", cert)):
        if at < c.not_valid_before_utc:
            raise r(f"{what} is not yet valid: valid from {c.not_valid_before_utc}")
        if at > c.not_valid_after_utc:
            raise r(f"{what} has expired: valid until {c.not_valid_after_utc}")
    usages = _extension(cert, x509.ExtendedKeyUsage, r)
    if isinstance(usages, x509.ExtendedKeyUsage) and usage not in usages:
        role = "client" if usage == _CLIENT else "server"
        raise r(f"certificate's extended key usage does not allow {role} authentication")


def _verify_signature(cert: Certificate, signature: bytes, data: bytes, r: _Refuse) -> None:
    with _crypto(r, "certificate's public key cannot be loaded"):
        key = cert.public_key()
    with _crypto(r, "signature does not verify with the certificate's key"):
        if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            return key.verify(bytes(signature), data, ec.ECDSA(hashes.SHA256()))
        if isinstance(key, ed25519.Ed25519PublicKey):
            return key.verify(bytes(signature), data)
    raise r(f"certificate key {type(key).__name__} is neither ECDSA P-256 nor Ed25519")


def verify_result(
    claim: ResultClaim,
    signature: bytes,
    certificate: Certificate,
    *,
    ca_certificate: Certificate,
    expected_client_id: str,
    now: datetime | None = None,
) -> None:
    """Check a client's signed result claim against its certificate and the trusted CA.

    ``certificate``: issued directly by ``ca_certificate``, both valid at ``now`` (default
    now), allowing client auth, naming ``expected_client_id`` and ``claim.client_id``;
    ``signature``: valid over ``claim.canonical_bytes()``.

    Raises:
        SignatureError: one of these checks fails; the message names which.
        ValidationError: ``now`` is a naive datetime.
    """
    r = partial(SignatureError, client_id=claim.client_id, round=claim.round, stage="verify_result")
    _check_certificate(certificate, ca_certificate, now=now, usage=_CLIENT, r=r)
    cert_id = _client_id(certificate, r)
    if cert_id != expected_client_id:
        raise r(f"certificate is for client {cert_id!r}, expected client {expected_client_id!r}")
    if cert_id != claim.client_id:
        raise r(f"claim names client {claim.client_id!r}, certificate is for {cert_id!r}")
    _verify_signature(certificate, signature, claim.canonical_bytes(), r)


def verify_model(
    claim: ModelClaim,
    signature: bytes,
    server_certificate: Certificate,
    *,
    ca_certificate: Certificate,
    payload: bytes,
    now: datetime | None = None,
) -> None:
    """Check a server-signed model before training on it: certificate, signature, bytes.

    ``server_certificate``: issued directly by ``ca_certificate``, both valid at ``now``,
    allowing server auth, no client id; ``signature``: valid over
    ``claim.canonical_bytes()``; ``payload``: ``claim.size`` bytes hashing to the version.

    Raises:
        SignatureError: one of these checks fails; the message names which.
        ValidationError: ``now`` is a naive datetime.
    """
    r = partial(SignatureError, round=claim.round, stage="verify_model")
    _check_certificate(server_certificate, ca_certificate, now=now, usage=_SERVER, r=r)
    try:
        client_ids = san_client_ids(server_certificate)
    except SerializationError as exc:
        raise r(exc.message) from None
    if client_ids:
        raise r("a client certificate cannot sign a model")
    _verify_signature(server_certificate, signature, claim.canonical_bytes(), r)
    if len(payload) != claim.size:
        raise r(f"payload is {len(payload)} bytes, the signed size is {claim.size}")
    digest = hashlib.sha256(payload).hexdigest()
    if digest != claim.model_version:
        raise r(f"payload hash {digest} does not match the signed version {claim.model_version}")
