"""An app for asynchronous runs whose interleaving is fixed by gates (files), not timing.

Clients ``fast-i`` and ``late``; ``params["gates"]`` is a folder. ``late`` holds its
first update until a fast client is given a task on version ``HOLD_FROM`` or later
(that client makes the file ``release``), so the update is at least ``HOLD_FROM``
versions stale when it arrives. Fast clients hold such tasks until ``late`` starts its
second task (it makes ``continue``), which it gets only once the server has taken its
first result: so the server takes the late update before theirs. Every fit moves every
weight by 1 and reports 1 example.
"""

from __future__ import annotations

import time
from pathlib import Path
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

HOLD_FROM = 2
GATE_TIMEOUT = 30.0  # a gate that never opens lets the client go on (its test then fails)
INITIAL = Weights({"w": np.zeros(3, np.float32)})


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + GATE_TIMEOUT
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


class GatedClient:
    def __init__(self, client_id: str, gates: Path) -> None:
        self.late = client_id == "late"
        self.gates = gates
        self.fits = 0

    def fit(self, weights: Weights, config: ClientConfig, context: Context) -> FitResult:
        self.fits += 1
        if self.late and self.fits == 1:
            wait_for(self.gates / "release")
        elif self.late:
            (self.gates / "continue").touch()
        elif context.round >= HOLD_FROM:
            (self.gates / "release").touch()
            wait_for(self.gates / "continue")
        return FitResult(weights=Weights({"w": weights["w"] + np.float32(1)}), num_examples=1)

    def evaluate(self, weights: Weights, config: ClientConfig, context: Context) -> EvaluateResult:
        return EvaluateResult(loss=float(np.abs(weights["w"]).sum()), num_examples=1)


def open_gates(gates: Path) -> None:
    """Let every held client go (a test's clean-up, whatever happened)."""
    for name in ("release", "continue"):
        (gates / name).touch()


def server(ctx: AppContext) -> ServerApp:
    return ServerApp(initial_weights=INITIAL, evaluate_fn=lambda w: {"mean": float(w["w"].mean())})


def client(ctx: AppContext) -> ClientApp:
    gates = Path(ctx.params["gates"])
    return ClientApp(client_fn=lambda client_id: GatedClient(client_id, gates))


def build(ctx: AppContext) -> SimulationApp:
    ids: list[Any] = [*(f"fast-{i}" for i in range(int(ctx.params.get("fast", 3)))), "late"]
    return SimulationApp(server=server(ctx), client=client(ctx), client_ids=ids)
