"""The same seed gives the same model, before and after a refactoring: pinned hashes.

Each case runs a short, seeded simulation of an example or of one algorithm on the
least-squares app and compares its ``model_sha256`` with the value recorded in
``model_hashes.json``. A change that alters any of them changes what users' seeded runs
produce, and must say so (and re-record with ``FEDHIVE_RECORD_HASHES=1 pytest
tests/integration/test_model_hashes.py``, which rewrites the file).

The hashes are of x86-64 machines with the pinned torch CPU build, one torch thread and
the AVX2 kernels ``tests/conftest.py`` pins (OpenBLAS, MKL, ATen): unpinned, an AVX-512
machine sums in another order and gets other models (recorded on 2026-12-03, at the
commit before the composable-algorithm refactor, once the kernels were pinned).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import PINNED_KERNELS
from fedhive.config import parse_config
from fedhive.core._compat import tomllib
from fedhive.core.extensions import Weighting
from fedhive.core.messages import ClientConfig
from fedhive.server.secure import SecureAggregation
from fedhive.simulation.engine import run_simulation, simulate
from fedhive.strategy import StrategyName, build_strategy
from fedhive.strategy.privacy_section import PrivacySection
from fedhive.strategy.private import DpMode
from lstsq_app import build

HASHES = Path(__file__).with_name("model_hashes.json")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RECORD = os.environ.get("FEDHIVE_RECORD_HASHES") == "1"

# example folder, config file, overrides that keep the run short
EXAMPLE_RUNS: dict[str, tuple[str, str, dict[str, dict[str, Any]]]] = {
    "digits-mlp": ("digits-mlp", "config.toml", {"run": {"rounds": 3}}),
    "digits-mlp-dp": ("digits-mlp", "config-dp.toml", {"run": {"rounds": 3}}),
    "digits-mlp-secagg": ("digits-mlp", "config-secagg.toml", {"run": {"rounds": 2}}),
    "digits-sklearn": ("digits-sklearn", "config.toml", {"run": {"rounds": 3}}),
    "synthetic-logreg": ("synthetic-logreg", "config.toml", {"run": {"rounds": 3}}),
}

CLIENT = ClientConfig(local_epochs=3, learning_rate=0.05)
ALGORITHMS: dict[str, tuple[StrategyName, dict[str, Any]]] = {
    "fedavg": (StrategyName.FEDAVG, {"fraction_fit": 0.5}),
    "fedavg-over-selection": (StrategyName.FEDAVG, {"fraction_fit": 0.5, "over_selection": 0.5}),
    "fedprox": (StrategyName.FEDPROX, {"fraction_fit": 0.5, "proximal_mu": 0.1}),
    "scaffold": (StrategyName.SCAFFOLD, {"fraction_fit": 0.5}),
    "fedadam": (StrategyName.FEDADAM, {"server_learning_rate": 0.1}),
    "fedyogi": (StrategyName.FEDYOGI, {"server_learning_rate": 0.1}),
    "fedadagrad": (StrategyName.FEDADAGRAD, {"server_learning_rate": 1.0, "beta_1": 0.0}),
    "fedbuff": (StrategyName.FEDBUFF, {"concurrency": 4, "buffer_size": 2}),
    "median": (StrategyName.FEDAVG, {"aggregator": "median"}),
    "trimmed-mean": (StrategyName.FEDAVG, {"aggregator": "trimmed_mean", "trim_fraction": 0.2}),
    "krum": (StrategyName.FEDAVG, {"aggregator": "krum", "byzantine": 1}),
    "bulyan": (StrategyName.FEDAVG, {"aggregator": "bulyan", "byzantine": 1}),
    "norm-bound": (StrategyName.FEDAVG, {"max_update_norm": 1.0}),
}


def run_example(folder: str, config: str, overrides: dict[str, dict[str, Any]]) -> str:
    data = tomllib.loads((EXAMPLES / folder / config).read_text())
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    return simulate(parse_config(data), base_dir=EXAMPLES / folder).version


def run_algorithm(name: StrategyName, table: dict[str, Any], **extra: Any) -> str:
    strategy = build_strategy(name, table, CLIENT, path="strategy")
    return run_simulation(build(12), strategy=strategy, rounds=4, seed=3, **extra).version


def run_private(mode: DpMode, *, secure: bool) -> str:
    base = build_strategy(StrategyName.FEDAVG, {"fraction_fit": 0.5}, CLIENT, path="strategy")
    privacy = PrivacySection(mode=mode, noise_multiplier=0.5, clipping_norm=1.0)
    strategy = privacy.wrap(base, seed=3)
    options: dict[str, Any] = {}
    if secure:  # a cohort this small needs generous SecAgg settings
        options["secure"] = SecureAggregation(
            dropout_fraction=0.0,
            corruption_fraction=0.0,
            security_bits=8,
            correctness_bits=8,
            weighting=Weighting.UNIFORM,
        )
    return run_simulation(build(12), strategy=strategy, rounds=3, seed=3, **options).version


CASES: dict[str, Callable[[], str]] = {
    **{f"example:{k}": (lambda v=v: run_example(*v)) for k, v in EXAMPLE_RUNS.items()},
    **{f"algorithm:{k}": (lambda v=v: run_algorithm(*v)) for k, v in ALGORITHMS.items()},
    "algorithm:dp-central": lambda: run_private(DpMode.CENTRAL, secure=False),
    "algorithm:dp-distributed-secagg": lambda: run_private(DpMode.DISTRIBUTED, secure=True),
}


def recorded() -> dict[str, str]:
    return dict(json.loads(HASHES.read_text())) if HASHES.exists() else {}


def test_the_suite_runs_on_the_pinned_kernels() -> None:
    import torch

    for name, value in PINNED_KERNELS.items():
        assert os.environ.get(name) == value, f"{name} is not pinned"
    assert torch.backends.cpu.get_cpu_capability() == "AVX2"


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_seeded_run_gives_its_recorded_model(case: str) -> None:
    version = CASES[case]()
    if RECORD:
        hashes = recorded()
        hashes[case] = version
        HASHES.write_text(json.dumps(dict(sorted(hashes.items())), indent=2) + "\n")
        return
    assert recorded().get(case) == version, f"{case}: the seeded run's model changed"
