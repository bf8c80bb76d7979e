"""What the server sees: masked inputs indistinguishable from uniform, and never both
secrets of one client."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fedhive.core.rng import SeedStream
from fedhive.errors import SecAggError
from fedhive.secagg import (
    MaskedInput,
    SecAggParams,
    UnmaskRequest,
    UnmaskResponse,
    client_handle,
    client_start,
    quantize,
    run_local_round,
    server_close_stage,
    server_receive,
    server_start,
)
from fedhive.secagg.commitments import SecretKind
from fedhive.secagg.messages import Message, RevealedShare
from fedhive.secagg.recovery import ShareRequest, reconstruct_secrets

PARAMS = SecAggParams(
    num_clients=20,
    dropout_fraction=0.1,
    corruption_fraction=0.05,
    security_bits=12,
    correctness_bits=2,
)
CRITICAL = 255 * (1 - 2 / (9 * 255) + 4.75 * np.sqrt(2 / (9 * 255))) ** 3  # chi2(255), p~1e-6


def chi_square_top_byte(values: np.ndarray) -> float:
    top = (values >> np.uint64(56)).astype(np.int64)
    counts = np.bincount(top, minlength=256)
    expected = values.size / 256
    return float(((counts - expected) ** 2 / expected).sum())


def test_every_masked_input_is_uniform_even_for_all_zero_updates() -> None:
    size = 4095  # + the weight: 4096 ring elements, 16 per bin
    ids = [f"c{i:02d}" for i in range(PARAMS.num_clients)]
    seen: list[np.ndarray] = []

    def capture(message: Message) -> Message:
        if isinstance(message, MaskedInput):
            seen.append(message.vector)
        return message

    outcome = run_local_round(
        params=PARAMS,
        vectors={c: np.zeros(size) for c in ids},
        weights=dict.fromkeys(ids, 1),
        intercept=capture,  # type: ignore[arg-type]
    )
    outcome.result.raise_if_aborted()
    assert len(seen) == PARAMS.num_clients
    for vector in seen:
        assert chi_square_top_byte(vector) < CRITICAL
    # the same test does see the unmasked encoding of a zero update: a constant offset
    plain = quantize.encode(np.zeros(size), 1, PARAMS, SeedStream(0).numpy())
    assert chi_square_top_byte(plain) > CRITICAL
    # and two clients with the same input send unrelated vectors
    assert np.mean(seen[0] == seen[1]) < 0.01


def _to_unmasking() -> tuple[object, dict[str, object], dict[str, UnmaskRequest]]:
    ids = [f"c{i:02d}" for i in range(PARAMS.num_clients)]
    server, setup = server_start(
        round=2, client_ids=ids, params=PARAMS, graph_seed=9, vector_size=16
    )
    clients, outbox = {}, {}
    for cid in ids:
        clients[cid], outbox[cid] = client_start(
            setup, client_id=cid, vector=np.ones(16), weight=1, rng=SeedStream(1).numpy()
        )
    for stage in range(3):
        for message in outbox.values():
            server = server_receive(server, message)
        server, requests = server_close_stage(server)
        if stage == 2:  # the unmask requests: left for the test to answer
            return server, clients, requests  # type: ignore[return-value]
        outbox = {}
        for cid, request in requests.items():
            clients[cid], outbox[cid] = client_handle(clients[cid], request)
    raise AssertionError("unreachable")


def test_client_refuses_to_reveal_both_secrets_of_a_neighbour() -> None:
    _, clients, requests = _to_unmasking()
    request = requests["c00"]
    victim = request.survived[0]
    both = dataclasses.replace(request, dropped=tuple(sorted((*request.dropped, victim))))
    with pytest.raises(SecAggError, match="both secrets") as caught:
        client_handle(clients["c00"], both)  # type: ignore[arg-type]
    assert caught.value.client_id == "c00"
    assert caught.value.stage == "unmasking"
    missing = dataclasses.replace(request, survived=request.survived[1:])
    with pytest.raises(SecAggError, match="partition"):
        client_handle(clients["c00"], missing)  # type: ignore[arg-type]
    stranger = dataclasses.replace(request, dropped=("zz-not-a-neighbour",))
    with pytest.raises(SecAggError, match="partition"):
        client_handle(clients["c00"], stranger)  # type: ignore[arg-type]


def test_server_refuses_a_response_revealing_a_survivors_mask_key() -> None:
    server, clients, requests = _to_unmasking()
    _, response = client_handle(clients["c00"], requests["c00"])  # type: ignore[arg-type]
    assert isinstance(response, UnmaskResponse)
    dealer = requests["c00"].survived[0]
    extra = RevealedShare(dealer=dealer, share=response.self_mask_shares[0].share)
    both = dataclasses.replace(response, mask_key_shares=(extra,))
    with pytest.raises(SecAggError, match="exactly the requested"):
        server_receive(server, both)  # type: ignore[arg-type]
    server_receive(server, response)  # type: ignore[arg-type]


def test_reconstruction_refuses_both_secrets_of_one_client() -> None:
    empty = np.zeros((0,), dtype=np.int64)
    requests = [
        ShareRequest(dealer="c03", kind=kind, holders=(), xs=empty, shares=empty.reshape(0, 9))
        for kind in (SecretKind.SELF_MASK, SecretKind.MASK_KEY)
    ]
    with pytest.raises(SecAggError, match="both the self-mask and the mask key") as caught:
        reconstruct_secrets(requests, threshold=2, verify=lambda *_: True, round=2)
    assert caught.value.client_id == "c03"


def test_server_requests_never_overlap() -> None:
    _, _, requests = _to_unmasking()
    for request in requests.values():
        assert not set(request.dropped) & set(request.survived)


def test_a_client_answers_only_one_unmask_request() -> None:
    """A second request (say, with a neighbour moved from S to D) would reveal both of that
    neighbour's secrets; the client's state has moved on and refuses it."""
    _, clients, requests = _to_unmasking()
    request = requests["c00"]
    done, _ = client_handle(clients["c00"], request)  # type: ignore[arg-type]
    moved = request.survived[0]
    second = dataclasses.replace(
        request,
        dropped=tuple(sorted((*request.dropped, moved))),
        survived=request.survived[1:],
    )
    with pytest.raises(SecAggError, match="stage done"):
        client_handle(done, second)
