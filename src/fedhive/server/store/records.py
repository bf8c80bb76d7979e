"""The typed values that go into and come out of the state store.

Timestamps are Unix seconds (``time.time()``); metrics map names to floats; JSON
objects (a run's config) are plain mappings of JSON values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fedhive.core._compat import StrEnum


class RoundState(StrEnum):
    """Where a round is: running, or closed with or without a new model version."""

    OPEN = "open"
    COMMITTED = "committed"
    ABORTED = "aborted"


class TaskKind(StrEnum):
    """What a task asks a client to do."""

    FIT = "fit"
    EVALUATE = "evaluate"


class TaskStatus(StrEnum):
    """How a task ended (``issued``: not yet)."""

    ISSUED = "issued"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    LATE = "late"


class NodeStatus(StrEnum):
    """Whether a client node is reachable, and whether it may take part at all."""

    ONLINE = "online"
    OFFLINE = "offline"
    REVOKED = "revoked"


class AuditKind(StrEnum):
    """The kinds of audit entry the store writes itself."""

    RUN_CREATED = "run_created"
    ROUND_OPENED = "round_opened"
    ROUND_REOPENED = "round_reopened"
    ROUND_COMMITTED = "round_committed"
    ROUND_ABORTED = "round_aborted"
    NODE_REGISTERED = "node_registered"
    NODE_CHANGED = "node_changed"


@dataclass(frozen=True, kw_only=True)
class Run:
    """A run: its id, seed and resolved configuration (a JSON object)."""

    run_id: str
    seed: int
    config: Mapping[str, Any]
    created_at: float


@dataclass(frozen=True, kw_only=True)
class RoundInfo:
    """One round's row: its state, times, and (once committed) version and metrics."""

    run_id: str
    round: int
    state: RoundState
    started_at: float
    closed_at: float | None = None
    model_version: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class TaskRecord:
    """A task sent to a client: what, for which version, and until when."""

    task_id: str
    run_id: str
    round: int
    client_id: str
    kind: TaskKind
    model_version: str
    issued_at: float
    deadline: float
    status: TaskStatus = TaskStatus.ISSUED
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class ResultRecord:
    """A reply received for a task: the SHA-256 of its payload and whether it was used."""

    task_id: str
    payload_sha256: str
    num_examples: int
    received_at: float
    accepted: bool
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class NodeRecord:
    """A client node the server has seen, with its certificate serial."""

    client_id: str
    cert_serial: str | None
    first_seen: float
    last_heartbeat: float
    status: NodeStatus


@dataclass(frozen=True, kw_only=True)
class ModelVersion:
    """A committed model version and where it came from.

    A version is its content hash, so weights committed twice are one version: the row
    keeps the first commit's parent, run, round and metrics.
    """

    version: str
    parent_version: str | None
    run_id: str
    round: int
    strategy: str
    contributors: tuple[str, ...]
    metrics: Mapping[str, float]
    created_at: float


@dataclass(frozen=True, kw_only=True)
class CommittedRound:
    """What a restarted server resumes from: the last committed round's model and state.

    ``weights_bytes`` and ``strategy_state`` were read back from the blob store and
    checked against their SHA-256 (``version`` is that of ``weights_bytes``).
    """

    run_id: str
    round: int
    version: str
    weights_bytes: bytes
    strategy_state: bytes
    metrics: Mapping[str, float]
