"""The append-only, hash-chained audit log of a server's state store.

Entry ``seq`` (1, 2, 3, … without gaps) is chained to the entry before it::

    hash = SHA-256(prev_hash || canonical)
    canonical = json.dumps(
        {"at": at, "kind": kind, "payload": payload, "seq": seq},
        sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False,
    )

where ``||`` is concatenation of bytes, ``prev_hash`` is the previous entry's ``hash``
as 64 lowercase hex characters in ASCII (64 ``"0"`` for entry 1), ``canonical`` is
ASCII (non-ASCII characters are ``\\uXXXX`` escapes), ``at`` is the entry's ISO-8601
UTC time with microseconds (``"2024-05-01T12:00:00.000000+00:00"``) and ``payload`` a
JSON object. The digest is stored as 64 lowercase hex characters.

Editing an entry's payload, time or kind, editing a hash, deleting or reordering
entries all break the chain at the first entry affected. The chain alone cannot show
truncation (deleting the newest entries leaves a shorter valid chain) nor a history
rewritten and re-chained by whoever can write the file: the server's signed heads and
``audit-head.json`` do (:mod:`fedhive.server.store.anchor`). Triggers refuse UPDATE and
DELETE on the table, so the application cannot rewrite history by mistake; someone who
drops them is caught here.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fedhive.core.canonical import canonical_json
from fedhive.errors import SerializationError, StoreError
from fedhive.server.store.database import connect, sqlite_errors

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first entry."""


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    """One entry of the audit log, as stored."""

    seq: int
    at: str
    kind: str
    payload: Mapping[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True, kw_only=True)
class AuditReport:
    """The outcome of :func:`verify_chain`.

    Attributes:
        ok: every entry is intact and linked, with no gap in ``seq``.
        entries: how many entries verified before the first bad one (all when ``ok``).
        first_bad_seq: the first entry that fails (a missing one for a gap), or None.
        reason: why it fails ("" when ``ok``).
        head: the hash of the last intact entry (``GENESIS_HASH`` when there is none).
    """

    ok: bool
    entries: int
    first_bad_seq: int | None
    reason: str
    head: str


def entry_hash(*, prev_hash: str, seq: int, at: str, kind: str, payload: Any) -> str:
    """The hex SHA-256 that chains entry ``seq`` to ``prev_hash``."""
    body = canonical_json({"at": at, "kind": kind, "payload": payload, "seq": seq})
    return hashlib.sha256(prev_hash.encode("utf-8") + body).hexdigest()


def format_time(at: float) -> str:
    """Unix seconds as the ISO-8601 UTC string stored in ``audit.at``."""
    return datetime.fromtimestamp(at, tz=timezone.utc).isoformat(timespec="microseconds")


def append_entry(
    conn: sqlite3.Connection, *, kind: str, payload: Mapping[str, Any], at: float
) -> AuditEntry:
    """Append one entry inside the caller's open write transaction.

    The entry becomes visible only when the caller commits, together with the change
    it records; a rollback removes both.

    Raises:
        StoreError: no transaction is open on ``conn``.
        SerializationError: ``payload`` is not a JSON object.
    """
    if not conn.in_transaction:
        raise StoreError("audit entries are appended inside the caller's transaction")
    if not isinstance(payload, Mapping):
        raise SerializationError("an audit payload is a JSON object")
    text = canonical_json(payload).decode("ascii")
    stored = json.loads(text)  # hash exactly what verify_chain will read back
    when = format_time(at)
    with sqlite_errors(f"append a {kind!r} audit entry"):
        head = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev_hash = (1, GENESIS_HASH) if head is None else (int(head[0]) + 1, str(head[1]))
        digest = entry_hash(prev_hash=prev_hash, seq=seq, at=when, kind=kind, payload=stored)
        conn.execute(
            "INSERT INTO audit (seq, at, kind, payload, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)",
            (seq, when, kind, text, prev_hash, digest),
        )
    return AuditEntry(seq=seq, at=when, kind=kind, payload=stored, prev_hash=prev_hash, hash=digest)


def verify_chain(source: sqlite3.Connection | str | os.PathLike[str]) -> AuditReport:
    """Recompute every entry's hash and check every link and that ``seq`` has no gaps.

    Args:
        source: an open connection, or the path of a store's SQLite file (opened
            read-only; nothing is created or migrated).

    Raises:
        StoreError: the file is missing or is not a fedhive state store.
    """
    if isinstance(source, sqlite3.Connection):
        return _verify(source)
    with closing(connect(Path(source), read_only=True)) as conn:
        return _verify(conn)


def _verify(conn: sqlite3.Connection) -> AuditReport:
    expected, prev = 1, GENESIS_HASH
    with (
        sqlite_errors("read the audit log"),
        closing(
            conn.execute("SELECT seq, at, kind, payload, prev_hash, hash FROM audit ORDER BY seq")
        ) as rows,
    ):
        for row in rows:
            seq = row[0]
            if seq != expected:
                reason = f"entry {expected} is missing (the next entry is {seq})"
                return _broken(expected, prev, reason)
            reason = _entry_problem(row, prev)
            if reason:
                return _broken(seq, prev, reason)
            expected, prev = seq + 1, row[5]
    return AuditReport(ok=True, entries=expected - 1, first_bad_seq=None, reason="", head=prev)


def _entry_problem(row: tuple[Any, ...], prev: str) -> str:
    """Why the entry ``(seq, at, kind, payload, prev_hash, hash)`` fails, or ""."""
    seq, at, kind, payload, prev_hash, stored = row
    if prev_hash != prev:
        return "prev_hash does not match the previous entry's hash"
    try:
        parsed = json.loads(payload)
        if not isinstance(parsed, dict):
            return "payload is not a JSON object"
        recomputed = entry_hash(prev_hash=prev, seq=seq, at=at, kind=kind, payload=parsed)
    except (TypeError, ValueError):  # SerializationError is a ValueError
        return "entry is not well-formed JSON text"
    if recomputed != stored:
        return "hash does not match the entry's contents"
    return ""


def _broken(seq: int, head: str, reason: str) -> AuditReport:
    return AuditReport(ok=False, entries=seq - 1, first_bad_seq=seq, reason=reason, head=head)
