"""Server-side recovery: verify revealed shares, rebuild secrets in one batch, remove masks.

Bonawitz et al. (CCS 2017, Fig. 4, Unmasking) and Bell et al. (CCS 2020, Alg. 2): the
server rebuilds the self-mask seed b_u of every client that sent an input and the mask key
s_u^SK of every client that dropped after sharing, then removes those masks from the sum.

Each revealed share is checked against the dealer's per-share commitment; a share that does
not match is set aside (its revealer is blamed if the dealer's secret verifies anyway). All
needed secrets are interpolated in ONE vectorised Shamir call; each result is verified (b_u
against its commitment, s_u^SK by re-deriving the advertised public key). A secret that
fails is retried with other t-subsets of its verified shares (the cyclic windows, so any
single bad share is skipped when more than t shares exist), again batched. A secret that
still fails aborts the round naming its dealer. A request for both secrets of one client is
refused before anything is interpolated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fedhive.errors import SecAggError
from fedhive.secagg import commitments
from fedhive.secagg.commitments import SecretKind
from fedhive.secagg.hazmat import keys, prg, shamir
from fedhive.secagg.params import SecAggParams

Verifier = Callable[[str, SecretKind, bytes], bool]
_STAGE = "unmasking"


@dataclass(frozen=True, kw_only=True, eq=False)
class ShareRequest:
    """The verified shares of one dealer's secret of one kind.

    Attributes:
        dealer: whose secret.
        kind: which of its two secrets.
        holders: the revealers whose shares matched the dealer's commitments, in order.
        xs: their x-coordinates (m,), int64.
        shares: their shares (m, 9), int64 field elements.
        rejected: revealers whose shares did not match the dealer's commitments.
    """

    dealer: str
    kind: SecretKind
    holders: tuple[str, ...]
    xs: npt.NDArray[np.int64]
    shares: npt.NDArray[np.int64]
    rejected: tuple[str, ...] = ()


def verified_request(
    *,
    round: int,
    dealer: str,
    kind: SecretKind,
    revealed: Mapping[str, bytes],
    committed: Mapping[str, bytes],
    positions: Mapping[str, int],
) -> ShareRequest:
    """Check each revealer's share against the dealer's commitment for that revealer."""
    matched: list[tuple[str, bytes]] = []
    rejected = []
    for holder in sorted(revealed):
        share = revealed[holder]
        digest = commitments.share_commitment(kind, round, dealer, holder, share)
        if committed.get(holder) != digest:
            rejected.append(holder)
        else:
            matched.append((holder, share))
    # Committed, but not field elements (the dealer's fault): left out, like a refusal.
    rows, valid = shamir.shares_from_bytes([share for _, share in matched])
    holders = tuple(holder for (holder, _), ok in zip(matched, valid, strict=True) if ok)
    return ShareRequest(
        dealer=dealer,
        kind=kind,
        holders=holders,
        xs=np.asarray([positions[holder] for holder in holders], dtype=np.int64),
        shares=np.ascontiguousarray(rows[valid]),
        rejected=tuple(rejected),
    )


def reconstruct_secrets(
    requests: Sequence[ShareRequest], *, threshold: int, verify: Verifier, round: int
) -> tuple[dict[tuple[str, SecretKind], bytes], frozenset[str]]:
    """Rebuild and verify every requested secret, batched.

    Returns:
        ({(dealer, kind): secret}, dealers whose first t shares were inconsistent but
        another t-subset verified).

    Raises:
        SecAggError: a dealer is requested for both kinds (client_id names it), has
            fewer than ``threshold`` verified shares, or no tried t-subset verifies.
    """
    _check_requests(requests, threshold=threshold, round=round)
    found: dict[tuple[str, SecretKind], bytes] = {}
    inconsistent: set[str] = set()
    pending = list(requests)
    attempt = 0
    while batch := [r for r in pending if _tries(r, attempt, threshold)]:
        for request, secret in zip(batch, _interpolate(batch, attempt, threshold), strict=True):
            if secret is not None and verify(request.dealer, request.kind, secret):
                found[(request.dealer, request.kind)] = secret
                if attempt:
                    inconsistent.add(request.dealer)
        pending = [r for r in pending if (r.dealer, r.kind) not in found]
        attempt += 1
    if pending:
        first = pending[0]
        raise SecAggError(
            f"dealer dealt inconsistent shares: no t = {threshold} of the "
            f"{len(first.holders)} verified {first.kind} shares rebuild its committed secret"
            + (f" ({len(pending)} dealers failed)" if len(pending) > 1 else ""),
            client_id=first.dealer,
            round=round,
            stage=_STAGE,
        )
    return found, frozenset(inconsistent)


def _check_requests(requests: Sequence[ShareRequest], *, threshold: int, round: int) -> None:
    """Refuse both secrets of one client, and secrets with fewer than t verified shares."""
    kinds: dict[str, SecretKind] = {}
    for request in requests:
        if kinds.setdefault(request.dealer, request.kind) != request.kind:
            raise SecAggError(
                "refusing to reconstruct both the self-mask and the mask key of one client",
                client_id=request.dealer,
                round=round,
                stage=_STAGE,
            )
    for request in requests:
        if len(request.holders) < threshold:
            raise SecAggError(
                _shortage(request, threshold), client_id=request.dealer, round=round, stage=_STAGE
            )


def _tries(request: ShareRequest, attempt: int, threshold: int) -> bool:
    """Whether cyclic window ``attempt`` is a new t-subset of the request's shares."""
    return attempt == 0 or (len(request.holders) > threshold and attempt < len(request.holders))


def _shortage(request: ShareRequest, threshold: int) -> str:
    text = (
        f"only {len(request.holders)} of the t = {threshold} shares needed to rebuild the "
        f"{request.kind} of this client are available and match its commitments"
    )
    if request.rejected:
        text += (
            f"; {len(request.rejected)} revealed shares disagree with them, so this dealer "
            "dealt inconsistent shares or commitments"
        )
    return text


def _interpolate(batch: Sequence[ShareRequest], attempt: int, threshold: int) -> list[bytes | None]:
    """One vectorised interpolation of every request, using cyclic window ``attempt``."""
    xs = np.empty((len(batch), threshold), dtype=np.int64)
    ys = np.empty((len(batch), threshold, shamir.CHUNKS), dtype=np.int64)
    for row, request in enumerate(batch):
        pick = (attempt + np.arange(threshold)) % len(request.holders)
        xs[row] = request.xs[pick]
        ys[row] = request.shares[pick]
    chunks = shamir.reconstruct(xs, ys, threshold=threshold)
    return [shamir.chunks_to_secret(row) for row in chunks]


def make_verifier(
    *, round: int, self_mask_commitments: Mapping[str, bytes], mask_public_keys: Mapping[str, bytes]
) -> Verifier:
    """A check of rebuilt secrets: b_u against its commitment, s_u^SK against s_u^PK."""

    def verify(dealer: str, kind: SecretKind, secret: bytes) -> bool:
        if kind is SecretKind.SELF_MASK:
            digest = commitments.self_mask_commitment(round, dealer, secret)
            return digest == self_mask_commitments[dealer]
        return keys.public_of(secret) == mask_public_keys[dealer]

    return verify


def remove_masks(
    masked_sum: npt.NDArray[np.unsignedinteger],
    *,
    params: SecAggParams,
    round: int,
    self_mask_seeds: Mapping[str, bytes],
    dropped_mask_keys: Mapping[str, bytes],
    survivors_of: Mapping[str, Sequence[str]],
    mask_public_keys: Mapping[str, bytes],
) -> npt.NDArray[np.unsignedinteger]:
    """The sum of the survivors' encoded inputs: masked sum minus their self-masks, minus
    the pairwise masks they shared with clients that dropped after ShareKeys.

    Survivor j added ``+PRG(s_jd)`` for a dropped neighbour d when j < d and ``-PRG(s_jd)``
    otherwise; the server rebuilds s_jd = agree(s_d^SK, s_j^PK) and takes it back out.
    """
    bits, size = params.ring_bits, masked_sum.size
    total = masked_sum.copy()
    for seed in self_mask_seeds.values():
        total -= prg.expand(seed, size, bits=bits)
    for dropped, private in dropped_mask_keys.items():
        survivors = survivors_of[dropped]
        seeds = keys.agree_all(
            private,
            [mask_public_keys[j] for j in survivors],
            infos=[commitments.mask_info(round, dropped, j) for j in survivors],
        )
        for survivor, seed in zip(survivors, seeds, strict=True):
            mask = prg.expand(seed, size, bits=bits)
            if survivor < dropped:
                total -= mask
            else:
                total += mask
    return total
