"""Partitioners cover every sample once, honour min_size, and are reproducible."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedhive.errors import ConfigError
from fedhive.simulation import partition
from fedhive.simulation.partition import Partition, dirichlet, iid, quantity_skew, shards

seeds = st.integers(min_value=0, max_value=2**32 - 1)
label_lists = st.lists(st.integers(min_value=0, max_value=9), min_size=1, max_size=300)


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def assert_covers(part: Partition, num_samples: int) -> None:
    for indices in part.indices:
        assert indices.dtype == np.int64
        assert np.all(np.diff(indices) > 0), "each client's indices are sorted and unique"
    joined = np.sort(np.concatenate(part.indices))
    np.testing.assert_array_equal(joined, np.arange(num_samples))


def assert_same(a: Partition, b: Partition) -> None:
    assert a.moved == b.moved
    assert len(a.indices) == len(b.indices)
    for x, y in zip(a.indices, b.indices, strict=True):
        np.testing.assert_array_equal(x, y)


def mean_label_entropy(part: Partition, labels: npt.NDArray[np.int64]) -> float:
    entropies = []
    for indices in part.indices:
        counts = np.bincount(labels[indices])
        p = counts[counts > 0] / counts.sum()
        entropies.append(float(-(p * np.log(p)).sum()))
    return float(np.mean(entropies))


@given(num_clients=st.integers(1, 40), extra=st.integers(0, 500), seed=seeds)
def test_iid_covers_and_balances(num_clients: int, extra: int, seed: int) -> None:
    n = num_clients + extra
    part = iid(n, num_clients, rng(seed))
    assert_covers(part, n)
    assert part.num_clients == num_clients
    assert part.sizes.max() - part.sizes.min() <= 1
    assert part.moved == 0
    assert_same(part, iid(n, num_clients, rng(seed)))


@settings(max_examples=60)
@given(
    labels=label_lists,
    num_clients=st.integers(1, 40),
    alpha=st.floats(0.05, 100.0),
    min_size=st.integers(0, 3),
    seed=seeds,
)
def test_dirichlet_covers_holds_min_size_and_repeats(
    labels: list[int], num_clients: int, alpha: float, min_size: int, seed: int
) -> None:
    min_size = min(min_size, len(labels) // num_clients)  # enough samples, no filtering
    part = dirichlet(labels, num_clients, alpha, rng(seed), min_size=min_size)
    assert_covers(part, len(labels))
    assert part.num_clients == num_clients
    assert part.sizes.min() >= min_size
    assert_same(part, dirichlet(labels, num_clients, alpha, rng(seed), min_size=min_size))


@settings(max_examples=60)
@given(
    num_samples=st.integers(0, 400),
    num_clients=st.integers(1, 40),
    alpha=st.floats(0.05, 100.0),
    min_size=st.integers(0, 3),
    seed=seeds,
)
def test_quantity_skew_covers_holds_min_size_and_repeats(
    num_samples: int, num_clients: int, alpha: float, min_size: int, seed: int
) -> None:
    min_size = min(min_size, num_samples // num_clients)
    part = quantity_skew(num_samples, num_clients, rng(seed), alpha=alpha, min_size=min_size)
    assert_covers(part, num_samples)
    assert part.sizes.min() >= min_size
    again = quantity_skew(num_samples, num_clients, rng(seed), alpha=alpha, min_size=min_size)
    assert_same(part, again)


@given(labels=label_lists, num_clients=st.integers(1, 20), per=st.integers(1, 3), seed=seeds)
def test_shards_covers_and_deals_equal_shares(
    labels: list[int], num_clients: int, per: int, seed: int
) -> None:
    num_clients = min(num_clients, len(labels))
    per = max(1, min(per, len(labels) // num_clients))
    part = shards(labels, num_clients, rng(seed), shards_per_client=per)
    assert_covers(part, len(labels))
    # near-equal shards differ by at most one sample, so shares differ by at most `per`
    assert part.sizes.max() - part.sizes.min() <= per
    assert_same(part, shards(labels, num_clients, rng(seed), shards_per_client=per))


@settings(max_examples=20)
@given(seed_small=seeds, seed_large=seeds)
def test_dirichlet_small_alpha_skews_labels_more(seed_small: int, seed_large: int) -> None:
    labels = np.repeat(np.arange(10), 100)
    skewed = dirichlet(labels, 10, 0.1, rng(seed_small))
    balanced = dirichlet(labels, 10, 100.0, rng(seed_large))
    assert mean_label_entropy(skewed, labels) < mean_label_entropy(balanced, labels)
    assert mean_label_entropy(balanced, labels) > 0.9 * np.log(10)


@given(seed=seeds)
def test_shards_give_at_most_two_labels_when_shards_are_label_pure(seed: int) -> None:
    # 10 classes x 100 samples, 100 shards of 10: every shard holds one label.
    labels = np.repeat(np.arange(10), 100)
    part = shards(labels, 50, rng(seed), shards_per_client=2)
    assert_covers(part, len(labels))
    for indices in part.indices:
        assert len(indices) == 20
        assert len(np.unique(labels[indices])) <= 2


def test_dirichlet_many_clients_fills_empty_ones() -> None:
    labels = np.arange(1437, dtype=np.int64) % 10
    unfixed = dirichlet(labels, 1000, 0.5, rng(7), min_size=0)
    empty = int(np.sum(unfixed.sizes == 0))
    assert empty > 100, "the raw Dirichlet split leaves many clients empty"
    part = dirichlet(labels, 1000, 0.5, rng(7), min_size=1)
    assert_covers(part, 1437)
    assert part.sizes.min() >= 1
    # the fix draws nothing from the rng, so each move fills exactly one empty client
    assert part.moved == empty


def test_min_size_moves_last_sample_of_largest_to_smallest() -> None:
    groups = [np.array(g, dtype=np.int64) for g in ([5, 3, 9], [], [1], [])]
    fixed, moved = partition._ensure_min_size(groups, 1)
    assert moved == 2
    assert [g.tolist() for g in fixed] == [[5], [9], [1], [3]]


def test_partition_arrays_are_read_only() -> None:
    part = iid(10, 2, rng(0))
    with pytest.raises(ValueError, match="read-only"):
        part.indices[0][0] = 99


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: dirichlet([0, 1, 2], 2, 0, rng(0)), "alpha: must be > 0, got 0"),
        (lambda: dirichlet([0, 1, 2], 2, float("nan"), rng(0)), "alpha: must be finite"),
        (lambda: quantity_skew(10, 2, rng(0), alpha=-1.0), "alpha: must be > 0"),
        (lambda: iid(10, 0, rng(0)), "num_clients: must be >= 1, got 0"),
        (lambda: iid(3, 4, rng(0)), "num_samples: must be >= num_clients"),
        (lambda: dirichlet([[0, 1]], 1, 1.0, rng(0)), "labels: must be 1-D"),
        (lambda: dirichlet([0.5, 1.0], 1, 1.0, rng(0)), "labels: must have an integer dtype"),
        (lambda: dirichlet([0, 1, 2], 2, 1.0, rng(0), min_size=2), "min_size: 2 sample"),
        (lambda: quantity_skew(5, 3, rng(0), min_size=2), "at least 6 samples, got 5"),
        (lambda: shards([0, 1, 2], 2, rng(0)), "shards_per_client: 2 clients x 2 shards"),
        (lambda: shards([0, 1], 1, rng(0), shards_per_client=0), "shards_per_client: must"),
    ],
)
def test_bad_arguments_raise_config_error(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        call()
    assert isinstance(info.value, ValueError)
