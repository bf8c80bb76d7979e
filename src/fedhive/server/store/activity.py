"""Tasks, results and nodes: the store's record of who was asked what, and what came back.

Each function runs inside the caller's open write transaction (see ``StateStore``).
"""

from __future__ import annotations

import sqlite3

from fedhive.errors import StoreError
from fedhive.server.store.audit import append_entry
from fedhive.server.store.records import (
    AuditKind,
    NodeRecord,
    NodeStatus,
    ResultRecord,
    RoundState,
    TaskKind,
    TaskRecord,
    TaskStatus,
)

_NODE_COLUMNS = "client_id, cert_serial, first_seen, last_heartbeat, status"


def insert_task(conn: sqlite3.Connection, task: TaskRecord) -> None:
    """Record a task issued in an open round.

    Raises:
        StoreError: the round is not open, or the task id is taken.
    """
    row = conn.execute(
        "SELECT state FROM rounds WHERE run_id = ? AND round = ?", (task.run_id, task.round)
    ).fetchone()
    if row is None or row[0] != RoundState.OPEN:
        raise StoreError(
            f"task {task.task_id!r}: round is not open", client_id=task.client_id, round=task.round
        )
    conn.execute(
        "INSERT INTO tasks (task_id, run_id, round, client_id, kind, model_version, issued_at,"
        " deadline, status, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            task.task_id,
            task.run_id,
            task.round,
            task.client_id,
            str(task.kind),
            task.model_version,
            task.issued_at,
            task.deadline,
            str(task.status),
            task.error,
        ),
    )


def finish_task(
    conn: sqlite3.Connection, task_id: str, *, status: TaskStatus, error: str | None
) -> None:
    """Close an issued task that ended without a result (failed, or past its deadline).

    Raises:
        StoreError: no issued task has that id, or ``status`` is ``issued``.
    """
    if status is TaskStatus.ISSUED:
        raise StoreError(f"task {task_id!r}: a task is finished with a final status")
    changed = conn.execute(
        "UPDATE tasks SET status = ?, error = ? WHERE task_id = ? AND status = 'issued'",
        (str(status), error, task_id),
    ).rowcount
    if changed != 1:
        raise StoreError(f"task {task_id!r} is unknown or already finished")


def insert_result(conn: sqlite3.Connection, result: ResultRecord) -> TaskStatus:
    """Record a task's result and set the task's status from it; return that status.

    The task succeeded if the result was accepted; otherwise it is ``late`` when the
    result arrived after the deadline and ``failed`` when not, with ``reason`` as error.

    Raises:
        StoreError: the task is unknown or already has a result.
    """
    row = conn.execute("SELECT deadline FROM tasks WHERE task_id = ?", (result.task_id,)).fetchone()
    if row is None:
        raise StoreError(f"result for unknown task {result.task_id!r}")
    if result.accepted:
        status = TaskStatus.SUCCEEDED
    else:
        status = TaskStatus.LATE if result.received_at > row[0] else TaskStatus.FAILED
    conn.execute(
        "INSERT INTO results (task_id, payload_sha256, num_examples, received_at, accepted,"
        " reason) VALUES (?, ?, ?, ?, ?, ?)",
        (
            result.task_id,
            result.payload_sha256,
            result.num_examples,
            result.received_at,
            int(result.accepted),
            result.reason,
        ),
    )
    conn.execute(
        "UPDATE tasks SET status = ?, error = ? WHERE task_id = ?",
        (str(status), None if result.accepted else result.reason, result.task_id),
    )
    return status


def upsert_node(
    conn: sqlite3.Connection,
    client_id: str,
    *,
    cert_serial: str | None,
    status: NodeStatus,
    now: float,
) -> NodeRecord:
    """Register a node, or update its certificate serial and status; audit any change."""
    before = select_node(conn, client_id)
    if before is None:
        conn.execute(
            f"INSERT INTO nodes ({_NODE_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
            (client_id, cert_serial, now, now, str(status)),
        )
        kind = AuditKind.NODE_REGISTERED
    elif (before.cert_serial, before.status) != (cert_serial, status):
        conn.execute(
            "UPDATE nodes SET cert_serial = ?, status = ? WHERE client_id = ?",
            (cert_serial, str(status), client_id),
        )
        kind = AuditKind.NODE_CHANGED
    else:
        return before
    payload = {"client_id": client_id, "cert_serial": cert_serial, "status": str(status)}
    append_entry(conn, kind=kind, payload=payload, at=now)
    after = select_node(conn, client_id)
    assert after is not None  # written just above, in this transaction
    return after


def heartbeat(conn: sqlite3.Connection, client_id: str, *, now: float) -> NodeRecord:
    """Note that a node is alive: ``online`` now, unless it was revoked.

    Raises:
        StoreError: the node was never registered.
    """
    changed = conn.execute(
        "UPDATE nodes SET last_heartbeat = ?,"
        " status = CASE status WHEN 'revoked' THEN 'revoked' ELSE 'online' END"
        " WHERE client_id = ?",
        (now, client_id),
    ).rowcount
    node = select_node(conn, client_id)
    if changed != 1 or node is None:
        raise StoreError("heartbeat from an unregistered node", client_id=client_id)
    return node


def select_node(conn: sqlite3.Connection, client_id: str) -> NodeRecord | None:
    """The node's row, or None."""
    row = conn.execute(
        f"SELECT {_NODE_COLUMNS} FROM nodes WHERE client_id = ?", (client_id,)
    ).fetchone()
    if row is None:
        return None
    return NodeRecord(
        client_id=row[0],
        cert_serial=row[1],
        first_seen=row[2],
        last_heartbeat=row[3],
        status=NodeStatus(row[4]),
    )


def select_task(conn: sqlite3.Connection, task_id: str) -> TaskRecord | None:
    """The task's row, or None."""
    row = conn.execute(
        "SELECT task_id, run_id, round, client_id, kind, model_version, issued_at, deadline,"
        " status, error FROM tasks WHERE task_id = ?",
        (task_id,),
    ).fetchone()
    if row is None:
        return None
    return TaskRecord(
        task_id=row[0],
        run_id=row[1],
        round=row[2],
        client_id=row[3],
        kind=TaskKind(row[4]),
        model_version=row[5],
        issued_at=row[6],
        deadline=row[7],
        status=TaskStatus(row[8]),
        error=row[9],
    )
