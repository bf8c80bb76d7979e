"""Accounting: our composition equals dp-accounting's own, and epsilon is monotone."""

from __future__ import annotations

import functools
import math
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedhive.errors import ConfigError, MissingDependencyError, SerializationError
from fedhive.privacy import AccountantKind, GaussianEvent, epsilon, would_exceed

dp = pytest.importorskip("dp_accounting")

DELTA = 1e-5
ROUND = GaussianEvent(noise_multiplier=1.0, sample_rate=0.01)
THOUSAND = GaussianEvent(noise_multiplier=1.0, sample_rate=0.01, count=1000)


@functools.cache
def _reference(kind: str) -> float:
    """dp-accounting's epsilon for 1000 rounds of noise 1.0 at sample rate 0.01."""
    event = dp.SelfComposedDpEvent(dp.PoissonSampledDpEvent(0.01, dp.GaussianDpEvent(1.0)), 1000)
    accountant: Any = dp.rdp.RdpAccountant() if kind == "rdp" else dp.pld.PLDAccountant()
    accountant.compose(event)
    return float(accountant.get_epsilon(DELTA))


@pytest.mark.parametrize(("kind", "approximately"), [("rdp", 2.10), ("pld", 1.83)])
@pytest.mark.parametrize("events", [[THOUSAND], [ROUND] * 1000], ids=["one-event", "merged"])
def test_epsilon_equals_dp_accountings_own(
    kind: str, approximately: float, events: list[GaussianEvent]
) -> None:
    ours = epsilon(events, target_delta=DELTA, kind=AccountantKind(kind))
    assert ours == pytest.approx(_reference(kind), rel=1e-9)
    assert ours == pytest.approx(approximately, abs=0.01)


def test_to_dp_event_builds_the_documented_event() -> None:
    assert THOUSAND.to_dp_event() == dp.SelfComposedDpEvent(
        dp.PoissonSampledDpEvent(0.01, dp.GaussianDpEvent(1.0)), 1000
    )
    full = GaussianEvent(noise_multiplier=2.0, sample_rate=1.0, count=3)
    assert full.to_dp_event() == dp.SelfComposedDpEvent(dp.GaussianDpEvent(2.0), 3)


def test_different_mechanisms_compose_in_order() -> None:
    events = [ROUND, ROUND, GaussianEvent(noise_multiplier=2.0, sample_rate=1.0), ROUND]
    accountant = dp.rdp.RdpAccountant()
    for event in (
        dp.SelfComposedDpEvent(dp.PoissonSampledDpEvent(0.01, dp.GaussianDpEvent(1.0)), 2),
        dp.SelfComposedDpEvent(dp.GaussianDpEvent(2.0), 1),
        dp.SelfComposedDpEvent(dp.PoissonSampledDpEvent(0.01, dp.GaussianDpEvent(1.0)), 1),
    ):
        accountant.compose(event)
    assert epsilon(events, target_delta=DELTA) == pytest.approx(
        accountant.get_epsilon(DELTA), rel=1e-9
    )


def test_no_events_spend_nothing() -> None:
    assert epsilon([], target_delta=DELTA) == 0.0
    assert epsilon([], target_delta=DELTA, kind=AccountantKind.PLD) == 0.0


def test_would_exceed_compares_the_composed_epsilon_with_the_target() -> None:
    history = [GaussianEvent(noise_multiplier=1.0, sample_rate=0.01, count=999)]
    spent = _reference("rdp")
    assert would_exceed(history, ROUND, target_epsilon=spent - 1e-6, target_delta=DELTA)
    assert not would_exceed(history, ROUND, target_epsilon=spent + 1e-6, target_delta=DELTA)


@settings(max_examples=10, deadline=None)
@given(
    rounds=st.integers(min_value=1, max_value=5000),
    extra=st.integers(min_value=0, max_value=5000),
    sample_rate=st.sampled_from([0.001, 0.05, 1.0]),
    noise_multiplier=st.floats(min_value=0.5, max_value=20.0),
)
def test_epsilon_is_non_decreasing_in_rounds(
    rounds: int, extra: int, sample_rate: float, noise_multiplier: float
) -> None:
    def spent(count: int) -> float:
        event = GaussianEvent(
            noise_multiplier=noise_multiplier, sample_rate=sample_rate, count=count
        )
        return epsilon([event], target_delta=DELTA)

    assert spent(rounds) <= spent(rounds + extra)


@settings(max_examples=10, deadline=None)
@given(
    noise_multiplier=st.floats(min_value=0.5, max_value=20.0),
    factor=st.floats(min_value=1.0, max_value=4.0),
    sample_rate=st.sampled_from([0.001, 0.05, 1.0]),
    rounds=st.integers(min_value=1, max_value=5000),
)
def test_epsilon_is_non_increasing_in_noise(
    noise_multiplier: float, factor: float, sample_rate: float, rounds: int
) -> None:
    def spent(noise: float) -> float:
        event = GaussianEvent(noise_multiplier=noise, sample_rate=sample_rate, count=rounds)
        return epsilon([event], target_delta=DELTA)

    assert spent(noise_multiplier * factor) <= spent(noise_multiplier)


@given(
    noise_multiplier=st.floats(min_value=1e-6, max_value=1e6),
    sample_rate=st.floats(min_value=1e-9, max_value=1.0),
    count=st.integers(min_value=1, max_value=2**62),
)
def test_to_dict_from_dict_round_trip(
    noise_multiplier: float, sample_rate: float, count: int
) -> None:
    event = GaussianEvent(noise_multiplier=noise_multiplier, sample_rate=sample_rate, count=count)
    assert GaussianEvent.from_dict(event.to_dict()) == event


@pytest.mark.parametrize(
    "data",
    [
        None,
        [1.0, 0.1, 1],
        {"noise_multiplier": 1.0, "sample_rate": 0.1},
        {"noise_multiplier": 1.0, "sample_rate": 0.1, "count": 1, "extra": 0},
        {"noise_multiplier": "1.0", "sample_rate": 0.1, "count": 1},
        {"noise_multiplier": True, "sample_rate": 0.1, "count": 1},
        {"noise_multiplier": 1.0, "sample_rate": 0.1, "count": 1.0},
        {"noise_multiplier": 1.0, "sample_rate": 0.1, "count": 0},
        {"noise_multiplier": -1.0, "sample_rate": 0.1, "count": 1},
        {"noise_multiplier": 1.0, "sample_rate": 1.5, "count": 1},
        {"noise_multiplier": math.nan, "sample_rate": 0.1, "count": 1},
    ],
)
def test_malformed_dicts_are_refused(data: object) -> None:
    with pytest.raises(SerializationError):
        GaussianEvent.from_dict(data)


@pytest.mark.parametrize(
    "fields",
    [
        {"noise_multiplier": 0.0, "sample_rate": 0.1},
        {"noise_multiplier": 1.0, "sample_rate": 0.0},
        {"noise_multiplier": 1.0, "sample_rate": 1.01},
        {"noise_multiplier": 1.0, "sample_rate": 0.1, "count": 0},
    ],
)
def test_invalid_events_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        GaussianEvent(**fields)


@pytest.mark.parametrize(("target_delta", "kind"), [(0.0, "rdp"), (1.0, "rdp"), (DELTA, "moments")])
def test_invalid_accounting_arguments_are_refused(target_delta: float, kind: Any) -> None:
    with pytest.raises(ConfigError):
        epsilon([ROUND], target_delta=target_delta, kind=kind)


def test_missing_dp_accounting_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dp_accounting", None)
    with pytest.raises(MissingDependencyError, match=r"fedhive\[dp\]"):
        epsilon([ROUND], target_delta=DELTA)


def test_importing_the_package_does_not_import_dp_accounting() -> None:
    code = "import sys, fedhive.privacy; sys.exit('dp_accounting' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_a_non_event_among_the_events_is_refused_by_its_index() -> None:
    with pytest.raises(ConfigError, match=r"events\[1\]: must be a GaussianEvent"):
        epsilon([ROUND, {"noise_multiplier": 1.0}], target_delta=DELTA)  # type: ignore[list-item]


def test_an_event_with_a_number_too_large_for_a_float_is_refused() -> None:
    # Before: float() raised OverflowError, so a device's FileLedger did not fail closed.
    data = {"noise_multiplier": 10**400, "sample_rate": 1.0, "count": 1}
    with pytest.raises(SerializationError, match="out of range"):
        GaussianEvent.from_dict(data)
