"""``fedhive audit verify``: exit 0 with a count when intact, 1 naming the entry when not."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from fedhive.cli.main import main
from fedhive.server.store import DATABASE_NAME, StateStore


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
