"""The SecAgg+ client as a sans-IO state machine: ``client_handle(state, msg) -> (state, out)``.

Bonawitz et al. (CCS 2017, Fig. 4, semi-honest column) run over the neighbour graph of
Bell et al. (CCS 2020, Alg. 2). Per round a client:

1. AdvertiseKeys: makes two X25519 pairs (``c`` encrypts shares, ``s`` derives pairwise
   masks) and a 32-byte self-mask seed b, and sends both public keys with a commitment to b.
2. ShareKeys: Shamir-splits b and s_sk t-of-k over the neighbours that advertised (itself
   excluded: it never reveals its own secrets, so a share of its own would be useless),
   at x-coordinates = their 1-based positions in the sorted cohort, and sends each
   neighbour's pair of shares under AES-GCM with the key agree(c_sk, c_pk_j), plus a hash
   commitment to each share.
3. MaskedInput: y = Q(x) + PRG(b) + Σ_j ±PRG(agree(s_sk, s_pk_j)) over the neighbours that
   finished ShareKeys, + when its id sorts before j's and - after, so pairs cancel.
4. Unmasking: reveals b-shares of neighbours that sent y (S) and s-shares of those that
   dropped before (D), refusing a request where D and S overlap or do not partition the
   neighbours it masked with: one client's two secrets are never both revealed. A
   dealer whose shares do not decrypt (or have the wrong length) is skipped and named
   in the response's ``unreadable``; the other dealers' shares are still revealed.

States are frozen values; a refused message raises :class:`SecAggError` and leaves the
caller's state unchanged. A state answers each stage once, so a client never answers two
unmask requests. The ``repr`` of a state hides its secrets; discard the state (it still
holds them) once the round is over.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from fedhive.errors import SecAggError
from fedhive.secagg import commitments, quantize
from fedhive.secagg.commitments import SecretKind
from fedhive.secagg.graph import harary_neighbours
from fedhive.secagg.hazmat import aead, keys, prg, shamir
from fedhive.secagg.messages import (
    AdvertiseKeys,
    MaskedInput,
    MaskedInputRequest,
    NeighbourKeys,
    PeerKeys,
    RevealedShare,
    RoundSetup,
    ShareKeys,
    SharePacket,
    UnmaskRequest,
    UnmaskResponse,
)
from fedhive.secagg.report import Stage

ServerMessage = NeighbourKeys | MaskedInputRequest | UnmaskRequest
ClientMessage = AdvertiseKeys | ShareKeys | MaskedInput | UnmaskResponse


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class ClientState:
    """One client's round state; ``stage`` is the stage of the next message it will send."""

    client_id: str
    setup: RoundSetup
    neighbours: tuple[str, ...]
    stage: Stage
    encoded: npt.NDArray[np.unsignedinteger]
    cipher_keys: keys.KeyPair
    mask_keys: keys.KeyPair
    self_mask_seed: bytes
    peers: Mapping[str, PeerKeys] = field(default_factory=dict)
    channel_keys: Mapping[str, bytes] = field(default_factory=dict)
    masked_with: tuple[str, ...] = ()
    held: Mapping[str, bytes] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"ClientState(client_id={self.client_id!r}, stage={self.stage!s})"

    def refuse(self, message: str, stage: Stage | None = None) -> SecAggError:
        """The error for refusing ``message`` at ``stage`` (default: the current one)."""
        where = stage or self.stage
        return SecAggError(
            message, client_id=self.client_id, round=self.setup.round, stage=str(where)
        )


def client_start(
    setup: RoundSetup,
    *,
    client_id: str,
    vector: npt.ArrayLike,
    weight: int,
    rng: np.random.Generator,
) -> tuple[ClientState, AdvertiseKeys]:
    """Join the round ``setup`` describes with the update ``vector`` and its ``weight``.

    Args:
        setup: the server's round setup (a client may first compare ``setup.params``
            with its own policy).
        client_id: this client's id, one of ``setup.client_ids``.
        vector: the update, ``setup.vector_size`` finite floats (clipped here).
        weight: the integer weight (example count), 1 <= weight <= params.max_weight.
        rng: the source of the (non-secret) stochastic-rounding noise.

    Raises:
        SecAggError: not in the cohort, or a vector of the wrong size or weight.
    """
    if client_id not in setup.client_ids:
        raise SecAggError("client is not in the round's cohort", client_id=client_id)
    values = np.asarray(vector, dtype=np.float64)
    if values.shape != (setup.vector_size,):
        raise SecAggError(
            f"update has shape {values.shape}, the round expects ({setup.vector_size},)",
            client_id=client_id,
            round=setup.round,
            stage=str(Stage.ADVERTISE_KEYS),
        )
    params = setup.params
    state = ClientState(
        client_id=client_id,
        setup=setup,
        neighbours=harary_neighbours(setup.client_ids, params.degree, setup.graph_seed, client_id),
        stage=Stage.SHARE_KEYS,
        encoded=quantize.encode(values, weight, params, rng),
        cipher_keys=keys.generate(),
        mask_keys=keys.generate(),
        self_mask_seed=os.urandom(prg.SEED_BYTES),
    )
    advert = AdvertiseKeys(
        round=setup.round,
        client_id=client_id,
        cipher_public_key=state.cipher_keys.public,
        mask_public_key=state.mask_keys.public,
        self_mask_commitment=commitments.self_mask_commitment(
            setup.round, client_id, state.self_mask_seed
        ),
    )
    return state, advert


def client_handle(state: ClientState, message: ServerMessage) -> tuple[ClientState, ClientMessage]:
    """Answer one server message; returns the new state and the message to send.

    Raises:
        SecAggError: the message is for another round, client or stage, or asks for
            something the protocol forbids; ``state`` is then still the valid state.
    """
    expected = {
        NeighbourKeys: Stage.SHARE_KEYS,
        MaskedInputRequest: Stage.MASKED_INPUT,
        UnmaskRequest: Stage.UNMASKING,
    }.get(type(message))
    if expected is None:
        raise state.refuse(f"a client does not handle {type(message).__name__}")
    if message.round != state.setup.round:
        raise state.refuse(f"message is for round {message.round}", expected)
    if message.client_id != state.client_id:
        raise state.refuse(f"message is addressed to {message.client_id!r}", expected)
    if expected != state.stage:
        raise state.refuse(f"got a {expected} message while at stage {state.stage}", expected)
    if isinstance(message, NeighbourKeys):
        return _share_keys(state, message)
    if isinstance(message, MaskedInputRequest):
        return _masked_input(state, message)
    return _unmask(state, message)


def _share_keys(state: ClientState, message: NeighbourKeys) -> tuple[ClientState, ShareKeys]:
    t = state.setup.params.threshold
    peers = {p.client_id: p for p in message.peers}
    strangers = sorted(set(peers) - set(state.neighbours))
    if strangers:
        raise state.refuse(f"server forwarded keys of non-neighbours {strangers}")
    if len(peers) < t:
        raise state.refuse(f"only {len(peers)} neighbours advertised keys; threshold is {t}")
    order = sorted(peers)
    infos = [commitments.encryption_info(state.setup.round, state.client_id, j) for j in order]
    channel = _agree(
        state, state.cipher_keys.private, [peers[j].cipher_public_key for j in order], infos
    )
    state = replace(state, peers=peers, channel_keys=dict(zip(order, channel, strict=True)))
    positions = {cid: pos + 1 for pos, cid in enumerate(state.setup.client_ids)}
    shares = _split(state, [positions[cid] for cid in order])
    round_, me = state.setup.round, state.client_id
    packets = []
    for index, holder in enumerate(order):
        self_share = shamir.share_to_bytes(shares[0, index])
        key_share = shamir.share_to_bytes(shares[1, index])
        sealed = aead.encrypt(
            state.channel_keys[holder],
            self_share + key_share,
            associated_data=commitments.share_associated_data(round_, me, holder),
        )
        packets.append(
            SharePacket(
                recipient=holder,
                ciphertext=sealed,
                self_mask_commitment=commitments.share_commitment(
                    SecretKind.SELF_MASK, round_, me, holder, self_share
                ),
                mask_key_commitment=commitments.share_commitment(
                    SecretKind.MASK_KEY, round_, me, holder, key_share
                ),
            )
        )
    out = ShareKeys(round=round_, client_id=me, packets=tuple(packets))
    return replace(state, stage=Stage.MASKED_INPUT), out


def _split(state: ClientState, xs: list[int]) -> npt.NDArray[np.int64]:
    """Shares (2, len(xs), 9) of b (row 0) and s_sk (row 1) at ``xs``."""
    secrets = [state.self_mask_seed, state.mask_keys.private]
    return shamir.split(secrets, xs, threshold=state.setup.params.threshold)


def _masked_input(
    state: ClientState, message: MaskedInputRequest
) -> tuple[ClientState, MaskedInput]:
    t = state.setup.params.threshold
    survivors = message.survivors
    strangers = sorted(set(survivors) - set(state.peers))
    if strangers:
        raise state.refuse(f"server routed shares from clients it never sent keys of: {strangers}")
    if len(survivors) < t:
        raise state.refuse(f"only {len(survivors)} neighbours shared keys; threshold is {t}")
    bits = state.setup.params.ring_bits
    size = state.encoded.size
    masked = state.encoded + prg.expand(state.self_mask_seed, size, bits=bits)
    infos = [commitments.mask_info(state.setup.round, state.client_id, j) for j in survivors]
    publics = [state.peers[j].mask_public_key for j in survivors]
    seeds = _agree(state, state.mask_keys.private, publics, infos)
    for peer, seed in zip(survivors, seeds, strict=True):
        mask = prg.expand(seed, size, bits=bits)
        if state.client_id < peer:  # in place: `masked` is this call's own array
            masked += mask
        else:
            masked -= mask
    held = {share.dealer: share.ciphertext for share in message.shares}
    out = MaskedInput.of(round=state.setup.round, client_id=state.client_id, vector=masked)
    return replace(state, masked_with=survivors, held=held, stage=Stage.UNMASKING), out


def _unmask(state: ClientState, message: UnmaskRequest) -> tuple[ClientState, UnmaskResponse]:
    dropped, survived = set(message.dropped), set(message.survived)
    both = sorted(dropped & survived)
    if both:
        raise state.refuse(f"refusing to reveal both secrets of {both} (in D and in S)")
    if dropped | survived != set(state.masked_with):
        raise state.refuse("D and S do not partition the neighbours this client masked with")
    t = state.setup.params.threshold
    if len(survived) < t:
        raise state.refuse(f"only {len(survived)} neighbours sent inputs; threshold is {t}")
    self_mask_shares, mask_key_shares, unreadable = [], [], []
    for dealer in sorted(dropped | survived):
        plaintext = _open(state, dealer)
        if plaintext is None:  # that dealer's fault: skip it alone, and say so
            unreadable.append(dealer)
        elif dealer in survived:
            self_mask_shares.append(
                RevealedShare(dealer=dealer, share=plaintext[: shamir.SHARE_BYTES])
            )
        else:
            mask_key_shares.append(
                RevealedShare(dealer=dealer, share=plaintext[shamir.SHARE_BYTES :])
            )
    out = UnmaskResponse(
        round=state.setup.round,
        client_id=state.client_id,
        self_mask_shares=tuple(self_mask_shares),
        mask_key_shares=tuple(mask_key_shares),
        unreadable=tuple(unreadable),
    )
    return replace(state, held={}, channel_keys={}, stage=Stage.DONE), out


def _open(state: ClientState, dealer: str) -> bytes | None:
    """The pair of shares ``dealer`` sealed for this client; None if they do not open."""
    key = state.channel_keys[dealer]
    associated = commitments.share_associated_data(state.setup.round, dealer, state.client_id)
    try:
        plaintext = aead.decrypt(key, state.held[dealer], associated_data=associated)
    except SecAggError:
        return None
    return plaintext if len(plaintext) == 2 * shamir.SHARE_BYTES else None


def _agree(
    state: ClientState, private: bytes, publics: list[bytes], infos: list[bytes]
) -> list[bytes]:
    """Keys agreed with each neighbour's public key, or a refusal for an unusable one."""
    try:
        return keys.agree_all(private, publics, infos=infos)
    except ValueError:
        raise state.refuse("a neighbour's public key is not a usable X25519 key") from None
