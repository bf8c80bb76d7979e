"""Do the store's tables say what its audit log says? Rounds and versions against entries.

Every committed round and every model version must be the one a ``round_committed``
entry records (same version, parent, contributors, strategy state), every aborted round
the one a ``round_aborted`` entry records (same strategy state: what a restarted server
continues with, privacy events included), and every such entry must still be a round in
that state. A strategy state kept for a round that is not closed is refused too (a
restart would read it). A round's accounted state (an open round's release, which a
restart re-runs from) must be the one its last ``round_accounted`` entry records, and
every such entry's round must still keep it. Editing a table without a matching (signed)
entry, or dropping entries while the rounds stay, is then caught by ``fedhive audit
verify``.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from fedhive.server.store.database import sqlite_errors
from fedhive.server.store.records import AuditKind, RoundState

_Key = tuple[str, int]


def table_problem(conn: sqlite3.Connection) -> str:
    """Why ``rounds``/``model_versions`` disagree with the audit log, or "" when they agree."""
    with sqlite_errors("cross-check the rounds with the audit log"):
        commits = _audited(conn, AuditKind.ROUND_COMMITTED)
        aborts = _audited(conn, AuditKind.ROUND_ABORTED)
        rounds = conn.execute(
            "SELECT r.run_id, r.round, r.state, r.model_version, s.state_digest FROM rounds AS r"
            " LEFT JOIN strategy_state AS s USING (run_id, round) WHERE r.state != 'open'"
        ).fetchall()
        stray = conn.execute(
            "SELECT s.run_id, s.round FROM strategy_state AS s LEFT JOIN rounds AS r"
            " USING (run_id, round) WHERE r.state IS NULL OR r.state = 'open'"
        ).fetchall()
        versions = conn.execute(
            "SELECT version, parent_version, run_id, round, contributors FROM model_versions"
        ).fetchall()
        problem = _accounted_problem(conn)
    if stray:
        return f"round {stray[0][1]} of run {stray[0][0]} has a strategy state but is not closed"
    if problem:
        return problem
    closed: dict[_Key, str] = {}
    for run_id, rnd, state, version, digest in rounds:
        closed[(run_id, rnd)] = state
        committed = state == RoundState.COMMITTED
        entry = (commits if committed else aborts).get((run_id, rnd))
        if entry is None:
            return f"round {rnd} of run {run_id} is {state} with no audit entry"
        # An entry of an older fedhive's abort names no state, and its round kept none.
        recorded = (entry.get("version") if committed else None, entry.get("strategy_state"))
        if recorded != (version, digest):
            return f"round {rnd} of run {run_id} differs from its audit entry"
    for entries, state in ((commits, RoundState.COMMITTED), (aborts, RoundState.ABORTED)):
        for run_id, rnd in entries:
            if closed.get((run_id, rnd)) != state:
                return f"audit entry {state} round {rnd} of run {run_id}: the rounds table lost it"
    for version, parent, run_id, rnd, contributors in versions:
        entry = commits.get((run_id, rnd))
        stored = (version, parent, json.loads(contributors))
        if (
            entry is None
            or (entry["version"], entry["parent_version"], entry["contributors"]) != stored
        ):
            return f"model version {version[:12]} differs from the audit entry of its round"
    return ""


def _accounted_problem(conn: sqlite3.Connection) -> str:
    """Why a round's accounted state is not the one its audit entries record, or ""."""
    entries = _audited(conn, AuditKind.ROUND_ACCOUNTED)
    rows = conn.execute("SELECT run_id, round, accounted_state FROM rounds").fetchall()
    for run_id, rnd, digest in rows:
        entry = entries.pop((run_id, rnd), None)
        recorded = None if entry is None else entry.get("strategy_state")
        if recorded != digest:
            return f"round {rnd} of run {run_id}: its accounted state differs from its audit entry"
    if entries:  # an accounted round whose row is gone
        run_id, rnd = next(iter(entries))
        return f"audit entry accounted round {rnd} of run {run_id}: the rounds table lost it"
    return ""


def _audited(conn: sqlite3.Connection, kind: AuditKind) -> dict[_Key, dict[str, Any]]:
    """The payload of each entry of ``kind``, by (run, round)."""
    rows = conn.execute("SELECT payload FROM audit WHERE kind = ? ORDER BY seq", (kind,))
    found: dict[_Key, dict[str, Any]] = {}
    for (payload,) in rows:
        entry = json.loads(payload)
        if isinstance(entry, dict):
            found[(str(entry.get("run_id")), int(entry.get("round", -1)))] = entry
    return found
