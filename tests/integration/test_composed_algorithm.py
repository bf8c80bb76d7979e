"""DP + SCAFFOLD + a robust aggregator in one algorithm, in simulation and deployment.

The parts stack: ``scaffold(aggregator=TrimmedMean(...), transforms=(DifferentialPrivacy(...),))``
splits each reply into the model update and the control-variate change, and DP clips and
noises both sums after the trimmed mean, each a release the accountant counts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_deployment import deploy, free_port, write_config

from fedhive.config import parse_config
from fedhive.core._compat import tomllib
from fedhive.core.messages import ClientConfig
from fedhive.privacy import GaussianEvent, epsilon
from fedhive.simulation.engine import run_simulation, simulate
from fedhive.strategy import Control, DifferentialPrivacy, scaffold
from fedhive.strategy.robust import TrimmedMean
from lstsq_app import build

CLIENT = ClientConfig(local_epochs=3, learning_rate=0.05)
RULE = TrimmedMean(trim_fraction=0.125)  # 8 clients: one trimmed at each end


def composed(*, noise_multiplier: float, clipping_norm: float) -> object:
    dp = DifferentialPrivacy(
        noise_multiplier=noise_multiplier, clipping_norm=clipping_norm, noise_seed=5
    )
    return scaffold(client_config=CLIENT, aggregator=RULE, transforms=(dp,))


def test_dp_scaffold_and_a_trimmed_mean_compose_in_simulation() -> None:
    # Noise of std z * 2C = 2e-6 per coordinate and a bound that clips nothing: the run
    # is SCAFFOLD with a trimmed mean, plus that much noise on both of each round's sums.
    private = run_simulation(
        build(8, shared=False),
        strategy=composed(noise_multiplier=1e-9, clipping_norm=1e3),
        rounds=3,
        seed=3,
    )
    plain = run_simulation(
        build(8, shared=False),
        strategy=scaffold(client_config=CLIENT, aggregator=RULE),
        rounds=3,
        seed=3,
    )
    assert all(r.committed and r.fit.failed == 0 for r in private.history)
    w_private, w_plain = private.weights["w"], plain.weights["w"]
    # Both sums got noise (the models and the variates differ), and no more than noise.
    assert not np.array_equal(w_private, w_plain)
    c_private, c_plain = private.state.of(Control).c, plain.state.of(Control).c
    assert np.abs(c_plain).max() > 0.01  # the variate moved
    assert not np.array_equal(c_private, c_plain)
    noise = 2e-6 * 50  # 50 standard deviations, amplified at most a few times over 3 rounds
    np.testing.assert_allclose(w_private, w_plain, rtol=0, atol=noise)
    np.testing.assert_allclose(c_private, c_plain, rtol=0, atol=noise)


def test_each_round_is_accounted_as_two_releases() -> None:
    z, rounds = 1.0, 3
    result = run_simulation(
        build(8, shared=False),
        strategy=composed(noise_multiplier=z, clipping_norm=0.5),
        rounds=rounds,
        seed=3,
    )
    event = GaussianEvent(noise_multiplier=z, sample_rate=1.0, count=2)
    for done, record in enumerate(result.history, start=1):
        assert record.committed
        assert record.privacy is not None
        assert record.privacy.events == (event,)
        spent = epsilon([event] * done, target_delta=record.privacy.delta)
        assert record.privacy.epsilon == pytest.approx(spent, rel=1e-12)
    # Under DP the global step is the clipped rule's output plus noise: finite, bounded.
    assert np.isfinite(result.weights["w"]).all()


PRIVATE_SCAFFOLD = """
[privacy]
mode = "central"
noise_multiplier = 1.0
clipping_norm = 5.0
secure_noise = true
"""


@pytest.mark.slow
def test_dp_scaffold_and_a_trimmed_mean_over_mtls(tmp_path: Path) -> None:
    """`fedhive server` and 10 `fedhive client` processes over mutual TLS run the digits
    MLP with SCAFFOLD, a trimmed mean and central DP; every round commits, each accounted
    as two releases, with the epsilon the simulation of the same config reports."""
    port = free_port()
    config = write_config(tmp_path, port)
    text = config.read_text().replace(
        'name = "fedavg"', 'name = "scaffold"\naggregator = "trimmed_mean"\ntrim_fraction = 0.1'
    )
    config.write_text(text + PRIVATE_SCAFFOLD)
    state = deploy(tmp_path, config, port)
    summary = json.loads((state / "summary.json").read_text())
    assert summary["committed_rounds"] == summary["rounds"] == 3
    assert summary["clients_failed"] == 0
    lines = [json.loads(line) for line in (state / "metrics.jsonl").read_text().splitlines()]
    deployed = [line["privacy"] for line in lines]
    assert [p["events"] for p in deployed] == [
        [{"noise_multiplier": 1.0, "sample_rate": 1.0, "count": 2}]
    ] * 3
    simulated = simulate(parse_config(tomllib.loads(config.read_text())), base_dir=tmp_path)
    assert [p["epsilon"] for p in deployed] == [r.privacy.epsilon for r in simulated.history]
    assert summary["model_sha256"] != simulated.version  # the server's noise is its own
