"""The SecAgg+ neighbour graph: a Harary graph on a pseudorandom ordering of the clients.

Bell et al. (CCS 2020, §4) run SecAgg over a sparse k-regular graph instead of the complete
graph, and suggest the Harary graph H(k, n) (each node joined to the k/2 nearest nodes on
either side of a ring) with the clients placed on the ring in random order. The order is
*public* randomness: it comes from a graph seed through :class:`fedhive.core.SeedStream`,
so the server and every client compute the same graph without exchanging it. The ordering
sorts clients by SHA-256(seed, id), which (unlike a numpy permutation) is the same on
every platform and library version. When k >= n - 1 the graph is complete.

:func:`t_core` prunes a graph to the clients that keep >= t live neighbours (whose secrets
their neighbours can still rebuild). In a Harary graph with t > k/2 neighbours share most
of their neighbourhoods, so pushing one client below t tends to unravel the whole ring.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from fedhive.core.rng import SeedStream

_LABEL = "secagg-neighbour-graph"


@dataclass(frozen=True)
class NeighbourGraph:
    """An undirected k-regular graph on client ids; ``neighbours[i]`` is sorted, without i."""

    neighbours: Mapping[str, tuple[str, ...]]

    def of(self, client_id: str) -> tuple[str, ...]:
        """The sorted neighbours of ``client_id`` (KeyError for an unknown id)."""
        return self.neighbours[client_id]


def ring_order(client_ids: Sequence[str], seed: int) -> tuple[str, ...]:
    """The clients in the public pseudorandom order that ``seed`` fixes."""
    key = SeedStream(seed).child(_LABEL).seed.to_bytes(8, "little")
    return tuple(sorted(client_ids, key=lambda cid: hashlib.sha256(key + cid.encode()).digest()))


def harary_graph(client_ids: Sequence[str], degree: int, seed: int) -> NeighbourGraph:
    """The Harary graph of even ``degree`` on ``ring_order(client_ids, seed)``.

    Args:
        client_ids: n distinct ids.
        degree: k; even and below n - 1, or >= n - 1 for the complete graph.
        seed: the public graph seed both sides know.

    Raises:
        ValueError: repeated ids, or an odd degree below n - 1.
    """
    _check(client_ids, degree)
    if degree >= len(client_ids) - 1:
        return NeighbourGraph({cid: tuple(sorted(set(client_ids) - {cid})) for cid in client_ids})
    order = ring_order(client_ids, seed)
    return NeighbourGraph({cid: _around(order, pos, degree) for pos, cid in enumerate(order)})


def harary_neighbours(
    client_ids: Sequence[str], degree: int, seed: int, client_id: str
) -> tuple[str, ...]:
    """The sorted neighbours of ``client_id`` in ``harary_graph(client_ids, degree, seed)``,
    without building the whole graph (all a client needs).

    Raises:
        ValueError: as :func:`harary_graph`, or ``client_id`` is not one of the ids.
    """
    _check(client_ids, degree)
    if client_id not in client_ids:
        raise ValueError(f"{client_id!r} is not one of the client ids")
    if degree >= len(client_ids) - 1:
        return tuple(sorted(cid for cid in client_ids if cid != client_id))
    order = ring_order(client_ids, seed)
    return _around(order, order.index(client_id), degree)


def t_core(
    candidates: Mapping[str, Sequence[str]], alive: Collection[str], t: int
) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """The largest subgraph of ``alive`` clients where each keeps >= t neighbours.

    Args:
        candidates: client -> its neighbours (symmetric).
        alive: the clients still in the round.
        t: the minimum number of neighbours.

    Returns:
        (client -> its kept neighbours, the removed clients in removal order).
    """
    kept = {i: tuple(j for j in peers if j in alive) for i, peers in candidates.items()}
    removed: list[str] = []
    while weak := sorted(i for i, peers in kept.items() if len(peers) < t):
        removed += weak
        for client in weak:
            del kept[client]
        kept = {i: tuple(j for j in peers if j in kept) for i, peers in kept.items()}
    return kept, removed


def _around(order: tuple[str, ...], pos: int, degree: int) -> tuple[str, ...]:
    """The degree/2 ids on either side of position ``pos`` of the ring, sorted."""
    half, n = degree // 2, len(order)
    return tuple(sorted(order[(pos + step) % n] for step in range(-half, half + 1) if step))


def _check(client_ids: Sequence[str], degree: int) -> None:
    n = len(client_ids)
    if len(set(client_ids)) != n:
        raise ValueError("client ids must be distinct")
    if degree < n - 1 and (degree < 0 or degree % 2):
        raise ValueError(f"a sparse Harary graph needs an even degree, got {degree}")
