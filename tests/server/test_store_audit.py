"""The hash-chained audit log: the documented hash, and every kind of tampering caught."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedhive.errors import SerializationError, StoreError
from fedhive.server.store import DATABASE_NAME, StateStore, verify_chain
from fedhive.server.store.audit import GENESIS_HASH, append_entry
from fedhive.server.store.database import connect, migrate


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore(tmp_path) as opened:
        for i in range(1, 6):
            opened.append_audit("operator_note", {"n": i, "text": f"entry {i}"})
        yield opened


def tamper(db: Path, *statements: str) -> None:
    """What someone with write access to the file could do: drop the guards, then edit."""
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
        conn.execute("DROP TRIGGER IF EXISTS audit_no_delete")
        for statement in statements:
            conn.execute(statement)
        conn.commit()


def test_an_untouched_chain_verifies(store: StateStore) -> None:
    report = store.verify_audit()
    assert (report.ok, report.entries, report.first_bad_seq, report.reason) == (True, 5, None, "")
    assert verify_chain(store.state_dir / DATABASE_NAME) == report


def test_entry_hashes_follow_the_documented_canonical_form(store: StateStore) -> None:
    with closing(sqlite3.connect(store.state_dir / DATABASE_NAME)) as conn:
        rows = conn.execute("SELECT seq, at, kind, payload, prev_hash, hash FROM audit").fetchall()
    prev = GENESIS_HASH
    for seq, at, kind, payload, prev_hash, stored in rows:
        body = json.dumps(
            {"seq": seq, "at": at, "kind": kind, "payload": json.loads(payload)},
            sort_keys=True,
            separators=(",", ":"),
        )
        assert prev_hash == prev
        assert stored == hashlib.sha256(prev.encode() + body.encode()).hexdigest()
        assert at.endswith("+00:00")
        prev = stored
    assert store.verify_audit().head == prev


def test_the_table_refuses_updates_and_deletes(store: StateStore) -> None:
    with closing(sqlite3.connect(store.state_dir / DATABASE_NAME)) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE audit SET payload = '{}' WHERE seq = 1")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM audit WHERE seq = 1")


def test_an_edited_payload_breaks_the_chain_at_that_entry(store: StateStore) -> None:
    tamper(
        store.state_dir / DATABASE_NAME,
        """UPDATE audit SET payload = '{"n":3,"text":"forged"}' WHERE seq = 3""",
    )
    report = store.verify_audit()
    assert (report.ok, report.first_bad_seq, report.entries) == (False, 3, 2)
    assert "hash" in report.reason


def test_an_edited_hash_breaks_the_chain_at_that_entry(store: StateStore) -> None:
    tamper(store.state_dir / DATABASE_NAME, f"UPDATE audit SET hash = '{'0' * 64}' WHERE seq = 4")
    report = store.verify_audit()
    assert (report.ok, report.first_bad_seq) == (False, 4)


def test_a_deleted_entry_is_reported_as_missing(store: StateStore) -> None:
    tamper(store.state_dir / DATABASE_NAME, "DELETE FROM audit WHERE seq = 2")
    report = store.verify_audit()
    assert (report.ok, report.first_bad_seq) == (False, 2)
    assert "missing" in report.reason


def test_deleting_the_first_entries_is_caught(store: StateStore) -> None:
    tamper(store.state_dir / DATABASE_NAME, "DELETE FROM audit WHERE seq <= 2")
    assert store.verify_audit().first_bad_seq == 1


def test_reordered_entries_break_the_chain(store: StateStore) -> None:
    tamper(
        store.state_dir / DATABASE_NAME,
        "UPDATE audit SET seq = -1 WHERE seq = 2",
        "UPDATE audit SET seq = 2 WHERE seq = 3",
        "UPDATE audit SET seq = 3 WHERE seq = -1",
    )
    report = store.verify_audit()
    assert (report.ok, report.first_bad_seq) == (False, 2)


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(store: StateStore) -> None:
    db = store.state_dir / DATABASE_NAME
    with closing(sqlite3.connect(db)) as conn:
        at, kind, prev = conn.execute(
            "SELECT at, kind, prev_hash FROM audit WHERE seq = 3"
        ).fetchone()
    forged = {"n": 3, "text": "forged"}
    body = json.dumps(
        {"seq": 3, "at": at, "kind": kind, "payload": forged}, sort_keys=True, separators=(",", ":")
    )
    digest = hashlib.sha256(prev.encode() + body.encode()).hexdigest()
    tamper(
        db, f"UPDATE audit SET payload = '{json.dumps(forged)}', hash = '{digest}' WHERE seq = 3"
    )
    report = store.verify_audit()
    assert (report.ok, report.first_bad_seq) == (False, 4)
    assert "prev_hash" in report.reason


def test_truncating_the_newest_entries_shows_only_as_a_different_head(store: StateStore) -> None:
    head = store.verify_audit().head
    tamper(store.state_dir / DATABASE_NAME, "DELETE FROM audit WHERE seq = 5")
    report = store.verify_audit()
    assert (report.ok, report.entries) == (True, 4)
    assert report.head != head  # detectable only against a head hash kept elsewhere


def test_a_payload_that_is_not_json_is_refused_and_nothing_appended(store: StateStore) -> None:
    with pytest.raises(SerializationError):
        store.append_audit("bad", {"loss": float("nan")})
    with pytest.raises(SerializationError):
        store.append_audit("bad", {"ids": {1, 2}})
    assert store.verify_audit().entries == 5


def test_appending_outside_a_transaction_is_refused(tmp_path: Path) -> None:
    with closing(connect(tmp_path / "a.sqlite")) as conn:
        migrate(conn)
        with pytest.raises(StoreError, match="transaction"):
            append_entry(conn, kind="k", payload={}, at=0.0)


def test_verifying_a_missing_file_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no database"):
        verify_chain(tmp_path / DATABASE_NAME)
    assert list(tmp_path.iterdir()) == []


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
payloads = st.dictionaries(st.text(max_size=8), json_values, max_size=4)


@settings(max_examples=25, deadline=None)
@given(
    entries=st.lists(st.tuples(st.text(min_size=1, max_size=12), payloads), min_size=1, max_size=8),
    data=st.data(),
)
def test_any_appended_sequence_verifies_and_any_single_edit_is_found_at_its_seq(
    entries: list[tuple[str, dict[str, Any]]], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "audit.sqlite"
        with closing(connect(db)) as conn:
            conn.execute("PRAGMA synchronous = OFF")  # hashing is tested here, not durability
            migrate(conn)
            for i, (kind, payload) in enumerate(entries):
                conn.execute("BEGIN IMMEDIATE")
                append_entry(conn, kind=kind, payload=payload, at=1.7e9 + i)
                conn.execute("COMMIT")
            assert verify_chain(conn).ok
            assert verify_chain(conn).entries == len(entries)
        index = data.draw(st.integers(0, len(entries) - 1), label="edited entry")
        replacement = data.draw(
            payloads.filter(lambda p: _canonical(p) != _canonical(entries[index][1]))
        )
        with closing(sqlite3.connect(db)) as raw:
            raw.execute("DROP TRIGGER audit_no_update")
            raw.execute(
                "UPDATE audit SET payload = ? WHERE seq = ?", (json.dumps(replacement), index + 1)
            )
            raw.commit()
        report = verify_chain(db)
        assert (report.ok, report.first_bad_seq, report.entries) == (False, index + 1, index)


def _canonical(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))
