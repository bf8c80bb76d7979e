"""``fedhive audit verify``: exit 0 with a count when intact, 1 naming the entry when not."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from fedhive.cli.main import main
from fedhive.core.serde import sha256_hex
from fedhive.pki.provision import provision
from fedhive.server.store import DATABASE_NAME, StateStore
from fedhive.server.store.anchor import HeadSigner


def make_state(folder: Path, entries: int) -> None:
    with StateStore(folder) as store:
        for i in range(entries):
            store.append_audit("operator_note", {"n": i})


def test_an_intact_chain_exits_0_with_its_entry_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_state(tmp_path, 4)
    assert main(["audit", "verify", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "audit chain OK: 4 entries"
    assert lines[1].startswith("head: ")
    assert len(lines[1].removeprefix("head: ")) == 64


def test_an_empty_log_is_an_intact_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_state(tmp_path, 0)
    assert main(["audit", "verify", str(tmp_path)]) == 0
    assert "audit chain OK: 0 entries" in capsys.readouterr().out


def test_an_edited_entry_exits_1_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_state(tmp_path, 4)
    with closing(sqlite3.connect(tmp_path / DATABASE_NAME)) as conn:
        conn.execute("DROP TRIGGER audit_no_update")
        conn.execute("""UPDATE audit SET payload = '{"n":99}' WHERE seq = 2""")
        conn.commit()
    assert main(["audit", "verify", str(tmp_path)]) == 1
    out = capsys.readouterr().out.strip()
    assert out == "audit chain BROKEN at entry 2: hash does not match the entry's contents"


def test_a_folder_without_a_store_is_an_error_not_a_new_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "verify", str(tmp_path)]) == 2
    assert "no database" in capsys.readouterr().err
    assert not (tmp_path / DATABASE_NAME).exists()


def test_verify_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["audit"])
    assert info.value.code == 2
    assert "verify" in capsys.readouterr().err


def commit_rounds(folder: Path, rounds: int) -> None:
    """A run whose rounds 0..rounds-1 committed (heads unsigned: an insecure server)."""
    with StateStore(folder) as store:
        store.create_run("run", seed=0, config={})
        parent = None
        for rnd in range(rounds):
            store.open_round("run", rnd)
            parent = store.commit_round(
                "run",
                rnd,
                weights_bytes=bytes([rnd]) * 8,
                version=sha256_hex(bytes([rnd]) * 8),
                parent_version=parent,
                strategy_state=b"s",
                strategy="fedavg",
                contributors=["c1"],
                metrics={},
            )


def test_committed_rounds_whose_entries_were_cut_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    commit_rounds(tmp_path, 4)
    with closing(sqlite3.connect(tmp_path / DATABASE_NAME)) as conn:
        conn.execute("DROP TRIGGER audit_no_delete")
        last = conn.execute("SELECT MAX(seq) FROM audit").fetchone()[0]
        conn.execute("DELETE FROM audit WHERE seq > ?", (last - 2,))  # round 3's two entries
        conn.commit()
    assert main(["audit", "verify", str(tmp_path)]) == 1
    assert capsys.readouterr().out.strip() == (
        "audit chain BROKEN: round 3 of run run is committed with no audit entry"
    )


def test_a_signed_state_verifies_with_the_server_folder_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    provision(tmp_path / "pki", clients=["client-0000"])
    server = tmp_path / "pki" / "server"
    signer = HeadSigner.from_pem((server / "key.pem").read_bytes())
    with StateStore(tmp_path / "state", signer=signer) as store:
        store.append_audit("operator_note", {"n": 1})
    assert main(["audit", "verify", str(tmp_path / "state"), "--cert", str(server)]) == 0
    assert "signatures: every entry is under a head signed by" in capsys.readouterr().out
    with StateStore(tmp_path / "state") as unsigned:  # the key's holder is not writing
        unsigned.append_audit("operator_note", {"n": 2})
    assert main(["audit", "verify", str(tmp_path / "state"), "--cert", str(server)]) == 1
    assert "entries 2..2 are not covered by a signed head" in capsys.readouterr().out
