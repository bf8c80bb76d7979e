"""A round's participation: the sampling rate its privacy is accounted at."""

from __future__ import annotations

import numpy as np

from fedhive.core.weights import Weights
from fedhive.strategy.accounting import Participation, PrivacyAccounting, PrivacyReport
from fedhive.strategy.algorithm import Algorithm
from fedhive.strategy.private import DifferentialPrivacy


def test_a_participation_rate_is_a_probability() -> None:
    assert Participation(10, 20).sample_rate == 0.5
    assert Participation(3, 20).plus(1).sample_rate == 0.2
    assert Participation(0, 0).sample_rate == 0.0
    assert Participation(5, 4).sample_rate == 1.0  # never above 1, whatever a strategy did


def test_dp_fedavg_accounts_privacy_and_fedavg_does_not() -> None:
    # Every algorithm has the accounting steps now; only one with DP reports privacy.
    private = Algorithm(transforms=(DifferentialPrivacy(),))
    plain = Algorithm()
    assert isinstance(private, PrivacyAccounting)
    assert isinstance(plain, PrivacyAccounting)
    weights = Weights({"w": np.zeros(3)})
    participation = Participation(2, 4)
    state = plain.initial_state(weights)
    plain.check_budget(state, 1, participation)
    assert plain.account(state, 1, participation, committed=True) == (state, None)
    _, report = private.account(private.initial_state(weights), 1, participation, committed=True)
    assert isinstance(report, PrivacyReport)
    assert report.epsilon > 0
