"""Client sampling: how many (max(min, ceil(fraction * n))), which (distinct, sorted,
reproducible per seed), and refusing when too few clients are available."""

from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedhive.errors import NotEnoughClientsError
from fedhive.strategy.sampling import sample_clients


def clients(n: int) -> list[str]:
    return [f"client-{i:03d}" for i in range(n)]


def sample(
    ids: list[str], fraction: float, min_clients: int = 1, min_available: int = 1, seed: int = 0
) -> list[str]:
    return sample_clients(
        ids,
        fraction=fraction,
        min_clients=min_clients,
        min_available=min_available,
        rng=np.random.default_rng(seed),
    )


@st.composite
def setups(draw: st.DrawFn) -> tuple[int, float, int, int, int]:
    n = draw(st.integers(1, 80))
    # dyadic fractions k/64 make fraction * n exact, so the expected count is unambiguous
    fraction = draw(st.integers(1, 64)) / 64
    min_clients = draw(st.integers(1, n))
    min_available = draw(st.integers(1, n))
    seed = draw(st.integers(0, 2**32 - 1))
    return n, fraction, min_clients, min_available, seed


@given(setups())
def test_count_is_max_of_min_and_ceil_fraction(setup: tuple[int, float, int, int, int]) -> None:
    n, fraction, min_clients, min_available, seed = setup
    chosen = sample(clients(n), fraction, min_clients, min_available, seed)
    assert len(chosen) == max(min_clients, math.ceil(fraction * n))


@given(setups())
def test_sample_is_sorted_distinct_and_from_the_pool(
    setup: tuple[int, float, int, int, int],
) -> None:
    n, fraction, min_clients, min_available, seed = setup
    pool = clients(n)
    chosen = sample(pool, fraction, min_clients, min_available, seed)
    assert chosen == sorted(chosen)
    assert len(set(chosen)) == len(chosen)
    assert set(chosen) <= set(pool)


@given(setups(), st.randoms(use_true_random=False))
def test_same_seed_same_sample_whatever_the_input_order(
    setup: tuple[int, float, int, int, int], shuffler: random.Random
) -> None:
    n, fraction, min_clients, min_available, seed = setup
    pool = clients(n)
    shuffled = list(pool)
    shuffler.shuffle(shuffled)
    assert sample(pool, fraction, min_clients, min_available, seed) == sample(
        shuffled, fraction, min_clients, min_available, seed
    )


def test_different_seeds_give_different_samples() -> None:
    pool = clients(50)
    samples = {tuple(sample(pool, 0.1, seed=seed)) for seed in range(20)}
    assert len(samples) > 15


def test_selection_is_roughly_uniform() -> None:
    pool = clients(10)
    counts = Counter(cid for seed in range(2000) for cid in sample(pool, 0.3, seed=seed))
    assert set(counts) == set(pool)
    # each client is expected 600 times (binomial sd ~ 20); bounds are > 7 sd wide
    assert all(450 < c < 750 for c in counts.values()), counts


def test_full_fraction_returns_everyone_sorted() -> None:
    pool = ["c", "a", "b"]
    assert sample(pool, 1.0) == ["a", "b", "c"]


def test_min_clients_raises_the_count() -> None:
    assert len(sample(clients(100), 0.01, min_clients=10)) == 10


def test_small_fractions_round_up_to_one() -> None:
    assert len(sample(clients(100), 0.001)) == 1


@pytest.mark.parametrize(
    ("n", "min_clients", "min_available"), [(2, 3, 1), (4, 1, 5), (0, 1, 1), (9, 10, 10)]
)
def test_too_few_clients_raise(n: int, min_clients: int, min_available: int) -> None:
    with pytest.raises(NotEnoughClientsError, match=rf"{n} clients available"):
        sample(clients(n), 0.5, min_clients=min_clients, min_available=min_available)


def test_exactly_enough_clients_is_fine() -> None:
    assert sample(clients(5), 0.2, min_clients=5, min_available=5) == clients(5)


@pytest.mark.parametrize(("fraction", "n", "expected"), [(0.07, 100, 7), (0.14, 50, 7)])
def test_decimal_fractions_give_the_intended_count(fraction: float, n: int, expected: int) -> None:
    assert len(sample(clients(n), fraction)) == expected
