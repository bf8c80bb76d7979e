"""Model lineage: each committed version and the version it was trained from."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from fedhive.errors import StoreError
from fedhive.server.store.records import ModelVersion

_COLUMNS = "version, parent_version, run_id, round, strategy, contributors, metrics, created_at"


def select_version_exists(conn: sqlite3.Connection, version: str) -> bool:
    """Whether ``version`` is a committed version."""
    row = conn.execute("SELECT 1 FROM model_versions WHERE version = ?", (version,)).fetchone()
    return row is not None


def select_lineage(conn: sqlite3.Connection, version: str) -> tuple[ModelVersion, ...]:
    """``version`` and its ancestors, newest first, back to a version with no parent.

    Parent links always point at an older row (a version's row is written once, and its
    parent must exist first), so the walk ends; the seen-set guards a hand-edited table.

    Raises:
        StoreError: ``version`` is unknown, or the links form a loop.
    """
    chain: list[ModelVersion] = []
    seen: set[str] = set()
    current: str | None = version
    while current is not None:
        if current in seen:
            raise StoreError(f"model lineage loops at version {current}")
        seen.add(current)
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM model_versions WHERE version = ?", (current,)
        ).fetchone()
        if row is None:
            raise StoreError(f"model version {current} is unknown")
        chain.append(_from_row(row))
        current = chain[-1].parent_version
    return tuple(chain)


def _from_row(row: tuple[Any, ...]) -> ModelVersion:
    return ModelVersion(
        version=row[0],
        parent_version=row[1],
        run_id=row[2],
        round=row[3],
        strategy=row[4],
        contributors=tuple(json.loads(row[5])),
        metrics=json.loads(row[6]),
        created_at=row[7],
    )
