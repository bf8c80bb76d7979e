"""Simulated devices under secure aggregation: each keeps its update and runs SecAgg+.

:class:`SecAggDevices` wraps the in-process transport into a
:class:`~fedhive.transport.base.SecureTransport`. Its fit runs the cohort as usual, but
what the server receives is each device's first protocol message; the plaintext update
stays on the device side (in this wrapper, which plays the devices), masked by each
device's :class:`~fedhive.client.secure.SecAggSession`, the deployed client's own. Both
sides' code paths are the deployment's: the server (:mod:`fedhive.server.secure`) sees
bytes of protocol messages and, at the end, the sum.

``SimulatedDropout`` makes a seeded fraction of each round's devices vanish at one
stage, to exercise recovery (``[secagg] simulated_dropout = 0.3``,
``simulated_dropout_stage = "masked_input"``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence

from fedhive.client.secure import SecAggSession
from fedhive.config.secagg import SimulatedDropout
from fedhive.core import failures
from fedhive.core.messages import EvaluateTask, Failure, FitTask, SecAggTask
from fedhive.core.version import ModelVersion
from fedhive.errors import FedhiveError, SecAggError
from fedhive.secagg import MaskedInputRequest, NeighbourKeys, Stage, UnmaskRequest, decode_message
from fedhive.transport.base import (
    EvaluateOutcome,
    FitOutcome,
    Quorum,
    SecureOutcome,
    StageOutcome,
)
from fedhive.transport.inprocess import InProcessTransport

_ANSWERS = {  # the server message a device receives → the stage its answer belongs to
    NeighbourKeys: Stage.SHARE_KEYS,
    MaskedInputRequest: Stage.MASKED_INPUT,
    UnmaskRequest: Stage.UNMASKING,
}


class SecAggDevices:
    """The simulated devices' side of SecAgg+ around an in-process transport.

    Each device holds a :class:`~fedhive.client.secure.SecAggSession`, the deployed
    client's: it masks the update by the weighting its task names and answers each
    stage as a deployed client does.
    """

    def __init__(
        self, inner: InProcessTransport, *, seed: int, dropout: SimulatedDropout | None = None
    ) -> None:
        self._inner = inner
        self._seed = seed
        self._dropout = dropout or SimulatedDropout()
        self._sessions: dict[str, SecAggSession] = {}
        self._tasks: dict[str, FitTask] = {}
        self._gone: frozenset[str] = frozenset()

    def client_ids(self) -> Sequence[str]:
        """The simulated clients."""
        return self._inner.client_ids()

    def fit(
        self, tasks: Sequence[FitTask], model: ModelVersion, *, quorum: Quorum | None = None
    ) -> Iterator[FitOutcome]:
        """Plain fit (no secure aggregation), as the inner transport runs it."""
        return self._inner.fit(tasks, model, quorum=quorum)

    def evaluate(
        self, tasks: Sequence[EvaluateTask], model: ModelVersion
    ) -> Iterator[EvaluateOutcome]:
        """Evaluation needs no secure aggregation."""
        return self._inner.evaluate(tasks, model)

    def close(self) -> None:
        """Close the inner transport."""
        self._inner.close()

    def fit_secure(
        self, tasks: Sequence[FitTask], model: ModelVersion, *, setup: bytes
    ) -> Iterator[SecureOutcome]:
        """Train, then each device masks its update and advertises its keys."""
        self._tasks = {t.client_id: t for t in tasks}
        self._sessions = {}  # a device keeps no round open between rounds (memory)
        rnd = tasks[0].round if tasks else 0
        self._gone = self._dropout.dropped(self._seed, rnd, sorted(self._tasks))
        layout = model.weights.layout()
        for outcome in self._inner.fit(tasks, model):
            if isinstance(outcome, Failure):
                yield outcome
                continue
            cid = outcome.client_id
            if self._vanished(cid, Stage.ADVERTISE_KEYS):
                yield _dropped(cid, outcome.round, Stage.ADVERTISE_KEYS)
                continue
            self._sessions[cid] = SecAggSession()
            yield self._sessions[cid].start(self._tasks[cid], setup, outcome, layout)

    def exchange(self, round: int, messages: Mapping[str, bytes]) -> Iterator[StageOutcome]:
        """Each device answers its message of the next stage (or has vanished)."""
        for cid, data in sorted(messages.items()):
            session, fit = self._sessions.get(cid), self._tasks.get(cid)
            if session is None or fit is None:
                yield Failure.of(
                    cid, round, failures.Stage.SECAGG, SecAggError("no device of this round")
                )
                continue
            stage = _stage_of(data) if cid in self._gone else None
            if stage is not None and self._vanished(cid, stage):
                yield _dropped(cid, round, stage)
                continue
            task = SecAggTask(
                round=round,
                client_id=cid,
                version=hashlib.sha256(data).hexdigest(),
                seed=fit.seed,
                config=fit.config,
            )
            answer = session.answer(task, data)
            yield answer if isinstance(answer, Failure) else (cid, answer.message)

    def _vanished(self, client_id: str, stage: Stage) -> bool:
        order = list(_STAGES)
        return client_id in self._gone and order.index(stage) >= order.index(self._dropout.stage)


def _stage_of(data: bytes) -> Stage | None:
    """The stage a device's answer to the server message ``data`` belongs to."""
    try:
        return _ANSWERS.get(type(decode_message(data)))
    except FedhiveError:
        return None


_STAGES = (Stage.ADVERTISE_KEYS, Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.UNMASKING)


def _dropped(client_id: str, round: int, stage: Stage) -> Failure:
    return Failure(
        client_id=client_id,
        round=round,
        stage=failures.Stage.SECAGG,
        kind=failures.FailureKind.DROPOUT,
        message=f"the simulated device vanished at {stage}",
    )
