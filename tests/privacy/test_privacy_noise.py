"""Gaussian noise: the right distribution from both sources, reproducible only when seeded."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import numpy as np
import pytest

import fedhive.privacy.noise as noise_module
from fedhive.core.rng import SeedStream
from fedhive.errors import ConfigError, ShapeMismatchError
from fedhive.privacy import NoiseSource, SecureNoise, SeededNoise, gaussian_noise

SAMPLES = 200_000
Z_999 = 3.2905  # two-sided 99.9% standard normal quantile
KS_999 = 1.9495  # asymptotic 99.9% Kolmogorov-Smirnov quantile of sqrt(n) * D


def _fixed_urandom() -> Callable[[int], bytes]:
    """A deterministic stand-in for os.urandom, so the secure path is tested reproducibly."""
    counter = iter(range(1 << 30))

    def urandom(size: int) -> bytes:
        block = hashlib.sha256(f"fedhive-test/{next(counter)}".encode()).digest()
        return (block * (size // len(block) + 1))[:size]

    return urandom


@pytest.fixture(params=["seeded", "secure"])
def source(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> NoiseSource:
    if request.param == "seeded":
        return SeededNoise(SeedStream(20240601).child("noise"))
    monkeypatch.setattr(noise_module, "urandom", _fixed_urandom())
    return SecureNoise()


def _chi_square_quantile(dof: int, z: float) -> float:
    """Wilson-Hilferty approximation of a chi-square quantile (accurate for large dof)."""
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


@pytest.mark.parametrize("std", [0.01, 1.0, 3.5, 120.0])
def test_sample_std_lies_in_its_chi_square_interval(source: NoiseSource, std: float) -> None:
    sample = gaussian_noise(SAMPLES, std, source)
    assert sample.shape == (SAMPLES,)
    assert sample.dtype == np.float64
    dof = SAMPLES - 1
    sample_var = float(np.var(sample, ddof=1))
    low = math.sqrt(dof * sample_var / _chi_square_quantile(dof, Z_999))
    high = math.sqrt(dof * sample_var / _chi_square_quantile(dof, -Z_999))
    assert low <= std <= high
    assert abs(float(np.mean(sample))) <= Z_999 * std / math.sqrt(SAMPLES)


def test_standard_normals_pass_a_kolmogorov_smirnov_test(source: NoiseSource) -> None:
    sample = np.sort(source.normal(SAMPLES))
    cdf = np.array([0.5 * (1 + math.erf(x / math.sqrt(2))) for x in sample])
    ranks = np.arange(1, SAMPLES + 1) / SAMPLES
    distance = max(np.max(ranks - cdf), np.max(cdf - (ranks - 1 / SAMPLES)))
    assert math.sqrt(SAMPLES) * distance <= KS_999


def test_box_muller_pairs_are_uncorrelated(source: NoiseSource) -> None:
    sample = source.normal(SAMPLES)
    half = SAMPLES // 2
    correlation = float(np.corrcoef(sample[:half], sample[half:])[0, 1])
    assert abs(correlation) <= Z_999 / math.sqrt(half)


def test_seeded_noise_is_reproducible_per_stream() -> None:
    stream = SeedStream(7).child("round-3").child("client-a")
    first, again = SeededNoise(stream), SeededNoise(stream)
    assert np.array_equal(gaussian_noise(100, 2.0, first), gaussian_noise(100, 2.0, again))
    # Successive calls continue one sequence rather than repeating it.
    assert not np.array_equal(first.normal(100), SeededNoise(stream).normal(100))
    other = SeededNoise(SeedStream(7).child("round-3").child("client-b"))
    assert not np.array_equal(SeededNoise(stream).normal(100), other.normal(100))


def test_secure_noise_differs_between_objects_and_calls() -> None:
    first, second = SecureNoise(), SecureNoise()
    a, b, c = first.normal(64), second.normal(64), first.normal(64)
    assert not np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_secure_noise_handles_odd_and_zero_sizes() -> None:
    assert SecureNoise().normal(0).shape == (0,)
    odd = SecureNoise().normal(7)
    assert odd.shape == (7,)
    assert np.all(np.isfinite(odd))


def test_zero_std_gives_zeros() -> None:
    assert not np.any(gaussian_noise(10, 0.0, SecureNoise()))


@pytest.mark.parametrize(("size", "std"), [(-1, 1.0), (3, -1.0), (3, float("nan")), (3, math.inf)])
def test_bad_parameters_are_refused(size: int, std: float) -> None:
    with pytest.raises(ConfigError):
        gaussian_noise(size, std, SecureNoise())


def test_a_source_returning_the_wrong_shape_is_refused() -> None:
    class Broken:
        def normal(self, size: int) -> np.ndarray:
            return np.zeros(size + 1)

    with pytest.raises(ShapeMismatchError):
        gaussian_noise(3, 1.0, Broken())
