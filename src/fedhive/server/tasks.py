"""A round's tasks and their outcomes: one task per instruction, refusals for a privacy
budget marked as they come, verified replies counted toward the quorum."""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator, Sequence
from typing import TypeVar

from fedhive.core.failures import FailureKind, Stage
from fedhive.core.messages import EvaluateTask, Failure, FitReply, FitTask
from fedhive.core.rng import SeedStream
from fedhive.strategy.base import Instruction
from fedhive.transport.base import Quorum

_Task = TypeVar("_Task", FitTask, EvaluateTask)


def make_tasks(
    kind: type[_Task],
    instructions: Sequence[Instruction],
    rnd: int,
    version: str,
    stream: SeedStream,
) -> dict[str, _Task]:
    """One task per instruction, each with its client's own seed for this round."""
    stage = Stage.FIT if kind is FitTask else Stage.EVALUATE
    return {
        i.client_id: kind(
            round=rnd,
            client_id=i.client_id,
            version=version,
            seed=stream.child("client").child(i.client_id).child(stage).seed,
            config=i.config,
        )
        for i in instructions
    }


def counted(verified: Iterable[FitReply], quorum: Quorum) -> Iterator[FitReply]:
    """``verified`` replies, each counted toward ``quorum`` before it is handed on (so a
    transport that reads the quorum for its next outcome sees every verified one)."""
    for reply in verified:
        quorum.count()
        yield reply


def marking_refusals(
    outcomes: Iterable[FitReply | Failure], exhausted: set[str]
) -> Generator[FitReply | Failure, None, int]:
    """``outcomes`` as they come; each device that refused for its privacy budget joins
    ``exhausted``. Returns how many refused."""
    refused = 0
    for outcome in outcomes:
        if isinstance(outcome, Failure) and outcome.kind is FailureKind.BUDGET_EXCEEDED:
            exhausted.add(outcome.client_id)
            refused += 1
        yield outcome
    return refused


def rejected(client_id: str, rnd: int, exc: Exception) -> Failure:
    """The verification failure of a reply from ``client_id`` (a ``KeyError``: no task
    was sent to that client)."""
    if isinstance(exc, KeyError):
        message = f"no task of round {rnd} was sent to this client"
        return Failure(
            client_id=client_id,
            round=rnd,
            stage=Stage.VERIFY,
            kind=FailureKind.VALIDATION,
            message=message,
        )
    return Failure.of(client_id, rnd, Stage.VERIFY, exc)
