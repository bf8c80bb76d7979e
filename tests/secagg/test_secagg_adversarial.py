"""Misbehaving clients: inconsistent dealers are detected and named, lying revealers are
set aside, and the round completes whenever enough honest shares remain."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np
import pytest

from fedhive.core.rng import SeedStream
from fedhive.secagg import (
    ClientStatus,
    SecAggParams,
    ShareKeys,
    Stage,
    UnmaskResponse,
    run_local_round,
)
from fedhive.secagg import client as client_module
from fedhive.secagg.client import ClientState
from fedhive.secagg.hazmat import shamir
from fedhive.secagg.messages import Message

PARAMS = SecAggParams(
    num_clients=20,
    dropout_fraction=0.1,
    corruption_fraction=0.05,
    security_bits=12,
    correctness_bits=2,
)  # k = 10 neighbours, t = 6: more shares than the threshold
IDS = [f"c{i:02d}" for i in range(PARAMS.num_clients)]
DEALER = "c07"
SELF_MASK_ROW, MASK_KEY_ROW = 0, 1


def cohort(seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    rng = SeedStream(seed).numpy()
    return {c: rng.uniform(-1, 1, 200) for c in IDS}, {c: int(rng.integers(1, 50)) for c in IDS}


def expected_sum(
    vectors: dict[str, np.ndarray], weights: dict[str, int], ids: list[str]
) -> np.ndarray:
    return sum(weights[c] * vectors[c] for c in ids)  # type: ignore[return-value]


def corrupt_split(monkeypatch: pytest.MonkeyPatch, *, row: int, everything: bool) -> None:
    """Make DEALER deal bad shares of secret ``row``: one share off by one, or shares of
    another secret altogether. Commitments are then computed from the bad shares."""
    honest = client_module._split

    def split(state: ClientState, xs: list[int]) -> np.ndarray:
        shares = honest(state, xs)
        if state.client_id != DEALER:
            return shares
        if everything:
            other = [os.urandom(32), os.urandom(32)]
            return shamir.split(other, xs, threshold=PARAMS.threshold)
        shares = shares.copy()
        shares[row, 0, 0] = (shares[row, 0, 0] + 1) % shamir.PRIME  # its first holder's share
        return shares

    monkeypatch.setattr(client_module, "_split", split)


def test_one_bad_share_is_skipped_and_the_dealer_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    corrupt_split(monkeypatch, row=SELF_MASK_ROW, everything=False)
    vectors, weights = cohort()
    result = run_local_round(params=PARAMS, vectors=vectors, weights=weights).result
    result.raise_if_aborted()
    assert result.statuses[DEALER] is ClientStatus.INCONSISTENT_DEALER
    assert "another subset" in result.reasons[DEALER]
    assert result.weighted_sum is not None
    assert np.allclose(result.weighted_sum, expected_sum(vectors, weights, IDS), atol=1e-6)


def test_a_dropped_dealers_bad_mask_key_share_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    corrupt_split(monkeypatch, row=MASK_KEY_ROW, everything=False)
    vectors, weights = cohort(1)
    outcome = run_local_round(
        params=PARAMS, vectors=vectors, weights=weights, dropouts={Stage.MASKED_INPUT: [DEALER]}
    )
    result = outcome.result
    result.raise_if_aborted()
    assert result.statuses[DEALER] is ClientStatus.INCONSISTENT_DEALER
    others = [c for c in IDS if c != DEALER]
    assert result.weighted_sum is not None
    assert np.allclose(result.weighted_sum, expected_sum(vectors, weights, others), atol=1e-6)


def test_shares_of_another_secret_abort_naming_the_dealer(monkeypatch: pytest.MonkeyPatch) -> None:
    corrupt_split(monkeypatch, row=SELF_MASK_ROW, everything=True)
    vectors, weights = cohort(2)
    result = run_local_round(params=PARAMS, vectors=vectors, weights=weights).result
    assert result.aborted
    assert result.weighted_sum is None
    assert result.abort is not None
    assert result.abort.client_id == DEALER
    assert result.abort.stage is Stage.UNMASKING
    assert "inconsistent shares" in result.abort.message


def test_forged_commitments_abort_naming_the_dealer() -> None:
    def forge(message: Message) -> Message:
        if isinstance(message, ShareKeys) and message.client_id == DEALER:
            packets = tuple(
                dataclasses.replace(p, self_mask_commitment=os.urandom(32)) for p in message.packets
            )
            return dataclasses.replace(message, packets=packets)
        return message

    vectors, weights = cohort(3)
    result = run_local_round(
        params=PARAMS,
        vectors=vectors,
        weights=weights,
        intercept=forge,  # type: ignore[arg-type]
    ).result
    assert result.aborted
    assert result.abort is not None
    assert result.abort.client_id == DEALER
    assert "disagree" in result.abort.message
    assert "inconsistent shares or commitments" in result.abort.message


def test_a_lying_revealer_is_excluded_and_the_round_completes() -> None:
    liar, victims = "c03", []

    def lie(message: Message) -> Message:
        if isinstance(message, UnmaskResponse) and message.client_id == liar:
            first = message.self_mask_shares[0]
            values = shamir.share_from_bytes(first.share)
            values[0] = (values[0] + 1) % shamir.PRIME
            bad = dataclasses.replace(first, share=shamir.share_to_bytes(values))
            victims.append(first.dealer)
            return dataclasses.replace(
                message, self_mask_shares=(bad, *message.self_mask_shares[1:])
            )
        return message

    vectors, weights = cohort(4)
    outcome = run_local_round(
        params=PARAMS,
        vectors=vectors,
        weights=weights,
        intercept=lie,  # type: ignore[arg-type]
    )
    result = outcome.result
    result.raise_if_aborted()
    assert result.statuses[liar] is ClientStatus.EXCLUDED_BAD_SHARE
    assert repr(victims[0]) in result.reasons[liar]
    assert liar in result.included  # its own input still counts: only its share was set aside
    assert result.weighted_sum is not None
    assert np.allclose(result.weighted_sum, expected_sum(vectors, weights, IDS), atol=1e-6)


def garble_ciphertexts(dealer: str, holders: int | None = None) -> Callable[[Message], Message]:
    """An intercept: ``dealer`` deals share ciphertexts that do not decrypt (one flipped
    byte), to its first ``holders`` neighbours (all of them when None)."""

    def garble(message: Message) -> Message:
        if not isinstance(message, ShareKeys) or message.client_id != dealer:
            return message
        packets = list(message.packets)
        for index, packet in enumerate(packets[:holders]):
            flipped = bytes([packet.ciphertext[0] ^ 1]) + packet.ciphertext[1:]
            packets[index] = dataclasses.replace(packet, ciphertext=flipped)
        return dataclasses.replace(message, packets=tuple(packets))

    return garble


def test_undecryptable_shares_abort_naming_their_dealer_not_a_neighbour() -> None:
    cheat = "c03"
    vectors, weights = cohort(5)
    outcome = run_local_round(
        params=PARAMS,
        vectors=vectors,
        weights=weights,
        intercept=garble_ciphertexts(cheat),  # type: ignore[arg-type]
    )
    result = outcome.result
    assert outcome.client_refusals == {}  # its neighbours skip only its shares
    assert result.aborted
    assert result.abort is not None
    assert result.abort.client_id == cheat
    assert "do not decrypt" in result.abort.message
    assert result.statuses[cheat] is ClientStatus.UNREADABLE_SHARES


def test_a_dealers_few_undecryptable_shares_are_skipped_and_the_round_completes() -> None:
    cheat = "c03"
    garbled = PARAMS.degree - PARAMS.threshold  # what is left is exactly t shares
    vectors, weights = cohort(6)
    outcome = run_local_round(
        params=PARAMS,
        vectors=vectors,
        weights=weights,
        intercept=garble_ciphertexts(cheat, garbled),  # type: ignore[arg-type]
    )
    result = outcome.result
    result.raise_if_aborted()
    assert outcome.client_refusals == {}
    assert result.statuses[cheat] is ClientStatus.UNREADABLE_SHARES
    assert f"{garbled} neighbours" in result.reasons[cheat]
    honest = [c for c in IDS if c != cheat]
    assert all(result.statuses[c] is ClientStatus.OK for c in honest)
    assert result.included == tuple(IDS)
    assert result.weighted_sum is not None
    assert np.allclose(result.weighted_sum, expected_sum(vectors, weights, IDS), atol=1e-6)


def test_an_unreadable_report_must_name_requested_dealers_it_did_not_reveal() -> None:
    liar = "c05"

    def overclaim(message: Message) -> Message:
        if isinstance(message, UnmaskResponse) and message.client_id == liar:
            revealed = message.self_mask_shares[0].dealer  # reported and revealed at once
            return dataclasses.replace(message, unreadable=(revealed,))
        return message

    vectors, weights = cohort(7)
    outcome = run_local_round(
        params=PARAMS,
        vectors=vectors,
        weights=weights,
        intercept=overclaim,  # type: ignore[arg-type]
    )
    assert "not exactly the requested ones" in outcome.server_refusals[liar]
    outcome.result.raise_if_aborted()  # the liar only dropped out of unmasking
    assert outcome.result.statuses[liar] is ClientStatus.DROPPED_AT_UNMASKING
