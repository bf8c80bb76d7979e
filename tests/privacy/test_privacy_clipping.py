"""L2 clipping: the norm bound holds exactly, direction is kept, small vectors pass as is."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedhive.errors import ConfigError, NonFiniteError
from fedhive.privacy import clip_l2

finite_vectors = hnp.arrays(
    np.float64,
    st.integers(min_value=0, max_value=64),
    elements=st.floats(allow_nan=False, allow_infinity=False),
)
clipping_norms = st.floats(min_value=1e-300, max_value=1e150)


def _direction(vector: np.ndarray) -> np.ndarray:
    return vector / np.max(np.abs(vector))


@settings(max_examples=300)
@given(vector=finite_vectors, clipping_norm=clipping_norms)
def test_clipped_norm_never_exceeds_the_bound(vector: np.ndarray, clipping_norm: float) -> None:
    before = vector.copy()
    clipped, _ = clip_l2(vector, clipping_norm)
    assert np.linalg.norm(clipped) <= clipping_norm
    assert clipped.shape == vector.shape
    assert before.tobytes() == vector.tobytes()  # the input is not modified


@settings(max_examples=300)
@given(vector=finite_vectors, clipping_norm=clipping_norms)
def test_direction_is_preserved(vector: np.ndarray, clipping_norm: float) -> None:
    clipped, _ = clip_l2(vector, clipping_norm)
    if not np.any(clipped):
        assert not np.any(vector)  # only a zero vector clips to zero
        return
    assert np.all(np.sign(clipped) * np.sign(vector) >= 0)
    np.testing.assert_allclose(_direction(clipped), _direction(vector), rtol=1e-9, atol=1e-12)


@given(vector=finite_vectors, clipping_norm=clipping_norms)
def test_vectors_inside_the_ball_are_unchanged(vector: np.ndarray, clipping_norm: float) -> None:
    if math.hypot(*vector) > clipping_norm:  # hypot scales: no overflow or underflow
        vector = _direction(vector) * (clipping_norm / (2 * np.sqrt(vector.size)))
    clipped, _ = clip_l2(vector, clipping_norm)
    assert clipped.tobytes() == vector.tobytes()
    assert clipped is not vector


def test_returns_the_original_norm_and_scales_to_the_bound() -> None:
    clipped, norm = clip_l2(np.array([3.0, 4.0]), 1.0)
    assert norm == 5.0
    np.testing.assert_allclose(clipped, [0.6, 0.8], rtol=1e-15)
    assert np.linalg.norm(clipped) <= 1.0


def test_huge_and_tiny_entries_neither_overflow_nor_underflow() -> None:
    huge = np.array([1e308, -1e308, 1e308])
    with np.errstate(over="ignore"):
        assert np.linalg.norm(huge) == np.inf  # the naive sum of squares overflows
    clipped, norm = clip_l2(huge, 2.0)
    assert norm == pytest.approx(np.sqrt(3) * 1e308, rel=1e-15)
    assert np.linalg.norm(clipped) <= 2.0
    np.testing.assert_allclose(clipped, [2 / np.sqrt(3), -2 / np.sqrt(3), 2 / np.sqrt(3)])
    beyond = np.array([1.5e308, 1.5e308])  # norm 2.1e308: beyond float64
    clipped, norm = clip_l2(beyond, 1.0)
    assert norm == np.inf
    np.testing.assert_allclose(clipped, [np.sqrt(0.5), np.sqrt(0.5)])
    tiny = np.array([3e-310, 4e-310])
    clipped, norm = clip_l2(tiny, 1e-311)
    assert norm == pytest.approx(5e-310, rel=1e-6)
    np.testing.assert_allclose(clipped, [6e-312, 8e-312], rtol=1e-3)  # subnormal precision


def test_zero_and_empty_vectors_stay_as_they_are() -> None:
    zero, norm = clip_l2(np.zeros(5), 1.0)
    assert norm == 0.0
    assert not np.any(zero)
    empty, norm = clip_l2(np.zeros(0), 1.0)
    assert empty.shape == (0,)
    assert norm == 0.0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_vectors_are_refused(bad: float) -> None:
    with pytest.raises(NonFiniteError):
        clip_l2(np.array([1.0, bad]), 1.0)


@pytest.mark.parametrize("clipping_norm", [0.0, -1.0, float("nan"), float("inf"), 1e200])
def test_bad_clipping_norms_are_refused(clipping_norm: float) -> None:
    with pytest.raises(ConfigError, match="clipping_norm"):
        clip_l2(np.ones(3), clipping_norm)
