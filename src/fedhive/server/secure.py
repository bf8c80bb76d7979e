"""Secure aggregation in the round: the server drives SecAgg+ and sees only the sum.

With ``[secagg]`` on, a round's fit tasks are answered by each client's first protocol
message instead of its update (:class:`~fedhive.core.messages.SecAggReply`); the server
runs the SecAgg+ state machine (:mod:`fedhive.secagg`) stage by stage over the
transport's ``exchange`` and, if the round completes, hands the strategy ONE reply: the
unmasked weighted mean of the survivors' updates, with ``contributors`` naming them. An
aborted protocol (fewer survivors than the threshold, an inconsistent dealer) unmasks
nothing: the round is not committed and the next one starts normally. Either way, a
client the protocol blames (a dealer whose shares do not decrypt or do not match its
commitments, a revealer of a bad share) is a failure of the round, counted as
``secagg:<Status>`` (e.g. ``secagg:UnreadableShares``); each client fails at most once.

Updates are clipped per coordinate to ``[-clip_range, clip_range]`` and quantized to
the ring on the client (unbiased stochastic rounding), so the mean is exact within the
quantization step. Client-side stages run in order: clip → DP noise → mask (SecAgg last).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import NoReturn

import numpy as np

from fedhive.core._compat import StrEnum
from fedhive.core.config import check_int, check_real
from fedhive.core.extensions import SecAggWeighting, Weighting
from fedhive.core.failures import FailureKind, Stage
from fedhive.core.messages import Failure, FitReply, FitTask, SecAggReply
from fedhive.core.version import ModelVersion
from fedhive.errors import (
    AggregateCheckError,
    AggregationError,
    FedhiveError,
    NotEnoughClientsError,
    SecAggError,
)
from fedhive.secagg import (
    SecAggParams,
    ServerState,
    decode_message,
    server_close_stage,
    server_receive,
    server_start,
)
from fedhive.secagg.report import ClientStatus, SecAggResult
from fedhive.server.history import CohortStats
from fedhive.server.tasks import rejected
from fedhive.server.verify import DEFAULT_POLICY, ReplyPolicy, verify_secagg_reply
from fedhive.strategy.aggregate import WeightedMetrics
from fedhive.transport.base import SecureTransport

AGGREGATE_ID = "secagg"
"""The ``client_id`` of the aggregate reply the strategy receives."""
_ROUNDING = 1 + 2.0**-50
"""float64 rounding of an honest mean's |value| <= clip_range (three roundings, < 2^-51)."""


class AggregateCheck(StrEnum):
    """The checks an unmasked sum must pass (a client can add any vector to its input)."""

    MEAN_RANGE = "mean_range"  # |mean| <= clip_range: a mean of clipped values
    TOTAL_WEIGHT = "total_weight"  # |included| <= total weight <= |included| * max_weight
    UNIFORM_WEIGHT = "uniform_weight"  # uniform weighting: total weight == |included|


@dataclass(frozen=True, kw_only=True)
class SecureAggregation:
    """The ``[secagg]`` config section: SecAgg+ parameters for every round.

    ```toml
    [secagg]
    dropout_fraction = 0.1     # clients that may vanish per round (delta)
    corruption_fraction = 0.1  # clients that may collude with the server's view (gamma)
    security_bits = 40         # privacy fails with probability <= 2^-40
    correctness_bits = 20      # a round fails for lack of shares with prob. <= 2^-20
    ring_bits = 64             # masks live in Z_2^64 (or 32)
    clip_range = 1.0           # each update coordinate is clipped to [-1, 1]
    max_weight = 65536         # the largest example count a client may weigh with
    weighting = "examples"     # or "uniform" (set for DP's distributed mode)
    ```
    """

    dropout_fraction: float = 0.1
    corruption_fraction: float = 0.1
    security_bits: int = 40
    correctness_bits: int = 20
    ring_bits: int = 64
    clip_range: float = 1.0
    max_weight: int = 1 << 16
    weighting: Weighting = Weighting.EXAMPLES

    def __post_init__(self) -> None:
        check_real("dropout_fraction", self.dropout_fraction, low=0, high=1, high_open=True)
        check_real("corruption_fraction", self.corruption_fraction, low=0, high=1, high_open=True)
        check_int("security_bits", self.security_bits, minimum=1)
        check_int("correctness_bits", self.correctness_bits, minimum=1)
        check_real("clip_range", self.clip_range, low=0, low_open=True)
        check_int("max_weight", self.max_weight, minimum=1)
        self.params(1000)  # refuse settings no cohort size could meet, up front

    def params(self, num_clients: int) -> SecAggParams:
        """The protocol parameters for a cohort of ``num_clients``.

        Raises:
            ConfigError: no neighbour degree meets the dropout, collusion and security
                targets for that cohort size (the message says which).
        """
        return SecAggParams(
            num_clients=num_clients,
            dropout_fraction=self.dropout_fraction,
            corruption_fraction=self.corruption_fraction,
            security_bits=self.security_bits,
            correctness_bits=self.correctness_bits,
            ring_bits=self.ring_bits,
            clip_range=self.clip_range,
            max_weight=self.max_weight,
        )


def secure_fit(
    secure: SecureAggregation,
    transport: SecureTransport,
    tasks: Mapping[str, FitTask],
    published: ModelVersion,
    *,
    graph_seed: int,
    stats: CohortStats,
    policy: ReplyPolicy = DEFAULT_POLICY,
) -> FitReply:
    """Run the round's fit tasks under SecAgg+; return the aggregate reply.

    Each client's answer is verified like a plaintext reply (task, version, example
    count under ``policy``, metrics) before it joins the protocol; a refused one is that
    client's failure. The unmasked sum must pass every :class:`AggregateCheck`.

    Raises:
        NotEnoughClientsError: fewer than 3 clients were selected.
        AggregationError: the protocol aborted (nothing was unmasked).
        AggregateCheckError: the unmasked sum fails a check (the error names it).
    """
    first = next(iter(tasks.values()), None)
    if first is None or len(tasks) < 3:
        raise NotEnoughClientsError("secure aggregation needs at least 3 clients")
    layout = published.weights.layout()
    tasks = {cid: _told(task, secure.weighting) for cid, task in tasks.items()}
    state, setup = server_start(
        round=first.round,
        client_ids=sorted(tasks),
        params=secure.params(len(tasks)),
        graph_seed=graph_seed,
        vector_size=layout.total_size,
    )
    metrics = WeightedMetrics()
    examples: dict[str, int] = {}
    failures = _Failures(stats)
    for outcome in transport.fit_secure(list(tasks.values()), published, setup=setup.to_bytes()):
        if not isinstance(outcome, SecAggReply):
            failures.record(outcome)
            continue
        try:
            verify_secagg_reply(outcome, tasks[outcome.client_id], policy)
        except (FedhiveError, KeyError) as exc:
            failures.record(rejected(outcome.client_id, first.round, exc))
            continue
        state = _take(state, outcome.client_id, outcome.message, failures, first)
        examples[outcome.client_id] = outcome.num_examples
        metrics.add(outcome.metrics, outcome.num_examples)
    state, requests = server_close_stage(state)
    while state.result is None:
        outgoing = {cid: message.to_bytes() for cid, message in requests.items()}
        for item in transport.exchange(first.round, outgoing):
            if isinstance(item, tuple):
                state = _take(state, item[0], item[1], failures, first)
            else:
                failures.record(item)
        state, requests = server_close_stage(state)
    result = state.result
    failures.blame(result)
    try:
        result.raise_if_aborted()
    except SecAggError as exc:
        raise AggregationError(f"secure aggregation aborted: {exc}") from None
    mean = checked_mean(result, secure)
    included = result.included
    stats.succeeded = len(included)
    stats.contributors.extend(included)
    weight = sum(examples[c] for c in included)
    if secure.weighting == Weighting.UNIFORM:
        weight = len(included)
    return FitReply(
        client_id=AGGREGATE_ID,
        round=first.round,
        version=first.version,
        update=layout.unflatten(mean),
        num_examples=weight,
        metrics=metrics.means(),
        contributors=included,
    )


def checked_mean(result: SecAggResult, secure: SecureAggregation) -> np.ndarray:
    """The mean of a completed round's unmasked sum, after every :class:`AggregateCheck`.

    Raises:
        AggregateCheckError: the sum fails a check; ``check`` names it.
    """
    count, weight = len(result.included), result.total_weight
    if weight is None or result.weighted_sum is None or not count:
        _fail(AggregateCheck.TOTAL_WEIGHT, "the round holds no weighted sum", result)
    if not count <= weight <= count * secure.max_weight:
        _fail(
            AggregateCheck.TOTAL_WEIGHT,
            f"total weight {weight} is outside [{count}, {count} * {secure.max_weight}] "
            f"for {count} included clients",
            result,
        )
    if secure.weighting == Weighting.UNIFORM and weight != count:
        _fail(
            AggregateCheck.UNIFORM_WEIGHT,
            f"total weight {weight} under uniform weighting, {count} clients are included",
            result,
        )
    mean = result.weighted_sum / weight
    peak = float(np.max(np.abs(mean))) if mean.size else 0.0
    if not peak <= secure.clip_range * _ROUNDING:
        _fail(
            AggregateCheck.MEAN_RANGE,
            f"|mean| reaches {peak:g}, beyond clip_range {secure.clip_range:g}",
            result,
        )
    return mean


def _fail(check: AggregateCheck, message: str, result: SecAggResult) -> NoReturn:
    raise AggregateCheckError(
        f"unmasked aggregate fails {check}: {message}", check=str(check), round=result.round
    )


def _told(task: FitTask, weighting: Weighting) -> FitTask:
    """``task`` with the round's weighting in its config (the device masks accordingly)."""
    return replace(task, config=task.config.with_extensions(SecAggWeighting(weighting=weighting)))


class _Failures:
    """The round's failures, at most one per client, counted in its :class:`CohortStats`."""

    def __init__(self, stats: CohortStats) -> None:
        self._stats = stats
        self._failed: set[str] = set()

    def record(self, failure: Failure) -> None:
        """Count ``failure`` (a client already counted is not counted again)."""
        if failure.client_id not in self._failed:
            self._failed.add(failure.client_id)
            self._stats.record_failure(failure)

    def blame(self, result: SecAggResult) -> None:
        """Count each client the protocol ended in a non-OK status and that did not fail
        otherwise (a blamed dealer, a lying revealer) as ``secagg:<kind>``, e.g.
        ``secagg:unreadable_shares`` (``detail``: the status); a client that dropped out
        failed already."""
        for client_id, status in sorted(result.statuses.items()):
            if status in (ClientStatus.OK, ClientStatus.PENDING):
                continue
            self.record(
                Failure(
                    client_id=client_id,
                    round=result.round,
                    stage=Stage.SECAGG,
                    kind=blamed_kind(status),
                    message=result.reasons.get(client_id, str(status)),
                    detail=str(status),
                )
            )


_BLAMED = {
    ClientStatus.EXCLUDED_TOO_FEW_NEIGHBOURS: FailureKind.EXCLUDED,
    ClientStatus.EXCLUDED_BAD_SHARE: FailureKind.EXCLUDED,
    ClientStatus.INCONSISTENT_DEALER: FailureKind.INCONSISTENT_DEALER,
    ClientStatus.UNREADABLE_SHARES: FailureKind.UNREADABLE_SHARES,
}


def blamed_kind(status: ClientStatus) -> FailureKind:
    """The failure kind of a client the protocol ended in the non-OK ``status`` (one of
    the ``dropped_at_*``: a dropout)."""
    return _BLAMED.get(status, FailureKind.DROPOUT)


def _take(
    state: ServerState, client_id: str, data: bytes, failures: _Failures, task: FitTask
) -> ServerState:
    """The server state after ``client_id``'s message; a refused one is a failure."""
    try:
        message = decode_message(data)
        sender = getattr(message, "client_id", None)
        if sender != client_id:
            raise SecAggError(
                f"message claims to be from {sender!r}", client_id=client_id, round=task.round
            )
        return server_receive(state, message)  # type: ignore[arg-type]
    except FedhiveError as exc:
        failures.record(Failure.of(client_id, task.round, Stage.SECAGG, exc))
        return state
