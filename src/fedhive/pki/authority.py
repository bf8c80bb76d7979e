"""The certificate authority: ECDSA P-256 keys, SHA-256 signatures, three profiles.

Profiles (all RFC 5280, all accepted by gRPC's BoringSSL and cryptography's verifier):

- **CA**: ``basicConstraints CA=TRUE, pathlen=0`` (it signs leaves only), ``keyUsage
  keyCertSign, cRLSign``; 10 years by default.
- **server**: SANs are the given DNS names and IP addresses plus always ``localhost`` and
  ``127.0.0.1``; ``extendedKeyUsage serverAuth``.
- **client**: subject CN is the client id and a SAN URI ``fedhive://client/<id>``;
  ``extendedKeyUsage clientAuth``.

Validity is ``[not_before, not_before + valid_days]``; ``not_before`` defaults to five
minutes ago (tolerating small clock skew between machines). To make an already expired
certificate (for tests), pass a ``not_before`` in the past: ``valid_days`` must be >= 1.
Serial numbers are random (``x509.random_serial_number``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedhive.errors import ConfigError, SerializationError
from fedhive.pki.identity import client_uri, load_certificate, validate_client_id

CA_VALID_DAYS = 3650
LEAF_VALID_DAYS = 365
DEFAULT_SERVER_NAMES = ("localhost", "127.0.0.1")
_CLOCK_SKEW = dt.timedelta(minutes=5)
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_to_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PKCS8 PEM of ``key``, unencrypted: the folder holding it must be protected."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    """Parse an unencrypted PEM EC private key.

    Raises:
        SerializationError: not a PEM private key, encrypted, or not an EC key.
    """
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SerializationError(f"private key: cannot load ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SerializationError(f"private key: expected an EC key, got {type(key).__name__}")
    return key


@dataclass(frozen=True)
class Issued:
    """A certificate with its private key, as issued by the authority."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        """The certificate as PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS8 PEM."""
        return key_to_pem(self.key)


def _validity(not_before: dt.datetime | None, valid_days: int) -> tuple[dt.datetime, dt.datetime]:
    if isinstance(valid_days, bool) or not isinstance(valid_days, int) or valid_days < 1:
        raise ConfigError(f"valid_days: must be an integer >= 1, got {valid_days!r}")
    start = not_before or dt.datetime.now(dt.timezone.utc) - _CLOCK_SKEW
    if start.tzinfo is None:
        raise ConfigError("not_before: must be timezone-aware (use datetime.timezone.utc)")
    return start, start + dt.timedelta(days=valid_days)


def _general_name(name: str) -> x509.GeneralName:
    """An IP address string becomes an IPAddress SAN, anything else must be a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    labels = name.removeprefix("*.").split(".")
    if len(name) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise ConfigError(f"server name {name!r}: must be an IP address or an ASCII DNS name")
    return x509.DNSName(name)


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate and its key; issues server and client certificates."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(
        cls,
        *,
        name: str = "fedhive CA",
        valid_days: int = CA_VALID_DAYS,
        not_before: dt.datetime | None = None,
    ) -> CertificateAuthority:
        """Make a new self-signed CA with a fresh P-256 key."""
        if not 1 <= len(name) <= 64:
            raise ConfigError(f"CA name: must be 1-64 characters, got {len(name)}")
        key = _new_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        start, end = _validity(not_before, valid_days)
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_pem: bytes, key_pem: bytes) -> CertificateAuthority:
        """Load a CA from its PEM certificate and key.

        Raises:
            SerializationError: unparseable, or the key does not match the certificate.
        """
        cert = load_certificate(cert_pem)
        key = load_private_key(key_pem)
        if cert.public_key() != key.public_key():
            raise SerializationError("CA key does not match the CA certificate")
        return cls(cert, key)

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate as PEM (what every party trusts)."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """The CA private key as unencrypted PKCS8 PEM."""
        return key_to_pem(self.key)

    def issue_server(
        self,
        names: Sequence[str] = (),
        *,
        valid_days: int = LEAF_VALID_DAYS,
        not_before: dt.datetime | None = None,
    ) -> Issued:
        """Issue a server certificate for ``names`` plus ``localhost`` and ``127.0.0.1``.

        Raises:
            ConfigError: a name is neither an IP address nor a DNS name.
        """
        unique = list(dict.fromkeys([*names, *DEFAULT_SERVER_NAMES]))
        sans = [_general_name(name) for name in unique]
        # The CN is informative only (clients match the SANs) and capped at 64 characters.
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedhive server")])
        return self._issue(subject, sans, ExtendedKeyUsageOID.SERVER_AUTH, valid_days, not_before)

    def issue_client(
        self,
        client_id: str,
        *,
        valid_days: int = LEAF_VALID_DAYS,
        not_before: dt.datetime | None = None,
    ) -> Issued:
        """Issue a client certificate naming ``client_id`` (CN and SAN URI).

        Raises:
            ConfigError: the client id is not valid.
        """
        validate_client_id(client_id)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, client_id)])
        sans = [x509.UniformResourceIdentifier(client_uri(client_id))]
        return self._issue(subject, sans, ExtendedKeyUsageOID.CLIENT_AUTH, valid_days, not_before)

    def _issue(
        self,
        subject: x509.Name,
        sans: Sequence[x509.GeneralName],
        usage: x509.ObjectIdentifier,
        valid_days: int,
        not_before: dt.datetime | None,
    ) -> Issued:
        key = _new_key()
        start, end = _validity(not_before, valid_days)
        ca_ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski.value),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return Issued(cert, key)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    # A CA signs certificates and CRLs; a leaf signs its (EC)DHE handshakes only.
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
