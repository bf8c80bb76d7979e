"""The SecAgg+ server as a sans-IO state machine, driven stage by stage.

Bonawitz et al. (CCS 2017, Fig. 4, semi-honest server) over the neighbour graph of Bell et
al. (CCS 2020, Alg. 2). The driver (in-memory or a network transport) calls
:func:`server_start`, feeds each client message to :func:`server_receive`, and calls
:func:`server_close_stage` when a stage's collection ends (deadline or quorum: the
driver's choice); closing returns the messages of the next stage. After the Unmasking stage
closes, ``state.result`` holds the :class:`SecAggResult`.

At each close the server keeps the clients that answered and, among them, the largest
subgraph where every client still has >= t neighbours (the t-core): the others are
excluded, since their secrets could never be rebuilt. Too few clients left, or a survivor
or dropped client whose shares fewer than t neighbours can reveal, aborts the round before
anything is revealed. Unmasking itself is :mod:`fedhive.secagg.unmasking`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from fedhive.errors import SecAggError
from fedhive.secagg.graph import harary_graph, t_core
from fedhive.secagg.hazmat import keys
from fedhive.secagg.hazmat.prg import ring_dtype
from fedhive.secagg.messages import (
    AdvertiseKeys,
    MaskedInput,
    MaskedInputRequest,
    Message,
    NeighbourKeys,
    PeerKeys,
    RoundSetup,
    RoutedShare,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
)
from fedhive.secagg.params import SecAggParams
from fedhive.secagg.report import PROTOCOL_STAGES, ClientStatus, Stage
from fedhive.secagg.server_state import Outgoing, ServerState, abort, mark_dropped
from fedhive.secagg.unmasking import close_unmasking

ClientMessage = AdvertiseKeys | ShareKeys | MaskedInput | UnmaskResponse

_STAGE_OF: dict[type[Message], Stage] = {
    AdvertiseKeys: Stage.ADVERTISE_KEYS,
    ShareKeys: Stage.SHARE_KEYS,
    MaskedInput: Stage.MASKED_INPUT,
    UnmaskResponse: Stage.UNMASKING,
}


def server_start(
    *,
    round: int,
    client_ids: tuple[str, ...] | list[str],
    params: SecAggParams,
    graph_seed: int,
    vector_size: int,
) -> tuple[ServerState, RoundSetup]:
    """Open a round for ``client_ids``; returns the state and the setup to send them all.

    Args:
        round: the round number (binds every key, mask and commitment to it).
        client_ids: the selected cohort, ``params.num_clients`` distinct ids.
        params: the round's security parameters.
        graph_seed: public seed of the neighbour graph (e.g. from the run's SeedStream).
        vector_size: d, the number of model coordinates each client sums.
    """
    setup = RoundSetup(
        round=round,
        client_ids=tuple(sorted(client_ids)),
        graph_seed=graph_seed,
        vector_size=vector_size,
        params=params,
    )
    state = ServerState(
        setup=setup,
        graph=harary_graph(setup.client_ids, params.degree, graph_seed),
        stage=Stage.ADVERTISE_KEYS,
        expected=frozenset(setup.client_ids),
        statuses=dict.fromkeys(setup.client_ids, ClientStatus.PENDING),
    )
    return state, setup


def server_receive(state: ServerState, message: ClientMessage) -> ServerState:
    """Accept one client message for the open stage; receiving never sends anything.

    Raises:
        SecAggError: wrong round, unknown client, a closed or not yet open stage, a client
            not asked in this stage, a duplicate, or a payload that contradicts what the
            server sent (``client_id``, ``round`` and ``stage`` are set); ``state`` is
            then unchanged.
    """
    stage = _STAGE_OF.get(type(message))
    if stage is None:
        raise SecAggError(f"the server does not accept {type(message).__name__}")
    client = message.client_id
    _check_admission(state, message, stage)
    received = state.received | {client}
    if isinstance(message, AdvertiseKeys):
        usable = map(keys.is_usable_public, (message.cipher_public_key, message.mask_public_key))
        if not all(usable):
            raise state.refusal("advertised an unusable X25519 key", client_id=client, stage=stage)
        return replace(state, received=received, adverts={**state.adverts, client: message})
    if isinstance(message, ShareKeys):
        if tuple(p.recipient for p in message.packets) != state.neighbours[client]:
            raise state.refusal(
                "shares must go to exactly the neighbours whose keys it was sent",
                client_id=client,
                stage=stage,
            )
        share_keys = {**state.share_keys, client: message}
        return replace(state, received=received, share_keys=share_keys)
    if isinstance(message, MaskedInput):
        total = _add_input(state, message)
        return replace(state, received=received, masked_sum=total, masked_from=received)
    request = state.unmask_requests[client]
    unreadable = set(message.unreadable)
    if (
        not unreadable <= {*request.survived, *request.dropped}
        or tuple(s.dealer for s in message.self_mask_shares)
        != tuple(d for d in request.survived if d not in unreadable)
        or tuple(s.dealer for s in message.mask_key_shares)
        != tuple(d for d in request.dropped if d not in unreadable)
    ):
        raise state.refusal(
            "revealed shares (and the dealers reported unreadable) are not exactly the "
            "requested ones",
            client_id=client,
            stage=stage,
        )
    return replace(state, received=received, responses={**state.responses, client: message})


def _check_admission(state: ServerState, message: ClientMessage, stage: Stage) -> None:
    client = message.client_id

    def refuse(text: str) -> SecAggError:
        return state.refusal(text, client_id=client, stage=stage)

    if message.round != state.round:
        raise refuse(f"message is for round {message.round}, this is round {state.round}")
    if client not in state.statuses:
        raise refuse("unknown client: not selected for this round")
    if state.stage in (Stage.DONE, Stage.ABORTED):
        raise refuse(f"the round is over ({state.stage})")
    if PROTOCOL_STAGES.index(stage) < PROTOCOL_STAGES.index(state.stage):
        raise refuse(f"late message: stage {stage} is closed")
    if stage != state.stage:
        raise refuse(f"stage {stage} is not open yet (open: {state.stage})")
    if client in state.received:
        raise refuse("duplicate message in this stage")
    if client not in state.expected:
        raise refuse("client is not part of this stage (dropped or excluded earlier)")


def _add_input(state: ServerState, message: MaskedInput) -> npt.NDArray[np.unsignedinteger]:
    size, bits = state.setup.vector_size + 1, state.params.ring_bits
    if message.ring_bits != bits or len(message.data) * 8 != size * bits:
        raise state.refusal(
            f"a masked input is {size} elements of {bits} bits",
            client_id=message.client_id,
            stage=Stage.MASKED_INPUT,
        )
    if state.masked_sum is None:
        return message.vector
    # One new array (the state's sum is never written to); the bytes are read in place.
    dtype = ring_dtype(bits)
    incoming = np.frombuffer(message.data, dtype=dtype.newbyteorder("<"))
    total: npt.NDArray[np.unsignedinteger] = np.add(state.masked_sum, incoming, dtype=dtype)
    return total


def server_close_stage(state: ServerState) -> tuple[ServerState, Outgoing]:
    """Close the open stage with whoever answered; returns the next stage's messages.

    After the Unmasking stage closes (or the round aborts) ``state.result`` is set and
    nothing more is sent.

    Raises:
        SecAggError: the round is already over.
    """
    if state.stage is Stage.ADVERTISE_KEYS:
        return _close_advertise_keys(state)
    if state.stage is Stage.SHARE_KEYS:
        return _close_share_keys(state)
    if state.stage is Stage.MASKED_INPUT:
        return _close_masked_input(state)
    if state.stage is Stage.UNMASKING:
        return close_unmasking(state), {}
    raise SecAggError(f"the round is over ({state.stage})", round=state.round)


def _close_advertise_keys(state: ServerState) -> tuple[ServerState, Outgoing]:
    statuses, reasons = mark_dropped(state)
    candidates = {i: state.graph.of(i) for i in state.received}
    neighbours = _keep_core(state, candidates, statuses, reasons)
    if not neighbours:
        return abort(state, _too_few(state, "advertised keys"), statuses=statuses, reasons=reasons)
    forwarded = {j: _peer(state.adverts[j]) for j in state.received}  # one per advertiser
    outgoing = {
        client: NeighbourKeys(
            round=state.round,
            client_id=client,
            peers=tuple(forwarded[j] for j in peers),
        )
        for client, peers in neighbours.items()
    }
    return _advance(state, Stage.SHARE_KEYS, neighbours, statuses, reasons), outgoing


def _close_share_keys(state: ServerState) -> tuple[ServerState, Outgoing]:
    statuses, reasons = mark_dropped(state)
    candidates = {i: state.neighbours[i] for i in state.received}
    neighbours = _keep_core(state, candidates, statuses, reasons)
    if not neighbours:
        return abort(state, _too_few(state, "shared keys"), statuses=statuses, reasons=reasons)
    packets = {
        (dealer, packet.recipient): packet.ciphertext
        for dealer, message in state.share_keys.items()
        for packet in message.packets
    }
    outgoing = {
        client: MaskedInputRequest(
            round=state.round,
            client_id=client,
            shares=tuple(RoutedShare(dealer=j, ciphertext=packets[(j, client)]) for j in peers),
        )
        for client, peers in neighbours.items()
    }
    return _advance(state, Stage.MASKED_INPUT, neighbours, statuses, reasons), outgoing


def _close_masked_input(state: ServerState) -> tuple[ServerState, Outgoing]:
    statuses, reasons = mark_dropped(state)
    t, survivors = state.params.threshold, state.received
    if len(survivors) < t:
        text = f"only {len(survivors)} clients sent masked inputs; threshold is t = {t}"
        return abort(state, text, statuses=statuses, reasons=reasons)
    outgoing: dict[str, UnmaskRequest] = {}
    for client in sorted(state.expected):
        peers = state.neighbours[client]
        alive = tuple(j for j in peers if j in survivors)
        if client in survivors and len(alive) < t:
            text = f"only {len(alive)} neighbours of a survivor can reveal its self-mask; t = {t}"
            return abort(state, text, client_id=client, statuses=statuses, reasons=reasons)
        if client not in survivors and 0 < len(alive) < t:
            text = f"only {len(alive)} neighbours of a dropped client can reveal its mask key"
            return abort(state, text, client_id=client, statuses=statuses, reasons=reasons)
        if client in survivors:
            dropped = tuple(j for j in peers if j not in survivors)
            outgoing[client] = UnmaskRequest(
                round=state.round, client_id=client, dropped=dropped, survived=alive
            )
    advanced = replace(
        state,
        stage=Stage.UNMASKING,
        expected=frozenset(survivors),
        received=frozenset(),
        unmask_requests=outgoing,
        statuses=statuses,
        reasons=reasons,
    )
    return advanced, outgoing


def _keep_core(
    state: ServerState,
    candidates: Mapping[str, tuple[str, ...]],
    statuses: dict[str, ClientStatus],
    reasons: dict[str, str],
) -> dict[str, tuple[str, ...]]:
    """The t-core of the answering clients; the clients it drops are recorded excluded."""
    t = state.params.threshold
    kept, removed = t_core(candidates, state.received, t)
    for client in removed:
        statuses[client] = ClientStatus.EXCLUDED_TOO_FEW_NEIGHBOURS
        reasons[client] = f"fewer than t = {t} of its neighbours were still in the round"
    return kept


def _advance(
    state: ServerState,
    stage: Stage,
    neighbours: dict[str, tuple[str, ...]],
    statuses: dict[str, ClientStatus],
    reasons: dict[str, str],
) -> ServerState:
    return replace(
        state,
        stage=stage,
        expected=frozenset(neighbours),
        received=frozenset(),
        neighbours=neighbours,
        statuses=statuses,
        reasons=reasons,
    )


def _peer(advert: AdvertiseKeys) -> PeerKeys:
    return PeerKeys(
        client_id=advert.client_id,
        cipher_public_key=advert.cipher_public_key,
        mask_public_key=advert.mask_public_key,
    )


def _too_few(state: ServerState, what: str) -> str:
    t = state.params.threshold
    return (
        f"{len(state.received)} clients {what}, but no group of them has t = {t} "
        "remaining neighbours each"
    )
