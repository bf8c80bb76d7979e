"""Adaptive quantile clipping (Andrew et al. 2021): exact steps, convergence, noise split."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedhive.core.rng import SeedStream
from fedhive.errors import ConfigError
from fedhive.privacy import AdaptiveClipping, SeededNoise, update_noise_multiplier


class FixedNoise:
    """A noise source that returns given standard normals and records the sizes asked."""

    def __init__(self, value: float) -> None:
        self.value = value
        self.sizes: list[int] = []

    def normal(self, size: int) -> np.ndarray:
        self.sizes.append(size)
        return np.full(size, self.value)


def test_geometric_update_matches_hand_computed_values() -> None:
    rule = AdaptiveClipping(target_quantile=0.5, learning_rate=0.2)
    # b = 3/4 unclipped, above the target: shrink by exp(-0.2 * 0.25).
    assert rule.next_clipping_norm(1.0, 3, 4, None) == pytest.approx(math.exp(-0.05), rel=1e-15)
    assert rule.next_clipping_norm(1.0, 3, 4, None) == pytest.approx(0.951229424500714)
    rule = AdaptiveClipping(target_quantile=0.9, learning_rate=0.5)
    # Nothing unclipped: grow by exp(0.5 * 0.9).
    assert rule.next_clipping_norm(2.0, 0, 10, None) == pytest.approx(3.136624370980338, rel=1e-12)
    # Exactly at the target quantile: unchanged.
    assert rule.next_clipping_norm(2.0, 9, 10, None) == pytest.approx(2.0, rel=1e-15)


def test_count_noise_is_drawn_once_and_scaled_by_its_multiplier() -> None:
    rule = AdaptiveClipping(target_quantile=0.5, learning_rate=0.2, count_noise_multiplier=2.0)
    noise = FixedNoise(0.5)
    # (3 + 2 * 0.5) / 10 = 0.4, below the target 0.5: grow by exp(0.2 * 0.1).
    result = rule.next_clipping_norm(1.5, 3, 10, noise)
    assert result == pytest.approx(1.5 * math.exp(0.02), rel=1e-15)
    assert noise.sizes == [1]


def test_no_noise_is_drawn_without_a_count_noise_multiplier() -> None:
    noise = FixedNoise(10.0)
    AdaptiveClipping().next_clipping_norm(1.0, 1, 2, noise)
    assert noise.sizes == []


@pytest.mark.parametrize(
    ("target_quantile", "count_noise_multiplier"), [(0.2, 0.0), (0.5, 0.0), (0.8, 0.0), (0.5, 2.0)]
)
def test_clipping_norm_converges_to_the_target_quantile(
    target_quantile: float, count_noise_multiplier: float
) -> None:
    stream = SeedStream(11).child(f"{target_quantile}-{count_noise_multiplier}")
    rng = stream.child("norms").numpy()
    noise = SeededNoise(stream.child("count"))
    rule = AdaptiveClipping(
        target_quantile=target_quantile, count_noise_multiplier=count_noise_multiplier
    )
    clients = 100
    clipping_norm = rule.initial_clipping_norm
    for _ in range(200):
        norms = rng.lognormal(mean=0.0, sigma=1.0, size=clients)
        unclipped = int(np.sum(norms <= clipping_norm))
        clipping_norm = rule.next_clipping_norm(clipping_norm, unclipped, clients, noise)
    population = rng.lognormal(mean=0.0, sigma=1.0, size=100_000)
    assert abs(float(np.mean(population <= clipping_norm)) - target_quantile) <= 0.05


def test_noise_multiplier_split_matches_hand_computed_values() -> None:
    # z = 1, sigma_b = 1: (1 - 1/4) ** -0.5 = 2 / sqrt(3).
    assert update_noise_multiplier(1.0, 1.0) == pytest.approx(2 / math.sqrt(3), rel=1e-15)
    assert update_noise_multiplier(1.0, 1.0) == pytest.approx(1.1547005383792517)
    # z = 3, sigma_b = 5: (1/9 - 1/100) ** -0.5 = 30 / sqrt(91).
    assert update_noise_multiplier(3.0, 5.0) == pytest.approx(30 / math.sqrt(91), rel=1e-15)
    assert update_noise_multiplier(0.7, 0.0) == 0.7


@pytest.mark.parametrize("count_noise_multiplier", [0.5, 0.4, 0.01])
def test_count_noise_too_small_for_the_budget_is_refused(count_noise_multiplier: float) -> None:
    with pytest.raises(ConfigError, match="too small"):
        update_noise_multiplier(1.0, count_noise_multiplier)


@pytest.mark.parametrize(
    "settings",
    [
        {"initial_clipping_norm": 0.0},
        {"target_quantile": 0.0},
        {"target_quantile": 1.0},
        {"learning_rate": -0.1},
        {"count_noise_multiplier": -1.0},
        {"count_noise_multiplier": math.nan},
    ],
)
def test_invalid_settings_are_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        AdaptiveClipping(**settings)


@pytest.mark.parametrize(
    ("clipping_norm", "unclipped", "count"), [(0.0, 1, 2), (1.0, -1, 2), (1.0, 0, 0), (1.0, 1.5, 2)]
)
def test_invalid_round_inputs_are_refused(clipping_norm: float, unclipped: int, count: int) -> None:
    with pytest.raises(ConfigError):
        AdaptiveClipping().next_clipping_norm(clipping_norm, unclipped, count, None)


def test_count_noise_without_a_source_is_refused() -> None:
    with pytest.raises(ConfigError, match="noise source"):
        AdaptiveClipping(count_noise_multiplier=1.0).next_clipping_norm(1.0, 1, 2, None)
