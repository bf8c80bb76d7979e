"""Runs and the life of a round: open (or reopen), account, abort, commit.

A closed round (committed or aborted) keeps the strategy state it ended with: a round
that failed after its noisy sum was unmasked has still spent privacy, and a restarted
server continues after it with that state (see ``StateStore.resume_point``). An open
round that already accounted a release keeps that state too (``accounted_state``): a
restart re-runs the round from it, so the interrupted attempt's release stays counted.

Each function runs inside the caller's open write transaction (see ``StateStore``) and
appends the audit entry for what it changed, so the change and its entry commit together.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from fedhive.errors import StoreError
from fedhive.server.store.audit import append_entry
from fedhive.server.store.lineage import select_version_exists
from fedhive.server.store.records import (
    AuditKind,
    RoundInfo,
    RoundState,
    RoundTraffic,
    Run,
    RunTotals,
)

_ROUND_COLUMNS = "run_id, round, state, started_at, closed_at, model_version, metrics"


def insert_run(
    conn: sqlite3.Connection, run_id: str, *, seed: int, config: Mapping[str, Any], now: float
) -> Run:
    """Record a new run, audited with its seed and config.

    Raises:
        StoreError: a run with that id exists.
        SerializationError: ``config`` is not a JSON object.
    """
    if select_run(conn, run_id) is not None:
        raise StoreError(f"run {run_id!r} already exists")
    payload = {"run_id": run_id, "seed": seed, "config": dict(config)}
    entry = append_entry(conn, kind=AuditKind.RUN_CREATED, payload=payload, at=now)
    stored = entry.payload["config"]  # the config as JSON reads it back
    conn.execute(
        "INSERT INTO runs (run_id, created_at, config, seed) VALUES (?, ?, ?, ?)",
        (run_id, now, json.dumps(stored, sort_keys=True), seed),
    )
    return Run(run_id=run_id, seed=seed, config=stored, created_at=now)


def record_start(conn: sqlite3.Connection, run_id: str, *, now: float) -> None:
    """Note that a server process opened the run (audited).

    Raises:
        StoreError: the run is unknown.
    """
    if select_run(conn, run_id) is None:
        raise StoreError(f"run {run_id!r} is unknown")
    conn.execute("INSERT INTO server_starts (run_id, started_at) VALUES (?, ?)", (run_id, now))
    append_entry(conn, kind=AuditKind.SERVER_STARTED, payload={"run_id": run_id}, at=now)


def select_totals(conn: sqlite3.Connection, run_id: str) -> RunTotals:
    """The run's figures over all its rounds and server starts.

    Raises:
        StoreError: the run is unknown.
    """
    run = select_run(conn, run_id)
    if run is None:
        raise StoreError(f"run {run_id!r} is unknown")
    row = conn.execute(
        "SELECT COALESCE(MAX(round), 0), COALESCE(SUM(state = 'committed'), 0),"
        " COALESCE(SUM(bytes_up), 0), COALESCE(SUM(bytes_down), 0),"
        " COALESCE(SUM(clients_failed), 0)"
        " FROM rounds WHERE run_id = ? AND round > 0 AND state != 'open'",
        (run_id,),
    ).fetchone()
    starts = conn.execute(
        "SELECT COUNT(*) FROM server_starts WHERE run_id = ?", (run_id,)
    ).fetchone()[0]
    return RunTotals(
        last_round=int(row[0]),
        committed_rounds=int(row[1]),
        bytes_up=int(row[2]),
        bytes_down=int(row[3]),
        clients_failed=int(row[4]),
        restarts=max(0, int(starts) - 1),
        created_at=run.created_at,
    )


def select_run(conn: sqlite3.Connection, run_id: str) -> Run | None:
    """The run with that id, or None."""
    row = conn.execute(
        "SELECT run_id, seed, config, created_at FROM runs WHERE run_id = ?", (run_id,)
    ).fetchone()
    if row is None:
        return None
    return Run(run_id=row[0], seed=row[1], config=json.loads(row[2]), created_at=row[3])


def start_round(conn: sqlite3.Connection, run_id: str, *, round: int, now: float) -> RoundInfo:
    """Open ``round``, or reopen it if it is still open from an interrupted attempt
    (so that it runs again under the same number, and so with the same random streams).

    Raises:
        StoreError: the run is unknown, the round is closed, or a round at or after it
            has closed.
    """
    if select_run(conn, run_id) is None:
        raise StoreError(f"run {run_id!r} is unknown")
    current = select_round(conn, run_id, round=round)
    if current is None:
        latest = select_last_closed(conn, run_id)
        if latest is not None and round <= latest:
            raise StoreError(f"round {latest} has closed already", round=round)
        conn.execute(
            "INSERT INTO rounds (run_id, round, state, started_at) VALUES (?, ?, 'open', ?)",
            (run_id, round, now),
        )
        kind = AuditKind.ROUND_OPENED
    elif current.state is RoundState.OPEN:
        conn.execute(
            "UPDATE rounds SET started_at = ? WHERE run_id = ? AND round = ?", (now, run_id, round)
        )
        kind = AuditKind.ROUND_REOPENED
    else:
        raise StoreError(f"round is already {current.state}", round=round)
    append_entry(conn, kind=kind, payload={"run_id": run_id, "round": round}, at=now)
    return require_round(conn, run_id, round=round)


def record_accounted(
    conn: sqlite3.Connection, run_id: str, *, round: int, state_digest: str, now: float
) -> None:
    """Keep the strategy state an open round accounted its release in (a privacy event),
    replacing an interrupted attempt's; audited with the state's digest.

    Raises:
        StoreError: the round is not open.
    """
    require_open(conn, run_id, round=round)
    conn.execute(
        "UPDATE rounds SET accounted_state = ? WHERE run_id = ? AND round = ?",
        (state_digest, run_id, round),
    )
    payload = {"run_id": run_id, "round": round, "strategy_state": state_digest}
    append_entry(conn, kind=AuditKind.ROUND_ACCOUNTED, payload=payload, at=now)


def select_open_accounted(conn: sqlite3.Connection, run_id: str, *, after: int) -> str | None:
    """The accounted state's digest of the open round right after round ``after`` (the
    one a restart runs again), or None if it accounted nothing."""
    row = conn.execute(
        "SELECT accounted_state FROM rounds WHERE run_id = ? AND round = ? AND state = 'open'",
        (run_id, after + 1),
    ).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def abort_round(
    conn: sqlite3.Connection,
    run_id: str,
    *,
    round: int,
    reason: str,
    state_digest: str,
    traffic: RoundTraffic,
    now: float,
) -> RoundInfo:
    """Close an open round without a new version, keeping the strategy state it ended
    with (a privacy event, say); audited with ``reason`` and the state's digest.

    Raises:
        StoreError: the round is not open.
    """
    require_open(conn, run_id, round=round)
    conn.execute(
        "INSERT INTO strategy_state (run_id, round, state_digest) VALUES (?, ?, ?)",
        (run_id, round, state_digest),
    )
    conn.execute(
        "UPDATE rounds SET state = 'aborted', closed_at = ? WHERE run_id = ? AND round = ?",
        (now, run_id, round),
    )
    _record_traffic(conn, run_id, round=round, traffic=traffic)
    payload = {
        "run_id": run_id,
        "round": round,
        "reason": reason,
        "strategy_state": state_digest,
    }
    append_entry(conn, kind=AuditKind.ROUND_ABORTED, payload=payload, at=now)
    return require_round(conn, run_id, round=round)


def record_commit(
    conn: sqlite3.Connection,
    *,
    run_id: str,
    round: int,
    version: str,
    parent_version: str | None,
    state_digest: str,
    strategy: str,
    contributors: Sequence[str],
    metrics_json: str,
    traffic: RoundTraffic,
    now: float,
) -> None:
    """Record a committed round whose blobs are stored: version, state, round, audit.

    A version already known (the same weights again) keeps its first row.

    Raises:
        StoreError: the round is not open, or the parent is not a known version.
    """
    require_open(conn, run_id, round=round)
    if parent_version is not None and not select_version_exists(conn, parent_version):
        raise StoreError(f"parent version {parent_version} is unknown", round=round)
    conn.execute(
        "INSERT INTO model_versions (version, parent_version, run_id, round, strategy,"
        " contributors, metrics, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (version) DO NOTHING",
        (
            version,
            parent_version,
            run_id,
            round,
            strategy,
            json.dumps(list(contributors)),
            metrics_json,
            now,
        ),
    )
    conn.execute(
        "INSERT INTO strategy_state (run_id, round, state_digest) VALUES (?, ?, ?)",
        (run_id, round, state_digest),
    )
    conn.execute(
        "UPDATE rounds SET state = 'committed', closed_at = ?, model_version = ?, metrics = ?"
        " WHERE run_id = ? AND round = ?",
        (now, version, metrics_json, run_id, round),
    )
    _record_traffic(conn, run_id, round=round, traffic=traffic)
    payload = {
        "run_id": run_id,
        "round": round,
        "version": version,
        "parent_version": parent_version,
        "strategy_state": state_digest,
        "strategy": strategy,
        "contributors": list(contributors),
    }
    append_entry(conn, kind=AuditKind.ROUND_COMMITTED, payload=payload, at=now)


def select_latest_commit(conn: sqlite3.Connection, run_id: str) -> tuple[int, str, str, str] | None:
    """``(round, version, state digest, metrics JSON)`` of the last committed round."""
    row = conn.execute(
        "SELECT r.round, r.model_version, s.state_digest, r.metrics FROM rounds AS r"
        " JOIN strategy_state AS s USING (run_id, round)"
        " WHERE r.run_id = ? AND r.state = 'committed' ORDER BY r.round DESC LIMIT 1",
        (run_id,),
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]), str(row[2]), str(row[3]))


def select_last_closed(conn: sqlite3.Connection, run_id: str) -> int | None:
    """The run's last closed round (committed or aborted), or None."""
    row = conn.execute(
        "SELECT MAX(round) FROM rounds WHERE run_id = ? AND state != 'open'", (run_id,)
    ).fetchone()
    return None if row[0] is None else int(row[0])


def select_latest_state(conn: sqlite3.Connection, run_id: str) -> str | None:
    """The digest of the strategy state of the run's last closed round that kept one
    (every closed round does, except rounds an older fedhive aborted), or None."""
    row = conn.execute(
        "SELECT s.state_digest FROM strategy_state AS s JOIN rounds AS r USING (run_id, round)"
        " WHERE s.run_id = ? AND r.state != 'open' ORDER BY s.round DESC LIMIT 1",
        (run_id,),
    ).fetchone()
    return None if row is None else str(row[0])


def select_rounds(conn: sqlite3.Connection, run_id: str) -> tuple[RoundInfo, ...]:
    """Every round of the run, in round order."""
    rows = conn.execute(
        f"SELECT {_ROUND_COLUMNS} FROM rounds WHERE run_id = ? ORDER BY round", (run_id,)
    ).fetchall()
    return tuple(_round_from_row(row) for row in rows)


def select_round(conn: sqlite3.Connection, run_id: str, *, round: int) -> RoundInfo | None:
    """The round's row, or None."""
    row = conn.execute(
        f"SELECT {_ROUND_COLUMNS} FROM rounds WHERE run_id = ? AND round = ?", (run_id, round)
    ).fetchone()
    return None if row is None else _round_from_row(row)


def require_round(conn: sqlite3.Connection, run_id: str, *, round: int) -> RoundInfo:
    """The round's row.

    Raises:
        StoreError: the run has no such round.
    """
    info = select_round(conn, run_id, round=round)
    if info is None:
        raise StoreError(f"run {run_id!r} has no such round", round=round)
    return info


def require_open(conn: sqlite3.Connection, run_id: str, *, round: int) -> None:
    """Check that the round exists and is open.

    Raises:
        StoreError: it does not, or is closed.
    """
    state = require_round(conn, run_id, round=round).state
    if state is not RoundState.OPEN:
        raise StoreError(f"round is {state}, not open", round=round)


def _record_traffic(
    conn: sqlite3.Connection, run_id: str, *, round: int, traffic: RoundTraffic
) -> None:
    conn.execute(
        "UPDATE rounds SET bytes_up = ?, bytes_down = ?, clients_failed = ?"
        " WHERE run_id = ? AND round = ?",
        (traffic.bytes_up, traffic.bytes_down, traffic.clients_failed, run_id, round),
    )


def _round_from_row(row: tuple[Any, ...]) -> RoundInfo:
    return RoundInfo(
        run_id=row[0],
        round=row[1],
        state=RoundState(row[2]),
        started_at=row[3],
        closed_at=row[4],
        model_version=row[5],
        metrics=json.loads(row[6]) if row[6] is not None else {},
    )
