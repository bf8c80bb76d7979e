"""Closing the Unmasking stage: verify shares, rebuild secrets, remove masks, decode.

Bonawitz et al. (CCS 2017, Fig. 4, Unmasking, server side) over the graph of Bell et al.
(CCS 2020, Alg. 2): the survivors S (clients whose masked input is in the sum) lose their
self-masks, rebuilt from b-shares their neighbours reveal; clients that dropped after
ShareKeys lose the pairwise masks they shared with survivors, rebuilt from their mask keys.
Each client's two secrets are never both requested (the survivors and the dropped are
disjoint, and :func:`~fedhive.secagg.recovery.reconstruct_secrets` refuses overlap).
The sum is over at least t survivors (the MaskedInput close guarantees it), never one.

A revealer skips only the dealers whose shares do not decrypt for it, and names them
(``UnmaskResponse.unreadable``); such a dealer is marked ``unreadable_shares`` with the
reporters in its reason. Its secret is rebuilt from the others' shares when t remain
(the round completes); otherwise the round aborts naming that dealer. The server cannot
open the shares itself, so a report is its revealer's word, and the reason says whose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from fedhive.errors import SecAggError
from fedhive.secagg import quantize
from fedhive.secagg.commitments import SecretKind
from fedhive.secagg.recovery import (
    ShareRequest,
    Verifier,
    make_verifier,
    reconstruct_secrets,
    remove_masks,
    verified_request,
)
from fedhive.secagg.report import ClientStatus, SecAggResult, Stage
from fedhive.secagg.server_state import ServerState, abort, mark_dropped


def close_unmasking(state: ServerState) -> ServerState:
    """Finish the round with the unmask responses received; sets ``state.result``."""
    statuses, reasons = mark_dropped(state)
    survivors = state.masked_from
    # Defensive: the MaskedInput stage closes into this one only with >= t masked inputs.
    if state.masked_sum is None or len(survivors) < state.params.threshold:  # pragma: no cover
        return abort(state, "too few masked inputs to unmask", statuses=statuses)[0]
    dropped = sorted(
        d
        for d, peers in state.neighbours.items()
        if d not in survivors and any(j in survivors for j in peers)
    )
    revealed = _revealed(state)
    positions = {cid: pos + 1 for pos, cid in enumerate(state.setup.client_ids)}
    requests = [
        _request(state, d, SecretKind.SELF_MASK, revealed, positions) for d in sorted(survivors)
    ]
    requests += [_request(state, d, SecretKind.MASK_KEY, revealed, positions) for d in dropped]
    unreadable = _unreadable(state)
    try:
        secrets, inconsistent = reconstruct_secrets(
            requests, threshold=state.params.threshold, verify=_verifier(state), round=state.round
        )
    except SecAggError as exc:
        message = exc.message
        if exc.client_id in unreadable:
            _blame_unreadable({exc.client_id: unreadable[exc.client_id]}, statuses, reasons)
            message = f"{message}; {reasons[exc.client_id]}"
        aborted, _ = abort(
            state, message, client_id=exc.client_id, statuses=statuses, reasons=reasons
        )
        return aborted
    for client in state.received:
        statuses[client] = ClientStatus.OK
    _blame(requests, inconsistent, statuses, reasons)
    _blame_unreadable(unreadable, statuses, reasons)
    total = remove_masks(
        state.masked_sum,
        params=state.params,
        round=state.round,
        self_mask_seeds={d: secrets[(d, SecretKind.SELF_MASK)] for d in survivors},
        dropped_mask_keys={d: secrets[(d, SecretKind.MASK_KEY)] for d in dropped},
        survivors_of={d: [j for j in state.neighbours[d] if j in survivors] for d in dropped},
        mask_public_keys={c: a.mask_public_key for c, a in state.adverts.items()},
    )
    weighted_sum, total_weight = quantize.decode(total, len(survivors), state.params)
    return replace(
        state,
        stage=Stage.DONE,
        expected=frozenset(),
        received=frozenset(),
        masked_sum=None,
        statuses=statuses,
        reasons=reasons,
        result=SecAggResult(
            round=state.round,
            weighted_sum=weighted_sum,
            total_weight=total_weight,
            included=tuple(sorted(survivors)),
            statuses=statuses,
            reasons=reasons,
        ),
    )


def _verifier(state: ServerState) -> Verifier:
    return make_verifier(
        round=state.round,
        self_mask_commitments={c: a.self_mask_commitment for c, a in state.adverts.items()},
        mask_public_keys={c: a.mask_public_key for c, a in state.adverts.items()},
    )


Revealed = Mapping[SecretKind, Mapping[str, Mapping[str, bytes]]]


def _revealed(state: ServerState) -> Revealed:
    """kind -> holder -> dealer -> the share that holder revealed (each response once)."""
    out: dict[SecretKind, dict[str, dict[str, bytes]]] = {kind: {} for kind in SecretKind}
    for holder, response in state.responses.items():
        for kind, group in (
            (SecretKind.SELF_MASK, response.self_mask_shares),
            (SecretKind.MASK_KEY, response.mask_key_shares),
        ):
            shares: dict[str, bytes] = {}
            for revealed in group:
                shares.setdefault(revealed.dealer, revealed.share)  # the first, as before
            out[kind][holder] = shares
    return out


def _request(
    state: ServerState,
    dealer: str,
    kind: SecretKind,
    revealed_by: Revealed,
    positions: Mapping[str, int],
) -> ShareRequest:
    """The revealed shares of ``dealer``'s ``kind`` secret, checked against commitments."""
    packets = {p.recipient: p for p in state.share_keys[dealer].packets}
    by_holder = revealed_by[kind]
    revealed: dict[str, bytes] = {}
    for holder in state.neighbours[dealer]:
        share = by_holder.get(holder, {}).get(dealer)
        if share is not None:
            revealed[holder] = share
    committed = {
        holder: (
            packet.self_mask_commitment
            if kind is SecretKind.SELF_MASK
            else packet.mask_key_commitment
        )
        for holder, packet in packets.items()
    }
    return verified_request(
        round=state.round,
        dealer=dealer,
        kind=kind,
        revealed=revealed,
        committed=committed,
        positions=positions,
    )


def _unreadable(state: ServerState) -> dict[str, list[str]]:
    """dealer -> the revealers that report its shares to them do not decrypt."""
    out: dict[str, list[str]] = {}
    for holder, response in sorted(state.responses.items()):
        for dealer in response.unreadable:
            out.setdefault(dealer, []).append(holder)
    return out


def _blame_unreadable(
    unreadable: Mapping[str, list[str]],
    statuses: dict[str, ClientStatus],
    reasons: dict[str, str],
) -> None:
    """Name each dealer its neighbours could not decrypt (their word: the server cannot
    open the shares to check, so the reason names who reported it)."""
    for dealer, holders in sorted(unreadable.items()):
        statuses[dealer] = ClientStatus.UNREADABLE_SHARES
        reasons[dealer] = (
            f"{len(holders)} neighbours report that the shares it dealt them do not decrypt "
            f"({', '.join(holders)}); they were skipped"
        )


def _blame(
    requests: list[ShareRequest],
    inconsistent: frozenset[str],
    statuses: dict[str, ClientStatus],
    reasons: dict[str, str],
) -> None:
    """Record revealers whose shares disagreed with a dealer that verified anyway, and
    dealers that verified only from another subset of their shares."""
    for request in requests:
        for holder in request.rejected:
            statuses[holder] = ClientStatus.EXCLUDED_BAD_SHARE
            reasons[holder] = (
                f"revealed a {request.kind} share of {request.dealer!r} that does not match "
                "the dealer's commitment (its shares were set aside; its own input counts)"
            )
    for dealer in sorted(inconsistent):
        statuses[dealer] = ClientStatus.INCONSISTENT_DEALER
        reasons[dealer] = (
            "dealt shares that do not all lie on one polynomial; its secret was rebuilt "
            "from another subset of its verified shares"
        )
