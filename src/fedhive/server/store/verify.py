"""All the checks of ``fedhive audit verify``: the chain, the tables, the signed heads."""

from __future__ import annotations

import dataclasses
import os
from contextlib import closing
from pathlib import Path

from cryptography.x509 import Certificate

from fedhive.server.store.anchor import HEAD_FILE, anchor_problem, read_head_file
from fedhive.server.store.audit import AuditReport, verify_chain
from fedhive.server.store.consistency import table_problem
from fedhive.server.store.database import connect
from fedhive.server.store.state import DATABASE_NAME


def verify_state(
    state_dir: str | os.PathLike[str], *, certificate: Certificate | None = None
) -> AuditReport:
    """Check a state folder's audit log: its hash chain, that the rounds and versions are
    those it records, and (with the server's ``certificate``) that every entry is under
    a head the server signed and the log is not shorter than ``audit-head.json``.

    Opens the database read-only; nothing is created or migrated.

    Raises:
        StoreError: the folder holds no fedhive state store, or its head file is malformed.
    """
    folder = Path(state_dir)
    anchor = read_head_file(folder / HEAD_FILE)
    with closing(connect(folder / DATABASE_NAME, read_only=True)) as conn:
        report = verify_chain(conn)
        if not report.ok:
            return report
        problem = table_problem(conn) or anchor_problem(
            conn, certificate=certificate, anchor=anchor
        )
    return dataclasses.replace(report, ok=False, reason=problem) if problem else report
