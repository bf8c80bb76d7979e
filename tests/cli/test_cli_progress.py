"""The progress line of a finished round."""

from __future__ import annotations

import dataclasses

import pytest

from fedhive.cli.progress import describe, size
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


def test_a_rounds_line_shows_its_bytes_up_and_down() -> None:
    fit = CohortStats(selected=4, succeeded=4, bytes_up=1_234_567, bytes_down=3_400_000)
    line = describe(dataclasses.replace(record(None), fit=fit))
    assert "| ↑1.2 MB ↓3.4 MB |" in line


@pytest.mark.parametrize(
    ("count", "shown"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (999_949, "999.9 kB"),
        (999_950, "1.0 MB"),
        (2_500_000_000, "2.5 GB"),
        (7_000_000_000_000, "7000.0 GB"),
    ],
)
def test_byte_counts_are_shown_in_decimal_units(count: int, shown: str) -> None:
    assert size(count) == shown
