"""The narrow interface between the server and wherever clients run.

The server hands a transport a cohort of tasks and the model version they name (a
:class:`~fedhive.core.version.ModelVersion`: its bytes and digest made once, by the
round loop), and reads back one reply per task, in whatever order they complete. The
in-process transport runs them on this machine (simulation); the gRPC transport sends
them to real clients. The
asynchronous loop instead submits tasks one at a time to an :class:`AsyncRunner`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, Union, runtime_checkable

from fedhive.core.failures import FailureKind, Stage
from fedhive.core.messages import (
    EvaluateReply,
    EvaluateTask,
    Failure,
    FitReply,
    FitTask,
    SecAggAnswer,
    SecAggReply,
)
from fedhive.core.version import ModelVersion
from fedhive.transport.codec import TaskEnvelope, UploadStatus

FitOutcome = Union[FitReply, Failure]  # noqa: UP007 - runtime alias, 3.10-safe
EvaluateOutcome = Union[EvaluateReply, Failure]  # noqa: UP007


class CohortRunner(Protocol):
    """Runs a cohort of client tasks and yields one outcome per task as each completes."""

    def fit(self, tasks: Sequence[FitTask], model: ModelVersion) -> Iterator[FitOutcome]:
        """Run fit tasks against ``model`` (the version the tasks name): its weights in
        this process, its bytes (made once by the round loop) for another."""
        ...

    def evaluate(
        self, tasks: Sequence[EvaluateTask], model: ModelVersion
    ) -> Iterator[EvaluateOutcome]:
        """Run evaluate tasks against ``model``."""
        ...

    def close(self) -> None:
        """Release workers, connections and files; idempotent."""
        ...


@dataclass
class Quorum:
    """How many verified results close a fit cohort, and how many the round loop counted.

    The round loop verifies each outcome a transport yields and counts it here before it
    asks for the next one; a transport that closes a cohort early reads :attr:`met`
    before it yields another outcome. So only results that passed verification count
    toward the quorum: an upload that verification rejects never closes a round.
    """

    needed: int
    verified: int = 0

    def count(self) -> None:
        """One more outcome passed verification."""
        self.verified += 1

    @property
    def met(self) -> bool:
        """Whether ``needed`` verified results have been counted."""
        return self.verified >= self.needed

    @property
    def missing(self) -> int:
        """How many more verified results the quorum needs (0 once it is met)."""
        return max(0, self.needed - self.verified)


def round_closed(client_id: str, round: int) -> Failure:
    """The failure of a task its cohort no longer waits for (its quorum was met)."""
    return Failure(
        client_id=client_id,
        round=round,
        stage=Stage.TRANSPORT,
        kind=FailureKind.ROUND_CLOSED,
        message="the round closed when its quorum was reached",
    )


class Transport(Protocol):
    """Runs cohorts of tasks on a model version, and knows which clients are available
    right now."""

    def fit(
        self, tasks: Sequence[FitTask], model: ModelVersion, *, quorum: Quorum | None = None
    ) -> Iterator[FitOutcome]:
        """Run fit tasks on ``model`` (the version they name); a transport may close the
        cohort once ``quorum`` is met (the rest then fail as ``transport:RoundClosed``,
        see :func:`round_closed`)."""
        ...

    def evaluate(
        self, tasks: Sequence[EvaluateTask], model: ModelVersion
    ) -> Iterator[EvaluateOutcome]:
        """Run evaluate tasks on ``model``."""
        ...

    def close(self) -> None:
        """Release workers, connections and files; idempotent."""
        ...

    def client_ids(self) -> Sequence[str]:
        """Ids of the clients that can be given a task now."""
        ...


@runtime_checkable
class MeasuresDownlink(Protocol):
    """A transport that counts the model bytes it actually sent each client (gRPC: the
    data of the download streams it served). The round loop asks it once a cohort has
    ended; a transport without it sent each task the published model, whole."""

    def downloaded(self, client_id: str, version: str) -> int | None:
        """Model bytes of ``version`` sent to ``client_id`` since that version was
        published for the client's current cohort (0: it downloaded nothing; None: not
        measured, e.g. an insecure server cannot tell who downloads)."""
        ...


SecureOutcome = Union[SecAggReply, Failure]  # noqa: UP007
StageOutcome = Union[tuple[str, bytes], Failure]  # noqa: UP007


@runtime_checkable
class SecureTransport(Transport, Protocol):
    """A transport that can run secure aggregation: the server sees protocol messages
    (bytes of :mod:`fedhive.secagg` messages), never a client's update."""

    def fit_secure(
        self, tasks: Sequence[FitTask], model: ModelVersion, *, setup: bytes
    ) -> Iterator[SecureOutcome]:
        """Run fit tasks whose clients then join the SecAgg round ``setup``; each answers
        with its first protocol message."""
        ...

    def exchange(self, round: int, messages: Mapping[str, bytes]) -> Iterator[StageOutcome]:
        """Send each client its message of the next stage; yield ``(client_id, answer)``
        (or a Failure: the client dropped out) as they come."""
        ...


@dataclass(frozen=True)
class Finished:
    """A task that ended: its dispatch index, its outcome, the clock when it ended."""

    dispatch: int
    outcome: FitOutcome
    clock: float


class AsyncRunner(Protocol):
    """Runs fit tasks concurrently: submit one at a time, read back as they finish.

    The asynchronous (FedBuff) loop's view of wherever clients run: a virtual clock of
    simulated devices, or real clients over gRPC.
    """

    def client_ids(self) -> Sequence[str]:
        """Ids of the clients that can be given a task."""
        ...

    def submit(self, dispatch: int, task: FitTask, model: ModelVersion) -> None:
        """Start ``task`` (the run's ``dispatch``-th) on ``model`` (the version it
        names) now."""
        ...

    def next_finished(self) -> Sequence[Finished]:
        """Wait for the next task(s) to end: every task that ends at that moment, in
        dispatch order (one, unless several end together); empty when none is running."""
        ...

    def close(self) -> None:
        """Release the clients' workers; idempotent."""
        ...


@dataclass(frozen=True)
class Wait:
    """No task now: ask again after ``seconds`` (or stop, when the run has finished)."""

    seconds: float
    finished: bool = False


class ClientLink(Protocol):
    """A client's connection to its server: it pulls, the server never calls it."""

    def register(self) -> str:
        """Join the federation; returns the server's run id."""
        ...

    def pull(self) -> TaskEnvelope | Wait:
        """The next task, or how long to wait before asking again."""
        ...

    def download(self, envelope: TaskEnvelope) -> bytes:
        """The model the task names, its SHA-256 checked against the version."""
        ...

    def upload(
        self,
        envelope: TaskEnvelope,
        outcome: FitReply | EvaluateReply | SecAggReply | SecAggAnswer | Failure,
    ) -> UploadStatus:
        """Send the task's outcome; returns the server's verdict."""
        ...

    def close(self) -> None:
        """Close the connection."""
        ...
