"""The Harary neighbour graph: k-regular, symmetric, loop-free, fixed by its public seed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedhive.secagg.graph import harary_graph, harary_neighbours, ring_order, t_core


@settings(max_examples=50, deadline=None)
@given(st.integers(3, 60), st.data(), st.integers(0, 2**64 - 1))
def test_regular_symmetric_and_loop_free(n: int, data: st.DataObject, seed: int) -> None:
    ids = [f"client-{i}" for i in range(n)]
    degree = data.draw(st.sampled_from([*range(2, n - 1, 2), n - 1]))
    graph = harary_graph(ids, degree, seed)
    for cid in ids:
        peers = graph.of(cid)
        assert len(peers) == degree
        assert len(set(peers)) == degree
        assert cid not in peers
        assert all(cid in graph.of(peer) for peer in peers)
        assert harary_neighbours(ids, degree, seed, cid) == peers  # what a client computes


def test_deterministic_for_a_seed_and_different_for_another() -> None:
    ids = [f"c{i}" for i in range(50)]
    first = harary_graph(ids, 6, seed=11)
    assert first == harary_graph(list(reversed(ids)), 6, seed=11)
    other = harary_graph(ids, 6, seed=12)
    assert sum(first.of(c) != other.of(c) for c in ids) > 40
    assert ring_order(ids, 11) != ring_order(ids, 12)


def test_a_degree_of_n_minus_one_or_more_is_the_complete_graph() -> None:
    ids = ["a", "b", "c", "d", "e"]
    for degree in (4, 9):
        graph = harary_graph(ids, degree, seed=0)
        assert all(set(graph.of(c)) == set(ids) - {c} for c in ids)


def test_refuses_an_odd_sparse_degree_and_repeated_ids() -> None:
    with pytest.raises(ValueError, match="not one of"):
        harary_neighbours(["a", "b", "c"], 2, 0, "z")
    with pytest.raises(ValueError, match="even"):
        harary_graph([str(i) for i in range(10)], 3, seed=0)
    with pytest.raises(ValueError, match="distinct"):
        harary_graph(["a", "a", "b"], 2, seed=0)


def test_t_core_keeps_the_well_connected_clients() -> None:
    # a 4-clique {a, b, c, d} plus e hanging on a and b: with t = 3, e goes, the clique stays
    graph = {
        "a": ("b", "c", "d", "e"),
        "b": ("a", "c", "d", "e"),
        "c": ("a", "b", "d"),
        "d": ("a", "b", "c"),
        "e": ("a", "b"),
    }
    kept, removed = t_core(graph, set(graph), 3)
    assert kept == {
        "a": ("b", "c", "d"),
        "b": ("a", "c", "d"),
        "c": ("a", "b", "d"),
        "d": ("a", "b", "c"),
    }
    assert removed == ["e"]
    without_d = {c: peers for c, peers in graph.items() if c != "d"}
    kept, removed = t_core(without_d, set("abce"), 3)  # d gone: the rest unravels
    assert kept == {}
    assert sorted(removed) == ["a", "b", "c", "e"]
