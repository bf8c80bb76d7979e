"""Degree k and threshold t meet the three conditions; the ring sum never wraps."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from fedhive.core.rng import SeedStream
from fedhive.errors import ConfigError
from fedhive.secagg import quantize
from fedhive.secagg.params import SecAggParams


def upper_tail(k: int, p: float, m: int) -> Fraction:
    """P[Binomial(k, p) >= m], exactly (p read as the binary float it is)."""
    q = Fraction(p)
    return sum((math.comb(k, j) * q**j * (1 - q) ** (k - j) for j in range(m, k + 1)), Fraction(0))


def assert_conditions(params: SecAggParams) -> None:
    n, k, t = params.num_clients, params.degree, params.threshold
    delta, gamma = params.dropout_fraction, params.corruption_fraction
    correctness = upper_tail(k, delta, k - t + 1)  # = P[Binomial(k, 1 - delta) < t]
    privacy = upper_tail(k, gamma, t)
    assert correctness <= Fraction(1, n << params.correctness_bits)
    assert privacy <= Fraction(1, n << params.security_bits)
    assert 2 * t > k
    assert k == n - 1 or k % 2 == 0


@pytest.mark.parametrize(
    ("n", "delta", "gamma", "sigma", "eta"),
    [
        (100, 0.2, 0.1, 40, 20),
        (500, 0.3, 0.1, 40, 20),
        (1000, 0.3, 0.1, 40, 20),
        (1000, 0.1, 0.05, 40, 20),
        (40, 0.3, 0.05, 8, 1),
        (20, 0.1, 0.05, 12, 2),
        (5, 0.0, 0.0, 40, 20),
    ],
)
def test_degree_and_threshold_satisfy_the_three_conditions(
    n: int, delta: float, gamma: float, sigma: int, eta: int
) -> None:
    params = SecAggParams(
        num_clients=n,
        dropout_fraction=delta,
        corruption_fraction=gamma,
        security_bits=sigma,
        correctness_bits=eta,
    )
    assert_conditions(params)


def test_the_threshold_is_the_smallest_that_works() -> None:
    params = SecAggParams(num_clients=1000)
    k, t = params.degree, params.threshold
    smaller_fails = 2 * (t - 1) <= k or upper_tail(k, params.corruption_fraction, t - 1) > Fraction(
        1, 1000 << params.security_bits
    )
    assert smaller_fails


def test_degree_grows_slowly_with_the_cohort() -> None:
    degrees = [SecAggParams(num_clients=n).degree for n in (1000, 10_000, 100_000)]
    assert degrees == sorted(degrees)
    assert degrees[-1] - degrees[0] < 100  # ~ +26 per factor of ten: logarithmic
    assert degrees[1] < 10_000 // 20
    assert degrees[2] < 100_000 // 300
    lighter = [
        SecAggParams(num_clients=n, dropout_fraction=0.1, corruption_fraction=0.05).degree
        for n in (100, 1000, 10_000)
    ]
    assert lighter == sorted(lighter)
    assert lighter[-1] < 60


def test_impossible_settings_name_the_failing_condition() -> None:
    with pytest.raises(ConfigError, match=r"correctness \(1\) with majority \(3\)"):
        SecAggParams(num_clients=100)  # delta = 0.3 at n = 100 needs t <= ~k/2
    with pytest.raises(ConfigError, match=r"privacy \(2\)"):
        SecAggParams(num_clients=10, corruption_fraction=0.5, dropout_fraction=0.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_clients", 2),
        ("num_clients", 10**7),
        ("dropout_fraction", 1.0),
        ("corruption_fraction", -0.1),
        ("ring_bits", 16),
        ("clip_range", 0.0),
        ("max_weight", 0),
        ("security_bits", 0),
    ],
)
def test_invalid_values_are_config_errors(field: str, value: object) -> None:
    settings: dict[str, object] = {"num_clients": 1000, field: value}
    with pytest.raises(ConfigError, match=field):
        SecAggParams(**settings)  # type: ignore[arg-type]


def test_fractions_are_stored_as_floats() -> None:
    params = SecAggParams(num_clients=5, dropout_fraction=0, corruption_fraction=0, clip_range=2)
    assert isinstance(params.dropout_fraction, float)
    assert isinstance(params.clip_range, float)
    assert params == SecAggParams(
        num_clients=5, dropout_fraction=0.0, corruption_fraction=0.0, clip_range=2.0
    )


def test_quantization_bits_leave_no_room_for_a_wrap() -> None:
    for n, bits, weight in [(1000, 64, 1 << 16), (1000, 32, 1), (300, 32, 16), (500, 64, 1)]:
        params = SecAggParams(num_clients=n, ring_bits=bits, max_weight=weight)
        largest = n * 2 * weight << params.quantization_bits
        assert largest < 1 << bits
        assert params.max_weight << params.quantization_bits <= 1 << 44
    with pytest.raises(ConfigError, match="quantization bits"):
        SecAggParams(num_clients=1000, ring_bits=32, max_weight=1 << 16)


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_the_ring_sum_of_extreme_inputs_decodes_exactly(bits: int, sign: float) -> None:
    weight = 1 << 16 if bits == 64 else 64
    params = SecAggParams(num_clients=1000, ring_bits=bits, max_weight=weight, clip_range=0.5)
    rng = SeedStream(3).numpy()
    encoded = quantize.encode(np.full(4, sign * 7.0), weight, params, rng)  # clipped to +-r
    total = np.zeros_like(encoded)
    for _ in range(params.num_clients):
        total += encoded
    as_int = int(encoded[0]) * params.num_clients
    assert as_int < 1 << bits  # the exact integer sum fits: no wrap happened
    weighted, total_weight = quantize.decode(total, params.num_clients, params)
    expected = sign * 0.5 * weight * params.num_clients
    assert np.allclose(weighted, expected, rtol=1e-12, atol=0)
    assert total_weight == weight * params.num_clients


def test_privacy_and_correctness_that_cross_name_both_thresholds() -> None:
    with pytest.raises(ConfigError, match=r"correctness \(1\) with privacy \(2\)"):
        SecAggParams(
            num_clients=20,
            dropout_fraction=0.1,
            corruption_fraction=0.2,
            security_bits=8,
            correctness_bits=8,
        )


def test_small_cohorts_use_the_complete_graph_and_large_ones_do_not() -> None:
    small = SecAggParams(num_clients=3, dropout_fraction=0.0, corruption_fraction=0.0)
    assert small.complete_graph
    assert small.degree == 2
    large = SecAggParams(num_clients=1000, dropout_fraction=0.1, corruption_fraction=0.05)
    assert not large.complete_graph
    assert large.degree < 999
