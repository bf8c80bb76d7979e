"""The README's "Bring your own training loop" and "Flower clients" snippets run as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from fedhive import ServerApp, SimulationApp
from fedhive.core import ClientConfig
from fedhive.simulation.engine import run_simulation
from fedhive.strategy.algorithm import Algorithm

README = Path(__file__).resolve().parents[1] / "README.md"


def snippet(heading: str) -> dict[str, Any]:
    """Execute the first python block under ``heading``; return its namespace."""
    section = README.read_text().split(f"### {heading}\n", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None, heading
    namespace: dict[str, Any] = {"__name__": "readme"}
    exec(compile(code.group(1), f"README: {heading}", "exec"), namespace)
    return namespace


def strategy(learning_rate: float) -> Algorithm:
    config = ClientConfig(local_epochs=2, batch_size=16, learning_rate=learning_rate)
    return Algorithm(fraction_evaluate=1.0, client_config=config)


def test_the_training_loop_snippet_federates() -> None:
    pytest.importorskip("torch")
    from fedhive.client.torch import weights_from_module

    ns = snippet("Bring your own training loop")
    app = SimulationApp(
        server=ServerApp(initial_weights=weights_from_module(ns["model"])),
        client=ns["app"],
        client_ids=["a", "b"],
    )
    result = run_simulation(app, strategy=strategy(0.1), rounds=3, seed=0, federated_every=1)
    losses = [record.federated["loss"] for record in result.history]
    assert all(record.committed for record in result.history)
    assert losses[-1] < losses[0]


def test_the_flower_snippet_federates() -> None:
    ns = snippet("Flower clients")
    app = SimulationApp(server=ns["server"], client=ns["client"], client_ids=["c0", "c1", "c2"])
    result = run_simulation(app, strategy=strategy(0.1), rounds=3, seed=0, federated_every=1)
    mse = [record.federated["mse"] for record in result.history]
    assert all(record.committed for record in result.history)
    assert mse[-1] < mse[0]
    assert list(result.weights) == ["w"]
