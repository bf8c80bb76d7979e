"""Client identities: the id format, and reading the id back from a certificate.

A client certificate names its client twice: the subject common name and a SAN URI
``fedhive://client/<id>``. :func:`client_id_of` prefers the URI (a SAN is what TLS
libraries treat as the identity) and falls back to the CN for certificates that lack it.
"""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.x509.oid import NameOID

from fedhive.errors import ConfigError, SerializationError

CLIENT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
CLIENT_URI_PREFIX = "fedhive://client/"


def validate_client_id(client_id: str) -> str:
    """Return ``client_id`` if it is 1-63 of ``A-Za-z0-9._-`` starting alphanumeric.

    The id is also a folder name and part of a URI, so nothing else is allowed.

    Raises:
        ConfigError: the id does not match the pattern.
    """
    if not isinstance(client_id, str) or not CLIENT_ID_PATTERN.fullmatch(client_id):
        raise ConfigError(
            f"client id {client_id!r}: must be 1-63 characters of A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit"
        )
    return client_id


def client_uri(client_id: str) -> str:
    """The SAN URI that names ``client_id`` in its certificate."""
    return CLIENT_URI_PREFIX + validate_client_id(client_id)


def load_certificate(pem: bytes | str) -> x509.Certificate:
    """Parse one PEM certificate.

    Raises:
        SerializationError: ``pem`` is not a PEM-encoded X.509 certificate.
    """
    data = pem.encode() if isinstance(pem, str) else pem
    if not isinstance(data, bytes):
        raise SerializationError(f"certificate: expected PEM bytes, got {type(pem).__name__}")
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise SerializationError(f"certificate: not a PEM X.509 certificate ({exc})") from None


def client_id_of(cert: x509.Certificate | bytes | str) -> str:
    """The client id a certificate was issued to (SAN URI, else subject CN).

    Args:
        cert: a parsed certificate, or its PEM (as gRPC's ``auth_context`` gives it).

    Raises:
        SerializationError: not a certificate, or it names no valid client id.
    """
    if not isinstance(cert, x509.Certificate):
        cert = load_certificate(cert)
    ids = san_client_ids(cert)
    if len(ids) > 1:
        raise SerializationError(f"certificate names several clients: {sorted(ids)}")
    if not ids:
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        ids = [str(attr.value) for attr in names]
        if len(ids) != 1:
            raise SerializationError("certificate names no client (no SAN URI, no single CN)")
    try:
        return validate_client_id(ids[0])
    except ConfigError as exc:
        raise SerializationError(f"certificate: {exc.message}") from None


def san_client_ids(cert: x509.Certificate) -> list[str]:
    """The ids a certificate's ``fedhive://client/<id>`` SAN URIs name, unchecked.

    Raises:
        SerializationError: the certificate's extensions do not parse.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    except ValueError as exc:  # extensions are parsed lazily, on first access
        raise SerializationError(f"certificate: malformed extensions ({exc})") from None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return [
        uri.removeprefix(CLIENT_URI_PREFIX) for uri in uris if uri.startswith(CLIENT_URI_PREFIX)
    ]
