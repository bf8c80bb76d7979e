"""A tiny app whose clients keep state and whose construction is counted.

Each client adds 0.01 to every weight, counts its fits in ``state["calls"]`` and keeps
a residual array in ``state["residual"]`` (as error feedback would); ``CountingIds``
counts every id string it makes, ``built`` every client ``client_fn`` built.
"""

from __future__ import annotations

import numpy as np

from fedhive import ClientConfig, Context, EvaluateResult, FitResult, SimulationApp, Weights
from fedhive.client.app import ClientApp
from fedhive.core.ids import VirtualClientIds
from fedhive.server.app import ServerApp

INITIAL = Weights({"w": np.zeros(8, np.float32)})


class CountingIds(VirtualClientIds):
    """Virtual ids that count how many id strings were made."""

    made = 0

    def id_at(self, index: int) -> str:
        CountingIds.made += 1
        return super().id_at(index)


class StatefulClient:
    built = 0

    def __init__(self, client_id: str) -> None:
        StatefulClient.built += 1
        self.client_id = client_id

    def fit(self, weights: Weights, config: ClientConfig, context: Context) -> FitResult:
        calls = int(context.state.get("calls", 0)) + 1
        context.state["calls"] = calls
        context.state["residual"] = np.full(8, calls, np.float32)
        delta = Weights({"w": np.full(8, 0.01, np.float32)})
        return FitResult(delta=delta, num_examples=1, metrics={"calls": float(calls)})

    def evaluate(self, weights: Weights, config: ClientConfig, context: Context) -> EvaluateResult:
        return EvaluateResult(loss=0.0, num_examples=1)


def build(count: int) -> SimulationApp:
    return SimulationApp(
        server=ServerApp(initial_weights=INITIAL),
        client=ClientApp(client_fn=StatefulClient),
        client_ids=CountingIds(count),
    )
