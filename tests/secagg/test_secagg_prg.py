"""The AES-CTR PRG: deterministic per key, independent across keys, uniform on the ring."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fedhive.secagg.hazmat.prg import expand


def chi_square_uniform(values: np.ndarray, bits: int, bins: int = 256) -> float:
    """Chi-square statistic of the top log2(bins) bits against the uniform distribution."""
    top = (values >> np.asarray(bits - int(np.log2(bins)), dtype=values.dtype)).astype(np.int64)
    counts = np.bincount(top, minlength=bins)
    expected = values.size / bins
    return float(((counts - expected) ** 2 / expected).sum())


def chi_square_critical(df: int, z: float) -> float:
    """Wilson-Hilferty approximation of the chi-square quantile with normal score z."""
    return df * (1 - 2 / (9 * df) + z * np.sqrt(2 / (9 * df))) ** 3


@pytest.mark.parametrize("bits", [32, 64])
def test_same_key_same_stream_other_key_other_stream(bits: int) -> None:
    key = bytes(range(32))
    first = expand(key, 1000, bits=bits)
    assert first.dtype == np.dtype(f"uint{bits}")
    assert np.array_equal(first, expand(key, 1000, bits=bits))
    assert np.array_equal(expand(key, 10, bits=bits), first[:10])  # a prefix of the stream
    other = expand(bytes(31) + b"\x01", 1000, bits=bits)
    assert np.mean(first == other) < 0.01


@pytest.mark.parametrize("bits", [32, 64])
def test_output_looks_uniform_on_the_ring(bits: int) -> None:
    values = expand(os.urandom(32), 1 << 16, bits=bits)
    statistic = chi_square_uniform(values, bits)
    assert statistic < chi_square_critical(255, 4.75)  # p ~ 1e-6
    low = (values & np.asarray(0xFF, dtype=values.dtype)).astype(np.int64)
    counts = np.bincount(low, minlength=256)
    expected = values.size / 256
    assert float(((counts - expected) ** 2 / expected).sum()) < chi_square_critical(255, 4.75)


def test_the_uniformity_check_rejects_a_skewed_stream() -> None:
    skewed = expand(os.urandom(32), 1 << 16, bits=32) >> np.uint32(1)  # top bit always 0
    assert chi_square_uniform(skewed, 32) > chi_square_critical(255, 4.75)


def test_refuses_short_seeds_and_other_rings() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        expand(bytes(16), 4, bits=32)
    with pytest.raises(ValueError, match="ring bits"):
        expand(bytes(32), 4, bits=16)
    assert expand(bytes(32), 0, bits=64).size == 0


def test_a_bad_seed_size_or_ring_is_refused() -> None:
    key = bytes(range(32))
    assert expand(key, 0, bits=32).size == 0
    with pytest.raises(ValueError, match="size must be >= 0, got -1"):
        expand(key, -1, bits=32)
    with pytest.raises(ValueError, match="seed must be 32 bytes"):
        expand(key[:16], 4, bits=32)
    with pytest.raises(ValueError, match="ring bits must be one of"):
        expand(key, 4, bits=16)
