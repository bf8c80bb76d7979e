"""Simulated stragglers: partial work (FedProx keeps it) or dropped results (FedAvg)."""

from __future__ import annotations

import numpy as np
import pytest

from fedhive import (
    Algorithm,
    ClientConfig,
    Context,
    EvaluateResult,
    FitResult,
    SimulationApp,
    Weights,
)
from fedhive.client.app import ClientApp
from fedhive.config import parse_config
from fedhive.config.simulated import StragglerSection
from fedhive.errors import ConfigError
from fedhive.server.app import ServerApp
from fedhive.simulation.engine import run_simulation
from fedhive.simulation.stragglers import with_stragglers


class EpochCounter:
    def fit(self, weights: Weights, config: ClientConfig, context: Context) -> FitResult:
        moved = Weights({"w": weights["w"] + np.float32(config.local_epochs)})
        return FitResult(weights=moved, num_examples=1, metrics={"epochs": config.local_epochs})

    def evaluate(self, weights: Weights, config: ClientConfig, context: Context) -> EvaluateResult:
        return EvaluateResult(loss=0.0, num_examples=0)


def app() -> SimulationApp:
    return SimulationApp(
        server=ServerApp(initial_weights=Weights({"w": np.zeros(1, np.float32)})),
        client=ClientApp(client_fn=lambda cid: EpochCounter()),
        client_ids=[f"c{i}" for i in range(20)],
    )


def run(section: StragglerSection, seed: int = 0) -> tuple[str, list[float], int]:
    strategy = Algorithm(client_config=ClientConfig(local_epochs=5))
    result = run_simulation(with_stragglers(app(), section), strategy=strategy, rounds=3, seed=seed)
    failed = sum(r.fit.failed for r in result.history)
    return result.version, [r.train.get("epochs", 0.0) for r in result.history], failed


def test_no_stragglers_leaves_the_app_alone() -> None:
    plain = app()
    assert with_stragglers(plain, StragglerSection()) is plain


def test_stragglers_do_part_of_their_epochs_reproducibly() -> None:
    version, epochs, failed = run(StragglerSection(fraction=1.0))
    assert failed == 0
    assert all(1 <= e < 5 for e in epochs)  # mean epochs drawn from [1, 5] is below 5
    assert run(StragglerSection(fraction=1.0))[0] == version
    assert run(StragglerSection(fraction=1.0), seed=1)[0] != version


def test_dropped_stragglers_fail_and_the_rest_are_kept() -> None:
    _, epochs, failed = run(StragglerSection(fraction=0.5, drop=True))
    assert 0 < failed < 60
    assert epochs == [5.0, 5.0, 5.0]  # only full workers contributed


def test_the_stragglers_section_is_checked() -> None:
    base = {"run": {"app": "app:build", "rounds": 1}}
    assert parse_config({**base, "stragglers": {"fraction": 0.9}}).stragglers.fraction == 0.9
    with pytest.raises(ConfigError, match=r"stragglers\.fraction: must be in \[0, 1\]"):
        parse_config({**base, "stragglers": {"fraction": 2}})
