"""The provisioning folder: layout, key modes, registry, adding clients, refusals."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography import x509

from fedhive.errors import ConfigError
from fedhive.pki import (
    PkiLayout,
    TLSConfig,
    add_client,
    client_id_of,
    load_certificate,
    provision,
    read_registry,
)


def cert_at(path: Path) -> x509.Certificate:
    return load_certificate(path.read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    provision(tmp_path / "pki", clients=3, server_names=["fl.example.org"])
    return tmp_path / "pki"


def test_provision_lays_out_every_party(out: Path) -> None:
    layout = PkiLayout(out)
    assert sorted(p.name for p in out.iterdir()) == ["ca", "clients", "registry.json", "server"]
    assert sorted(p.name for p in layout.ca_dir.iterdir()) == ["ca.key", "ca.pem"]
    assert sorted(p.name for p in layout.server_dir.iterdir()) == [
        "ca.pem",
        "cert.pem",
        "crl.pem",
        "key.pem",
    ]
    ids = ["client-0000", "client-0001", "client-0002"]
    assert sorted(p.name for p in layout.clients_dir.iterdir()) == ids
    ca = cert_at(layout.ca_dir / "ca.pem")
    cert_at(layout.server_dir / "cert.pem").verify_directly_issued_by(ca)
    for client_id in ids:
        folder = layout.client_dir(client_id)
        assert sorted(p.name for p in folder.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]
        assert (folder / "ca.pem").read_bytes() == (layout.ca_dir / "ca.pem").read_bytes()
        cert = cert_at(folder / "cert.pem")
        cert.verify_directly_issued_by(ca)
        assert client_id_of(cert) == client_id


def test_private_keys_are_owner_only(out: Path) -> None:
    keys = [out / "ca" / "ca.key", *out.glob("server/key.pem"), *out.glob("clients/*/key.pem")]
    assert len(keys) == 5
    assert {mode(key) for key in keys} == {0o600}
    assert mode(out) == 0o700
    assert not list(out.parent.glob(".*tmp"))  # no staging folder left behind


def test_registry_lists_the_clients(out: Path) -> None:
    table = json.loads((out / "registry.json").read_text())
    assert sorted(table) == ["client-0000", "client-0001", "client-0002"]
    for client_id, entry in table.items():
        cert = cert_at(out / "clients" / client_id / "cert.pem")
        assert int(entry["serial"], 16) == cert.serial_number
        assert entry["serial"].startswith("0x")
        assert entry["revoked"] is False
        assert entry["not_after"] == cert.not_valid_after_utc.isoformat()
    assert read_registry(out / "registry.json")["client-0001"].revoked is False


def test_named_clients(tmp_path: Path) -> None:
    result = provision(tmp_path / "pki", clients=["alice", "bob"], server_names=[])
    assert [record.client_id for record in result.clients] == ["alice", "bob"]
    assert client_id_of(cert_at(tmp_path / "pki/clients/bob/cert.pem")) == "bob"
    assert result.server_names == ("localhost", "127.0.0.1")


def test_add_client_takes_the_next_id_and_a_new_serial(out: Path) -> None:
    before = read_registry(out / "registry.json")
    record = add_client(out)
    assert record.client_id == "client-0003"
    assert record.serial not in {r.serial for r in before.values()}
    cert = cert_at(out / "clients/client-0003/cert.pem")
    assert cert.serial_number == record.serial
    assert client_id_of(cert) == "client-0003"
    cert.verify_directly_issued_by(cert_at(out / "ca/ca.pem"))
    assert mode(out / "clients/client-0003/key.pem") == 0o600
    after = read_registry(out / "registry.json")
    assert after == {**before, "client-0003": record}
    assert add_client(out, "edge-1").client_id == "edge-1"
    assert add_client(out).client_id == "client-0004"


@pytest.mark.parametrize("taken", ["client-0001", "CLIENT-0001"])
def test_add_client_refuses_a_taken_id(out: Path, taken: str) -> None:
    with pytest.raises(ConfigError, match="already exists"):
        add_client(out, taken)


def test_add_client_refuses_a_bad_id_and_a_foreign_folder(out: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="client id"):
        add_client(out, "../escape")
    with pytest.raises(ConfigError, match="not a provisioned folder"):
        add_client(tmp_path)


def test_add_client_needs_the_ca_key(out: Path) -> None:
    (out / "ca" / "ca.key").unlink()  # moved offline
    with pytest.raises(ConfigError, match=r"ca\.key"):
        add_client(out)
    assert sorted(read_registry(out / "registry.json")) == [f"client-000{i}" for i in range(3)]


def test_reprovisioning_is_refused(out: Path) -> None:
    registry = (out / "registry.json").read_bytes()
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        provision(out, clients=1, server_names=[])
    assert (out / "registry.json").read_bytes() == registry


def test_an_empty_folder_can_be_provisioned(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    provision(tmp_path / "empty", clients=1, server_names=[])
    assert (tmp_path / "empty/clients/client-0000/cert.pem").is_file()


@pytest.mark.parametrize(
    ("clients", "message"),
    [
        (["ok", "bad id"], "client id"),
        (["dup", "DUP"], "given twice"),
        ("client-0000", "clients"),
        (-1, "clients"),
    ],
)
def test_bad_clients_are_refused_before_anything_is_written(
    tmp_path: Path, clients: object, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        provision(tmp_path / "pki", clients=clients, server_names=[])  # type: ignore[arg-type]
    assert not (tmp_path / "pki").exists()


def test_a_bad_server_name_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="server name"):
        provision(tmp_path / "pki", clients=1, server_names=["not a host"])
    assert list(tmp_path.iterdir()) == []


def test_each_party_folder_is_a_tls_config(out: Path) -> None:
    ca, cert, key = TLSConfig.from_dir(out / "clients" / "client-0002").read()
    assert ca == (out / "ca/ca.pem").read_bytes()
    assert client_id_of(cert) == "client-0002"
    assert key.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS8, unencrypted
    assert TLSConfig.from_dir(out / "server").cert == out / "server" / "cert.pem"
