"""Shamir sharing over GF(2^31 - 1): any t shares rebuild, fewer are refused."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedhive.errors import SecAggError
from fedhive.secagg.hazmat import shamir


@st.composite
def sharings(draw: st.DrawFn) -> tuple[list[bytes], list[int], int, list[int]]:
    """Secrets, n distinct x-coordinates, a threshold t and a t-subset of positions."""
    secrets = draw(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=4))
    xs = draw(st.lists(st.integers(1, shamir.PRIME - 1), min_size=2, max_size=12, unique=True))
    t = draw(st.integers(1, len(xs)))
    subset = draw(st.permutations(range(len(xs))))[:t]
    return secrets, xs, t, subset


@settings(max_examples=60, deadline=None)
@given(sharings())
def test_any_t_shares_rebuild_every_secret(
    case: tuple[list[bytes], list[int], int, list[int]],
) -> None:
    secrets, xs, t, subset = case
    shares = shamir.split(secrets, xs, threshold=t)
    assert shares.shape == (len(secrets), len(xs), shamir.CHUNKS)
    batch_xs = np.tile(np.asarray(xs)[subset], (len(secrets), 1))
    rebuilt = shamir.reconstruct(batch_xs, shares[:, subset], threshold=t)
    assert [shamir.chunks_to_secret(row) for row in rebuilt] == secrets


@settings(max_examples=40, deadline=None)
@given(sharings())
def test_fewer_than_t_shares_are_refused(
    case: tuple[list[bytes], list[int], int, list[int]],
) -> None:
    secrets, xs, t, subset = case
    shares = shamir.split(secrets, xs, threshold=t)
    short = subset[: t - 1]
    with pytest.raises(SecAggError, match="needs"):
        shamir.reconstruct(
            np.tile(np.asarray(xs, dtype=np.int64)[short], (len(secrets), 1)),
            shares[:, short],
            threshold=t,
        )


@settings(max_examples=40, deadline=None)
@given(sharings(), st.integers(0, 11), st.integers(0, shamir.CHUNKS - 1), st.integers(1, 1000))
def test_a_corrupted_share_changes_the_result(
    case: tuple[list[bytes], list[int], int, list[int]], which: int, chunk: int, delta: int
) -> None:
    secrets, xs, t, subset = case
    shares = shamir.split(secrets, xs, threshold=t)
    bad = shares[:, subset].copy()
    bad[0, which % t, chunk] = (bad[0, which % t, chunk] + delta) % shamir.PRIME
    rebuilt = shamir.reconstruct(np.asarray([xs])[:, subset], bad[:1], threshold=t)
    assert shamir.chunks_to_secret(rebuilt[0]) != secrets[0]


def test_duplicate_or_zero_x_coordinates_are_refused() -> None:
    shares = shamir.split([os.urandom(32)], [1, 2, 3], threshold=2)
    with pytest.raises(SecAggError, match="distinct"):
        shamir.reconstruct(np.asarray([[2, 2]]), shares[:, [1, 1]], threshold=2)
    with pytest.raises(SecAggError, match="x-coordinates"):
        shamir.reconstruct(np.asarray([[0, 2]]), shares[:, [0, 1]], threshold=2)
    with pytest.raises(SecAggError, match="distinct"):
        shamir.split([os.urandom(32)], [5, 5], threshold=2)


def test_share_bytes_round_trip_and_field_check() -> None:
    shares = shamir.split([os.urandom(32)], [7], threshold=1)
    data = shamir.share_to_bytes(shares[0, 0])
    assert len(data) == shamir.SHARE_BYTES
    assert np.array_equal(shamir.share_from_bytes(data), shares[0, 0])
    with pytest.raises(SecAggError, match="field"):
        shamir.share_from_bytes(b"\xff" * shamir.SHARE_BYTES)
    with pytest.raises(SecAggError, match="36 bytes"):
        shamir.share_from_bytes(b"\x00" * 35)


def test_chunks_that_hold_no_secret_are_reported_as_none() -> None:
    chunks = np.zeros(shamir.CHUNKS, dtype=np.int64)
    chunks[0] = 1 << 30  # 31 bits in a 30-bit chunk: not an encoding of any secret
    assert shamir.chunks_to_secret(chunks) is None
    chunks[0], chunks[-1] = 0, 1 << 20  # above 256 bits
    assert shamir.chunks_to_secret(chunks) is None


def test_bad_secrets_thresholds_and_share_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="secrets must be 32 bytes"):
        shamir.split([os.urandom(31)], [1, 2], threshold=2)
    for threshold in (0, 3):
        with pytest.raises(ValueError, match=rf"threshold must be in \[1, 2\], got {threshold}"):
            shamir.split([os.urandom(32)], [1, 2], threshold=threshold)
    shares = shamir.split([os.urandom(32)], [1, 2, 3], threshold=2)
    xs = np.asarray([[1, 2]])
    with pytest.raises(SecAggError, match=r"shapes \(B, m\) and \(B, m, 9\)"):
        shamir.reconstruct(xs, shares[:, :3], threshold=2)
    with pytest.raises(SecAggError, match=r"shapes \(B, m\) and \(B, m, 9\)"):
        shamir.reconstruct(xs[0], shares[0, :2], threshold=2)
    outside = shares[:, :2].copy()
    outside[0, 0, 0] = shamir.PRIME
    with pytest.raises(SecAggError, match="field elements"):
        shamir.reconstruct(xs, outside, threshold=2)


def test_shares_from_bytes_zeroes_and_flags_what_is_not_a_share() -> None:
    shares = shamir.split([os.urandom(32)], [1, 2], threshold=1)[0]
    good = [shamir.share_to_bytes(row) for row in shares]
    data = [good[0], b"\x00" * 35, b"\xff" * shamir.SHARE_BYTES, good[1]]
    values, valid = shamir.shares_from_bytes(data)
    assert valid.tolist() == [True, False, False, True]
    assert np.array_equal(values[[0, 3]], shares)
    assert not values[[1, 2]].any()
