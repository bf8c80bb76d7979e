"""What a run records about each round: counts, bytes, timings and metrics."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from fedhive.core.messages import Failure
from fedhive.strategy.accounting import PrivacyReport


@dataclass
class Traffic:
    """What one client's task moved in a round: its accepted update's bytes up, the
    bytes of the model sent down to it (see :class:`CohortStats`)."""

    bytes_up: int = 0
    bytes_down: int = 0


@dataclass
class CohortStats:
    """Outcomes of one cohort of tasks (fit or evaluate) in a round.

    ``bytes_up`` / ``bytes_down`` are the cohort's totals, ``traffic`` the same per
    client. Up: each accepted update's bytes as its transport received them (the payload's
    data chunks over gRPC; the encoded payload, or the plain update's safetensors size,
    in simulation). Down: the model bytes the transport sent each task's client (over
    gRPC, the data of the download stream it served; in simulation, the published
    model's size per task).
    """

    selected: int = 0
    succeeded: int = 0
    failed: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    bytes_down: int = 0
    bytes_up: int = 0
    contributors: list[str] = field(default_factory=list)
    traffic: dict[str, Traffic] = field(default_factory=dict)

    def uploaded(self, client_id: str, size: int) -> None:
        """Count ``size`` bytes received from ``client_id``."""
        self.bytes_up += size
        self.traffic.setdefault(client_id, Traffic()).bytes_up += size

    def downloaded(self, client_id: str, size: int) -> None:
        """Count ``size`` bytes sent to ``client_id``."""
        self.bytes_down += size
        self.traffic.setdefault(client_id, Traffic()).bytes_down += size

    def record_failure(self, failure: Failure) -> None:
        """Count a failed task under its ``stage:kind`` key."""
        self.failed += 1
        self.failures[failure.key] += 1


@dataclass(frozen=True, kw_only=True)
class RoundRecord:
    """One finished round: whether it committed a new version, and what was measured."""

    round: int
    seconds: float
    committed: bool
    version: str
    fit: CohortStats
    evaluate: CohortStats
    train: dict[str, float]
    centralized: dict[str, float]
    federated: dict[str, float]
    privacy: PrivacyReport | None = None
    """The round's privacy outcome under a DP strategy (the run's epsilon so far, the
    round's events); None without one."""
    note: str = ""
    clock: float | None = None
    """Simulated seconds since the run started, at the round's end (None: not simulated)."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (one line of metrics.jsonl)."""
        data = asdict(self)
        data["privacy"] = self.privacy.to_json() if self.privacy is not None else {}
        # asdict would rebuild a Counter from its items; take the counts as they are.
        data["fit"]["failures"] = dict(sorted(self.fit.failures.items()))
        data["evaluate"]["failures"] = dict(sorted(self.evaluate.failures.items()))
        return data
