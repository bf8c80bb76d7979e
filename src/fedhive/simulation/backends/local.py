"""The local backend: every task runs in this process, one after another."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from fedhive.client.base import Client, ClientFn, TaskOrigin
from fedhive.client.pipeline import run_evaluate, run_fit
from fedhive.core.failures import Stage
from fedhive.core.messages import EvaluateTask, Failure, FitTask
from fedhive.core.serde import RecordValue
from fedhive.core.version import ModelVersion
from fedhive.transport.base import EvaluateOutcome, FitOutcome


class LocalBackend:
    """Runs client tasks sequentially in the calling process.

    Clients are built by ``client_fn`` only when selected; each client's ``state``
    dict is kept here between the rounds it joins.
    """

    def __init__(self, client_fn: ClientFn) -> None:
        self._client_fn = client_fn
        self._states: dict[str, dict[str, RecordValue]] = {}

    def fit(self, tasks: Sequence[FitTask], model: ModelVersion) -> Iterator[FitOutcome]:
        """Run each fit task in turn, on ``model``'s weights (never serialised here)."""
        for task in tasks:
            client = self._build(task.client_id, task.round)
            if isinstance(client, Failure):
                yield client
                continue
            state = self._states.setdefault(task.client_id, {})
            origin = TaskOrigin.simulation(task)
            yield run_fit(client, task, model.weights, state, origin=origin)

    def evaluate(
        self, tasks: Sequence[EvaluateTask], model: ModelVersion
    ) -> Iterator[EvaluateOutcome]:
        """Run each evaluate task in turn."""
        for task in tasks:
            client = self._build(task.client_id, task.round)
            if isinstance(client, Failure):
                yield client
                continue
            state = self._states.setdefault(task.client_id, {})
            yield run_evaluate(client, task, model.weights, state)

    def close(self) -> None:
        """Drop the clients' states."""
        self._states.clear()

    def _build(self, client_id: str, round_: int) -> Client | Failure:
        try:
            return self._client_fn(client_id)
        except Exception as exc:  # the user's factory: a failure of this task only
            return Failure.of(client_id, round_, Stage.CLIENT_FN, exc)
