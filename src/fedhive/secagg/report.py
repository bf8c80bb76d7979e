"""What a SecAgg round reports: the stages, each client's status and the round's result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fedhive.core._compat import StrEnum
from fedhive.errors import SecAggError


class Stage(StrEnum):
    """The protocol stages (Bonawitz et al., CCS 2017, Fig. 4), then the two end states."""

    ADVERTISE_KEYS = "advertise_keys"
    SHARE_KEYS = "share_keys"
    MASKED_INPUT = "masked_input"
    UNMASKING = "unmasking"
    DONE = "done"
    ABORTED = "aborted"


PROTOCOL_STAGES = (Stage.ADVERTISE_KEYS, Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.UNMASKING)


class ClientStatus(StrEnum):
    """How one selected client ended the round, for the round report."""

    PENDING = "pending"  # the round is still running
    OK = "ok"  # input in the sum, revealed its shares
    DROPPED_AT_ADVERTISE_KEYS = "dropped_at_advertise_keys"
    DROPPED_AT_SHARE_KEYS = "dropped_at_share_keys"
    DROPPED_AT_MASKED_INPUT = "dropped_at_masked_input"  # input not in the sum
    DROPPED_AT_UNMASKING = "dropped_at_unmasking"  # input in the sum (its mask was removed)
    EXCLUDED_TOO_FEW_NEIGHBOURS = "excluded_too_few_neighbours"  # < t neighbours stayed
    EXCLUDED_BAD_SHARE = "excluded_bad_share"  # revealed a share its dealer did not commit
    INCONSISTENT_DEALER = "inconsistent_dealer"  # dealt bad shares; recovered from others
    UNREADABLE_SHARES = "unreadable_shares"  # neighbours report its shares do not decrypt


DROPPED_AT = {
    Stage.ADVERTISE_KEYS: ClientStatus.DROPPED_AT_ADVERTISE_KEYS,
    Stage.SHARE_KEYS: ClientStatus.DROPPED_AT_SHARE_KEYS,
    Stage.MASKED_INPUT: ClientStatus.DROPPED_AT_MASKED_INPUT,
    Stage.UNMASKING: ClientStatus.DROPPED_AT_UNMASKING,
}


@dataclass(frozen=True, kw_only=True)
class Abort:
    """Why a round aborted; nothing was unmasked."""

    message: str
    stage: Stage
    client_id: str | None = None


@dataclass(frozen=True, kw_only=True, eq=False)
class SecAggResult:
    """The outcome of one round: the unmasked sum over ``included``, or an abort.

    Attributes:
        round: the round number.
        weighted_sum: Σ w_i clip(x_i) over the included clients (None after an abort).
        total_weight: Σ w_i over the included clients (None after an abort).
        included: the clients whose inputs the sum holds (empty after an abort).
        statuses: every selected client's :class:`ClientStatus`.
        reasons: a sentence for each excluded client or inconsistent dealer.
        abort: why the round aborted, or None when it completed.
    """

    round: int
    weighted_sum: npt.NDArray[np.float64] | None
    total_weight: int | None
    included: tuple[str, ...]
    statuses: Mapping[str, ClientStatus]
    reasons: Mapping[str, str] = field(default_factory=dict)
    abort: Abort | None = None

    @property
    def aborted(self) -> bool:
        """Whether the round aborted (then nothing was unmasked)."""
        return self.abort is not None

    def mean(self) -> npt.NDArray[np.float64]:
        """The weighted mean Σ w_i clip(x_i) / Σ w_i (raises SecAggError after an abort)."""
        self.raise_if_aborted()
        if self.weighted_sum is None or not self.total_weight:
            raise SecAggError("the round holds no weighted sum", round=self.round)
        return self.weighted_sum / self.total_weight

    def raise_if_aborted(self) -> None:
        """Raise the round's abort as :class:`SecAggError`; do nothing if it completed."""
        if self.abort is not None:
            raise SecAggError(
                self.abort.message,
                client_id=self.abort.client_id,
                round=self.round,
                stage=str(self.abort.stage),
            )
