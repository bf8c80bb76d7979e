"""Do the store's tables say what its audit log says? Rounds and versions against entries.

Every committed round and every model version must be the one a ``round_committed``
entry records (same version, parent, contributors, strategy state), and every such entry
must still be a committed round. Editing a table without a matching (signed) entry, or
dropping entries while the rounds stay, is then caught by ``fedhive audit verify``.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from fedhive.server.store.database import sqlite_errors
from fedhive.server.store.records import AuditKind


def table_problem(conn: sqlite3.Connection) -> str:
    """Why ``rounds``/``model_versions`` disagree with the audit log, or "" when they agree."""
    with sqlite_errors("cross-check the rounds with the audit log"):
        commits = _audited_commits(conn)
        rounds = conn.execute(
            "SELECT r.run_id, r.round, r.model_version, s.state_digest FROM rounds AS r"
            " LEFT JOIN strategy_state AS s USING (run_id, round) WHERE r.state = 'committed'"
        ).fetchall()
        versions = conn.execute(
            "SELECT version, parent_version, run_id, round, contributors FROM model_versions"
        ).fetchall()
    committed = {(run_id, rnd) for run_id, rnd, _v, _s in rounds}
    for run_id, rnd, version, state in rounds:
        entry = commits.get((run_id, rnd))
        if entry is None:
            return f"round {rnd} of run {run_id} is committed with no audit entry"
        if (entry["version"], entry["strategy_state"]) != (version, state):
            return f"round {rnd} of run {run_id} differs from its audit entry"
    for key in commits:
        if key not in committed:
            return f"audit entry commits round {key[1]} of run {key[0]}: the rounds table lost it"
    for version, parent, run_id, rnd, contributors in versions:
        entry = commits.get((run_id, rnd))
        stored = (version, parent, json.loads(contributors))
        if (
            entry is None
            or (entry["version"], entry["parent_version"], entry["contributors"]) != stored
        ):
            return f"model version {version[:12]} differs from the audit entry of its round"
    return ""


def _audited_commits(conn: sqlite3.Connection) -> dict[tuple[str, int], dict[str, Any]]:
    """The payload of each ``round_committed`` entry, by (run, round)."""
    rows = conn.execute(
        "SELECT payload FROM audit WHERE kind = ? ORDER BY seq", (AuditKind.ROUND_COMMITTED,)
    )
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for (payload,) in rows:
        entry = json.loads(payload)
        if isinstance(entry, dict):
            found[(str(entry.get("run_id")), int(entry.get("round", -1)))] = entry
    return found
