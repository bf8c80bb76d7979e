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


class AuditKind(StrEnum):
    """The kinds of audit entry the store writes itself."""

    RUN_CREATED = "run_created"
    ROUND_OPENED = "round_opened"
    ROUND_REOPENED = "round_reopened"
    ROUND_ACCOUNTED = "round_accounted"
    ROUND_COMMITTED = "round_committed"
    ROUND_ABORTED = "round_aborted"
    SERVER_STARTED = "server_started"


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
class RoundTraffic:
    """What a closed round's fit cohort moved and lost: kept for the run's totals."""

    bytes_up: int = 0
    bytes_down: int = 0
    clients_failed: int = 0


@dataclass(frozen=True, kw_only=True)
class RunTotals:
    """A run's figures over every server process that worked on it.

    Attributes:
        last_round: the last round that closed (committed or aborted; 0: none yet).
        committed_rounds: rounds after the initial model that committed a version.
        bytes_up: bytes clients uploaded in fit cohorts, every closed round.
        bytes_down: bytes clients downloaded in fit cohorts, every closed round.
        clients_failed: failed fit tasks, every closed round.
        restarts: server starts after the first.
        created_at: when the run was created (Unix seconds).
    """

    last_round: int
    committed_rounds: int
    bytes_up: int
    bytes_down: int
    clients_failed: int
    restarts: int
    created_at: float


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


@dataclass(frozen=True, kw_only=True)
class ResumePoint:
    """Where a restarted server continues a run: after ``round``, its last closed round
    (committed or aborted), from the last committed model and that round's strategy state,
    or the state the interrupted round after it accounted a release in.

    An uninterrupted run goes on from the same point: a round that did not commit leaves
    the model as it was but may have changed the strategy state (a privacy event for a
    noisy sum that was unmasked). A round interrupted after its release runs again from
    its accounted state, so its event counts twice, as its devices released twice.
    ``weights_bytes`` and ``strategy_state`` were read back
    from the blob store and checked against their SHA-256.
    """

    run_id: str
    round: int
    version: str
    """The last committed model's version (that of ``weights_bytes``)."""
    weights_bytes: bytes
    strategy_state: bytes
