"""A tiny app for tests: linear clients, some of them faulty by design.

Client ``good-i`` moves every weight by ``i + 1`` and reports ``i + 1`` examples;
faulty clients return a wrong shape, NaN, a wrong dtype, raise, kill their process, or
(``slow-i``) take three seconds.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from fedhive import (
    AppContext,
    ClientConfig,
    Context,
    EvaluateResult,
    FitResult,
    SimulationApp,
    Weights,
)
from fedhive.client.app import ClientApp
from fedhive.server.app import ServerApp

INITIAL = Weights({"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)})


class FakeClient:
    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        kind, _, index = client_id.partition("-")
        self.kind = kind
        self.step = float(int(index) + 1) if index.isdigit() else 1.0

    def fit(self, weights: Weights, config: ClientConfig, context: Context) -> FitResult:
        context.state["calls"] = int(context.state.get("calls", 0)) + 1
        moved = {k: v + np.float32(self.step) for k, v in weights.items()}
        if self.kind == "shape":
            return FitResult(
                delta=Weights({"w": np.zeros((3, 2), np.float32), "b": moved["b"]}), num_examples=1
            )
        if self.kind == "nan":
            moved["w"] = np.full((2, 3), np.nan, np.float32)
        if self.kind == "dtype":
            moved["w"] = moved["w"].astype(np.float64)
        if self.kind == "raise":
            raise RuntimeError("this client always fails")
        if self.kind == "crash":
            os._exit(3)
        if self.kind == "slow":
            time.sleep(3)
        metrics = {
            "calls": float(context.state["calls"]),
            "rng": float(context.numpy_rng().random()),
        }
        return FitResult(weights=Weights(moved), num_examples=int(self.step), metrics=metrics)

    def evaluate(self, weights: Weights, config: ClientConfig, context: Context) -> EvaluateResult:
        return EvaluateResult(
            loss=float(np.abs(weights["w"]).sum()), num_examples=1, metrics={"accuracy": 0.5}
        )


def server(ctx: AppContext) -> ServerApp:
    return ServerApp(
        initial_weights=INITIAL, evaluate_fn=lambda w: {"loss": float(np.abs(w["b"]).sum())}
    )


def client(ctx: AppContext) -> ClientApp:
    return ClientApp(client_fn=FakeClient)


def build(ctx: AppContext) -> SimulationApp:
    ids: list[Any] = ctx.params.get("clients", ["good-0", "good-1"])
    return SimulationApp(server=server(ctx), client=client(ctx), client_ids=list(ids))
