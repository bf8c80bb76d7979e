"""Every strategy a config can name reaches the known optimum of a convex problem.

Least squares where every client's data has the same solution ``W_STAR``: the optimum
of the federation is ``W_STAR`` whichever clients take part and however often.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fedhive.core.messages import ClientConfig
from fedhive.simulation.engine import run_simulation
from fedhive.strategy import StrategyName, build_strategy
from lstsq_app import W_STAR, build

CLIENT = ClientConfig(local_epochs=3, learning_rate=0.05)
TABLES: dict[StrategyName, dict[str, Any]] = {
    StrategyName.FEDAVG: {"fraction_fit": 0.5},
    StrategyName.FEDPROX: {"fraction_fit": 0.5, "proximal_mu": 0.1},
    StrategyName.SCAFFOLD: {"fraction_fit": 0.5},
    StrategyName.FEDADAM: {"server_learning_rate": 0.1},
    StrategyName.FEDYOGI: {"server_learning_rate": 0.1},
    StrategyName.FEDADAGRAD: {"server_learning_rate": 1.0, "beta_1": 0.0},
    StrategyName.FEDBUFF: {"concurrency": 4, "buffer_size": 2},
}


@pytest.mark.parametrize("name", list(StrategyName))
def test_each_strategy_reaches_the_optimum(name: StrategyName) -> None:
    strategy = build_strategy(name, TABLES[name], CLIENT, path="strategy")
    result = run_simulation(build(8), strategy=strategy, rounds=80, seed=1)
    distance = float(np.linalg.norm(result.weights["w"] - W_STAR))
    start = float(np.linalg.norm(W_STAR))
    assert distance < 1e-2 * start, (name, distance)
