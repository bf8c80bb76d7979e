"""Sparsification: top-k keeps the largest, random-k is unbiased, bodies are checked."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fedhive.compression import sparsify
from fedhive.errors import CodecError

finite = st.floats(-(2.0**100), 2.0**100, allow_nan=False, allow_infinity=False, width=32)


def test_k_is_a_ceiling_at_least_one_and_at_most_d() -> None:
    assert sparsify.kept(0.01, 10_000) == 100
    assert sparsify.kept(0.01, 150) == 2
    assert sparsify.kept(1e-9, 10) == 1
    assert sparsify.kept(1.0, 10) == 10
    assert sparsify.kept(0.5, 0) == 0


@settings(max_examples=60, deadline=None)
@given(
    values=arrays(np.float64, st.integers(1, 300), elements=finite), fraction=st.floats(0.001, 1)
)
def test_top_k_round_trip_keeps_the_largest_magnitudes_exactly(
    values: np.ndarray, fraction: float
) -> None:
    k = sparsify.kept(fraction, values.size)
    indices = sparsify.top_k(values, k)
    dense = sparsify.densify(sparsify.sparsify(values, indices, 1.0), values.size, k)
    assert np.count_nonzero(dense[indices] == values[indices]) == k  # float32 inputs: exact
    dropped = np.setdiff1d(np.arange(values.size), indices)
    assert (dense[dropped] == 0).all()
    if dropped.size:
        assert np.abs(values[dropped]).max() <= np.abs(values[indices]).min()


def test_scaled_random_k_is_unbiased() -> None:
    """Each value decodes to x * d / k with probability k / d, else 0: variance
    x**2 (d / k - 1). The mean of n draws is within 5 standard errors of x."""
    rng = np.random.default_rng(3)
    d, k, draws = 20, 5, 4000
    values = rng.normal(size=d)
    total = np.zeros(d)
    for _ in range(draws):
        body = sparsify.sparsify(values, sparsify.random_k(d, k, rng), d / k)
        total += sparsify.densify(body, d, k)
    standard_error = np.abs(values) * np.sqrt((d / k - 1) / draws)
    assert (np.abs(total / draws - values) <= 5 * standard_error + 1e-6).all()


def test_random_k_draws_distinct_sorted_indices() -> None:
    indices = sparsify.random_k(1000, 100, np.random.default_rng(0))
    assert (np.diff(indices) > 0).all()
    assert indices.size == 100


def body(indices: list[int], values: list[float]) -> bytes:
    return np.array(indices, "<u4").tobytes() + np.array(values, "<f4").tobytes()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (body([0, 10], [1.0, 2.0]), "below 10"),
        (body([3, 3], [1.0, 2.0]), "strictly increasing"),
        (body([4, 3], [1.0, 2.0]), "strictly increasing"),
        (body([0, 1], [1.0, float("nan")]), "NaN"),
        (body([0, 1], [float("inf"), 1.0]), "NaN"),
        (body([0, 1], [1.0, 2.0])[:-1], "expected"),
    ],
)
def test_malformed_sparse_bodies_are_codec_errors(raw: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        sparsify.densify(raw, 10, 2)


def test_values_beyond_float32_cannot_be_sparsified() -> None:
    with pytest.raises(CodecError, match="float32"):
        sparsify.sparsify(np.array([1e300, 0.0]), np.array([0]), 1.0)
