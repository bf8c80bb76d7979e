"""FedBuff over gRPC: the asynchronous loop's runner, served to pulling clients.

Each submitted task is published as a cohort of its own, with the model it names
(signed, like a round's) and a deadline ``round_timeout`` from its submission; the
coordinator keeps the models of the tasks in flight only. A task ends when its client's
upload arrives, or at its deadline: it is then withdrawn (a late upload is told
``ROUND_CLOSED``) and ends as a ``transport:deadline`` failure (or as its last
refused upload's failure). A client holds
one task at a time, because the loop never gives a busy client another.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from fedhive.core.failures import Stage
from fedhive.core.messages import Failure, FitReply, FitTask
from fedhive.core.version import ModelVersion
from fedhive.transport.base import Finished
from fedhive.transport.grpc.coordinator import Withdrawn
from fedhive.transport.grpc.server import GrpcServerTransport, as_reply


@dataclass(frozen=True)
class _InFlight:
    task: FitTask
    cohort: int
    deadline: float  # unix time


class GrpcAsyncRunner:
    """Runs the asynchronous loop's fit tasks on real clients; an ``AsyncRunner``.

    The clock of a :class:`~fedhive.transport.base.Finished` is the wall-clock seconds
    since the runner was made. Only one thread (the loop's) may call it.
    """

    def __init__(self, transport: GrpcServerTransport) -> None:
        self._transport = transport
        self._coordinator = transport.coordinator
        self._started = time.monotonic()
        self._flight: dict[int, _InFlight] = {}  # by dispatch
        self._dispatch_of: dict[int, int] = {}  # by cohort

    def client_ids(self) -> Sequence[str]:
        """The clients heard from recently."""
        return self._transport.client_ids()

    def submit(self, dispatch: int, task: FitTask, model: ModelVersion) -> None:
        """Publish ``task`` for its client now, with ``model`` (the version it names)."""
        cohort, deadline = self._transport.publish([task], model.data, keep=True)
        self._flight[dispatch] = _InFlight(task, cohort, deadline)
        self._dispatch_of[cohort] = dispatch

    def next_finished(self) -> list[Finished]:
        """Wait for the next upload of a task in flight, or the earliest deadline: the
        task that ended, or every task past its deadline (withdrawn), in dispatch order;
        empty when none is in flight."""
        if not self._flight:
            return []
        deadline = min(flight.deadline for flight in self._flight.values())
        got = self._coordinator.next_outcome(self._dispatch_of.keys(), deadline)
        if got is not None:
            cohort, outcome = got
            dispatch = self._dispatch_of[cohort]
            self._end(dispatch)
            reply = as_reply(FitReply, outcome, stage=Stage.UPLOAD)
            return [Finished(dispatch, reply, self._clock())]
        now = time.time()
        expired = sorted(d for d, flight in self._flight.items() if flight.deadline <= now)
        clock = self._clock()
        return [Finished(d, self._expire(d), clock) for d in expired]

    def close(self) -> None:
        """Withdraw every task in flight; idempotent."""
        for dispatch in sorted(self._flight):
            self._end(dispatch)

    def _clock(self) -> float:
        return time.monotonic() - self._started

    def _end(self, dispatch: int) -> tuple[_InFlight, list[Withdrawn]]:
        """Forget a task: withdraw it if unanswered, unpublish its model if unused."""
        flight = self._flight.pop(dispatch)
        del self._dispatch_of[flight.cohort]
        withdrawn = self._coordinator.close_cohort(flight.cohort)
        self._coordinator.drop_model(flight.task.version)
        return flight, withdrawn

    def _expire(self, dispatch: int) -> Failure:
        """The failure of a task past its deadline (its last refused upload, if any)."""
        flight, withdrawn = self._end(dispatch)
        refused = withdrawn[0].refused if withdrawn else None
        return self._transport.unanswered(flight.task, refused)
