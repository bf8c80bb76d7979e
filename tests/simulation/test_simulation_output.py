"""A run's summary: its privacy is the last round's typed report, events included."""

from __future__ import annotations

import numpy as np

from fedhive.core.weights import Weights
from fedhive.privacy import GaussianEvent
from fedhive.server.history import CohortStats, RoundRecord
from fedhive.server.run import RunResult
from fedhive.simulation.output import summarize
from fedhive.strategy.accounting import PrivacyReport


def result(privacy: PrivacyReport | None) -> RunResult:
    record = RoundRecord(
        round=1,
        seconds=1.0,
        committed=True,
        version="v",
        fit=CohortStats(selected=2, succeeded=2),
        evaluate=CohortStats(),
        train={},
        centralized={},
        federated={},
        privacy=privacy,
    )
    return RunResult(Weights({"w": np.zeros(1)}), "v", {}, (record,))


def test_the_summary_reports_epsilon_delta_and_the_last_rounds_events() -> None:
    event = GaussianEvent(noise_multiplier=1.1, sample_rate=0.5)
    report = PrivacyReport(epsilon=2.5, delta=1e-5, events=(event,), clipping_norm=1.0)
    summary = summarize(result(report), seed=0, wall_seconds=1.0)
    assert summary["privacy"] == {
        "epsilon": 2.5,
        "delta": 1e-5,
        "events": [{"noise_multiplier": 1.1, "sample_rate": 0.5, "count": 1}],
        "clipping_norm": 1.0,
    }


def test_a_run_without_dp_summarises_no_privacy() -> None:
    assert summarize(result(None), seed=0, wall_seconds=1.0)["privacy"] == {}
