"""What a run records about each round: counts, bytes, timings and metrics."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from fedhive.core.messages import Failure
from fedhive.strategy.accounting import PrivacyReport


@dataclass
class CohortStats:
    """Outcomes of one cohort of tasks (fit or evaluate) in a round."""

    selected: int = 0
    succeeded: int = 0
    failed: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    bytes_down: int = 0
    bytes_up: int = 0
    contributors: list[str] = field(default_factory=list)

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
