"""Revocation: the CRL grows, a live RevocationList sees it, a foreign CRL is refused."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from fedhive.errors import ConfigError, SerializationError
from fedhive.pki import (
    CertificateAuthority,
    RevocationList,
    load_certificate,
    provision,
    read_registry,
    revoke,
)
from fedhive.pki.revocation import sign_crl


@pytest.fixture
def out(tmp_path: Path) -> Path:
    provision(tmp_path / "pki", clients=3, server_names=[])
    return tmp_path / "pki"


def serial_of(out: Path, client_id: str) -> int:
    return load_certificate((out / "clients" / client_id / "cert.pem").read_bytes()).serial_number


def load_ca(out: Path) -> CertificateAuthority:
    return CertificateAuthority.load(
        (out / "ca" / "ca.pem").read_bytes(), (out / "ca" / "ca.key").read_bytes()
    )


def bump_mtime(path: Path, seconds: int) -> None:
    # Set the time explicitly: a coarse file-system clock could leave it unchanged.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))


def test_a_fresh_crl_revokes_nobody(out: Path) -> None:
    crl = RevocationList.from_dir(out / "server")
    assert crl.number == 1
    assert crl.serials == frozenset()
    assert not crl.is_revoked(serial_of(out, "client-0000"))


def test_revoke_refuses_that_client_only(out: Path) -> None:
    record = revoke(out, "client-0001")
    assert record.revoked
    assert record.serial == serial_of(out, "client-0001")
    crl = RevocationList.from_dir(out / "server")
    assert crl.is_revoked(serial_of(out, "client-0001"))
    assert not crl.is_revoked(serial_of(out, "client-0000"))
    assert not crl.is_revoked(serial_of(out, "client-0002"))
    assert crl.number == 2
    registry = read_registry(out / "registry.json")
    assert [cid for cid, rec in sorted(registry.items()) if rec.revoked] == ["client-0001"]


def test_a_running_list_sees_later_revocations(out: Path) -> None:
    crl = RevocationList.from_dir(out / "server")  # made before any revocation
    first, second = serial_of(out, "client-0000"), serial_of(out, "client-0002")
    assert not crl.is_revoked(first)
    revoke(out, "client-0000")
    bump_mtime(out / "server" / "crl.pem", 1)
    assert crl.is_revoked(first)
    assert not crl.is_revoked(second)
    revoke(out, "client-0002")
    bump_mtime(out / "server" / "crl.pem", 2)
    assert crl.is_revoked(first)
    assert crl.is_revoked(second)
    assert crl.number == 3


def test_a_list_watching_a_copied_crl_sees_an_in_place_change(out: Path, tmp_path: Path) -> None:
    # A server on another machine gets crl.pem copied over its own (same inode, new bytes).
    server = tmp_path / "server-copy"
    shutil.copytree(out / "server", server)
    crl = RevocationList.from_dir(server)
    revoke(out, "client-0002")
    with (server / "crl.pem").open("r+b") as file:
        file.write((out / "server" / "crl.pem").read_bytes())
        file.truncate()
    bump_mtime(server / "crl.pem", 5)
    assert crl.is_revoked(serial_of(out, "client-0002"))


def test_unknown_and_twice_revoked_clients_are_refused(out: Path) -> None:
    with pytest.raises(ConfigError, match="unknown"):
        revoke(out, "client-0099")
    with pytest.raises(ConfigError, match="client id"):
        revoke(out, "bad id")
    revoke(out, "client-0000")
    with pytest.raises(ConfigError, match="already revoked"):
        revoke(out, "client-0000")
    assert RevocationList.from_dir(out / "server").number == 2


def test_a_crl_signed_by_another_ca_is_refused(out: Path) -> None:
    other = CertificateAuthority.create()  # same default name, other key
    forged = sign_crl(other, {}, number=7)
    crl_path = out / "server" / "crl.pem"
    crl = RevocationList.from_dir(out / "server")
    crl_path.write_bytes(forged)
    bump_mtime(crl_path, 1)
    with pytest.raises(SerializationError, match="not signed by this CA"):
        crl.is_revoked(1)  # a running server fails closed
    with pytest.raises(SerializationError, match="not signed by this CA"):
        RevocationList.from_dir(out / "server")
    with pytest.raises(SerializationError, match="not signed by this CA"):
        revoke(out, "client-0000")


def test_junk_and_missing_crls_are_refused(out: Path) -> None:
    crl_path = out / "server" / "crl.pem"
    crl_path.write_bytes(b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")
    with pytest.raises(SerializationError, match="CRL"):
        RevocationList.from_dir(out / "server")
    crl_path.unlink()
    with pytest.raises(ConfigError, match=r"crl\.pem"):
        RevocationList.from_dir(out / "server")


def test_a_rolled_back_crl_does_not_unrevoke_a_client(
    out: Path, caplog: pytest.LogCaptureFixture
) -> None:
    crl_path = out / "server" / "crl.pem"
    yesterday = crl_path.read_bytes()  # number 1: nobody revoked
    crl = RevocationList.from_dir(out / "server")
    revoke(out, "client-0001")
    bump_mtime(crl_path, 1)
    assert crl.is_revoked(serial_of(out, "client-0001"))
    crl_path.write_bytes(yesterday)  # an operator restores a backup
    bump_mtime(crl_path, 2)
    assert crl.is_revoked(serial_of(out, "client-0001"))
    assert crl.number == 2
    assert any("older than the one in force" in r.getMessage() for r in caplog.records)
    revoke(out, "client-0002")  # the next revocation takes effect, and heals the CRL
    bump_mtime(crl_path, 3)
    assert crl.is_revoked(serial_of(out, "client-0002"))
    assert crl.is_revoked(serial_of(out, "client-0001"))
    assert RevocationList.from_dir(out / "server").is_revoked(serial_of(out, "client-0001"))


def test_a_crl_past_its_next_update_is_refused(tmp_path: Path) -> None:
    ca = CertificateAuthority.create()
    now = dt.datetime.now(dt.timezone.utc)
    stale = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now - dt.timedelta(days=2))
        .next_update(now - dt.timedelta(days=1))
        .add_extension(x509.CRLNumber(5), critical=False)
        .sign(ca.key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    (tmp_path / "crl.pem").write_bytes(stale)
    with pytest.raises(SerializationError, match="next update"):
        RevocationList(tmp_path / "crl.pem", ca=ca.certificate).is_revoked(1)


def test_a_restarted_list_refuses_a_crl_older_than_its_floor(out: Path, tmp_path: Path) -> None:
    crl_path, floor = out / "server" / "crl.pem", tmp_path / "state" / "crl-floor.json"
    yesterday = crl_path.read_bytes()  # number 1: nobody revoked
    revoke(out, "client-0001")
    RevocationList.from_dir(out / "server").keep_floor(floor)  # a server ran on CRL 2
    crl_path.write_bytes(yesterday)  # an operator restores a backup, then restarts
    restarted = RevocationList.from_dir(out / "server")
    with pytest.raises(ConfigError, match=r"CRL number 1 is older than CRL number 2"):
        restarted.keep_floor(floor)
    floor.unlink()  # recovering on purpose: the operator deletes the floor
    restarted.keep_floor(floor)
    assert restarted.number == 1


def test_a_restarted_list_refuses_the_same_number_listing_fewer_serials(
    out: Path, tmp_path: Path
) -> None:
    ca = load_ca(out)
    floor = tmp_path / "crl-floor.json"
    crl_path = out / "server" / "crl.pem"
    crl_path.write_bytes(sign_crl(ca, {7: dt.datetime.now(dt.timezone.utc)}, number=4))
    RevocationList.from_dir(out / "server").keep_floor(floor)
    crl_path.write_bytes(sign_crl(ca, {}, number=4))  # re-signed without serial 7
    with pytest.raises(ConfigError, match=r"CRL number 4 lists fewer serials than CRL number 4"):
        RevocationList.from_dir(out / "server").keep_floor(floor)


def test_a_newer_crl_raises_the_floor_on_disk(out: Path, tmp_path: Path) -> None:
    crl_path, floor = out / "server" / "crl.pem", tmp_path / "crl-floor.json"
    crl = RevocationList.from_dir(out / "server")
    crl.keep_floor(floor)
    assert json.loads(floor.read_text()) == {"crl_number": 1, "serials": []}
    assert floor.stat().st_mode & 0o777 == 0o600
    revoke(out, "client-0002")
    bump_mtime(crl_path, 1)
    assert crl.is_revoked(serial_of(out, "client-0002"))  # the running list reads CRL 2
    assert json.loads(floor.read_text()) == {
        "crl_number": 2,
        "serials": [serial_of(out, "client-0002")],
    }
    crl_path.write_bytes(sign_crl(load_ca(out), {}, number=1))
    with pytest.raises(ConfigError, match=r"CRL number 1 is older than CRL number 2"):
        RevocationList.from_dir(out / "server").keep_floor(floor)


@pytest.mark.parametrize(
    "junk", [b"", b"[]", b'{"crl_number": true, "serials": []}', b'{"crl_number": 1}']
)
def test_an_unreadable_floor_file_is_refused(out: Path, tmp_path: Path, junk: bytes) -> None:
    floor = tmp_path / "crl-floor.json"
    floor.write_bytes(junk)
    with pytest.raises(ConfigError, match=r"crl-floor\.json"):
        RevocationList.from_dir(out / "server").keep_floor(floor)
