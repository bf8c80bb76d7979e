"""The SecAgg+ server's round state as one frozen value, and how a round aborts.

Kept apart from the stage logic (:mod:`fedhive.secagg.server`, :mod:`~.unmasking`) so both
halves share it. Every transition returns a new :class:`ServerState`; nothing is mutated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from fedhive.errors import SecAggError
from fedhive.secagg.graph import NeighbourGraph
from fedhive.secagg.messages import (
    AdvertiseKeys,
    MaskedInputRequest,
    NeighbourKeys,
    RoundSetup,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
)
from fedhive.secagg.params import SecAggParams
from fedhive.secagg.report import DROPPED_AT, Abort, ClientStatus, SecAggResult, Stage

ServerMessage = NeighbourKeys | MaskedInputRequest | UnmaskRequest
Outgoing = Mapping[str, ServerMessage]


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class ServerState:
    """The server's round state; every field is a value, replaced (never mutated) per step.

    ``expected`` holds who may send in the open stage and ``received`` who already did.
    ``neighbours`` maps each remaining client to its active neighbourhood: after
    AdvertiseKeys closes, the neighbours that advertised (its share recipients); after
    ShareKeys closes, those that also shared (the neighbours it masks with, whose shares
    of its secrets the server can ask for).
    """

    setup: RoundSetup
    graph: NeighbourGraph
    stage: Stage
    expected: frozenset[str]
    received: frozenset[str] = frozenset()
    neighbours: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    adverts: Mapping[str, AdvertiseKeys] = field(default_factory=dict)
    share_keys: Mapping[str, ShareKeys] = field(default_factory=dict)
    masked_sum: npt.NDArray[np.unsignedinteger] | None = None
    masked_from: frozenset[str] = frozenset()
    unmask_requests: Mapping[str, UnmaskRequest] = field(default_factory=dict)
    responses: Mapping[str, UnmaskResponse] = field(default_factory=dict)
    statuses: Mapping[str, ClientStatus] = field(default_factory=dict)
    reasons: Mapping[str, str] = field(default_factory=dict)
    result: SecAggResult | None = None

    def __repr__(self) -> str:
        return f"ServerState(round={self.round}, stage={self.stage!s})"

    @property
    def params(self) -> SecAggParams:
        """The round's parameters."""
        return self.setup.params

    @property
    def round(self) -> int:
        """The round number."""
        return self.setup.round

    def refusal(self, text: str, *, client_id: str | None, stage: Stage) -> SecAggError:
        """The error refusing a message of ``client_id`` for ``stage``."""
        return SecAggError(text, client_id=client_id, round=self.round, stage=str(stage))


def abort(
    state: ServerState,
    message: str,
    *,
    client_id: str | None = None,
    statuses: Mapping[str, ClientStatus] | None = None,
    reasons: Mapping[str, str] | None = None,
) -> tuple[ServerState, Outgoing]:
    """End the round at the open stage without unmasking anything."""
    statuses = dict(statuses if statuses is not None else state.statuses)
    reasons = dict(reasons if reasons is not None else state.reasons)
    result = SecAggResult(
        round=state.round,
        weighted_sum=None,
        total_weight=None,
        included=(),
        statuses=statuses,
        reasons=reasons,
        abort=Abort(message=message, stage=state.stage, client_id=client_id),
    )
    done = replace(
        state,
        stage=Stage.ABORTED,
        expected=frozenset(),
        received=frozenset(),
        masked_sum=None,
        statuses=statuses,
        reasons=reasons,
        result=result,
    )
    return done, {}


def mark_dropped(state: ServerState) -> tuple[dict[str, ClientStatus], dict[str, str]]:
    """Statuses and reasons with the clients that did not answer the open stage dropped."""
    statuses = dict(state.statuses)
    for client in state.expected - state.received:
        statuses[client] = DROPPED_AT[state.stage]
    return statuses, dict(state.reasons)
