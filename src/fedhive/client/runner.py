"""A deployed client's loop: pull a task, fetch its model, run the pipeline, upload.

Transport-agnostic: it sees only :class:`~fedhive.transport.base.ClientLink`. A lost
connection is retried with exponential back-off and jitter, capped at
:data:`RETRY_CAP_SECONDS` so that a restarted server has its clients back within seconds;
a refusal for good (:class:`~fedhive.errors.PeerRejectedError`: revoked, another id,
another schema) ends the loop with that error; a task that fails on this client is
reported to the server as a failure, never a crash of the loop.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from dataclasses import replace

from fedhive.client.base import Client, TaskOrigin
from fedhive.client.pipeline import run_evaluate, run_fit
from fedhive.client.privacy import LEDGER_KEY
from fedhive.client.secure import SecAggSession
from fedhive.core.failures import Stage
from fedhive.core.messages import (
    EvaluateReply,
    Failure,
    FitReply,
    FitTask,
    PrivacyBudget,
    SecAggAnswer,
    SecAggReply,
    SecAggTask,
)
from fedhive.core.serde import RecordValue, weights_from_bytes
from fedhive.core.weights import Weights
from fedhive.errors import FedhiveError, PeerRejectedError, PrivacyBudgetError, TransportError
from fedhive.privacy import FileLedger, Ledger
from fedhive.transport.base import ClientLink, Wait

log = logging.getLogger("fedhive.client")

Upload = FitReply | EvaluateReply | SecAggReply | SecAggAnswer | Failure
RETRY_CAP_SECONDS = 2.0
"""The longest wait between two attempts to reach the server."""


class Backoff:
    """Exponential back-off with full jitter, reset after a success."""

    def __init__(self, *, base: float = 0.2, cap: float = RETRY_CAP_SECONDS) -> None:
        self._base, self._cap, self._attempt = base, cap, 0
        self._jitter = random.Random(os.urandom(16))  # timing only: no secret, no global RNG

    def next_delay(self) -> float:
        """The next wait: uniform in [0, min(cap, base * 2**attempt)]."""
        delay = min(self._cap, self._base * 2**self._attempt)
        self._attempt = min(self._attempt + 1, 30)
        return self._jitter.uniform(0, delay)

    def reset(self) -> None:
        """Forget past failures."""
        self._attempt = 0


def serve(
    link: ClientLink,
    client: Client,
    *,
    stop: threading.Event,
    max_tasks: int | None = None,
    budget: PrivacyBudget | None = None,
    ledger: FileLedger | None = None,
) -> int:
    """Work for the server until ``stop`` is set (or ``max_tasks`` are done).

    Args:
        budget: the device's own privacy budget, clipping norm and noise floor; it
            replaces whatever budget a task names (a device does not take its budget
            from the server). Each release is charged under the task envelope's run and
            task id; DP noise always comes from the OS's CSPRNG.
        ledger: where the device keeps what it has spent, across restarts (None: in
            memory, for this process only).

    Returns:
        The number of tasks whose outcome the server received.

    Raises:
        PeerRejectedError: the server refused this client for good (not retried).
    """
    state: dict[str, RecordValue] = {}
    session = SecAggSession()
    backoff = Backoff()
    registered = False
    done = 0
    while not stop.is_set() and (max_tasks is None or done < max_tasks):
        try:
            if not registered:
                log.info("registered with run %s", link.register())
                registered = True
            item = link.pull()
            backoff.reset()
            if isinstance(item, Wait):
                if item.finished:
                    log.info("the run has finished")
                    break
                stop.wait(item.seconds)
                continue
            task = item.task
            outcome: Upload
            if isinstance(task, SecAggTask):  # a stage of secure aggregation: no model
                outcome = session.answer(task, item.secagg)
            else:
                weights = weights_from_bytes(link.download(item))
                if isinstance(task, FitTask):
                    if budget is not None:
                        task = replace(task, config=replace(task.config, privacy_budget=budget))
                    origin = TaskOrigin(run_id=item.run_id, task_id=item.task_id)
                    outcome = _fit_with_ledger(
                        client, task, weights, state, origin=origin, ledger=ledger
                    )
                    if item.secagg and isinstance(outcome, FitReply):  # mask: the last stage
                        outcome = session.start(task, item.secagg, outcome, weights.layout())
                else:
                    outcome = run_evaluate(client, task, weights, state)
            verdict = link.upload(item, outcome)
            log.info("round %d %s task: %s", task.round, type(task).__name__, verdict)
            done += 1
        except PeerRejectedError:
            raise
        except TransportError as exc:
            registered = False
            delay = backoff.next_delay()
            log.warning("connection problem (%s); retrying in %.1fs", exc, delay)
            stop.wait(delay)
        except FedhiveError as exc:  # a bad task or model from the server: skip it
            log.warning("task refused: %s", exc)
    return done


def _fit_with_ledger(
    client: Client,
    task: FitTask,
    weights: Weights,
    state: dict[str, RecordValue],
    *,
    origin: TaskOrigin,
    ledger: FileLedger | None,
) -> FitReply | Failure:
    """Run the fit (never simulated: noise from the OS) with the device's ledger loaded
    from, and saved to, its file; an update whose charge cannot be saved is not released."""
    if ledger is None:
        return run_fit(client, task, weights, state, origin=origin)
    try:
        state[LEDGER_KEY] = ledger.load().to_bytes().decode("ascii")
    except PrivacyBudgetError as exc:
        log.error("%s", exc)
        state[LEDGER_KEY] = "unreadable"  # private tasks are then refused: fail closed
    before = state.get(LEDGER_KEY)
    outcome = run_fit(client, task, weights, state, origin=origin)
    after = state.get(LEDGER_KEY)
    if after != before and isinstance(after, str):
        try:
            ledger.save(Ledger.from_bytes(after.encode("ascii")))
        except PrivacyBudgetError as exc:
            return Failure.of(task.client_id, task.round, Stage.BUDGET, exc)
    return outcome
