"""Where virtual clients keep their persistent state between the rounds they join.

A client's ``state`` dict (the error-feedback residual, SCAFFOLD's client variates, a
device's privacy ledger) is stored as record bytes (:func:`~fedhive.core.serde.record_to_bytes`:
safetensors, never pickle) under its client id. Every backend reads a task's state
from a :class:`StateStore` before the task and writes back what the task left; the
process backend ships the bytes as they are, the local backend decodes them.

- :class:`MemoryStateStore`: a dict in this process (the default; grows with the
  clients that ever kept a state).
- :class:`SqliteStateStore`: one SQLite table (WAL), so memory does not grow with the
  number of clients, and a later run opening the same file sees the states (a
  simulation of a million devices, resumable). One connection, used by the driver
  thread only.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Protocol

from fedhive.config.simulated import StateBackend
from fedhive.core.serde import RecordValue, record_from_bytes, record_to_bytes


class StateStore(Protocol):
    """Client id -> record bytes. ``get`` of an unknown client is None."""

    def get(self, client_id: str) -> bytes | None:
        """The bytes last ``put`` for ``client_id``, or None."""
        ...

    def put(self, client_id: str, data: bytes) -> None:
        """Store ``data`` as ``client_id``'s state (durable once it returns, for a file)."""
        ...

    def close(self) -> None:
        """Release the store (a file store keeps its file)."""
        ...


class MemoryStateStore:
    """States in a dict of this process."""

    def __init__(self) -> None:
        self._states: dict[str, bytes] = {}

    def get(self, client_id: str) -> bytes | None:
        """The bytes last stored for ``client_id``."""
        return self._states.get(client_id)

    def put(self, client_id: str, data: bytes) -> None:
        """Keep ``data`` for ``client_id``."""
        self._states[client_id] = data

    def __len__(self) -> int:
        return len(self._states)

    def close(self) -> None:
        """Drop every state."""
        self._states.clear()


class SqliteStateStore:
    """States in one SQLite table ``states(client_id TEXT PRIMARY KEY, record BLOB)``.

    WAL journal with ``synchronous=NORMAL``: each ``put`` is its own transaction, which
    survives the process dying (not a power cut). SQLite's page cache is bounded, so
    the process's memory does not depend on how many clients hold a state.
    """

    def __init__(self, path: Path | str, *, temporary: bool = False) -> None:
        self.path = Path(path)
        self._closed = False
        self._temporary = temporary  # remove the file and its folder on close
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS states (client_id TEXT PRIMARY KEY, record BLOB NOT NULL)"
        )

    def get(self, client_id: str) -> bytes | None:
        """The stored bytes of ``client_id``."""
        row = self._db.execute(
            "SELECT record FROM states WHERE client_id = ?", (client_id,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def put(self, client_id: str, data: bytes) -> None:
        """Insert or replace ``client_id``'s bytes (one committed transaction)."""
        self._db.execute(
            "INSERT INTO states (client_id, record) VALUES (?, ?) "
            "ON CONFLICT(client_id) DO UPDATE SET record = excluded.record",
            (client_id, data),
        )

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM states").fetchone()[0])

    def close(self) -> None:
        """Checkpoint the WAL into the file and close the connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()
        if self._temporary:
            shutil.rmtree(self.path.parent, ignore_errors=True)


def open_store(
    kind: StateBackend, path: str = "", *, base_dir: Path, run_dir: Path | None = None
) -> StateStore:
    """The store ``[simulation] state`` names.

    SQLite at ``state_path`` (relative to ``base_dir``, the config's folder): opened as it
    is, so a later run continues each client's state. Without a path: ``states.db`` in
    ``run_dir`` (the run's output folder), started afresh so that a rerun of the same
    config is reproducible; without either, a temporary file removed when the store
    closes.
    """
    if kind == StateBackend.MEMORY:
        return MemoryStateStore()
    if path:
        resolved = Path(path)
        return SqliteStateStore(resolved if resolved.is_absolute() else base_dir / resolved)
    if run_dir is None:
        return SqliteStateStore(
            Path(tempfile.mkdtemp(prefix="fedhive-states-")) / "states.db", temporary=True
        )
    for suffix in ("", "-wal", "-shm"):
        (run_dir / f"states.db{suffix}").unlink(missing_ok=True)
    return SqliteStateStore(run_dir / "states.db")


def load_state(store: StateStore, client_id: str) -> dict[str, RecordValue]:
    """``client_id``'s state as a dict (empty if it has none yet)."""
    data = store.get(client_id)
    return {} if data is None else record_from_bytes(data)


def save_state(
    store: StateStore, client_id: str, state: dict[str, RecordValue], before: bytes | None
) -> None:
    """Store ``state`` unless it is empty and was so before, or unchanged (``before``: the
    bytes it was loaded from)."""
    if not state and before is None:
        return
    data = record_to_bytes(state)
    if data != before:
        store.put(client_id, data)
