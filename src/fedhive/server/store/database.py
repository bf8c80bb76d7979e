"""The SQLite connection of the state store: settings, migrations, transactions, errors.

Durability settings: WAL journal with ``synchronous=FULL`` (a commit that returned is on
disk, and a killed process loses only what it had not committed) and foreign keys on.

The schema is a numbered series of SQL files in ``migrations/`` (``0001_initial.sql``,
``0002_….sql``), shipped as package data. Each pending file runs in its own transaction
together with ``PRAGMA user_version = N``, so the recorded version always names the last
migration applied whole; reopening a store applies nothing twice.

Every ``sqlite3.Error`` becomes a :class:`~fedhive.errors.StoreError` in one place,
:func:`sqlite_errors`.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from fedhive.errors import StoreError

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_BUSY_TIMEOUT_MS = 10_000


@contextmanager
def sqlite_errors(action: str) -> Iterator[None]:
    """Turn any ``sqlite3.Error`` raised inside into a :class:`StoreError`.

    Args:
        action: what was being done, for the message ("commit round 3").

    Raises:
        StoreError: wrapping the sqlite3 error (chained as ``__cause__``).
    """
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"state store: cannot {action}: {exc}", stage="store") from exc


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: ``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any error.

    ``IMMEDIATE`` takes the write lock at the start, so reads made inside the transaction
    (the audit head, a round's state) cannot be changed by another writer before commit.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        # A failed COMMIT (busy, disk full) can leave the transaction open; an I/O error
        # may already have rolled it back.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """Open the SQLite file at ``path`` with the store's settings (no migrations).

    Args:
        path: the database file; created when missing unless ``read_only``.
        read_only: open an existing file for reading only.

    Raises:
        StoreError: the file cannot be opened (or, read-only, does not exist).
    """
    if read_only and not path.is_file():
        raise StoreError(f"state store: no database at {path}", stage="store")
    mode = "ro" if read_only else "rwc"
    with sqlite_errors(f"open {path}"):
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode={mode}",
            uri=True,
            isolation_level=None,  # autocommit; transactions are explicit (transaction())
            check_same_thread=False,  # StateStore serialises access with its own lock
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
            if not read_only:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
        except BaseException:
            conn.close()
            raise
    return conn


def migrations() -> list[tuple[int, str]]:
    """The packaged migrations as ``(number, sql)``, numbered 1, 2, … without gaps.

    Raises:
        StoreError: the numbering has a gap or a duplicate (a packaging mistake).
    """
    folder = resources.files("fedhive.server.store").joinpath("migrations")
    found: list[tuple[int, str]] = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match is not None:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    found.sort()
    numbers = [number for number, _ in found]
    if numbers != list(range(1, len(found) + 1)):
        raise StoreError(f"state store: migrations are not numbered 1..N: {numbers}")
    return found


def schema_version(conn: sqlite3.Connection) -> int:
    """The number of the last migration applied to ``conn``'s database (0: none)."""
    with sqlite_errors("read the schema version"):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    return int(version)


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the pending migrations in order, each in one transaction; return the version.

    Raises:
        StoreError: the database is newer than this fedhive, or a migration failed (the
            failed migration is rolled back; earlier ones stay applied).
    """
    pending = migrations()
    latest = len(pending)
    if schema_version(conn) == latest:  # the common case: no write lock needed
        return latest
    for number, sql in pending:
        with sqlite_errors(f"apply migration {number:04d}"), transaction(conn):
            # Re-read inside the write lock: another process may have just migrated.
            current = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if current > latest:
                raise StoreError(
                    f"state store: schema version {current} is newer than this fedhive "
                    f"supports ({latest}); upgrade fedhive"
                )
            if current >= number:
                continue
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
    return schema_version(conn)


def _statements(script: str) -> Iterator[str]:
    """Split an SQL script into complete statements (``executescript`` would COMMIT)."""
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \t\r\n;"):
                yield buffer
            buffer = ""
    if buffer.strip(" \t\r\n;"):
        raise StoreError("state store: a migration ends with an incomplete statement")
