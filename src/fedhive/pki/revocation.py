"""Revocation: a CRL signed by the CA, and a live view of it for a running server.

gRPC's Python server cannot check a CRL during the TLS handshake, so the server checks
every call's peer certificate against a :class:`RevocationList` instead. The list
re-reads ``crl.pem`` whenever the file's modification time, size or inode changes, so a
``fedhive provision revoke`` takes effect on the next call, without a restart. The CRL
is replaced atomically (``os.replace``), so a reader never sees half a file; a CRL that
is unreadable, not signed by the CA, or past its next update raises instead of being
ignored (fail closed). A CRL numbered lower than the one in force (yesterday's backup
restored), or with the same number and fewer serials, is refused with an error in the
log, and the newer list stays in force: it cannot un-revoke anyone.

The floor survives restarts: :meth:`RevocationList.keep_floor` (a deployed server calls
it on ``crl-floor.json`` in its state folder before serving) records the CRL number and
serials in force, raises them on disk with each newer CRL, and refuses to start on a CRL
older than the recorded one. To recover deliberately, issue a newer CRL (``fedhive
provision revoke`` numbers it above every earlier one), or delete the floor file on
purpose: the next start records the CRL in force then. A list without a floor (tests,
in-memory use) keeps its floor in memory only.

Only client certificates are revoked this way. Clients hold no CRL, and gRPC's client
TLS could not check one: the server certificate is trusted for as long as it and the CA
are valid. If the server's key leaks, rotate the CA: provision a new federation (new
CA, server and client certificates, :func:`~fedhive.pki.provision`) and give every
client its new folder; the old server certificate then fails every client's handshake.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TypeGuard

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedhive.core.canonical import canonical_json
from fedhive.errors import ConfigError, SerializationError
from fedhive.pki.authority import CertificateAuthority
from fedhive.pki.identity import load_certificate
from fedhive.pki.storage import PRIVATE_MODE, read_bytes, write_atomic

log = logging.getLogger("fedhive.pki")

FLOOR_FILE = "crl-floor.json"
"""The floor's file name in a deployed server's state folder."""


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
        self._floor: Path | None = None
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

    def keep_floor(self, path: Path) -> None:
        """Persist the CRL floor in ``path``: refuse an older CRL now, record newer ones.

        The CRL in force must be no older than the one recorded in ``path`` (a JSON file
        of the CRL number and serials, mode ``0600``): a lower number, or the same number
        listing fewer serials, is refused (fail closed). The file then records the CRL in
        force, and each newer CRL this list reads is recorded before it takes effect (if
        that write fails, the re-read raises, and a server's calls fail closed until it
        succeeds). A missing file is a first start. Recover from a refusal with a newer
        CRL (``fedhive provision revoke``), or by deleting the file on purpose.

        Raises:
            ConfigError: the CRL in force is older than the floor, or the floor file
                cannot be read, parsed or written.
        """
        path = Path(path)
        self._refresh()
        with self._lock:
            floor = _read_floor(path)
            if floor is not None and _older((self._number, self._serials), floor):
                raise ConfigError(_rollback_message(self._path, self._number, floor, path))
            if floor != (self._number, self._serials):
                _write_floor(path, self._number, self._serials)
            self._floor = path

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
            if _older((number, serials), (self._number, self._serials)):
                self._stamp = stamp  # read once per change, whatever the verdict
                log.error(
                    "%s: CRL number %d is older than the one in force (%d): refused, "
                    "the newer list stays in force",
                    self._path,
                    number,
                    self._number,
                )
                return
            if self._floor is not None and (number, serials) != (self._number, self._serials):
                _write_floor(self._floor, number, serials)  # on disk before it takes effect
            self._stamp = stamp
            self._number, self._serials = number, serials
            self._next_update = crl.next_update_utc


Floor = tuple[int, frozenset[int]]
"""A CRL's number and revoked serials."""


def _older(crl: Floor, floor: Floor) -> bool:
    """Whether ``crl`` is older than ``floor``: a lower number, or fewer serials."""
    return crl[0] < floor[0] or (crl[0] == floor[0] and not crl[1] >= floor[1])


def _rollback_message(crl: Path, number: int, floor: Floor, path: Path) -> str:
    """Why a CRL older than the floor is refused, and how to recover on purpose."""
    older = (
        f"is older than CRL number {floor[0]}"
        if number < floor[0]
        else f"lists fewer serials than CRL number {floor[0]}"
    )
    return (
        f"{crl}: CRL number {number} {older}, which a server on this state folder accepted "
        f"(recorded in {path}): a rolled-back CRL would un-revoke clients. Put back the "
        "newest crl.pem, issue a newer one (fedhive provision revoke), or delete the floor "
        "file on purpose"
    )


def _read_floor(path: Path) -> Floor | None:
    """The floor recorded in ``path``; None when there is no such file."""
    if not path.exists():
        return None
    try:
        data = json.loads(read_bytes(path))
    except ValueError as exc:
        raise ConfigError(f"{path}: not a CRL floor ({exc})") from None
    number = data.get("crl_number") if isinstance(data, dict) else None
    serials = data.get("serials") if isinstance(data, dict) else None
    if not _is_int(number) or not isinstance(serials, list) or not all(map(_is_int, serials)):
        raise ConfigError(f"{path}: not a CRL floor (crl_number and serials must be integers)")
    return number, frozenset(serials)


def _write_floor(path: Path, number: int, serials: frozenset[int]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{path.parent}: cannot create ({exc.strerror or exc})") from None
    data = {"crl_number": number, "serials": sorted(serials)}
    write_atomic(path, canonical_json(data), mode=PRIVATE_MODE)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
