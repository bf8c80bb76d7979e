"""The sans-IO state machines refuse out-of-protocol messages with full error context."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import pytest

from fedhive.core.rng import SeedStream
from fedhive.errors import SecAggError
from fedhive.secagg import (
    AdvertiseKeys,
    ClientState,
    MaskedInput,
    MaskedInputRequest,
    NeighbourKeys,
    SecAggParams,
    ServerState,
    ShareKeys,
    Stage,
    UnmaskRequest,
    client_handle,
    client_start,
    server_close_stage,
    server_receive,
    server_start,
)

PARAMS = SecAggParams(
    num_clients=12,
    dropout_fraction=0.1,
    corruption_fraction=0.05,
    security_bits=8,
    correctness_bits=2,
)
IDS = [f"c{i:02d}" for i in range(12)]
ROUND = 4


def start() -> tuple[ServerState, dict[str, ClientState], dict[str, object]]:
    server, setup = server_start(
        round=ROUND, client_ids=IDS, params=PARAMS, graph_seed=1, vector_size=8
    )
    clients, outbox = {}, {}
    for cid in IDS:
        rng = SeedStream(0).child(cid).numpy()
        clients[cid], outbox[cid] = client_start(
            setup, client_id=cid, vector=np.ones(8), weight=2, rng=rng
        )
    return server, clients, outbox


def advance(
    server: ServerState, clients: dict[str, ClientState], outbox: Mapping[str, object]
) -> tuple[ServerState, dict[str, object], Mapping[str, object]]:
    """Deliver the outbox, close the stage, let ``clients`` answer; returns requests too."""
    for message in outbox.values():
        server = server_receive(server, message)  # type: ignore[arg-type]
    server, requests = server_close_stage(server)
    answers = {}
    for cid, request in requests.items():
        if cid in clients:
            clients[cid], answers[cid] = client_handle(clients[cid], request)
    return server, answers, requests


def assert_context(error: SecAggError, client: str | None, stage: Stage) -> None:
    assert error.client_id == client
    assert error.round == ROUND
    assert error.stage == str(stage)


def test_server_refuses_wrong_round_unknown_clients_and_duplicates() -> None:
    server, _, outbox = start()
    advert = outbox["c00"]
    assert isinstance(advert, AdvertiseKeys)
    with pytest.raises(SecAggError, match="round 5") as caught:
        server_receive(server, dataclasses.replace(advert, round=ROUND + 1))
    assert_context(caught.value, "c00", Stage.ADVERTISE_KEYS)
    with pytest.raises(SecAggError, match="unknown client") as caught:
        server_receive(server, dataclasses.replace(advert, client_id="mallory"))
    assert_context(caught.value, "mallory", Stage.ADVERTISE_KEYS)
    accepted = server_receive(server, advert)
    with pytest.raises(SecAggError, match="duplicate") as caught:
        server_receive(accepted, advert)
    assert_context(caught.value, "c00", Stage.ADVERTISE_KEYS)
    with pytest.raises(SecAggError, match="unusable"):
        server_receive(server, dataclasses.replace(outbox["c01"], mask_public_key=bytes(32)))  # type: ignore[type-var]


def test_server_refuses_late_early_and_uninvited_messages() -> None:
    server, clients, outbox = start()
    late_advert = outbox.pop("c11")
    server, answers, _ = advance(server, clients, outbox)
    with pytest.raises(SecAggError, match="late message") as caught:
        server_receive(server, late_advert)  # type: ignore[arg-type]
    assert_context(caught.value, "c11", Stage.ADVERTISE_KEYS)
    # c11 never advertised, so it is not part of the ShareKeys stage
    fake = ShareKeys(round=ROUND, client_id="c11", packets=())
    with pytest.raises(SecAggError, match="not part of this stage"):
        server_receive(server, fake)
    masked = MaskedInput.of(round=ROUND, client_id="c00", vector=np.zeros(9, dtype=np.uint64))
    with pytest.raises(SecAggError, match="not open yet") as caught:
        server_receive(server, masked)
    assert_context(caught.value, "c00", Stage.MASKED_INPUT)
    share_keys = answers["c00"]
    assert isinstance(share_keys, ShareKeys)
    with pytest.raises(SecAggError, match="exactly the neighbours"):
        server_receive(server, dataclasses.replace(share_keys, packets=share_keys.packets[1:]))


def test_server_refuses_a_masked_input_of_the_wrong_size_or_ring() -> None:
    server, clients, outbox = start()
    server, answers, _ = advance(server, clients, outbox)
    server, answers, _ = advance(server, clients, answers)
    good = answers["c00"]
    assert isinstance(good, MaskedInput)
    for wrong in (np.zeros(8, dtype=np.uint64), np.zeros(9, dtype=np.uint32)):
        with pytest.raises(SecAggError, match="9 elements of 64 bits"):
            server_receive(server, MaskedInput.of(round=ROUND, client_id="c00", vector=wrong))
    server_receive(server, good)


def test_after_the_round_every_message_is_refused() -> None:
    server, clients, outbox = start()
    for _ in range(4):
        server, outbox, _ = advance(server, clients, outbox)
    assert server.stage is Stage.DONE
    assert server.result is not None
    assert not server.result.aborted
    with pytest.raises(SecAggError, match="over"):
        server_close_stage(server)
    advert = AdvertiseKeys(
        round=ROUND,
        client_id="c00",
        cipher_public_key=bytes(32),
        mask_public_key=bytes(32),
        self_mask_commitment=bytes(32),
    )
    with pytest.raises(SecAggError, match="over"):
        server_receive(server, advert)


def test_client_refuses_wrong_round_addressee_and_stage_order() -> None:
    server, clients, outbox = start()
    server, _, requests = advance(server, {}, outbox)  # clients keep their start states
    keys_msg = requests["c00"]
    assert isinstance(keys_msg, NeighbourKeys)
    state = clients["c00"]
    with pytest.raises(SecAggError, match="round") as caught:
        client_handle(state, dataclasses.replace(keys_msg, round=ROUND + 1))
    assert_context(caught.value, "c00", Stage.SHARE_KEYS)
    with pytest.raises(SecAggError, match="addressed"):
        client_handle(state, dataclasses.replace(keys_msg, client_id="c01"))
    early = UnmaskRequest(round=ROUND, client_id="c00", dropped=(), survived=())
    with pytest.raises(SecAggError, match="while at stage share_keys") as caught:
        client_handle(state, early)
    assert_context(caught.value, "c00", Stage.UNMASKING)
    new_state, _ = client_handle(state, keys_msg)
    with pytest.raises(SecAggError, match="while at stage masked_input"):
        client_handle(new_state, keys_msg)  # a replay of the same stage


def test_client_refuses_strangers_and_too_few_neighbours() -> None:
    server, clients, outbox = start()
    server, _, requests = advance(server, {}, outbox)
    keys_msg = requests["c00"]
    assert isinstance(keys_msg, NeighbourKeys)
    state = clients["c00"]
    stranger = next(c for c in IDS if c not in state.neighbours and c != "c00")
    alien = dataclasses.replace(keys_msg.peers[0], client_id=stranger)
    peers = tuple(sorted((*keys_msg.peers[1:], alien), key=lambda p: p.client_id))
    with pytest.raises(SecAggError, match="non-neighbours"):
        client_handle(state, dataclasses.replace(keys_msg, peers=peers))
    few = keys_msg.peers[: PARAMS.threshold - 1]
    with pytest.raises(SecAggError, match="threshold"):
        client_handle(state, dataclasses.replace(keys_msg, peers=few))


def test_client_start_checks_the_cohort_and_the_vector() -> None:
    _, setup = server_start(round=0, client_ids=IDS, params=PARAMS, graph_seed=1, vector_size=8)
    rng = SeedStream(0).numpy()
    with pytest.raises(SecAggError, match="cohort"):
        client_start(setup, client_id="nobody", vector=np.ones(8), weight=1, rng=rng)
    with pytest.raises(SecAggError, match="shape"):
        client_start(setup, client_id="c00", vector=np.ones(7), weight=1, rng=rng)


def test_states_hide_their_secrets() -> None:
    _, clients, _ = start()
    text = repr(clients["c00"])
    assert clients["c00"].self_mask_seed.hex() not in text
    assert "c00" in text


def test_the_server_state_repr_names_the_round_and_stage_only() -> None:
    server, _, _ = start()
    assert repr(server) == f"ServerState(round={ROUND}, stage=advertise_keys)"


def test_each_side_refuses_the_other_sides_message_types() -> None:
    server, clients, outbox = start()
    with pytest.raises(SecAggError, match="a client does not handle AdvertiseKeys"):
        client_handle(clients["c00"], outbox["c00"])  # type: ignore[arg-type]
    server, _, requests = advance(server, {}, outbox)
    with pytest.raises(SecAggError, match="the server does not accept NeighbourKeys"):
        server_receive(server, requests["c00"])  # type: ignore[arg-type]


def test_client_refuses_a_low_order_neighbour_key() -> None:
    server, clients, outbox = start()
    server, _, requests = advance(server, {}, outbox)
    keys_msg = requests["c00"]
    assert isinstance(keys_msg, NeighbourKeys)
    bad = dataclasses.replace(keys_msg.peers[0], cipher_public_key=bytes(32))
    forged = dataclasses.replace(keys_msg, peers=(bad, *keys_msg.peers[1:]))
    with pytest.raises(SecAggError, match="not a usable X25519 key") as caught:
        client_handle(clients["c00"], forged)
    assert_context(caught.value, "c00", Stage.SHARE_KEYS)


def _at_masked_input() -> tuple[ClientState, MaskedInputRequest]:
    """Client c00 after ShareKeys, and the MaskedInputRequest the server sent it."""
    server, clients, outbox = start()
    server, answers, _ = advance(server, clients, outbox)
    server, _, requests = advance(server, {}, answers)
    request = requests["c00"]
    assert isinstance(request, MaskedInputRequest)
    return clients["c00"], request


def test_client_refuses_shares_routed_from_strangers_or_too_few() -> None:
    state, request = _at_masked_input()
    stranger = next(c for c in IDS if c not in state.peers and c != "c00")
    routed = dataclasses.replace(request.shares[0], dealer=stranger)
    shares = tuple(sorted((*request.shares[1:], routed), key=lambda s: s.dealer))
    with pytest.raises(SecAggError, match=rf"never sent keys of: \['{stranger}'\]") as caught:
        client_handle(state, dataclasses.replace(request, shares=shares))
    assert_context(caught.value, "c00", Stage.MASKED_INPUT)
    few = request.shares[: PARAMS.threshold - 1]
    with pytest.raises(SecAggError, match=rf"only {PARAMS.threshold - 1} neighbours shared keys"):
        client_handle(state, dataclasses.replace(request, shares=few))
    client_handle(state, request)  # the refusals left the state valid


def test_client_refuses_to_unmask_with_fewer_than_t_survivors() -> None:
    state, request = _at_masked_input()
    state, _ = client_handle(state, request)
    masked_with = state.masked_with
    t = PARAMS.threshold
    unmask = UnmaskRequest(
        round=ROUND, client_id="c00", dropped=masked_with[t - 1 :], survived=masked_with[: t - 1]
    )
    with pytest.raises(SecAggError, match=rf"only {t - 1} neighbours sent inputs") as caught:
        client_handle(state, unmask)
    assert_context(caught.value, "c00", Stage.UNMASKING)
