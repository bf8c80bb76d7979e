"""The progress line of a finished round."""

from __future__ import annotations

from fedhive.cli.progress import describe
from fedhive.privacy import GaussianEvent
from fedhive.server.history import CohortStats, RoundRecord
from fedhive.strategy.accounting import PrivacyReport


def record(privacy: PrivacyReport | None) -> RoundRecord:
    return RoundRecord(
        round=3,
        seconds=1.5,
        committed=True,
        version="v",
        fit=CohortStats(selected=4, succeeded=4),
        evaluate=CohortStats(),
        train={},
        centralized={"accuracy": 0.5},
        federated={},
        privacy=privacy,
    )


def test_a_dp_rounds_line_shows_the_epsilon_spent_at_its_delta() -> None:
    event = GaussianEvent(noise_multiplier=1.0, sample_rate=0.2)
    line = describe(record(PrivacyReport(epsilon=9.8841, delta=1e-5, events=(event,))))
    assert "| ε 9.884 (δ 1e-05) |" in line


def test_a_round_without_dp_shows_no_epsilon() -> None:
    assert "ε" not in describe(record(None))
