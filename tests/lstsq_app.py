"""A small convex app for tests: least squares, one linear model, numpy only.

Client ``c<i>`` holds ``10 + 3 i`` rows ``X_i`` with targets ``X_i w_i``: with
``shared=True`` every ``w_i`` is the same ``W_STAR`` (so the federation's optimum is
``W_STAR`` however often each client takes part), otherwise each client has its own.
``fit`` runs ``local_epochs`` full-batch gradient steps (deterministic: no seed used;
with SCAFFOLD's drift correction when the strategy sends control variates, and
FedProx's proximal term when it asks for one);
a client whose id is in ``failing`` raises.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np

from fedhive import ClientConfig, Context, EvaluateResult, FitResult, SimulationApp, Weights
from fedhive.client import scaffold
from fedhive.client.app import ClientApp
from fedhive.client.proximal import proximal_coefficient
from fedhive.server.app import ServerApp

DIM = 4
W_STAR = np.array([1.0, -2.0, 0.5, 3.0])


def client_data(index: int, *, shared: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(100 + index)
    x = rng.normal(size=(10 + 3 * index, DIM))
    target = W_STAR if shared else W_STAR + rng.normal(size=DIM)
    return x, x @ target


class LeastSquaresClient:
    def __init__(self, index: int, *, shared: bool, failing: bool) -> None:
        self.x, self.y = client_data(index, shared=shared)
        self.failing = failing

    def fit(self, weights: Weights, config: ClientConfig, context: Context) -> FitResult:
        if self.failing:
            raise RuntimeError("this client always fails")
        w = weights["w"].astype(np.float64)
        control = scaffold.correction(context) if context is not None else None
        mu = proximal_coefficient(config)
        for _ in range(config.local_epochs):
            grad = self.x.T @ (self.x @ w - self.y) / len(self.y)
            if control is not None:  # SCAFFOLD's drift correction, when the server sends c
                grad = grad + control["w"]
            if mu:  # FedProx's proximal term, when the server asks for it
                grad = grad + mu * (w - weights["w"])
            w = w - config.learning_rate * grad
        aux = None
        if control is not None:
            delta = Weights({"w": w - weights["w"]})
            aux = scaffold.finish(context, delta, config.local_epochs, config.learning_rate)
        return FitResult(weights=Weights({"w": w}), num_examples=len(self.y), aux=aux)

    def evaluate(self, weights: Weights, config: ClientConfig, context: Any) -> EvaluateResult:
        return EvaluateResult(loss=0.0, num_examples=1)


def build(
    num_clients: int = 6, *, shared: bool = True, failing: Collection[str] = ()
) -> SimulationApp:
    """The app with ``num_clients`` clients ``c0``, ``c1``, ..."""

    def client_fn(client_id: str) -> LeastSquaresClient:
        index = int(client_id.removeprefix("c"))
        return LeastSquaresClient(index, shared=shared, failing=client_id in failing)

    def evaluate(weights: Weights) -> dict[str, float]:
        return {"distance": float(np.linalg.norm(weights["w"] - W_STAR))}

    return SimulationApp(
        server=ServerApp(initial_weights=Weights({"w": np.zeros(DIM)}), evaluate_fn=evaluate),
        client=ClientApp(client_fn=client_fn),
        client_ids=[f"c{i}" for i in range(num_clients)],
    )
