"""``fedhive provision``: creates the folder, adds and revokes clients, one-line errors."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from fedhive.cli.main import main
from fedhive.pki import RevocationList, client_id_of, load_certificate


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def serial(out: Path, client_id: str) -> int:
    return load_certificate((out / "clients" / client_id / "cert.pem").read_bytes()).serial_number


def test_provision_add_client_and_revoke(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pki"
    argv = ["provision", "--out", str(out), "--clients", "2", "--server-name", "fl.example.org"]
    code, printed, _ = run(argv, capsys)
    assert code == 0
    assert str(out / "clients" / "client-0001") in printed
    assert "fl.example.org, localhost, 127.0.0.1" in printed
    assert sorted(json.loads((out / "registry.json").read_text())) == [
        "client-0000",
        "client-0001",
    ]
    key = out / "clients" / "client-0000" / "key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600

    code, printed, _ = run(["provision", "add-client", "--out", str(out)], capsys)
    assert code == 0
    assert "client-0002" in printed
    assert f"{serial(out, 'client-0002'):#x}" in printed
    # --out may also come before the action.
    code, printed, _ = run(
        ["provision", "--out", str(out), "add-client", "--client-id", "lab-9"], capsys
    )
    assert code == 0
    cert = load_certificate((out / "clients" / "lab-9" / "cert.pem").read_bytes())
    assert client_id_of(cert) == "lab-9"

    crl = RevocationList.from_dir(out / "server")
    code, printed, _ = run(["provision", "revoke", "--out", str(out), "client-0001"], capsys)
    assert code == 0
    assert "revoked client-0001" in printed
    assert str(out / "server" / "crl.pem") in printed
    assert crl.is_revoked(serial(out, "client-0001"))
    assert not crl.is_revoked(serial(out, "client-0000"))
    assert json.loads((out / "registry.json").read_text())["client-0001"]["revoked"] is True


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["provision", "--clients", "2"], "--out DIR and --clients N are required"),
        (["provision", "add-client"], "--out DIR is required"),
        (["provision", "--out", "{out}", "--clients", "1"], "refusing to overwrite"),
        (["provision", "add-client", "--out", "{out}", "--client-id", "a b"], "client id 'a b'"),
        (["provision", "add-client", "--out", "{out}", "--client-id", "client-0000"], "already"),
        (["provision", "revoke", "--out", "{out}", "nobody"], "unknown"),
        (["provision", "revoke", "--out", "{tmp}", "client-0000"], "not a provisioned folder"),
        (
            ["provision", "--out", "{tmp}/new", "--clients", "1", "--server-name", "a b"],
            "server name",
        ),
    ],
)
def test_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    out = tmp_path / "pki"
    assert main(["provision", "--out", str(out), "--clients", "1"]) == 0
    capsys.readouterr()
    argv = [arg.format(out=out, tmp=tmp_path) for arg in argv]
    code, _, err = run(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("fedhive: error: ")
    assert message in lines[0]


def test_help_documents_the_actions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["provision", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for usage in ("provision --out DIR --clients N", "provision add-client", "provision revoke"):
        assert usage in text
    assert "unencrypted" in text
