"""An in-memory driver that runs one SecAgg+ round between the sans-IO state machines.

Simulation and tests use it; a network transport drives the same state machines
(:mod:`fedhive.secagg.client`, :mod:`fedhive.secagg.server`) with real deadlines instead.
Dropouts are simulated per stage: a client listed under a stage never sends that stage's
message nor any later one. An optional ``intercept`` sees (and may rewrite) every client
message before the server does, to simulate a misbehaving client.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fedhive.core.rng import SeedStream
from fedhive.errors import SecAggError
from fedhive.secagg.client import (
    ClientMessage,
    ClientState,
    ServerMessage,
    client_handle,
    client_start,
)
from fedhive.secagg.params import SecAggParams
from fedhive.secagg.report import SecAggResult, Stage
from fedhive.secagg.server import server_close_stage, server_receive, server_start
from fedhive.secagg.server_state import ServerState

Intercept = Callable[[ClientMessage], ClientMessage]


@dataclass(frozen=True, kw_only=True, eq=False)
class LocalRound:
    """The server's result, plus who refused what while the round ran.

    Attributes:
        result: the server's :class:`SecAggResult` (a sum or an abort).
        client_refusals: client id -> why that client's state machine refused a server
            message (it then acted as dropped).
        server_refusals: client id -> why the server refused that client's message.
    """

    result: SecAggResult
    client_refusals: Mapping[str, str] = field(default_factory=dict)
    server_refusals: Mapping[str, str] = field(default_factory=dict)


def run_local_round(
    *,
    params: SecAggParams,
    vectors: Mapping[str, npt.ArrayLike],
    weights: Mapping[str, int],
    round: int = 0,
    graph_seed: int = 0,
    seed: SeedStream | None = None,
    dropouts: Mapping[Stage, Collection[str]] | None = None,
    intercept: Intercept | None = None,
) -> LocalRound:
    """Run one round for the clients of ``vectors`` and return the server's result.

    Args:
        params: the round's parameters; ``params.num_clients == len(vectors)``.
        vectors: client id -> its update (equal lengths).
        weights: client id -> its integer weight.
        round: the round number.
        graph_seed: the public seed of the neighbour graph.
        seed: stream for the clients' stochastic rounding (``SeedStream(0)`` if None);
            client ``c`` uses ``seed.child("secagg-quantize").child(round).child(c)``.
        dropouts: stage -> clients that vanish at that stage.
        intercept: rewrites each client message before the server receives it.
    """
    ids = sorted(vectors)
    sizes = {np.asarray(v).shape for v in vectors.values()}
    if len(sizes) != 1 or len(next(iter(sizes))) != 1 or set(weights) != set(ids):
        raise SecAggError("vectors need one common 1-d shape, and every client a weight")
    stream = (seed or SeedStream(0)).child("secagg-quantize").child(round)
    server, setup = server_start(
        round=round,
        client_ids=ids,
        params=params,
        graph_seed=graph_seed,
        vector_size=next(iter(sizes))[0],
    )
    vanished: set[str] = set()
    client_refusals: dict[str, str] = {}
    server_refusals: dict[str, str] = {}
    clients: dict[str, ClientState] = {}
    outbox: dict[str, ClientMessage] = {}
    for cid in ids:
        rng = stream.child(cid).numpy()
        clients[cid], outbox[cid] = client_start(
            setup, client_id=cid, vector=vectors[cid], weight=weights[cid], rng=rng
        )
    while server.result is None:  # set when the Unmasking stage closes, or at an abort
        vanished |= set((dropouts or {}).get(server.stage, ()))
        sent = {cid: m for cid, m in outbox.items() if cid not in vanished}
        server = _deliver(server, sent, intercept, server_refusals)
        server, requests = server_close_stage(server)
        asked = {cid: r for cid, r in requests.items() if cid not in vanished}
        outbox = _answer(clients, asked, client_refusals)
    return LocalRound(
        result=server.result, client_refusals=client_refusals, server_refusals=server_refusals
    )


def _deliver(
    server: ServerState,
    outbox: Mapping[str, ClientMessage],
    intercept: Intercept | None,
    refusals: dict[str, str],
) -> ServerState:
    """The server after receiving ``outbox`` in id order; refused messages are noted."""
    for cid, message in sorted(outbox.items()):
        try:
            server = server_receive(server, intercept(message) if intercept else message)
        except SecAggError as exc:
            refusals[cid] = str(exc)
    return server


def _answer(
    clients: dict[str, ClientState], requests: Mapping[str, ServerMessage], refusals: dict[str, str]
) -> dict[str, ClientMessage]:
    """Each asked client's answer (its state updated in ``clients``); refusals noted."""
    outbox: dict[str, ClientMessage] = {}
    for cid, request in sorted(requests.items()):
        try:
            clients[cid], outbox[cid] = client_handle(clients[cid], request)
        # Defensive: the honest in-memory server never sends a message a client refuses.
        except SecAggError as exc:  # pragma: no cover
            refusals[cid] = str(exc)
    return outbox
