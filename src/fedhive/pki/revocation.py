"""Revocation: a CRL signed by the CA, and a live view of it for a running server.

gRPC's Python server cannot check a CRL during the TLS handshake, so the server checks
every call's peer certificate against a :class:`RevocationList` instead. The list
re-reads ``crl.pem`` whenever the file's modification time, size or inode changes, so a
``fedhive provision revoke`` takes effect on the next call, without a restart. The CRL
is replaced atomically (``os.replace``), so a reader never sees half a file; a CRL that
is unreadable, not signed by the CA, or past its next update raises instead of being
ignored (fail closed). A CRL numbered lower than the one in force (yesterday's backup
restored) is refused with an error in the log, and the newer list stays in force: it
cannot un-revoke anyone. (A restarted server has no memory of the number it saw.)

Only client certificates are revoked this way. Clients hold no CRL, and gRPC's client
TLS could not check one: the server certificate is trusted for as long as it and the CA
are valid. If the server's key leaks, rotate the CA: provision a new federation (new
CA, server and client certificates, :func:`~fedhive.pki.provision`) and give every
client its new folder; the old server certificate then fails every client's handshake.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedhive.errors import ConfigError, SerializationError
from fedhive.pki.authority import CertificateAuthority
from fedhive.pki.identity import load_certificate
from fedhive.pki.storage import read_bytes

log = logging.getLogger("fedhive.pki")


def sign_crl(ca: CertificateAuthority, revoked: Mapping[int, dt.datetime], *, number: int) -> bytes:
    """A PEM CRL listing ``revoked`` (serial → revocation time), numbered ``number``.

    The CRL's next update is the CA's expiry: it is a local file replaced on every
    revocation, not something clients fetch on a schedule.
    """
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now)
        .next_update(max(ca.certificate.not_valid_after_utc, now + dt.timedelta(days=1)))
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for serial, when in sorted(revoked.items()):
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def read_crl(pem: bytes, ca: x509.Certificate) -> tuple[int, dict[int, dt.datetime]]:
    """Parse a PEM CRL and check that ``ca`` signed it; return (number, revoked serials).

    Raises:
        SerializationError: not a CRL, another issuer, or a bad signature.
    """
    crl = _checked_crl(pem, ca)
    return _number(crl), {entry.serial_number: entry.revocation_date_utc for entry in crl}


def _number(crl: x509.CertificateRevocationList) -> int:
    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        return 0


def _checked_crl(pem: bytes, ca: x509.Certificate) -> x509.CertificateRevocationList:
    try:
        crl = x509.load_pem_x509_crl(pem)
    except ValueError as exc:
        raise SerializationError(f"CRL: not a PEM certificate revocation list ({exc})") from None
    public = ca.public_key()
    # fedhive CAs are EC; any other key type cannot have signed a fedhive CRL.
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise SerializationError("CRL: the CA key is not an EC key")
    if crl.issuer != ca.subject or not crl.is_signature_valid(public):
        raise SerializationError("CRL: not signed by this CA")
    return crl


class RevocationList:
    """The set of revoked serial numbers in a CRL file, kept current as the file changes.

    Safe to share between the threads of a gRPC server.
    """

    def __init__(self, path: Path, *, ca: x509.Certificate) -> None:
        """Load the CRL at ``path``, checked against the ``ca`` certificate.

        Raises:
            ConfigError: the file is missing or unreadable.
            SerializationError: it is not a CRL signed by ``ca``.
        """
        self._path = Path(path)
        self._ca = ca
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._number = -1
        self._serials: frozenset[int] = frozenset()
        self._next_update: dt.datetime | None = None
        self._refresh()

    @classmethod
    def from_dir(cls, path: Path) -> RevocationList:
        """The revocation list of a server folder (``crl.pem`` checked against ``ca.pem``)."""
        path = Path(path)
        return cls(path / "crl.pem", ca=load_certificate(read_bytes(path / "ca.pem")))

    @property
    def number(self) -> int:
        """The CRL number of the version last read (it grows with each revocation)."""
        self._refresh()
        return self._number

    @property
    def serials(self) -> frozenset[int]:
        """The revoked serial numbers, as of now.

        Raises:
            SerializationError: the CRL in force is past its next update.
        """
        self._refresh()
        if self._next_update is not None and dt.datetime.now(dt.timezone.utc) > self._next_update:
            raise SerializationError(
                f"CRL: past its next update ({self._next_update:%Y-%m-%d %H:%M} UTC): "
                "a newer CRL is needed"
            )
        return self._serials

    def is_revoked(self, serial: int) -> bool:
        """Whether ``serial`` is revoked, re-reading the CRL first if the file changed."""
        return serial in self.serials

    def _refresh(self) -> None:
        try:
            st = os.stat(self._path)
        except OSError as exc:
            raise ConfigError(f"{self._path}: cannot read CRL ({exc.strerror or exc})") from None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            crl = _checked_crl(read_bytes(self._path), self._ca)
            number, serials = _number(crl), frozenset(entry.serial_number for entry in crl)
            self._stamp = stamp  # read once per change, whatever the verdict
            if number < self._number or (number == self._number and not serials >= self._serials):
                log.error(
                    "%s: CRL number %d is older than the one in force (%d): refused, "
                    "the newer list stays in force",
                    self._path,
                    number,
                    self._number,
                )
                return
            self._number, self._serials = number, serials
            self._next_update = crl.next_update_utc
