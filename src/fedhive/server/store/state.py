"""The durable state of a deployment server: runs, rounds, versions, audit.

A state folder holds ``state.sqlite`` (the SQLite database) and ``blobs/`` (model
weights and strategy states, content-addressed). :meth:`StateStore.commit_round` is
what makes a round durable: it stores both blobs first (idempotent, never visible under
a partial name), then in ONE SQLite transaction records the version, the strategy
state, the round's new state and an audit entry. A process killed at any point leaves
either all of that or none of it. :meth:`StateStore.abort_round` likewise keeps the
strategy state an aborted round ended with, :meth:`StateStore.account_round` the state an
open round accounted a release in, and :meth:`StateStore.resume_point` is what a
restarted server continues from: after the last closed round, with the last committed
model and the strategy state of the last closed round, or of the interrupted round after
it if that one accounted a release.

Given the server's :class:`~fedhive.server.store.anchor.HeadSigner`, every write
transaction also signs the audit log's new head, and ``audit-head.json`` beside the
database holds the newest (see :mod:`fedhive.server.store.anchor`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from fedhive.errors import StoreError
from fedhive.server.store import rounds as _rounds
from fedhive.server.store.anchor import HEAD_FILE, HeadSigner, sign_new_head, write_head_file
from fedhive.server.store.audit import AuditEntry, AuditReport, append_entry, verify_chain
from fedhive.server.store.blobs import BlobStore
from fedhive.server.store.database import connect, migrate, sqlite_errors, transaction
from fedhive.server.store.lineage import select_lineage
from fedhive.server.store.records import (
    CommittedRound,
    ModelVersion,
    ResumePoint,
    RoundInfo,
    RoundTraffic,
    Run,
    RunTotals,
)

DATABASE_NAME = "state.sqlite"
"""The SQLite file inside a state folder."""
BLOBS_NAME = "blobs"
"""The blob folder inside a state folder."""
NO_TRAFFIC = RoundTraffic()
"""A round that moved nothing (the initial model's round 0)."""


class StateStore:
    """A server's state folder, opened (created and migrated when needed)."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        signer: HeadSigner | None = None,
    ) -> None:
        """Open the state folder ``state_dir``, creating it and its schema if missing.

        Args:
            state_dir: the folder holding ``state.sqlite`` and ``blobs/``.
            clock: Unix seconds for the times the store records (tests pass a fake).
            signer: signs the audit head at every write (None: heads are not signed).

        Raises:
            StoreError: the folder or database cannot be opened or migrated.
        """
        self.state_dir = Path(state_dir)
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"state store: cannot create {self.state_dir}: {exc}") from exc
        self.blobs = BlobStore(self.state_dir / BLOBS_NAME)
        self._clock = clock
        self._signer = signer
        self._lock = threading.RLock()
        self._conn = connect(self.state_dir / DATABASE_NAME)
        try:
            self.schema_version = migrate(self._conn)
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _read(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock, sqlite_errors(action):
            yield self._conn

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            with sqlite_errors(action), transaction(self._conn) as conn:
                yield conn
                head = sign_new_head(conn, self._signer) if self._signer else None
            if head is not None:  # after the commit: the file never runs ahead of the log
                write_head_file(self.state_dir / HEAD_FILE, head)

    # Runs and rounds -------------------------------------------------------------------

    def create_run(self, run_id: str, *, seed: int, config: Mapping[str, Any]) -> Run:
        """Record a new run (audited with its seed and config).

        Raises:
            StoreError: a run with that id exists.
            SerializationError: ``config`` is not a JSON object.
        """
        now = self._clock()
        with self._write(f"create run {run_id!r}") as conn:
            return _rounds.insert_run(conn, run_id, seed=seed, config=config, now=now)

    def record_start(self, run_id: str) -> None:
        """Note that a server process opened the run (audited; counted as restarts).

        Raises:
            StoreError: the run is unknown.
        """
        now = self._clock()
        with self._write(f"record a start of run {run_id!r}") as conn:
            _rounds.record_start(conn, run_id, now=now)

    def run_totals(self, run_id: str) -> RunTotals:
        """The run's rounds, traffic, failures and restarts over every server process.

        Raises:
            StoreError: the run is unknown.
        """
        with self._read(f"sum up run {run_id!r}") as conn:
            return _rounds.select_totals(conn, run_id)

    def run_ids(self) -> tuple[str, ...]:
        """Every run's id, oldest first (a restarted server resumes the newest)."""
        with self._read("list runs") as conn:
            rows = conn.execute("SELECT run_id FROM runs ORDER BY created_at, run_id")
            return tuple(str(row[0]) for row in rows)

    def load_run(self, run_id: str) -> Run | None:
        """The run with that id, or None."""
        with self._read(f"load run {run_id!r}") as conn:
            return _rounds.select_run(conn, run_id)

    def open_round(self, run_id: str, round: int) -> RoundInfo:
        """Start ``round``, or restart it if a crash interrupted it while open (so it
        runs again with the same number, and so the same random streams).

        Raises:
            StoreError: the run is unknown, the round is already closed, or a round at
                or after it has committed.
        """
        now = self._clock()
        with self._write(f"open round {round} of run {run_id!r}") as conn:
            return _rounds.start_round(conn, run_id, round=round, now=now)

    def abort_round(
        self,
        run_id: str,
        round: int,
        *,
        reason: str,
        strategy_state: bytes,
        traffic: RoundTraffic = NO_TRAFFIC,
    ) -> RoundInfo:
        """Close an open round without a new version (too few clients, say), keeping the
        strategy state it ended with; audited.

        Args:
            run_id: the run.
            round: the open round.
            reason: why it did not commit.
            strategy_state: the strategy's state after the round (``record_to_bytes``):
                what the run continues with, a privacy event included.
            traffic: what the round's fit cohort moved and lost (for the run's totals).

        Raises:
            StoreError: the round is not open.
        """
        state_digest = self.blobs.put(strategy_state)
        now = self._clock()
        with self._write(f"abort round {round} of run {run_id!r}") as conn:
            return _rounds.abort_round(
                conn,
                run_id,
                round=round,
                reason=reason,
                state_digest=state_digest,
                traffic=traffic,
                now=now,
            )

    def account_round(self, run_id: str, round: int, *, strategy_state: bytes) -> None:
        """Keep the strategy state an open round accounted a release in (its privacy
        event), before the round closes; audited.

        A server that dies before the round closes re-runs it from this state (see
        :meth:`resume_point`), so the interrupted attempt's release stays counted.

        Raises:
            StoreError: the round is not open.
        """
        state_digest = self.blobs.put(strategy_state)
        now = self._clock()
        with self._write(f"account round {round} of run {run_id!r}") as conn:
            _rounds.record_accounted(conn, run_id, round=round, state_digest=state_digest, now=now)

    def rounds(self, run_id: str) -> tuple[RoundInfo, ...]:
        """Every round of the run, in round order."""
        with self._read(f"list rounds of run {run_id!r}") as conn:
            return _rounds.select_rounds(conn, run_id)

    # Committing and resuming -----------------------------------------------------------

    def commit_round(
        self,
        run_id: str,
        round: int,
        *,
        weights_bytes: bytes,
        version: str,
        parent_version: str | None,
        strategy_state: bytes,
        strategy: str,
        contributors: Iterable[str],
        metrics: Mapping[str, float],
        traffic: RoundTraffic = NO_TRAFFIC,
    ) -> str:
        """Make an open round's new model durable, all at once; return its version.

        Both blobs are stored first; then one transaction records the version, the
        strategy state, the round as committed and an audit entry.

        Args:
            run_id: the run.
            round: the open round that produced the model.
            weights_bytes: the model's canonical bytes (``weights_to_bytes``).
            version: their hex SHA-256, as the caller made it once for the model
                (``ModelVersion.digest``): not hashed again here (see
                :meth:`BlobStore.put` for what is checked instead).
            parent_version: the version the round started from (None for the initial
                model, committed as round 0).
            strategy_state: the strategy's state after the round (``record_to_bytes``).
            strategy: the strategy's name.
            contributors: the clients whose updates were aggregated (stored sorted).
            metrics: the round's metrics (may hold NaN; kept out of the audit entry).
            traffic: what the round's fit cohort moved and lost (for the run's totals).

        Raises:
            StoreError: the round is not open, the parent is not a known version, a
                stored blob of another size has ``version``, or the database cannot be
                written (then nothing of the round is visible).
            SerializationError: ``version`` is not a lowercase hex SHA-256.
        """
        clients = sorted(contributors)
        metrics_json = json.dumps({str(k): float(v) for k, v in metrics.items()})
        self.blobs.put(weights_bytes, digest=version)
        state_digest = self.blobs.put(strategy_state)
        now = self._clock()
        with self._write(f"commit round {round} of run {run_id!r}") as conn:
            _rounds.record_commit(
                conn,
                run_id=run_id,
                round=round,
                version=version,
                parent_version=parent_version,
                state_digest=state_digest,
                strategy=strategy,
                contributors=clients,
                metrics_json=metrics_json,
                traffic=traffic,
                now=now,
            )
        return version

    def latest_committed(self, run_id: str) -> CommittedRound | None:
        """The run's last committed round with its model and strategy state, or None.

        Raises:
            StoreError: a blob the round refers to is missing.
            SerializationError: a blob no longer matches its hash (corruption).
        """
        with self._read(f"find the last committed round of run {run_id!r}") as conn:
            found = _rounds.select_latest_commit(conn, run_id)
        if found is None:
            return None
        round_, version, state_digest, metrics_json = found
        return CommittedRound(
            run_id=run_id,
            round=round_,
            version=version,
            weights_bytes=self.blobs.get(version),
            strategy_state=self.blobs.get(state_digest),
            metrics=json.loads(metrics_json),
        )

    def resume_point(self, run_id: str) -> ResumePoint | None:
        """Where a restarted server continues the run, or None before its first commit.

        The strategy state is that of the last closed round, or that of the open round
        after it when an interrupted attempt of it accounted a release (the round then
        runs again from it, on the last committed model, and adds its own event).

        Raises:
            StoreError: a blob it refers to is missing.
            SerializationError: a blob no longer matches its hash (corruption).
        """
        with self._read(f"find where run {run_id!r} continues") as conn:
            committed = _rounds.select_latest_commit(conn, run_id)
            closed = _rounds.select_last_closed(conn, run_id)
            state_digest = _rounds.select_latest_state(conn, run_id)
            if closed is not None:
                state_digest = (
                    _rounds.select_open_accounted(conn, run_id, after=closed) or state_digest
                )
        if committed is None or closed is None or state_digest is None:
            return None
        version = committed[1]
        return ResumePoint(
            run_id=run_id,
            round=closed,
            version=version,
            weights_bytes=self.blobs.get(version),
            strategy_state=self.blobs.get(state_digest),
        )

    def lineage(self, version: str) -> tuple[ModelVersion, ...]:
        """``version`` and its ancestors, newest first, back to a version with no parent.

        Raises:
            StoreError: ``version`` is not a committed version.
        """
        with self._read(f"walk the lineage of {version}") as conn:
            return select_lineage(conn, version)

    # Audit -----------------------------------------------------------------------------

    def append_audit(self, kind: str, payload: Mapping[str, Any]) -> AuditEntry:
        """Append an entry of the server's own (a revocation, an operator action)."""
        now = self._clock()
        with self._write(f"append a {kind!r} audit entry") as conn:
            return append_entry(conn, kind=kind, payload=payload, at=now)

    def verify_audit(self) -> AuditReport:
        """Recompute the audit chain (see :func:`~fedhive.server.store.audit.verify_chain`)."""
        with self._read("verify the audit chain") as conn:
            return verify_chain(conn)
