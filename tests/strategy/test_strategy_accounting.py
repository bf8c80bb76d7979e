"""A round's participation: the sampling rate its privacy is accounted at."""

from __future__ import annotations

from fedhive.strategy.accounting import Participation, PrivacyAccounting
from fedhive.strategy.fedavg import FedAvg
from fedhive.strategy.private import DpFedAvg


def test_a_participation_rate_is_a_probability() -> None:
    assert Participation(10, 20).sample_rate == 0.5
    assert Participation(3, 20).plus(1).sample_rate == 0.2
    assert Participation(0, 0).sample_rate == 0.0
    assert Participation(5, 4).sample_rate == 1.0  # never above 1, whatever a strategy did


def test_dp_fedavg_accounts_privacy_and_fedavg_does_not() -> None:
    assert isinstance(DpFedAvg(), PrivacyAccounting)
    assert not isinstance(FedAvg(), PrivacyAccounting)
