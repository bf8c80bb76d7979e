"""The local backend: every task runs in this process, one after another."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from fedhive.client.base import Client, ClientFn, TaskOrigin
from fedhive.client.pipeline import run_evaluate, run_fit
from fedhive.core.failures import Stage
from fedhive.core.messages import EvaluateTask, Failure, FitTask
from fedhive.core.serde import record_from_bytes
from fedhive.core.version import ModelVersion
from fedhive.simulation.states import MemoryStateStore, StateStore, save_state
from fedhive.transport.base import EvaluateOutcome, FitOutcome


class LocalBackend:
    """Runs client tasks sequentially in the calling process.

    Clients are built by ``client_fn`` only when selected; each client's ``state``
    dict is read from ``states`` before its task and written back after it (default:
    an in-memory store).
    """

    def __init__(self, client_fn: ClientFn, states: StateStore | None = None) -> None:
        self._client_fn = client_fn
        self._states = MemoryStateStore() if states is None else states

    def fit(self, tasks: Sequence[FitTask], model: ModelVersion) -> Iterator[FitOutcome]:
        """Run each fit task in turn, on ``model``'s weights (never serialised here)."""
        for task in tasks:
            client = self.build(task.client_id, task.round)
            yield client if isinstance(client, Failure) else self.fit_one(client, task, model)

    def fit_one(self, client: Client, task: FitTask, model: ModelVersion) -> FitOutcome:
        """Run one fit task on ``client`` with its stored state, and store what it leaves."""
        before = self._states.get(task.client_id)
        state = {} if before is None else record_from_bytes(before)
        origin = TaskOrigin.simulation(task)
        outcome = run_fit(client, task, model.weights, state, origin=origin)
        save_state(self._states, task.client_id, state, before)
        return outcome

    def evaluate(
        self, tasks: Sequence[EvaluateTask], model: ModelVersion
    ) -> Iterator[EvaluateOutcome]:
        """Run each evaluate task in turn."""
        for task in tasks:
            client = self.build(task.client_id, task.round)
            if isinstance(client, Failure):
                yield client
                continue
            before = self._states.get(task.client_id)
            state = {} if before is None else record_from_bytes(before)
            outcome = run_evaluate(client, task, model.weights, state)
            save_state(self._states, task.client_id, state, before)
            yield outcome

    def close(self) -> None:
        """Close the state store (an in-memory one drops the states)."""
        self._states.close()

    def build(self, client_id: str, round_: int) -> Client | Failure:
        """The client ``client_fn`` builds, or the failure of its task if it raises."""
        try:
            return self._client_fn(client_id)
        except Exception as exc:  # the user's factory: a failure of this task only
            return Failure.of(client_id, round_, Stage.CLIENT_FN, exc)
