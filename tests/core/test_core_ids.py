"""Lazy client ids: a million of them cost nothing until read, and behave like a list."""

from __future__ import annotations

import numpy as np
import pytest

from fedhive.core.ids import Excluding, VirtualClientIds, excluding, sorted_ids
from fedhive.strategy.sampling import sample_clients


def test_virtual_ids_are_zero_padded_sorted_and_indexable() -> None:
    ids = VirtualClientIds(1_000_000)
    assert len(ids) == 1_000_000
    assert ids[0] == "client-000000"
    assert ids[-1] == "client-999999"
    assert ids[12345] == "client-012345"
    assert "client-999999" in ids
    assert "client-1000000" not in ids
    assert "x-000001" not in ids
    assert "client-00000a" not in ids
    assert 7 not in ids
    assert ids.index("client-000042") == 42
    with pytest.raises(ValueError, match="not a client id"):
        ids.index("client-42")
    with pytest.raises(IndexError):
        ids[1_000_000]
    small = VirtualClientIds(12, prefix="c")
    assert list(small) == sorted(small) == [f"c{i:02d}" for i in range(12)]
    assert small[3:6] == ["c03", "c04", "c05"]
    assert sorted_ids(small) is small


def test_a_width_too_small_for_the_count_is_refused() -> None:
    with pytest.raises(ValueError, match="digits"):
        VirtualClientIds(1000, width=2)


@pytest.mark.parametrize("seed", range(5))
def test_excluding_matches_the_list_comprehension(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ids = VirtualClientIds(200)
    removed = {ids[int(i)] for i in rng.choice(200, size=int(rng.integers(1, 60)), replace=False)}
    removed.add("not-an-id")
    view = excluding(ids, removed)
    expected = [c for c in list(ids) if c not in removed]
    assert isinstance(view, Excluding)
    assert len(view) == len(expected)
    assert list(view) == expected
    assert [view.index(c) for c in expected] == list(range(len(expected)))
    assert not any(c in view for c in removed)
    again = {expected[int(i)] for i in rng.choice(len(expected), size=10, replace=False)}
    assert list(excluding(view, again)) == [c for c in expected if c not in again]


def test_excluding_a_plain_list_is_the_list_of_the_others() -> None:
    assert excluding(["b", "a", "c"], {"a"}) == ["b", "c"]
    plain = ["b", "a"]
    assert excluding(plain, set()) is plain


@pytest.mark.parametrize(("count", "fraction"), [(1000, 0.1), (1000, 0.5), (97, 1.0), (5000, 0.01)])
def test_sampling_a_lazy_sequence_picks_what_sampling_its_list_picks(
    count: int, fraction: float
) -> None:
    lazy = VirtualClientIds(count)
    picks = [
        sample_clients(
            ids,
            fraction=fraction,
            min_clients=1,
            min_available=1,
            rng=np.random.default_rng(7),
        )
        for ids in (lazy, list(reversed(list(lazy))))
    ]
    assert picks[0] == picks[1]
    assert isinstance(picks[0], list)
