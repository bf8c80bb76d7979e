"""The durable state of a deployment server: SQLite, content-addressed blobs, audit log.

A state folder holds ``state.sqlite`` (numbered SQL migrations, WAL, ``synchronous=FULL``)
and ``blobs/`` (models and strategy states under their SHA-256). A closed round is
all-or-nothing, so a server killed at any moment resumes from
:meth:`StateStore.resume_point` with nothing closed lost, and the hash-chained
audit log, its head signed by the server's key at every write (:class:`HeadSigner`,
``audit-head.json``), shows whether history was edited, cut or added to since
(:func:`verify_state`).
"""

from fedhive.server.store.anchor import HeadSigner
from fedhive.server.store.audit import AuditEntry, AuditReport, verify_chain
from fedhive.server.store.blobs import BlobStore
from fedhive.server.store.records import (
    CommittedRound,
    ModelVersion,
    ResumePoint,
    RoundInfo,
    RoundState,
    RoundTraffic,
    Run,
    RunTotals,
)
from fedhive.server.store.state import DATABASE_NAME, StateStore
from fedhive.server.store.verify import verify_state

__all__ = [
    "DATABASE_NAME",
    "AuditEntry",
    "AuditReport",
    "BlobStore",
    "CommittedRound",
    "HeadSigner",
    "ModelVersion",
    "ResumePoint",
    "RoundInfo",
    "RoundState",
    "RoundTraffic",
    "Run",
    "RunTotals",
    "StateStore",
    "verify_chain",
    "verify_state",
]
