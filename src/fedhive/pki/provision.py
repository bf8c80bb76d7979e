"""The provisioning folder of a deployment: its layout, and creating, extending, revoking.

::

    OUT/                          mode 0700: it holds unencrypted private keys
      ca/ca.pem, ca/ca.key        the CA; keep ca.key offline once provisioning is done
      server/ca.pem, cert.pem, key.pem, crl.pem      copy to the server machine
      clients/<id>/ca.pem, cert.pem, key.pem         copy each to its client machine
      registry.json               id → serial (hex), revoked, not_after

Private keys are unencrypted PKCS8 PEM files of mode 0600 (gRPC reads them as they are):
whoever can read the folder can impersonate its parties, so protect it. :func:`provision`
builds everything in a temporary folder beside ``OUT`` and renames it into place, so a
failure leaves no half-provisioned folder; :func:`add_client` does the same per client.
Two operators must not run :func:`add_client` or :func:`revoke` on one folder at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from fedhive.errors import ConfigError
from fedhive.pki.authority import (
    DEFAULT_SERVER_NAMES,
    LEAF_VALID_DAYS,
    CertificateAuthority,
    Issued,
)
from fedhive.pki.identity import validate_client_id
from fedhive.pki.registry import ClientRecord, read_registry, write_registry
from fedhive.pki.revocation import read_crl, sign_crl
from fedhive.pki.storage import read_bytes, write_atomic, write_private
from fedhive.pki.tls import CA_FILE, CERT_FILE, KEY_FILE

MAX_CLIENTS = 100_000
_DEFAULT_ID = re.compile(r"client-(\d+)")


@dataclass(frozen=True)
class PkiLayout:
    """Where each file of a provisioning folder lives."""

    root: Path

    @property
    def ca_dir(self) -> Path:
        """``OUT/ca``: the CA certificate and key."""
        return self.root / "ca"

    @property
    def ca_key(self) -> Path:
        """``OUT/ca/ca.key``: the CA's private key."""
        return self.ca_dir / "ca.key"

    @property
    def server_dir(self) -> Path:
        """``OUT/server``: a :class:`~fedhive.pki.TLSConfig` folder plus ``crl.pem``."""
        return self.root / "server"

    @property
    def crl(self) -> Path:
        """``OUT/server/crl.pem``: the CRL the server checks each call against."""
        return self.server_dir / "crl.pem"

    @property
    def clients_dir(self) -> Path:
        """``OUT/clients``: one folder per client."""
        return self.root / "clients"

    @property
    def registry(self) -> Path:
        """``OUT/registry.json``: the clients, their serials and states."""
        return self.root / "registry.json"

    def client_dir(self, client_id: str) -> Path:
        """``OUT/clients/<id>``: a :class:`~fedhive.pki.TLSConfig` folder."""
        return self.clients_dir / validate_client_id(client_id)


@dataclass(frozen=True, kw_only=True)
class Provisioned:
    """What :func:`provision` created."""

    layout: PkiLayout
    server_names: tuple[str, ...]
    clients: tuple[ClientRecord, ...]


def provision(
    out: Path | str,
    *,
    clients: int | Sequence[str],
    server_names: Sequence[str] = (),
    valid_days: int = LEAF_VALID_DAYS,
) -> Provisioned:
    """Create a CA, a server certificate and client certificates under ``out``.

    Args:
        out: the folder to create; it must not exist, or be empty.
        clients: a number of clients (ids ``client-0000``, ``client-0001``, ...) or ids.
        server_names: DNS names and IP addresses the server is reached at; ``localhost``
            and ``127.0.0.1`` are always added.
        valid_days: validity of the server and client certificates (the CA's is 10 years).

    Raises:
        ConfigError: ``out`` is already in use, or a client id or server name is invalid.
    """
    out = Path(out)
    ids = _client_ids(clients)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: already exists and is not empty; refusing to overwrite")
    ca = CertificateAuthority.create()
    server = ca.issue_server(server_names, valid_days=valid_days)  # checks the names first
    out.parent.mkdir(parents=True, exist_ok=True)
    with _staged(out) as staging:
        layout = PkiLayout(staging)
        layout.ca_dir.mkdir(mode=0o700)
        write_atomic(layout.ca_dir / CA_FILE, ca.cert_pem)
        write_private(layout.ca_key, ca.key_pem)
        _write_party(layout.server_dir, ca, server)
        write_atomic(layout.crl, sign_crl(ca, {}, number=1))
        layout.clients_dir.mkdir()
        records = {}
        for client_id in ids:
            issued = ca.issue_client(client_id, valid_days=valid_days)
            _write_party(layout.client_dir(client_id), ca, issued)
            records[client_id] = _record(client_id, issued)
        write_registry(layout.registry, records)
    names = tuple(dict.fromkeys([*server_names, *DEFAULT_SERVER_NAMES]))
    return Provisioned(layout=PkiLayout(out), server_names=names, clients=tuple(records.values()))


def add_client(
    out: Path | str, client_id: str | None = None, *, valid_days: int = LEAF_VALID_DAYS
) -> ClientRecord:
    """Issue a certificate for one more client of a provisioned folder.

    Args:
        out: a folder made by :func:`provision`.
        client_id: the new id; None takes the next free ``client-NNNN``.
        valid_days: validity of the new certificate.

    Raises:
        ConfigError: not a provisioned folder, the CA key is missing, or the id is taken.
    """
    layout = _existing(out)
    records = read_registry(layout.registry)
    client_id = _next_id(layout, records) if client_id is None else validate_client_id(client_id)
    taken = {known.casefold() for known in records}
    if client_id.casefold() in taken or layout.client_dir(client_id).exists():
        raise ConfigError(f"client id {client_id!r}: already exists in {layout.root}")
    ca = _load_ca(layout)
    issued = ca.issue_client(client_id, valid_days=valid_days)
    with _staged(layout.client_dir(client_id)) as staging:
        _write_party(staging, ca, issued)
    record = _record(client_id, issued)
    write_registry(layout.registry, {**records, client_id: record})
    return record


def revoke(out: Path | str, client_id: str) -> ClientRecord:
    """Revoke a client: add its serial to the CRL (numbered one higher) and the registry.

    A server using :class:`~fedhive.pki.RevocationList` on ``server/crl.pem`` refuses the
    client from its next call on; a server on another machine needs the new ``crl.pem``.
    The new CRL also lists every client the registry marks revoked, so revoking after an
    old ``crl.pem`` was restored puts the lost revocations back (and gives a server that
    refuses to start on the restored one, below its ``crl-floor.json``, a newer CRL). Only
    clients can be revoked: for the server's certificate, rotate the CA (see
    :mod:`fedhive.pki.revocation`).

    Raises:
        ConfigError: not a provisioned folder, unknown or already revoked client.
    """
    layout = _existing(out)
    records = read_registry(layout.registry)
    record = records.get(validate_client_id(client_id))
    if record is None:
        raise ConfigError(f"client id {client_id!r}: unknown in {layout.registry}")
    if record.revoked:
        raise ConfigError(f"client id {client_id!r}: already revoked")
    ca = _load_ca(layout)
    number, revoked = read_crl(read_bytes(layout.crl), ca.certificate)
    now = dt.datetime.now(dt.timezone.utc)
    for earlier in records.values():
        if earlier.revoked:
            revoked.setdefault(earlier.serial, now)
    revoked[record.serial] = now
    # The CRL first: if writing the registry fails, the client is still refused.
    write_atomic(layout.crl, sign_crl(ca, revoked, number=number + 1))
    record = replace(record, revoked=True)
    write_registry(layout.registry, {**records, client_id: record})
    return record


def _client_ids(clients: int | Sequence[str]) -> list[str]:
    if isinstance(clients, int) and not isinstance(clients, bool):
        if not 0 <= clients <= MAX_CLIENTS:
            raise ConfigError(f"clients: must be in [0, {MAX_CLIENTS}], got {clients}")
        return [f"client-{index:04d}" for index in range(clients)]
    if isinstance(clients, str) or not isinstance(clients, Sequence):
        raise ConfigError(f"clients: must be a number or a list of ids, got {clients!r}")
    seen: dict[str, str] = {}
    for client_id in clients:
        validate_client_id(client_id)
        # Folder names collide on case-insensitive file systems: refuse those too.
        if client_id.casefold() in seen:
            raise ConfigError(f"client id {client_id!r}: given twice")
        seen[client_id.casefold()] = client_id
    return list(clients)


def _next_id(layout: PkiLayout, records: dict[str, ClientRecord]) -> str:
    existing = [*records, *(p.name for p in layout.clients_dir.iterdir())]
    numbers = [int(m.group(1)) for name in existing if (m := _DEFAULT_ID.fullmatch(name))]
    return f"client-{max(numbers, default=-1) + 1:04d}"


def _existing(out: Path | str) -> PkiLayout:
    layout = PkiLayout(Path(out))
    if not layout.registry.is_file() or not layout.clients_dir.is_dir():
        raise ConfigError(f"{layout.root}: not a provisioned folder (no registry.json)")
    return layout


def _load_ca(layout: PkiLayout) -> CertificateAuthority:
    return CertificateAuthority.load(read_bytes(layout.ca_dir / CA_FILE), read_bytes(layout.ca_key))


def _write_party(folder: Path, ca: CertificateAuthority, issued: Issued) -> None:
    """Write a TLSConfig folder: ca.pem, cert.pem and key.pem."""
    folder.mkdir(mode=0o700, exist_ok=True)
    write_atomic(folder / CA_FILE, ca.cert_pem)
    write_atomic(folder / CERT_FILE, issued.cert_pem)
    write_private(folder / KEY_FILE, issued.key_pem)


def _record(client_id: str, issued: Issued) -> ClientRecord:
    cert = issued.certificate
    return ClientRecord(
        client_id=client_id, serial=cert.serial_number, not_after=cert.not_valid_after_utc
    )


@contextlib.contextmanager
def _staged(target: Path) -> Iterator[Path]:
    """Yield a fresh folder beside ``target``, renamed to ``target`` if the body succeeds."""
    try:
        staging = Path(
            tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        )
    except OSError as exc:
        raise ConfigError(f"{target.parent}: cannot write ({exc.strerror or exc})") from None
    try:
        yield staging
        # rename() replaces an empty folder but never a non-empty one (ENOTEMPTY).
        os.rename(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ConfigError(f"{target}: cannot create ({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
